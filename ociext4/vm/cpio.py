"""A writer of newc ("070701") cpio archives, the format the kernel unpacks
an initramfs from: directories, regular files and symlinks, root-owned, with
fixed times so the same content gives the same bytes."""

from __future__ import annotations

import stat
from dataclasses import dataclass

_MAGIC = b"070701"
TRAILER = "TRAILER!!!"


@dataclass(frozen=True, slots=True)
class Member:
    name: str          # relative, "/"-separated, no leading "/"
    mode: int          # full st_mode: type and permission bits
    data: bytes = b""  # a file's content or a symlink's target


def directory(name: str, perm: int = 0o755) -> Member:
    return Member(name, stat.S_IFDIR | perm)


def file(name: str, data: bytes, perm: int = 0o644) -> Member:
    return Member(name, stat.S_IFREG | perm, data)


def symlink(name: str, target: str) -> Member:
    return Member(name, stat.S_IFLNK | 0o777, target.encode())


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 4)


def _header(ino: int, m: Member, name: bytes) -> bytes:
    fields = (ino, m.mode, 0, 0, 2 if stat.S_ISDIR(m.mode) else 1, 0, len(m.data),
              0, 0, 0, 0, len(name) + 1, 0)
    return _MAGIC + b"".join(b"%08X" % f for f in fields)


def archive(members: list[Member]) -> bytes:
    """The archive of `members` in order (parents must come before their
    children), ending with the trailer, padded to a multiple of 512 bytes so
    another archive can be appended right after it."""
    out = bytearray()
    for ino, m in enumerate([*members, Member(TRAILER, 0)], start=1):
        name = m.name.encode()
        if not name or name.startswith(b"/") or b"\0" in name:
            raise ValueError(f"cpio: bad member name {m.name!r}")
        if m.name == TRAILER:
            ino = 0
        head = _header(ino, m, name) + name + b"\0"
        out += head + _pad(len(head)) + m.data + _pad(len(m.data))
    out += b"\0" * (-len(out) % 512)
    return bytes(out)

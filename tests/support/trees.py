"""Declarative source trees for the writer's tests, built on disk or as tar.

A spec is a list of items (File, Dir, Symlink, Hardlink, Device, Fifo, Socket,
Many). Paths are relative, "/"-separated str; non-UTF-8 names are written as
surrogate escapes (os.fsdecode). Parent directories that no Dir item names
are implied: 0o755, root:root, DEFAULT_MTIME_NS.

make_tree needs root (chown, mknod, trusted.* xattrs). The host's /tmp is
ext4 with 256-byte inodes here, which stores mtimes from 1901-12-13 to
2446-05-10 with nanoseconds, so every ready-made spec fits on it as is.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import random
import socket
import stat
import struct
import tarfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

__all__ = [
    "DEFAULT_MTIME_NS",
    "Device",
    "Dir",
    "Fifo",
    "File",
    "Hardlink",
    "Item",
    "Many",
    "Socket",
    "Symlink",
    "capability_v2",
    "combine",
    "make_tar",
    "make_tree",
    "pattern",
    "small_specs",
]

# 2023-11-14 22:13:20.123456789 UTC: a fixed default (never "now") so a tree
# and a tar built from one spec describe the same thing, nanoseconds included.
DEFAULT_MTIME_NS = 1_700_000_000_123_456_789


# Linux's ext4 time range with 256-byte inodes: a signed 32-bit second plus
# two epoch bits. The kernel zeroes nanoseconds at exactly these limits.
_EXT4_MIN_SEC = -(2**31)
_EXT4_MAX_SEC = 3 * 2**32 + 2**31 - 1


def _ns(y_sec: int, ns: int = 0) -> int:
    return y_sec * 1_000_000_000 + ns


@dataclass(frozen=True)
class File:
    path: str
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime_ns: int = DEFAULT_MTIME_NS
    xattrs: Mapping[str, bytes] = field(default_factory=dict)
    # Sparse files: data chunks at offsets over holes, `size` bytes in all
    # (default: the end of the last chunk). `data` must then be empty.
    sparse: Sequence[tuple[int, bytes]] = ()
    size: int | None = None

    def total_size(self) -> int:
        if not self.sparse:
            return len(self.data)
        end = max((off + len(chunk) for off, chunk in self.sparse), default=0)
        return end if self.size is None else self.size


@dataclass(frozen=True)
class Dir:
    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime_ns: int = DEFAULT_MTIME_NS
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Symlink:
    path: str
    target: str | bytes
    uid: int = 0
    gid: int = 0
    mtime_ns: int = DEFAULT_MTIME_NS
    # Linux allows only trusted.* and security.* on symlinks.
    xattrs: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True)
class Hardlink:
    """Another name for the inode at `to` (which must come earlier in the spec)."""

    path: str
    to: str


@dataclass(frozen=True)
class Device:
    path: str
    kind: Literal["chr", "blk"]
    major: int
    minor: int
    mode: int = 0o600
    uid: int = 0
    gid: int = 0
    mtime_ns: int = DEFAULT_MTIME_NS


@dataclass(frozen=True)
class Fifo:
    path: str
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime_ns: int = DEFAULT_MTIME_NS


@dataclass(frozen=True)
class Socket:
    """A bound AF_UNIX socket node. Tar cannot hold one: make_tar skips it."""

    path: str
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    mtime_ns: int = DEFAULT_MTIME_NS


@dataclass(frozen=True)
class Many:
    """`count` empty files or empty directories named PREFIX000000... in `path`.

    One item instead of tens of thousands keeps big specs cheap to build.
    """

    path: str
    count: int
    kind: Literal["file", "dir"] = "file"
    prefix: str = "e"
    mode: int | None = None  # default 0o644 for files, 0o755 for dirs
    mtime_ns: int = DEFAULT_MTIME_NS

    def names(self) -> Iterator[str]:
        width = max(6, len(str(self.count - 1)))
        return (f"{self.prefix}{i:0{width}d}" for i in range(self.count))

    def child_mode(self) -> int:
        if self.mode is not None:
            return self.mode
        return 0o755 if self.kind == "dir" else 0o644


Item = File | Dir | Symlink | Hardlink | Device | Fifo | Socket | Many


# --------------------------------------------------------------------------
# helpers for specs


def pattern(n: int, seed: int = 0) -> bytes:
    """n deterministic, incompressible bytes (so no writer can cheat with zeros)."""
    return random.Random(seed).randbytes(n)


def capability_v2(*caps: int, effective: bool = True) -> bytes:
    """A valid VFS_CAP_REVISION_2 security.capability blob (20 bytes)."""
    permitted = [0, 0]
    for cap in caps:
        permitted[cap // 32] |= 1 << (cap % 32)
    magic = 0x02000000 | (0x000001 if effective else 0)
    return struct.pack("<IIIII", magic, permitted[0], 0, permitted[1], 0)


def combine(*specs: Iterable[Item]) -> list[Item]:
    return [item for spec in specs for item in spec]


def _norm(path: str) -> str:
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise ValueError(f"spec path escapes the root: {path!r}")
    return "/".join(parts) or "."


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


# --------------------------------------------------------------------------
# building on disk


@contextlib.contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _bind_socket(path: bytes) -> None:
    # sun_path holds 107 bytes; going through /proc/self/fd/N of the parent
    # keeps the address short however deep the test directory is.
    parent, name = os.path.split(path)
    dfd = os.open(parent or b".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        addr = b"/proc/self/fd/%d/%s" % (dfd, name)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.bind(addr)
    finally:
        os.close(dfd)


def _write_file(path: bytes, item: File) -> None:
    if item.sparse and item.data:
        raise ValueError(f"{item.path}: give either data or sparse chunks, not both")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        if item.sparse:
            os.ftruncate(fd, item.total_size())
            for off, chunk in item.sparse:
                os.pwrite(fd, chunk, off)
        else:
            view = memoryview(item.data)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _make_many(dirpath: bytes, item: Many) -> None:
    mode, mt = item.child_mode(), item.mtime_ns
    dfd = os.open(dirpath, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        # mknod makes an empty regular file in one syscall, no fd to close.
        fmt = stat.S_IFREG if item.kind == "file" else 0
        for name in item.names():
            if fmt:
                os.mknod(name, fmt | mode, dir_fd=dfd)
            else:
                os.mkdir(name, mode, dir_fd=dfd)
            os.utime(name, ns=(mt, mt), dir_fd=dfd, follow_symlinks=False)
    finally:
        os.close(dfd)


def _apply_owner_mode_xattrs(
    path: bytes, uid: int, gid: int, mode: int | None, xattrs: Mapping[str, bytes]
) -> None:
    # Order matters: chown clears setuid/setgid and security.capability on
    # non-directories, so it must come before chmod and the xattrs.
    os.lchown(path, uid, gid)
    if mode is not None:
        os.chmod(path, mode)
    for name, value in xattrs.items():
        os.setxattr(path, name, value, follow_symlinks=False)


def make_tree(
    root: Path, spec: Iterable[Item], *, implied_mtime_ns: int = DEFAULT_MTIME_NS
) -> Path:
    """Create the spec under ROOT (created if missing) and return ROOT.

    Times are set last, directories deepest first, so creating children
    cannot disturb a directory's mtime afterwards. ROOT itself gets the
    attributes of a Dir(".") item, or those of an implied directory.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    broot = os.fsencode(root)
    # path -> (mtime_ns, is_dir); hard links have no entry of their own.
    times: dict[str, tuple[int, bool]] = {}
    implied: set[str] = set()
    created: set[str] = set()

    def bpath(rel: str) -> bytes:
        return broot if rel == "." else broot + b"/" + os.fsencode(rel)

    def ensure_parents(rel: str) -> None:
        for parent in _parents(rel):
            if parent in created:
                continue
            os.mkdir(bpath(parent), 0o755)
            created.add(parent)
            implied.add(parent)
            times[parent] = (implied_mtime_ns, True)

    with _umask(0):
        os.chmod(broot, 0o755)
        os.lchown(broot, 0, 0)
        times["."] = (implied_mtime_ns, True)
        for item in spec:
            rel = _norm(item.path)
            p = bpath(rel)
            if rel == "." and not isinstance(item, (Dir, Many)):
                raise ValueError(f"the root can only be a Dir, not {item!r}")
            if isinstance(item, Dir) and (rel == "." or rel in implied):
                implied.discard(rel)
                _apply_owner_mode_xattrs(p, item.uid, item.gid, item.mode, item.xattrs)
                times[rel] = (item.mtime_ns, True)
                continue
            if isinstance(item, Many):
                if rel != "." and rel not in created:
                    ensure_parents(rel)
                    os.mkdir(p, 0o755)
                    created.add(rel)
                    implied.add(rel)
                    times[rel] = (implied_mtime_ns, True)
                _make_many(p, item)
                continue
            if rel in created:
                raise ValueError(f"duplicate path in spec: {rel!r}")
            ensure_parents(rel)
            created.add(rel)
            _create_one(p, item, bpath)
            if not isinstance(item, Hardlink):
                times[rel] = (item.mtime_ns, isinstance(item, Dir))

        def depth(rel: str) -> int:
            return -1 if rel == "." else rel.count("/")

        order = sorted(times.items(), key=lambda kv: (kv[1][1], -depth(kv[0])))
        for rel, (mt, _is_dir) in order:
            os.utime(bpath(rel), ns=(mt, mt), follow_symlinks=False)
    return root


def _create_one(p: bytes, item: Item, bpath: Callable[[str], bytes]) -> None:
    if isinstance(item, File):
        _write_file(p, item)
        _apply_owner_mode_xattrs(p, item.uid, item.gid, item.mode, item.xattrs)
    elif isinstance(item, Dir):
        os.mkdir(p, 0o700)
        _apply_owner_mode_xattrs(p, item.uid, item.gid, item.mode, item.xattrs)
    elif isinstance(item, Symlink):
        target = item.target if isinstance(item.target, bytes) else os.fsencode(item.target)
        os.symlink(target, p)
        _apply_owner_mode_xattrs(p, item.uid, item.gid, None, item.xattrs)
    elif isinstance(item, Hardlink):
        os.link(bpath(_norm(item.to)), p, follow_symlinks=False)
    elif isinstance(item, Device):
        fmt = stat.S_IFCHR if item.kind == "chr" else stat.S_IFBLK
        os.mknod(p, fmt | 0o600, os.makedev(item.major, item.minor))
        _apply_owner_mode_xattrs(p, item.uid, item.gid, item.mode, {})
    elif isinstance(item, Fifo):
        os.mkfifo(p, 0o600)
        _apply_owner_mode_xattrs(p, item.uid, item.gid, item.mode, {})
    elif isinstance(item, Socket):
        _bind_socket(p)
        _apply_owner_mode_xattrs(p, item.uid, item.gid, item.mode, {})
    else:  # pragma: no cover - Item is closed
        raise TypeError(f"not a spec item: {item!r}")


# --------------------------------------------------------------------------
# building as tar


class _SparseReader:
    """Streams a sparse File's content without holding gigabytes of zeros."""

    def __init__(self, item: File) -> None:
        self._chunks = sorted(item.sparse)
        self._size = item.total_size()
        self._pos = 0

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self._size - self._pos
        end = min(self._pos + n, self._size)
        out = bytearray(end - self._pos)
        for off, chunk in self._chunks:
            lo, hi = max(off, self._pos), min(off + len(chunk), end)
            if lo < hi:
                out[lo - self._pos : hi - self._pos] = chunk[lo - off : hi - off]
        self._pos = end
        return bytes(out)


def _pax_time(ns: int) -> str:
    sign = "-" if ns < 0 else ""
    sec, frac = divmod(abs(ns), 1_000_000_000)
    return f"{sign}{sec}.{frac:09d}".rstrip("0").rstrip(".") if frac else f"{sign}{sec}"


def _tarinfo(
    name: str,
    kind: bytes,
    *,
    mode: int,
    uid: int,
    gid: int,
    mtime_ns: int,
    xattrs: Mapping[str, bytes],
    fmt: int,
) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode
    ti.uid, ti.gid = uid, gid
    ti.uname = ti.gname = ""
    ti.mtime = ns_floor = mtime_ns // 1_000_000_000
    if fmt == tarfile.PAX_FORMAT:
        pax: dict[str, str] = {}
        if mtime_ns != ns_floor * 1_000_000_000 or not 0 <= ns_floor < 8**11:
            pax["mtime"] = _pax_time(mtime_ns)
        for key, value in xattrs.items():
            # tarfile writes a surrogate-escaped str back as the raw bytes
            # (switching the header to hdrcharset=BINARY), so any value survives.
            pax[f"SCHILY.xattr.{key}"] = value.decode("utf-8", "surrogateescape")
        ti.pax_headers = pax
    elif xattrs:
        raise ValueError(f"{name}: only PAX tar archives can carry xattrs")
    return ti


def _tar_members(
    spec: list[Item], fmt: int, implied_mtime_ns: int
) -> Iterator[tuple[tarfile.TarInfo, IO[bytes] | Any]]:
    dirs = {_norm(i.path): i for i in spec if isinstance(i, Dir)}
    emitted: set[str] = set()

    def dir_member(rel: str) -> tarfile.TarInfo:
        d = dirs.get(rel)
        if d is None:
            return _tarinfo(
                rel,
                tarfile.DIRTYPE,
                mode=0o755,
                uid=0,
                gid=0,
                mtime_ns=implied_mtime_ns,
                xattrs={},
                fmt=fmt,
            )
        return _tarinfo(
            rel,
            tarfile.DIRTYPE,
            mode=d.mode,
            uid=d.uid,
            gid=d.gid,
            mtime_ns=d.mtime_ns,
            xattrs=d.xattrs,
            fmt=fmt,
        )

    def parents_of(rel: str) -> Iterator[tuple[tarfile.TarInfo, None]]:
        for parent in _parents(rel):
            if parent not in emitted:
                emitted.add(parent)
                yield dir_member(parent), None

    for item in spec:
        rel = _norm(item.path)
        yield from parents_of(rel)
        if isinstance(item, Many):
            if rel not in emitted and rel != ".":
                emitted.add(rel)
                yield dir_member(rel), None
            kind = tarfile.DIRTYPE if item.kind == "dir" else tarfile.REGTYPE
            for name in item.names():
                child = name if rel == "." else f"{rel}/{name}"
                yield (
                    _tarinfo(
                        child,
                        kind,
                        mode=item.child_mode(),
                        uid=0,
                        gid=0,
                        mtime_ns=item.mtime_ns,
                        xattrs={},
                        fmt=fmt,
                    ),
                    None,
                )
            continue
        if rel in emitted:
            continue  # a Dir already written as some earlier item's parent
        emitted.add(rel)
        if isinstance(item, Dir):
            yield dir_member(rel), None
        elif isinstance(item, File):
            ti = _tarinfo(
                rel,
                tarfile.REGTYPE,
                mode=item.mode,
                uid=item.uid,
                gid=item.gid,
                mtime_ns=item.mtime_ns,
                xattrs=item.xattrs,
                fmt=fmt,
            )
            ti.size = item.total_size()
            yield ti, _SparseReader(item) if item.sparse else _BytesReader(item.data)
        elif isinstance(item, Symlink):
            ti = _tarinfo(
                rel,
                tarfile.SYMTYPE,
                mode=0o777,
                uid=item.uid,
                gid=item.gid,
                mtime_ns=item.mtime_ns,
                xattrs=item.xattrs,
                fmt=fmt,
            )
            target = item.target
            ti.linkname = os.fsdecode(target) if isinstance(target, bytes) else target
            yield ti, None
        elif isinstance(item, Hardlink):
            ti = _tarinfo(
                rel,
                tarfile.LNKTYPE,
                mode=0o644,
                uid=0,
                gid=0,
                mtime_ns=DEFAULT_MTIME_NS,
                xattrs={},
                fmt=fmt,
            )
            ti.linkname = _norm(item.to)
            yield ti, None
        elif isinstance(item, Device):
            kind = tarfile.CHRTYPE if item.kind == "chr" else tarfile.BLKTYPE
            ti = _tarinfo(
                rel,
                kind,
                mode=item.mode,
                uid=item.uid,
                gid=item.gid,
                mtime_ns=item.mtime_ns,
                xattrs={},
                fmt=fmt,
            )
            ti.devmajor, ti.devminor = item.major, item.minor
            yield ti, None
        elif isinstance(item, Fifo):
            yield (
                _tarinfo(
                    rel,
                    tarfile.FIFOTYPE,
                    mode=item.mode,
                    uid=item.uid,
                    gid=item.gid,
                    mtime_ns=item.mtime_ns,
                    xattrs={},
                    fmt=fmt,
                ),
                None,
            )
        elif isinstance(item, Socket):
            continue


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._view = memoryview(data)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = len(self._view)
        out, self._view = self._view[:n], self._view[n:]
        return bytes(out)


def make_tar(
    path: Path,
    spec: Iterable[Item],
    compression: Literal["gz", "zst"] | None = None,
    fmt: int = tarfile.PAX_FORMAT,
    *,
    implied_mtime_ns: int = DEFAULT_MTIME_NS,
) -> Path:
    """Write the spec as a tar archive, the way an OCI layer would hold it.

    Every directory gets its own member before its contents, root excepted
    unless a Dir(".") is given; sockets are skipped (tar has no type for
    them); sparse files are written out in full. Output is deterministic
    (no name or mtime in the gzip header). Non-PAX formats cannot carry xattrs or
    sub-second mtimes: xattrs raise, nanoseconds are floored.
    """
    path = Path(path)
    items = list(spec)
    with contextlib.ExitStack() as stack:
        out: Any = stack.enter_context(open(path, "wb"))
        if compression == "gz":
            out = stack.enter_context(gzip.GzipFile(filename="", fileobj=out, mode="wb", mtime=0))
        elif compression == "zst":
            import zstandard

            out = stack.enter_context(zstandard.ZstdCompressor().stream_writer(out, closefd=False))
        elif compression is not None:
            raise ValueError(f"unknown compression {compression!r}")
        tf = stack.enter_context(
            tarfile.open(
                fileobj=out, mode="w|", format=fmt, encoding="utf-8", errors="surrogateescape"
            )
        )
        root_dir = next((i for i in items if isinstance(i, Dir) and _norm(i.path) == "."), None)
        if root_dir is not None:
            tf.addfile(
                _tarinfo(
                    ".",
                    tarfile.DIRTYPE,
                    mode=root_dir.mode,
                    uid=root_dir.uid,
                    gid=root_dir.gid,
                    mtime_ns=root_dir.mtime_ns,
                    xattrs=root_dir.xattrs,
                    fmt=fmt,
                )
            )
        rest = [i for i in items if i is not root_dir]
        for ti, fileobj in _tar_members(rest, fmt, implied_mtime_ns):
            tf.addfile(ti, fileobj)
    return path


# --------------------------------------------------------------------------
# ready-made specs; each lives under its own top-level directory so that any
# of them can be combined into one tree.

MiB = 1 << 20
GiB = 1 << 30


def files_of_edge_sizes() -> list[Item]:
    # 60 bytes is the size of i_block (inline data and fast-symlink limit);
    # 4096 is the block size.
    sizes = [0, 1, 59, 60, 61, 4095, 4096, 4097, 3 * MiB]
    return [File(f"sizes/{n:08d}", data=pattern(n, seed=n)) for n in sizes]


def sparse_files(apparent: int = GiB) -> list[Item]:
    return [
        # Three data chunks: at the start, unaligned in the middle, at the end.
        File(
            "sparse/three-chunks",
            sparse=[
                (0, pattern(4096, 1)),
                (apparent // 2 + 7, pattern(100, 2)),
                (apparent - 3, b"end"),
            ],
            size=apparent,
        ),
        File("sparse/trailing-hole", sparse=[(0, b"head")], size=10 * MiB),
        File("sparse/only-hole", sparse=[(0, b"")], size=5 * MiB),
        # More than the inode's four extent slots: forces an extent tree.
        File("sparse/many-extents", sparse=[(i * MiB, pattern(4096, 100 + i)) for i in range(10)]),
    ]


def dir_with_one_entry() -> list[Item]:
    return [Dir("one-entry"), File("one-entry/only", data=b"only\n")]


def dir_with_many_files(count: int = 50_000) -> list[Item]:
    return [Dir("big-dir"), Many("big-dir", count, "file", prefix="file-")]


def dir_with_many_subdirs(count: int = 70_000) -> list[Item]:
    # More than 65000 subdirectories overflows i_links_count (dir_nlink).
    return [Dir("many-subdirs"), Many("many-subdirs", count, "dir", prefix="d")]


def symlinks() -> list[Item]:
    def target(n: int) -> str:
        return ("t" * n)[:n]

    return [
        File("symlinks/file", data=b"x"),
        Dir("symlinks/dir"),
        Symlink("symlinks/len-1", target(1)),
        Symlink("symlinks/len-59", target(59)),  # fast: fits in i_block
        Symlink("symlinks/len-60", target(60)),  # slow: needs a data block
        Symlink("symlinks/len-300", target(300)),
        # PATH_MAX - 1: the longest target Linux allows; fills a whole block.
        Symlink("symlinks/len-4095", ("d" * 254 + "/") * 16 + "e" * 15),
        Symlink("symlinks/to-file", "file"),
        Symlink("symlinks/to-dir", "dir"),
        Symlink("symlinks/absolute", "/etc/passwd"),
        Symlink("symlinks/dangling", "does/not/exist"),
        Symlink("symlinks/up-and-out", "../../../.."),
        Symlink("symlinks/loop-a", "loop-b"),
        Symlink("symlinks/loop-b", "loop-a"),
    ]


def hard_links() -> list[Item]:
    return [
        File("hardlinks/a", data=b"three names, one inode\n", mode=0o640, uid=7, gid=8),
        Hardlink("hardlinks/b", "hardlinks/a"),
        Hardlink("hardlinks/c", "hardlinks/a"),
        File("hardlinks/x/one", data=pattern(5000, 9)),
        Hardlink("hardlinks/y/two", "hardlinks/x/one"),
        File("hardlinks/empty"),
        Hardlink("hardlinks/empty-too", "hardlinks/empty"),
        Symlink("hardlinks/sym", "a"),
        Hardlink("hardlinks/sym-too", "hardlinks/sym"),
    ]


def devices_fifo_socket() -> list[Item]:
    return [
        Device("special/null", "chr", 1, 3, mode=0o666),
        Device("special/sda", "blk", 8, 0, mode=0o660, gid=6),
        # Past 255 needs ext4's "new" device encoding in i_block[1].
        Device("special/nvme", "blk", 259, 70000),
        Device("special/max", "chr", 4095, 1048575),  # 12-bit major, 20-bit minor
        Fifo("special/fifo", mode=0o620),
        Socket("special/socket", mode=0o755),
    ]


def xattrs_inline_block_capability_trusted() -> list[Item]:
    return [
        File("xattrs/small", data=b"s", xattrs={"user.small": b"v", "user.empty": b""}),
        # ~2 KiB values do not fit in a 256-byte inode: an xattr block is needed.
        File(
            "xattrs/large",
            data=b"l",
            xattrs={"user.big": pattern(2000, 20), "user.big2": pattern(1000, 21)},
        ),
        File(
            "xattrs/capability",
            data=b"#!/bin/true\n",
            mode=0o755,
            xattrs={"security.capability": capability_v2(10)},
        ),  # cap_net_bind_service
        File("xattrs/trusted", data=b"t", xattrs={"trusted.ociext4.test": b"trusted"}),
        File("xattrs/binary", xattrs={"user.binary": bytes(range(256))}),
        File("xattrs/many", xattrs={f"user.k{i}": b"v" * i for i in range(12)}),
        Dir("xattrs/opaque-dir", xattrs={"trusted.overlay.opaque": b"y", "user.dir": b"d"}),
        Symlink("xattrs/link", "small", xattrs={"trusted.link": b"on a symlink"}),
    ]


def names_255_bytes() -> list[Item]:
    cjk = "日" * 85  # 3 bytes each in UTF-8: 255 bytes, 85 characters
    return [
        File("long-names/" + "f" * 255, data=b"f"),
        Dir("long-names/" + "d" * 255),
        File("long-names/" + "d" * 255 + "/" + "g" * 255, data=b"g"),
        Symlink("long-names/" + "s" * 255, "t" * 255),
        File("long-names/" + cjk, data=b"cjk"),
    ]


def unicode_names() -> list[Item]:
    name = "Ünïcødé-日本語-🙂"
    return [
        File(f"unicode/{name}", data=name.encode()),
        Dir(f"unicode/dir-{name}"),
        Symlink("unicode/link-to-it", name),
        # Same text, different bytes: must stay two distinct entries.
        File("unicode/" + unicodedata.normalize("NFC", "é"), data=b"nfc"),
        File("unicode/" + unicodedata.normalize("NFD", "é"), data=b"nfd"),
        File("unicode/" + os.fsdecode(b"latin1-\xe9\xff"), data=b"not utf-8"),
    ]


def path_deep(depth: int = 60) -> list[Item]:
    dirs = "/".join(f"d{i:02d}" for i in range(depth))
    return [File(f"deep/{dirs}/leaf", data=b"bottom\n")]


def large_uids_gids() -> list[Item]:
    return [
        File("ids/100000", data=b"a", uid=100000, gid=100000),
        File("ids/65536", uid=65536, gid=65535),  # first uid needing i_uid_high
        File("ids/4000000000", data=b"b", uid=4_000_000_000, gid=4_000_000_000),
        File("ids/max", uid=4_294_967_294, gid=4_294_967_294),  # -1 means "unchanged"
        Dir("ids/dir", uid=4_000_000_000, gid=100000),
        Symlink("ids/link", "100000", uid=100000, gid=4_000_000_000),
        Device("ids/dev", "chr", 1, 5, uid=100000, gid=100000),
    ]


def extreme_mtimes() -> list[Item]:
    t1950 = _ns(-616_850_704, 123_456_789)  # 1950-06-15 12:34:56.123456789
    t2040 = _ns(2_214_129_600, 987_654_321)  # 2040-02-29 12:00:00.987654321
    t2400 = _ns(13_569_465_600, 1)  # 2400-01-01 00:00:00.000000001
    return [
        File("times/1950", data=b"1950", mtime_ns=t1950),
        File("times/epoch-minus-1ns", mtime_ns=-1),
        File("times/epoch", mtime_ns=0),
        File("times/2038-overflow", mtime_ns=_ns(2**31, 500)),
        File("times/2040", data=b"2040", mtime_ns=t2040),
        File("times/2400", data=b"2400", mtime_ns=t2400),
        # 2446-05-10 22:38:55: the last second ext4's two extra epoch bits can
        # hold. The kernel clamps later times to it and zeroes the nanoseconds
        # of a clamped second, so only the second before can carry them.
        File("times/2446-max", mtime_ns=_ns(_EXT4_MAX_SEC)),
        File("times/2446-max-minus-1ns", mtime_ns=_ns(_EXT4_MAX_SEC - 1, 999_999_999)),
        Dir("times/dir-1950", mtime_ns=t1950),
        Dir("times/dir-2400", mtime_ns=t2400),
        Symlink("times/link-2040", "2040", mtime_ns=t2040),
        Fifo("times/fifo-1950", mtime_ns=t1950),
    ]


def setuid_setgid_sticky() -> list[Item]:
    return [
        File("modes/setuid", data=b"u", mode=0o4755, uid=1000),
        File("modes/setgid", data=b"g", mode=0o2755, gid=1000),
        File("modes/all-bits", mode=0o7777, uid=1, gid=1),
        File("modes/none", mode=0o000),
        Dir("modes/sticky", mode=0o1777),
        Dir("modes/setgid-dir", mode=0o2775, gid=50),
        Dir("modes/no-perms", mode=0o000),
        File("modes/no-perms/inside", data=b"i"),
    ]


def small_specs() -> dict[str, list[Item]]:
    """Every ready-made spec that builds in milliseconds, by name."""
    return {
        "files_of_edge_sizes": files_of_edge_sizes(),
        "dir_with_one_entry": dir_with_one_entry(),
        "symlinks": symlinks(),
        "hard_links": hard_links(),
        "devices_fifo_socket": devices_fifo_socket(),
        "xattrs_inline_block_capability_trusted": xattrs_inline_block_capability_trusted(),
        "names_255_bytes": names_255_bytes(),
        "unicode_names": unicode_names(),
        "path_deep": path_deep(),
        "large_uids_gids": large_uids_gids(),
        "extreme_mtimes": extreme_mtimes(),
        "setuid_setgid_sticky": setuid_setgid_sticky(),
    }

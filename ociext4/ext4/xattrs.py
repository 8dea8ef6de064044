"""Xattr names and values as ext4 stores them: a prefix index plus the rest of
the name, and POSIX ACLs in ext4's own compact format."""

from __future__ import annotations

import struct
from collections.abc import Mapping

from ..errors import SourceError

# ext4's name indexes (fs/ext4/xattr.h); longest prefixes first.
_PREFIXES: list[tuple[str, int]] = [
    ("system.posix_acl_access", 2),
    ("system.posix_acl_default", 3),
    ("system.richacl", 8),
    ("user.", 1),
    ("trusted.", 4),
    ("security.", 6),
    ("system.", 7),
]

_ACL_TAGS_WITH_ID = (0x02, 0x08)  # ACL_USER, ACL_GROUP
_ACL_TAGS = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20)


def split_name(name: str) -> tuple[int, bytes]:
    for prefix, index in _PREFIXES:
        if name.startswith(prefix):
            if index in (2, 3, 8) and name != prefix:
                continue
            rest = name[len(prefix):].encode("utf-8", "surrogateescape")
            if len(rest) > 255:
                raise SourceError(f"xattr name {name!r} is longer than 255 bytes")
            return index, rest
    raise SourceError(f"xattr {name!r} is in no namespace ext4 can store")


def acl_to_disk(value: bytes) -> bytes:
    """The VFS ACL (version 2, 8-byte entries) as ext4 stores it (version 1,
    4-byte entries for the owner, group, mask and other classes)."""
    if len(value) < 4 or (len(value) - 4) % 8 or struct.unpack_from("<I", value)[0] != 2:
        raise SourceError("malformed POSIX ACL xattr")
    out = [struct.pack("<I", 1)]
    for off in range(4, len(value), 8):
        tag, perm, ident = struct.unpack_from("<HHI", value, off)
        if tag not in _ACL_TAGS:
            raise SourceError(f"POSIX ACL entry with unknown tag {tag:#x}")
        if tag in _ACL_TAGS_WITH_ID:
            out.append(struct.pack("<HHI", tag, perm, ident))
        else:
            out.append(struct.pack("<HH", tag, perm))
    return b"".join(out)


def pack(xattrs: Mapping[str, bytes]) -> bytes:
    """The blob records the C writer reads: u8 index, u8 name length, u16 0,
    u32 value length, name, value, padded to 4 bytes."""
    parts: list[bytes] = []
    for name in sorted(xattrs):
        value = xattrs[name]
        index, rest = split_name(name)
        if index in (2, 3):
            value = acl_to_disk(value)
        rec = struct.pack("<BBHI", index, len(rest), 0, len(value)) + rest + value
        parts.append(rec + b"\0" * (-len(rec) % 4))
    return b"".join(parts)

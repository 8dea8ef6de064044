"""Xattr names to ext4 name indexes, ACLs to ext4's format, blob packing."""

from __future__ import annotations

import struct

import pytest

from ociext4.errors import SourceError
from ociext4.ext4.xattrs import acl_to_disk, pack, split_name


@pytest.mark.parametrize(("name", "index", "rest"), [
    ("user.mime", 1, b"mime"),
    ("trusted.overlay.opaque", 4, b"overlay.opaque"),
    ("security.capability", 6, b"capability"),
    ("system.posix_acl_access", 2, b""),
    ("system.posix_acl_default", 3, b""),
    ("system.data", 7, b"data"),
])
def test_split_name_maps_prefixes_to_ext4_indexes(name, index, rest):
    assert split_name(name) == (index, rest)


def test_unknown_namespace_is_refused():
    with pytest.raises(SourceError, match="no namespace"):
        split_name("os2.foo")


def test_acl_becomes_ext4_version_1_with_short_entries_for_classes():
    none = 0xFFFFFFFF
    entries = [(0x01, 7, none), (0x02, 5, 1000), (0x04, 5, none), (0x10, 7, none), (0x20, 4, none)]
    vfs = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *e) for e in entries)
    short = [struct.pack("<HH", tag, perm) for tag, perm in [(4, 5), (0x10, 7), (0x20, 4)]]
    expected = (struct.pack("<I", 1) + struct.pack("<HH", 1, 7) + struct.pack("<HHI", 2, 5, 1000)
                + b"".join(short))
    assert acl_to_disk(vfs) == expected


def test_malformed_acl_is_refused():
    with pytest.raises(SourceError):
        acl_to_disk(b"\x02\x00\x00\x00\x01")


def test_pack_records_are_padded_and_sorted():
    blob = pack({"user.b": b"xyz", "user.a": b""})
    assert len(blob) % 4 == 0
    idx, nlen, _, vlen = struct.unpack_from("<BBHI", blob)
    assert (idx, nlen, vlen, blob[8:9]) == (1, 1, 0, b"a")
    idx, nlen, _, vlen = struct.unpack_from("<BBHI", blob, 12)
    assert (idx, nlen, vlen, blob[20:24]) == (1, 1, 3, b"bxyz")

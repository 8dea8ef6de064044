"""The packing of a finished tree for the C commit (ociext4/ext4/pack.py).

pack_tree numbers the inodes without a list of the records: it walks the
tree a second time in the order of the first and remembers only the inodes
that can be met twice.  These tests hold it to the straightforward
numbering it replaced (kept here as the reference): the same records, in
the same order, byte for byte, for trees with hard links, nested and empty
directories, symlinks, xattrs, plain records (ociext4.tree.PLAIN) and a
lost+found of the image's own.
"""

from __future__ import annotations

import gc
import hashlib
import struct
from array import array

from hypothesis import given, settings
from hypothesis import strategies as st

from ociext4.ext4 import pack, records
from ociext4.ext4 import xattrs as xattr_codec
from ociext4.tree import (
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFLNK,
    S_IFREG,
    Inode,
    Node,
    new_dir,
    plain_inode,
    plain_record,
)

_INODE = records.INODE.struct
_DIRENT = records.DIRENT.struct
# The 128-byte record the reference numbering packed, which the content
# digest still reads (csrc/contentid.c computes it from the packed records).
_OLD = struct.Struct("<IIIIqqqqIIIIQqIIQIIQIIII")


def reference_pack(root: Inode, timestamp: int) -> tuple[bytes, bytes, bytes]:
    """The numbering as a list of records: a directory's new entries get
    consecutive numbers, directories visited depth first in name order."""
    children = root.children
    assert children is not None
    if b"lost+found" not in children:
        lf = new_dir(0o700, mtime_ns=timestamp * 10**9)
        children[b"lost+found"] = lf
        lf.names = 1
    lost_found = children[b"lost+found"]
    seen: dict[Inode, int] = {root: 0}
    recs: list[Inode] = [root]
    parents, nlinks = [0], [0]
    if lost_found.kind == S_IFDIR:
        seen[lost_found] = 1
        recs.append(lost_found)
        parents.append(0)
        nlinks.append(0)
    listings: dict[int, list[tuple[bytes, int]]] = {}
    pending = [(root, 0)]
    while pending:
        d, di = pending.pop()
        assert d.children is not None
        listing = listings[di] = []
        subdirs = []
        for name in sorted(d.children):
            child = d.children[name]
            ci = seen.get(child) if child.kind == S_IFDIR or child.names != 1 else None
            if ci is None:
                ci = len(recs)
                recs.append(child)
                parents.append(di)
                nlinks.append(0)
                if child.kind == S_IFDIR or child.names != 1:
                    seen[child] = ci
                if child.kind == S_IFDIR:
                    subdirs.append((child, ci))
            elif child.kind == S_IFDIR:
                subdirs.append((child, ci))
            nlinks[ci] += 1
            listing.append((name, ci))
        pending.extend(reversed(subdirs))
    inodes, dirents, blob = bytearray(), bytearray(), bytearray()
    for i, node in enumerate(recs):
        first = len(dirents) // _DIRENT.size
        extra_off = extra_len = 0
        nlink = nlinks[i] or 1
        if node.kind == S_IFDIR:
            nlink = 2
            for name, ci in listings[i]:
                dirents += _DIRENT.pack(len(blob), ci, len(name))
                blob += name
                nlink += recs[ci].kind == S_IFDIR
        elif node.kind == S_IFLNK:
            extra_off, extra_len = len(blob), len(node.target)
            blob += node.target
        xattr_off = xattr_len = 0
        if node.xattrs:
            packed = xattr_codec.pack(dict(node.xattrs))
            blob += bytes(-len(blob) % 4)
            xattr_off, xattr_len = len(blob), len(packed)
            blob += packed
        file = node.data if node.kind == S_IFREG and node.data is not None else -1
        a_s, c_s, m_s, a_ns, c_ns, m_ns = pack._times(node)
        inodes += _OLD.pack(
            node.kind | node.mode, node.uid, node.gid, nlink, a_s, c_s, m_s, m_s,
            a_ns, c_ns, m_ns, m_ns, node.size if node.kind == S_IFREG else 0, file,
            *(node.rdev if node.kind in (S_IFCHR, S_IFBLK) else (0, 0)), extra_off, extra_len,
            xattr_len, xattr_off, first, len(dirents) // _DIRENT.size - first, parents[i],
            4 if i == 1 and node is lost_found else 0)
    return bytes(inodes), bytes(dirents), bytes(blob)


names = st.sampled_from([b"a", b"b", b"c", b"lost+found", b"zz", b"\xff", b"m" * 20])
# Values of odd lengths, so that xattrs land on the blob unaligned.
some_xattrs = st.dictionaries(st.sampled_from(["user.a", "user.bb", "security.ccc"]),
                              st.binary(max_size=7), max_size=2)


@st.composite
def trees(draw: st.DrawFn) -> Inode:
    """Random directories and files, some files under several names."""
    root = new_dir()
    dirs = [root]
    files: list[Inode] = []
    for step in range(draw(st.integers(0, 40))):
        parent = dirs[draw(st.integers(0, len(dirs) - 1))]
        assert parent.children is not None
        name = draw(names) + b"%d" % draw(st.integers(0, 3))
        if name in parent.children:
            continue
        what = draw(st.sampled_from(["dir", "file", "link", "symlink", "device", "empty",
                                     "record"]))
        node: Node
        if what == "record":
            parent.children[name] = plain_record(
                0o4755 if step % 2 else 0o644, step, 7, 1_600_000_000 + step, step * 999,
                step, None if step % 3 == 0 else step)
            continue
        if what == "link" and files:
            node = files[draw(st.integers(0, len(files) - 1))]
        elif what == "dir":
            node = new_dir(0o700 + step % 64, mtime_ns=step * 10**9)
            dirs.append(node)
        elif what == "symlink":
            node = Inode(S_IFLNK, 0o777, target=b"t" * (1 + step))
        elif what == "device":
            node = Inode(draw(st.sampled_from([S_IFCHR, S_IFBLK])), 0o600,
                         rdev=(draw(st.integers(0, 4095)), draw(st.integers(0, (1 << 20) - 1))))
        elif what == "empty":
            node = Inode(S_IFREG, 0o600, mtime_ns=-step * 10**9 - 7)   # no data, before 1970
        else:
            node = Inode(S_IFREG, 0o644, uid=step, size=step, data=step)
            files.append(node)
        if what != "link":
            node.xattrs = draw(some_xattrs)
        parent.children[name] = node
        node.names += 1
    lost_found = draw(st.sampled_from(["none", "dir", "record"]))
    assert root.children is not None
    if lost_found == "dir":
        root.children.setdefault(b"lost+found", new_dir(0o700)).names = 1
    elif lost_found == "record":
        root.children[b"lost+found"] = plain_record(0o600, 0, 0, 5, 0, 3, 9)
    root.xattrs = draw(some_xattrs)
    return root


def copy_tree(root: Inode) -> Inode:
    """The same shape with new inodes (packing empties the tree it packs)."""
    made: dict[Inode, Inode] = {}

    def copy(node: Node) -> Inode:
        if type(node) is bytes:     # the Inode it stands for: the reference knows no other
            return plain_inode(node, 1)
        if node in made:
            return made[node]
        new = made[node] = Inode(node.kind, node.mode, node.uid, node.gid, node.mtime_ns,
                                 size=node.size, data=node.data, target=node.target,
                                 names=node.names, children={} if node.is_dir else None,
                                 xattrs=node.xattrs, rdev=node.rdev)
        if node.children is not None:
            assert new.children is not None
            for name, child in node.children.items():
                new.children[name] = copy(child)
        return new

    return copy(root)


def compact(old: tuple[int, ...]) -> tuple[int, ...]:
    """An old 128-byte record's fields as the 96-byte oe_inode holds them."""
    (mode, uid, gid, nlink, a_s, c_s, m_s, _, a_ns, c_ns, m_ns, _, size, file, major, minor,
     extra_off, extra_len, xattr_len, xattr_off, first, count, parent, min_blocks) = old
    kind = mode & 0o170000
    ref, ref_len = {S_IFREG: (file % (1 << 64), 0), S_IFDIR: (first, count),
                    S_IFLNK: (extra_off, extra_len)}.get(kind, (major << 32 | minor, 0))
    return (mode, uid, gid, nlink, a_s, c_s, m_s, a_ns, c_ns, m_ns, xattr_len, size, ref,
            xattr_off, ref_len, parent, min_blocks, 0)


@settings(max_examples=300, deadline=None)
@given(trees(), st.sampled_from([1, 2, 3, pack._CHUNK]))
def test_packed_records_are_those_of_the_numbering_by_a_list_of_records(root, chunk):
    twin = copy_tree(root)
    old_inodes, dirents, blob = reference_pack(twin, 1_700_000_000)
    default, pack._CHUNK = pack._CHUNK, chunk   # a directory handed to C in pieces
    try:
        packed = pack.pack_tree(root, 1_700_000_000)
    finally:
        pack._CHUNK = default
    assert (bytes(packed.dirents), bytes(packed.blob)) == (dirents, blob)
    assert packed.count == len(old_inodes) // _OLD.size
    new = [_INODE.unpack_from(packed.inodes, i * _INODE.size) for i in range(packed.count)]
    assert new == [compact(r) for r in _OLD.iter_unpack(old_inodes)]
    # The content digest still covers the old records, so derived UUIDs stay.
    assert packed.digest.digest() == hashlib.sha256(old_inodes).digest()


def test_packing_empties_the_tree_as_it_goes():
    root = new_dir()
    assert root.children is not None
    sub = root.children[b"sub"] = new_dir()
    sub.names = 1
    for i in range(5):
        assert sub.children is not None
        f = sub.children[b"f%d" % i] = Inode(S_IFREG, data=i)
        f.names = 1
    packed = pack.pack_tree(root, 0)
    assert packed.count == 8 and packed.dirs == 3      # root, lost+found, sub, 5 files
    assert root.children == {} and sub.children == {}
    kids = array("I", (_DIRENT.unpack_from(packed.dirents, i * _DIRENT.size)[1]
                       for i in range(len(packed.dirents) // _DIRENT.size)))
    assert list(kids) == [1, 2, 3, 4, 5, 6, 7]          # lost+found, sub; sub's files


def _pack_entries(wanted: list[int], records: bytes, n_inodes: int = 8, n_dirents: int = 4,
                  dirent_at: int = 0, lens: list[int] | None = None) -> tuple[int, int]:
    """oe_pack_entries on small arrays: (its result, errno)."""
    from ociext4.ext4._writer import ffi, lib

    inodes = ffi.new("oe_inode[]", n_inodes)
    dirents = ffi.new("oe_dirent[]", n_dirents)
    n = len(wanted)
    number = ffi.new("int64_t[]", wanted)
    fresh = ffi.new("uint8_t[]", max(n, 1))
    name_len = ffi.new("uint32_t[]", lens if lens is not None else [1] * max(n, 1))
    got = lib.oe_pack_entries(inodes, n_inodes, dirents, n_dirents, 2, 0, dirent_at, 0,
                              records, len(records), name_len, number, fresh, n)
    return got, ffi.errno if got < 0 else 0


def test_pack_entries_refuses_what_would_write_outside_its_arrays_or_is_not_a_plain_record():
    import errno

    from ociext4.ext4._writer import lib

    rec = plain_record(0o644, 0, 0, 1, 0, 0, None)
    R = lib.OE_PACK_RECORD
    assert _pack_entries([R, R], rec + rec) == (4, 0)
    assert _pack_entries([R] * 5, rec * 5) == (-1, errno.ERANGE)               # 5 dirents of 4
    assert _pack_entries([R], rec, dirent_at=4) == (-1, errno.ERANGE)
    assert _pack_entries([R] * 4, rec * 4, n_inodes=5) == (-1, errno.ERANGE)   # numbers 2..5
    assert _pack_entries([R], rec[:-1]) == (-1, errno.ERANGE)                  # a short record
    assert _pack_entries([R], rec + rec) == (-1, errno.EINVAL)                 # one left over
    assert _pack_entries([9], b"") == (-1, errno.ERANGE)                       # no record 9
    assert _pack_entries([R], b"\0" * len(rec)) == (-1, errno.EINVAL)          # not a file
    assert _pack_entries([R], rec, lens=[256]) == (-1, errno.EINVAL)
    assert _pack_entries([lib.OE_PACK_NEXT, 3, 7], b"") == (4, 0)  # 3 is the next free; 7 not


def _full_collections() -> int:
    return gc.get_stats()[-1]["collections"]


def _tree_of(files: int) -> Inode:
    root = new_dir()
    assert root.children is not None
    sub = root.children[b"d"] = new_dir()
    sub.names = 1
    assert sub.children is not None
    record = plain_record(0o644, 0, 0, 5, 0, 0, None)
    sub.children.update((b"%d" % i, record) for i in range(files))
    return root


def test_only_a_large_tree_is_packed_with_full_collections_of_the_process():
    was = gc.isenabled()
    gc.disable()       # no collection of the collector's own in between
    try:
        before = _full_collections()
        pack.pack_tree(_tree_of(10), 0)
        assert _full_collections() == before
        pack.pack_tree(_tree_of(pack._COLLECT_FROM - 3), 0)   # root, lost+found, d
        assert _full_collections() == before + 2
    finally:
        if was:
            gc.enable()

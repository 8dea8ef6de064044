"""Numbering a finished tree's inodes and packing them as the C commit takes
them: `oe_inode` and `oe_dirent` arrays and one blob of names, symlink
targets and xattrs.

The tree is consumed as it is packed: each directory lets go of its entries
once they are written, so the Python tree shrinks while the packed arrays
(whose pages are touched only as they are written) grow, and the run's peak
is not the two of them side by side.  The numbering keeps no list of the
records: the packing walks the tree again in the same order, and only the
inodes that can be met twice (directories, hard links) are remembered.

A directory's listing (its `oe_dirent`s and names) is written when its
entries are packed, not with its own record: its place in the arrays is
kept for it then, as if it were written.  The records of a directory's
subdirectories come before any of their entries, so writing listings with
the records would copy most of the tree's names while all of it is still
held (at a million entries in directories of 1000 under the root, 25 MB
more at the packing's start).  The arrays come out the same either way.

A "plain" inode, not a directory and under one name, can be met only once:
it is numbered where it is met and kept in no map (the test is written out
where it runs, once an entry).  Most of them are plain records (bytes, see
ociext4.tree.PLAIN), copied into the arrays as they are.
"""

from __future__ import annotations

import gc
import mmap
import os
from array import array
from bisect import bisect_left
from dataclasses import dataclass

# The module, not its class: ociext4.hashing imports this package's C
# module, so either may be imported first.
from .. import hashing
from ..errors import ImageError
from ..tree import S_IFDIR, S_IFLNK, S_IFREG, Inode, Node, new_dir, plain_inode
from ..tuning import trim_heap
from . import plan as planning
from . import records
from . import xattrs as xattr_codec
from ._writer import ffi, lib

# Field by field as C lays them out (checked when .records is imported).
_INODE = records.INODE.struct
_DIRENT = records.DIRENT.struct
_RECORD = lib.OE_PACK_RECORD
# Entries of one directory handed to C at a time: their records joined are
# a copy, at most this many times 72 bytes (a directory of a million files
# would be 72 MB more at the commit's peak).
_CHUNK = 4096
LOST_FOUND = b"lost+found"
_NO_RDEV = (0, 0)
# Times in this range are stored as they are (see plan.clamp_time_ns).
_PLAIN_TIMES = range(0, planning.AMBIGUOUS_START_NS)


Buffer = bytearray | mmap.mmap


@dataclass(slots=True)
class Packed:
    inodes: Buffer        # oe_inode records; record 0 is the root
    dirents: Buffer       # oe_dirent records, each directory's together
    blob: Buffer | memoryview   # names, symlink targets and xattrs
    count: int            # records
    dirs: int             # of which directories
    digest: hashing.Sha256   # of the records (csrc/contentid.h), to go on with the rest


_TRIM_EVERY = 1 << 16     # records packed between two trims (6 MiB of records)
# Trees of fewer records are packed without a full collection.  It scans
# the whole process, not the tree: through the API, in a process of a
# million objects of the caller's, the two cost more than a small tree
# takes to pack (in the test suite ~60 ms each, for trees of a few
# records), and they give back little (a tree this size fills a few arenas).
_COLLECT_FROM = 1 << 16


def _give_back(collect: bool) -> None:
    """Returns freed memory to the system, so that what the packing frees
    makes room for what it packs.  A full collection (`collect`) also
    empties CPython's free lists (tuples, lists, dicts, floats), whose few
    thousand blocks, scattered over the arenas the layers filled, would
    keep each arena alive (at 1M entries 267 MB peak RSS with it, 333 MB
    without; the collection takes ~0.2 s).  malloc_trim hands back the
    heap's free pages, which the allocator tuning (ociext4.tuning)
    otherwise keeps for the next piece: there is none once the layers are
    read."""
    if collect:
        gc.collect()
    trim_heap()


def _zeroed(size: int) -> Buffer:
    """A zero-filled buffer whose pages cost memory only once written, so
    it fills up as the tree it is packed from empties (a bytearray would be
    touched all at once)."""
    return mmap.mmap(-1, size) if size else bytearray()


def _times(node: Inode, m: int | None = None, rare: bool = True
           ) -> tuple[int, int, int, int, int, int]:
    """(atime, ctime, mtime) seconds, then their nanoseconds; `m` and
    `rare`, when given, are the node's mtime and has_rare."""
    if m is None:
        m = node.mtime_ns
    atime = node.atime_ns if rare else None
    ctime = node.ctime_ns if rare else None
    if atime is None and ctime is None and m in _PLAIN_TIMES:
        s, ns = divmod(m, 10**9)   # the common case, once instead of three times
        return (s, s, s, ns, ns, ns)
    m = planning.clamp_time_ns(m)
    a = planning.clamp_time_ns(atime) if atime is not None else m
    c = planning.clamp_time_ns(ctime) if ctime is not None else m
    # Python's floor division keeps the nanoseconds positive before 1970.
    return (a // 10**9, c // 10**9, m // 10**9, a % 10**9, c % 10**9, m % 10**9)


class _Numbering:
    """What the packing needs to give every inode its number again, in the
    same order, without a list of a million records: for the inodes that
    can be met twice (directories, inodes with other than one name), their
    number, each directory's first new child, the names met and the
    subdirectories listed; and, filled by the packing, where each
    directory's listing goes.

    Kept in arrays sorted by the inodes' ids, not in dicts: a dict's values
    are int objects, and the few thousand made after the tree would each
    sit in one of the allocator's 1 MiB arenas among the tree's objects and
    keep it from being given back as the tree is freed."""

    __slots__ = ("ids", "numbers", "first_child", "links", "subdirs", "dirent_at", "name_at",
                 "count", "names", "blob_max")

    def __init__(self, seen: dict[Inode, tuple[int, int, int, int]], count: int, names: int,
                 blob_max: int) -> None:
        rows = sorted((id(node), *row) for node, row in seen.items())
        self.ids = array("Q", (r[0] for r in rows))
        self.numbers = array("I", (r[1] for r in rows))
        self.first_child = array("I", (r[2] for r in rows))
        self.links = array("I", (r[3] for r in rows))
        self.subdirs = array("I", (r[4] for r in rows))
        self.dirent_at = array("Q", bytes(8 * len(rows)))
        self.name_at = array("Q", bytes(8 * len(rows)))
        self.count = count          # records
        self.names = names          # directory entries in all
        self.blob_max = blob_max    # bytes of blob at most (xattrs' padding may be less)

    def row(self, node: Inode) -> int:
        i = bisect_left(self.ids, id(node))
        assert self.ids[i] == id(node)
        return i


def _blob_need(node: Inode) -> int:
    """Bytes of blob a record takes besides its listing, at most (its
    xattrs are aligned to 4 bytes wherever they fall)."""
    need = len(node.target) if node.kind == S_IFLNK else 0
    if node.has_rare and node.xattrs:
        need += 3 + len(xattr_codec.pack(node.xattrs))
    return need


def _number(root: Inode, lost_found: Inode) -> _Numbering:
    """Inode order: a directory's entries get consecutive numbers, lost+found
    the first free one; directories are visited depth first, in name order.
    Only directories and inodes with other than one name can be met twice
    (Tree keeps `names` true), so only they go into the identity map: a
    million plain files cost no map slot."""
    # node -> [number, first new child (directories), names met, subdirectories]
    seen: dict[Inode, list[int]] = {root: [0, 0, 1, 0]}   # Inodes hash by identity
    count = 1
    blob = _blob_need(root)
    if lost_found.kind == S_IFDIR:
        seen[lost_found] = [1, 0, 0, 0]
        count = 2
        blob += _blob_need(lost_found)
    pending = [root]
    total = 0
    while pending:
        d = pending.pop()
        children = d.children
        assert children is not None
        row = seen[d]
        row[1] = count
        total += len(children)
        blob += sum(map(len, children))
        subdirs = []
        for name in sorted(children):
            child = children[name]
            if type(child) is bytes:     # a plain record
                count += 1
                continue
            if child.names == 1 and child.kind != S_IFDIR:    # plain
                count += 1
                if child.has_rare:
                    blob += _blob_need(child)
                continue
            row = seen.get(child)
            if child.kind == S_IFDIR:
                if row is not None:
                    if child is not lost_found or d is not root:
                        raise ImageError(f"directory {name!r} has two parents")
                else:
                    seen[child] = [count, 0, 0, 0]
                    count += 1
                    blob += _blob_need(child)
                subdirs.append(child)
                continue
            if row is None:
                row = seen[child] = [count, 0, 0, 0]
                count += 1
                blob += _blob_need(child)
            row[2] += 1
        seen[d][3] = len(subdirs)
        pending.extend(reversed(subdirs))
    return _Numbering({k: (v[0], v[1], v[2], v[3]) for k, v in seen.items()}, count, total,
                      blob)


def pack_tree(root: Inode, timestamp: int) -> Packed:
    """Numbers the inodes and packs them for the C writer, emptying the tree
    on the way: each directory lets go of its entries once they are packed,
    so the tree is freed as the packed arrays grow."""
    if root.children is None:
        raise ImageError("the root must be a directory")
    if LOST_FOUND not in root.children:
        lf = new_dir(0o700, mtime_ns=timestamp * 10**9)
        root.children[LOST_FOUND] = lf
        lf.names = 1
    lost_found = root.children[LOST_FOUND]
    if type(lost_found) is bytes:   # a plain file of that name: met by identity below
        lost_found = root.children[LOST_FOUND] = plain_inode(lost_found, 1)
    # Numbered first, so that the tree's size decides on the collection:
    # the numbering keeps only the directories and hard links.
    numbering = _number(root, lost_found)
    collect = numbering.count >= _COLLECT_FROM
    _give_back(collect)
    packer = _Packer(numbering, lost_found)
    root_row = numbering.row(root)
    packer.pack(0, root, 0, root_row)
    packer.next = 1
    if lost_found.kind == S_IFDIR:
        packer.pack(1, lost_found, 0, numbering.row(lost_found))
        packer.next = 2
    # The records in number order: each directory's new entries, the
    # directories visited as _number visits them.  A directory goes with
    # its row in the numbering, found once.
    pending = [(root, root_row)]
    trim_at = _TRIM_EVERY
    entries = packer.entries
    while pending:
        d, row = pending.pop()
        children = d.children
        assert children is not None
        pending.extend(reversed(entries(row, children)))
        # Its entries are packed: letting go of them frees the files
        # among them, which no one else holds.  (Cleared, not replaced: a
        # new dict would be one more object keeping an arena alive.)
        children.clear()
        if packer.next >= trim_at:
            # Directories' tables are malloc's, kept by the allocator
            # tuning until trimmed: hand them back as the records grow.
            trim_heap()
            trim_at = packer.next + _TRIM_EVERY
    if packer.next != numbering.count:
        raise ImageError("the tree changed while it was packed")
    blob = packer.blob
    packed = Packed(packer.inodes, packer.dirents,
                    blob if packer.blob_next == len(blob) else memoryview(blob)[:packer.blob_next],
                    packer.next, packer.dirs, _records_digest(packer.inodes, packer.next))
    del numbering, packer, entries
    _give_back(collect)
    return packed


def _records_digest(inodes: Buffer, count: int) -> hashing.Sha256:
    """The content digest of the records, as it has always read them
    (csrc/contentid.h): UUIDs, hash seeds and verity salts come from it."""
    digest = hashing.Sha256()
    if lib.oe_hash_inodes(digest.handle, ffi.from_buffer("oe_inode[]", inodes), count) != 0:
        raise ImageError("too many directory entries for one image")
    return digest


class _Packer:
    """Packs records in number order into the arrays the C commit takes."""

    def __init__(self, numbering: _Numbering, lost_found: Inode) -> None:
        self.numbering = numbering
        self.lost_found = lost_found
        self.inodes = _zeroed(_INODE.size * numbering.count)
        self.dirents = _zeroed(_DIRENT.size * numbering.names)
        self._inodes_c = ffi.from_buffer("oe_inode[]", self.inodes)
        self._dirents_c = ffi.from_buffer("oe_dirent[]", self.dirents)
        self.blob = _zeroed(numbering.blob_max)   # names, symlink targets and xattrs
        self.blob_next = 0               # the blob's bytes written or kept for a listing
        self.n_dirents = 0               # dirents written or kept for a listing
        self.dirs = 0
        self.next = 0                    # records packed: the next one's number

    def _keep_listing(self, d: Inode, r: int) -> int:
        """Keeps room for the listing of directory `d` (row `r`) where
        writing it now would put it; returns its first dirent."""
        children = d.children
        assert children is not None
        numbering = self.numbering
        first = numbering.dirent_at[r] = self.n_dirents
        numbering.name_at[r] = self.blob_next
        self.n_dirents += len(children)
        self.blob_next += sum(map(len, children))
        return first

    def entries(self, r: int, children: dict[bytes, Node]) -> list[tuple[Inode, int]]:
        """Packs the entries of the directory in row `r`: their records, for
        those numbered here (consecutive from its first new child), and its
        listing, where its own record kept room for it.  Returns its
        subdirectories, in name order, with their rows."""
        numbering = self.numbering
        names = sorted(children)
        kids = [children[name] for name in names]
        at, di = numbering.first_child[r], numbering.numbers[r]
        dirent, name_off = numbering.dirent_at[r], numbering.name_at[r]
        subdirs: list[tuple[Inode, int]] = []
        if 0 < len(names) <= _CHUNK:     # nearly all: no copies of the lists
            self.next = self._chunk(names, kids, at, di, dirent, name_off, subdirs)
            return subdirs
        for start in range(0, len(names), _CHUNK):
            chunk = names[start:start + _CHUNK]
            at = self._chunk(chunk, kids[start:start + _CHUNK], at, di, dirent, name_off,
                             subdirs)
            dirent += len(chunk)
            name_off += sum(map(len, chunk))
        self.next = at
        return subdirs

    def _chunk(self, names: list[bytes], kids: list[Node], at: int, di: int, dirent: int,
               name_off: int, subdirs: list[tuple[Inode, int]]) -> int:
        """Packs entries of directory `di` from its `dirent`th: the plain
        records and the listing in C (oe_pack_entries), the other records
        here, in number order, once C has numbered them.  Returns the next
        free number."""
        numbering = self.numbering
        n = len(kids)
        self.blob[name_off:name_off + sum(map(len, names))] = b"".join(names)
        wanted = array("q", [_RECORD]) * n
        try:
            plain = b"".join(kids)      # a directory of plain records only: most are
            others: list[int] = []
        except TypeError:
            others = [j for j in range(n) if type(kids[j]) is not bytes]
            plain = b"".join([k for k in kids if type(k) is bytes])
        rows: dict[int, int] = {}    # entry -> row, for the others that have one
        for j in others:
            child = kids[j]
            if child.names == 1 and child.kind != S_IFDIR:    # plain
                wanted[j] = lib.OE_PACK_NEXT
            else:
                r = rows[j] = numbering.row(child)
                wanted[j] = numbering.numbers[r]
                if child.kind == S_IFDIR:
                    subdirs.append((child, r))
        fresh = bytearray(n)
        lens = array("I", map(len, names))
        if max(lens) > 255:
            name = max(names, key=len)
            raise ImageError(f"name {name[:40]!r}... is longer than 255 bytes")
        at = lib.oe_pack_entries(
            self._inodes_c, numbering.count, self._dirents_c, numbering.names, at, di, dirent,
            name_off, plain, len(plain), ffi.from_buffer("uint32_t[]", lens),
            ffi.from_buffer("int64_t[]", wanted), ffi.from_buffer("uint8_t[]", fresh), n)
        if at < 0:
            raise ImageError(f"the tree changed while it was packed ({os.strerror(ffi.errno)})")
        for j in others:
            if fresh[j]:     # in number order, between the records C wrote
                self.pack(wanted[j], kids[j], di, rows.get(j, -1))
        return at

    def _append(self, data: bytes) -> int:
        """Writes bytes at the blob's end; returns where."""
        at = self.blob_next
        self.blob[at:at + len(data)] = data
        self.blob_next = at + len(data)
        return at

    def pack(self, i: int, node: Inode, parent: int, r: int) -> None:
        """Packs an Inode's record as number `i` (the numbering's, checked
        as a whole by the count of records packed); `r` is its row in the
        numbering, -1 for a plain inode, which has none."""
        kind = node.kind
        rare = node.has_rare
        size = ref_len = xattr_off = xattr_len = 0
        if kind == S_IFREG:
            nlink = 1 if r < 0 else self.numbering.links[r] or 1
            size, data = node.size_and_data
            ref = records.NO_FILE if data is None else data
        elif kind == S_IFDIR:
            self.dirs += 1
            ref = self._keep_listing(node, r)
            ref_len = self.n_dirents - ref
            nlink = 2 + self.numbering.subdirs[r]
        else:
            nlink = 1 if r < 0 else self.numbering.links[r] or 1
            if kind == S_IFLNK:
                ref, ref_len = self._append(node.target), len(node.target)
            else:   # devices: major << 32 | minor
                rdev = node.rdev if rare else _NO_RDEV
                ref = (rdev[0] << 32) | rdev[1]
        if rare and node.xattrs:
            packed = xattr_codec.pack(node.xattrs)
            self.blob_next += -self.blob_next % 4    # zeros already
            xattr_off, xattr_len = self._append(packed), len(packed)
        perm, uid, gid, mtime = node.attrs
        if not rare and mtime in _PLAIN_TIMES:   # _times' common case, without the call
            m_s, m_ns = a_s, a_ns = c_s, c_ns = divmod(mtime, 10**9)
        else:
            a_s, c_s, m_s, a_ns, c_ns, m_ns = _times(node, mtime, rare)
        min_blocks = 4 if i == 1 and node is self.lost_found else 0
        _INODE.pack_into(
            self.inodes, i * _INODE.size, kind | (perm & 0o7777), uid, gid, nlink,
            a_s, c_s, m_s, a_ns, c_ns, m_ns,
            xattr_len, size, ref, xattr_off, ref_len, parent, min_blocks, 0)

"""Numbering a finished tree's inodes and packing them as the C commit takes
them: `oe_inode` and `oe_dirent` arrays and one blob of names, symlink
targets and xattrs.

The tree is consumed as it is packed: each record lets go of its inode once
written, and each directory of its entries, so the Python tree shrinks
while the packed arrays (whose pages are touched only as they are written)
grow, and the run's peak is not the two of them side by side.
"""

from __future__ import annotations

import ctypes
import gc
import mmap
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import ImageError
from ..tree import S_IFDIR, S_IFLNK, S_IFREG, Inode, new_dir
from . import plan as planning
from . import records
from . import xattrs as xattr_codec

# Field by field as C lays them out (checked when .records is imported).
_INODE = records.INODE.struct
_DIRENT = records.DIRENT.struct
LOST_FOUND = b"lost+found"
# Times in this range are stored as they are (see plan.clamp_time_ns).
_PLAIN_TIMES = range(0, planning.AMBIGUOUS_START_NS)


Buffer = bytearray | mmap.mmap


@dataclass(slots=True)
class Packed:
    inodes: Buffer        # oe_inode records; record 0 is the root
    dirents: Buffer       # oe_dirent records, each directory's together
    blob: bytearray
    count: int            # records
    dirs: int             # of which directories


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None   # not glibc


_TRIM = _malloc_trim()


def _give_back() -> None:
    """Returns freed memory to the system, so that what the packing frees
    makes room for what it packs.  A full collection also empties CPython's
    free lists (tuples, lists, dicts, floats), whose few thousand blocks,
    scattered over the arenas the layers filled, would keep each arena
    alive (at 1M entries ~150 MB more is given back; the collection takes
    ~0.2 s).  malloc_trim hands back the heap's free pages, which the
    allocator tuning (ociext4.tuning) otherwise keeps for the next piece:
    there is none once the layers are read."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


def _zeroed(size: int) -> Buffer:
    """A zero-filled buffer whose pages cost memory only once written, so
    it fills up as the tree it is packed from empties (a bytearray would be
    touched all at once)."""
    return mmap.mmap(-1, size) if size else bytearray()


@dataclass(slots=True)
class _Numbering:
    records: list[Inode | None]
    parents: array[int]
    nlinks: array[int]
    # Directory record -> its sorted names and their records.
    listings: dict[int, tuple[list[bytes], array[int]]]
    names: int            # directory entries in all


def _times(node: Inode) -> tuple[int, int, int, int, int, int, int, int]:
    m = node.mtime_ns
    if node.atime_ns is None and node.ctime_ns is None and m in _PLAIN_TIMES:
        s, ns = divmod(m, 10**9)   # the common case, once instead of three times
        return (s, s, s, s, ns, ns, ns, ns)
    m = planning.clamp_time_ns(m)
    a = planning.clamp_time_ns(node.atime_ns) if node.atime_ns is not None else m
    c = planning.clamp_time_ns(node.ctime_ns) if node.ctime_ns is not None else m
    # Python's floor division keeps the nanoseconds positive before 1970.
    return (a // 10**9, c // 10**9, m // 10**9, m // 10**9,
            a % 10**9, c % 10**9, m % 10**9, m % 10**9)


def _number(root: Inode, lost_found: Inode) -> _Numbering:
    """Inode order: a directory's entries get consecutive numbers, lost+found
    the first free one.  Only directories and inodes with other than one
    name can be met twice (Tree keeps `names` true), so only they go into
    the identity map: a million plain files cost no map slot."""
    seen: dict[Inode, int] = {root: 0}   # Inodes hash by identity
    records: list[Inode | None] = [root]
    parents = array("I", [0])
    nlinks = array("I", [0])
    if lost_found.kind == S_IFDIR:
        seen[lost_found] = 1
        records.append(lost_found)
        parents.append(0)
        nlinks.append(0)
    listings: dict[int, tuple[list[bytes], array[int]]] = {}
    pending = [(root, 0)]
    total = 0
    while pending:
        d, di = pending.pop()
        children = d.children
        assert children is not None
        names = sorted(children)
        kids = array("I", bytes(4 * len(names)))
        listings[di] = (names, kids)
        total += len(names)
        subdirs = []
        for j, name in enumerate(names):
            child = children[name]
            is_dir = child.kind == S_IFDIR
            ci = seen.get(child) if is_dir or child.names != 1 else None
            if ci is None:
                ci = len(records)
                records.append(child)
                parents.append(di)
                nlinks.append(0)
                if is_dir or child.names != 1:
                    seen[child] = ci
                if is_dir:
                    subdirs.append((child, ci))
            elif is_dir:
                if child is not lost_found or di != 0:
                    raise ImageError(f"directory {name!r} has two parents")
                subdirs.append((child, ci))
            nlinks[ci] += 1
            kids[j] = ci
        pending.extend(reversed(subdirs))
    return _Numbering(records, parents, nlinks, listings, total)


def pack_tree(root: Inode, timestamp: int) -> Packed:
    """Numbers the inodes and packs them for the C writer, emptying the tree
    on the way (a directory's children are cleared once written)."""
    if root.children is None:
        raise ImageError("the root must be a directory")
    if LOST_FOUND not in root.children:
        lf = new_dir(0o700, mtime_ns=timestamp * 10**9)
        root.children[LOST_FOUND] = lf
        lf.names = 1
    lost_found = root.children[LOST_FOUND]
    _give_back()
    numbering = _number(root, lost_found)
    records, parents, nlinks, listings = (numbering.records, numbering.parents,
                                          numbering.nlinks, numbering.listings)
    count = len(records)
    inodes = _zeroed(_INODE.size * count)
    dirents = _zeroed(_DIRENT.size * numbering.names)
    blob = bytearray()          # names, symlink targets and xattrs
    n_dirents = 0
    n_dirs = 0
    pack_inode, pack_dirent, dirent_size = _INODE.pack_into, _DIRENT.pack_into, _DIRENT.size
    for i in range(count):
        node = records[i]
        records[i] = None       # the record now holds the only reference
        assert node is not None
        kind = node.kind
        dirent_first = n_dirents
        extra_off = extra_len = xattr_off = xattr_len = 0
        file = -1
        nlink = nlinks[i] or 1
        if kind == S_IFDIR:
            n_dirs += 1
            names, kids = listings.pop(i)
            subdirs = 0
            for name, ci in zip(names, kids, strict=True):
                if len(name) > 255:
                    raise ImageError(f"name {name[:40]!r}... is longer than 255 bytes")
                pack_dirent(dirents, n_dirents * dirent_size, len(blob), ci, len(name))
                n_dirents += 1
                blob += name
                # A directory's entries are numbered after it (lost+found,
                # the exception, after the root), so it is still in records.
                child = records[ci]
                subdirs += child is not None and child.kind == S_IFDIR
            nlink = 2 + subdirs
        elif kind == S_IFLNK:
            extra_off, extra_len = len(blob), len(node.target)
            blob += node.target
        elif kind == S_IFREG and node.data is not None:
            file = node.data
        if node.xattrs:
            packed = xattr_codec.pack(node.xattrs)
            blob += bytes(-len(blob) % 4)
            xattr_off, xattr_len = len(blob), len(packed)
            blob += packed
        pack_inode(
            inodes, i * _INODE.size,
            kind | (node.mode & 0o7777), node.uid, node.gid, nlink,
            *_times(node),
            node.size if kind == S_IFREG else 0, file, node.rdev[0], node.rdev[1],
            extra_off, extra_len, xattr_len, xattr_off,
            dirent_first, n_dirents - dirent_first, parents[i],
            4 if i == 1 and node is lost_found else 0)
        if kind == S_IFDIR:
            # Its entries are packed: letting go of them frees the files
            # among them, which no one else holds.
            node.children = {}
    del records, numbering
    _give_back()
    return Packed(inodes, dirents, blob, count, n_dirs)

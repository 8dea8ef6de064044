"""A tar archive (plain, gzip or zstd; a file or standard input) as a source."""

from __future__ import annotations

import sys
from typing import BinaryIO, Protocol

from ..errors import SourceError
from ..ext4.plan import AMBIGUOUS_START_NS
from ..ext4.writer import Ext4Writer
from ..flatten import WHITEOUT
from ..layers import (
    ENTRY_SIZE,
    PLAIN_NAME,
    Limits,
    TarEntry,
    entry_of,
    read_batches,
    records,
    runs,
)
from ..tree import (
    NO_XATTRS,
    PLAIN,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFREG,
    SYMLINK_MAX,
    Inode,
    Node,
    Tree,
    new_dir,
    plain_record,
    split_path,
)

_KINDS = {"0": S_IFREG, "2": S_IFLNK, "3": S_IFCHR, "4": S_IFBLK, "5": S_IFDIR, "6": S_IFIFO}
# Modes and mtimes repeat across an image (a package's files share them), and
# each parsed one is a fresh int of 28-32 bytes kept for the tree's life: an
# entry_node cache shares them, up to this many distinct values.
SHARED_INTS_MAX = 1 << 16


class Placer(Protocol):
    """Where apply_batch puts what it reads: a layer's rules, or a plain tar's."""

    def put(self, parts: list[bytes], node: Node) -> Node | None: ...
    def link(self, parts: list[bytes], target: Inode) -> None: ...
    def put_run(self, parts: list[bytes], names: list[bytes], records: list[bytes]) -> None: ...


class _Replacing:
    """A plain tar's rules: a later member replaces an earlier one."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree

    def put(self, parts: list[bytes], node: Node) -> Node:
        return self.tree.put(parts, node, new_dir)

    def link(self, parts: list[bytes], target: Inode) -> None:
        if parts:
            self.tree.put(parts, target, new_dir)

    def put_run(self, parts: list[bytes], names: list[bytes], records: list[bytes]) -> None:
        self.tree.put_run(self.tree.parent_dir(parts + names[:1], new_dir), names, records)


def read_tar(stream: BinaryIO, name: str, writer: Ext4Writer,
             limits: Limits | None = None) -> Inode:
    """Applies the archive's members in order (later duplicates win) and
    returns the root of the resulting tree."""
    tree = Tree(new_dir(), on_release=writer.release)
    placer = _Replacing(tree)
    ints: dict[int, int] = {}
    for raw, strings in read_batches(stream, name, writer, limits):
        try:
            apply_batch(raw, strings, placer, tree, writer, ints)
        except SourceError as e:
            raise SourceError(f"{name}: {e}") from None
    return tree.root


_REG, _DIR, _LINK = ord("0"), ord("5"), ord("1")
# Seconds below this are an mtime the writer stores as it is, whatever the
# nanoseconds: a plain record's (ociext4.tree.plain_record).
_PLAIN_SECONDS = AMBIGUOUS_START_NS // 1_000_000_000


def apply_batch(raw: bytes, strings: bytes, placer: Placer, tree: Tree, writer: Ext4Writer,
                ints: dict[int, int]) -> None:
    """Applies one batch of the tar reader's members (layers.read_batches).

    A plain file or directory with a plain name and no atime or xattrs, the
    bulk of every image, is made straight from the record, as entry_node()
    would make it (tests/test_tarball.py holds them to the same tree): a
    TarEntry and split_path() cost more than the rest of an entry's work.
    The file becomes a plain record (ociext4.tree.PLAIN), not an Inode,
    when its mtime is one the writer stores as it is.  The C core finds the
    runs of such files in one directory (a package's files, listed
    together) and makes their records (layers.runs): a run is put in one
    step (Placer.put_run).  Every other member goes through entry_node()."""
    segments, names, recs = runs(raw, strings, _PLAIN_SECONDS, WHITEOUT)
    size, step, view = ENTRY_SIZE, PLAIN.size, memoryview(raw)
    for run, first, count, dir_len, dir_off, names_off, names_len, recs_off in segments:
        if run:
            end = recs_off + count * step
            placer.put_run(strings[dir_off:dir_off + dir_len].split(b"/"),
                           names[names_off:names_off + names_len].split(b"\0"),
                           [recs[i:i + step] for i in range(recs_off, end, step)])
        else:
            _apply_members(view[first * size:(first + count) * size], strings, placer, tree,
                           writer, ints)
    # Once a batch: what lost its last name here stays out of the tree (no
    # lookup finds it to link it again), so its data can wait till now.
    tree.collect()


def _apply_members(raw: memoryview, strings: bytes, placer: Placer, tree: Tree,
                   writer: Ext4Writer, ints: dict[int, int]) -> None:
    """The members of a batch that are not in a run, one by one."""
    put = placer.put
    for rec in records(raw):
        (typ, mode, uid, gid, msec, _, mnsec, _, flags, _, _, name_len, name_off, _, _,
         xattr_len, _, size, data, _) = rec
        node: Node
        if flags == PLAIN_NAME and not xattr_len and (typ == _REG or typ == _DIR):
            name = strings[name_off:name_off + name_len].strip(b"/")
            if typ == _REG and 0 <= msec < _PLAIN_SECONDS:
                # At the root (eStargz's files) or a marker.
                node = plain_record(mode, uid, gid, msec, mnsec, size,
                                    data if data >= 0 else None)
            else:
                mtime = msec * 1_000_000_000 + mnsec
                mode = ints.get(mode, mode)
                mtime = ints.get(mtime, mtime)
                if len(ints) < SHARED_INTS_MAX:
                    ints.setdefault(mode, mode)
                    ints.setdefault(mtime, mtime)
                if typ == _REG:
                    node = Inode(S_IFREG, mode, uid, gid, mtime, None, None, size,
                                 data if data >= 0 else None)
                else:
                    node = Inode(S_IFDIR, mode, uid, gid, mtime, None, None, 0, None, b"",
                                 (0, 0), NO_XATTRS, {})
            parts = name.split(b"/")
        else:
            e = entry_of(rec, strings)
            parts = split_path(e.name)
            if typ == _LINK:
                placer.link(parts, link_target(tree, e))
                continue
            node = entry_node(e, writer, ints)
        if put(parts, node) is None:
            writer.release(node)  # a whiteout marker or eStargz file


def entry_node(e: TarEntry, writer: Ext4Writer, ints: dict[int, int] | None = None) -> Inode:
    """The inode a (non hard link) member describes.  `ints`, kept from one
    call to the next, shares equal modes and mtimes between inodes."""
    kind = _KINDS.get(e.type)
    if kind is None:
        raise SourceError(f"{e.name.decode(errors='replace')}: unsupported tar entry type "
                          f"{e.type!r}")
    if e.xattrs:
        try:
            writer.check_xattrs(e.xattrs)
        except SourceError as err:
            raise SourceError(f"{e.name.decode(errors='replace')}: {err}") from None
    mode, mtime = e.mode, e.mtime_ns
    if ints is not None:
        mode = ints.get(mode, mode)
        mtime = ints.get(mtime, mtime)
        if len(ints) < SHARED_INTS_MAX:
            ints.setdefault(mode, mode)
            ints.setdefault(mtime, mtime)
    xattrs = e.xattrs or NO_XATTRS
    # Positional arguments, in Inode's field order: this runs once per entry.
    if kind == S_IFREG:
        return Inode(kind, mode, e.uid, e.gid, mtime, e.atime_ns, None, e.size, e.data,
                     b"", (0, 0), xattrs)
    if kind == S_IFDIR:
        return Inode(kind, mode, e.uid, e.gid, mtime, e.atime_ns, None, 0, None,
                     b"", (0, 0), xattrs, {})
    node = Inode(kind, mode, e.uid, e.gid, mtime, e.atime_ns, None, 0, None,
                 b"", (0, 0), xattrs)
    if kind == S_IFLNK:
        if not e.link:
            raise SourceError(f"{e.name.decode(errors='replace')}: symlink with an empty target")
        if len(e.link) > SYMLINK_MAX:
            raise SourceError(f"{e.name.decode(errors='replace')}: symlink target of "
                              f"{len(e.link)} bytes is longer than ext4's {SYMLINK_MAX}")
        node.target = e.link
    elif kind in (S_IFCHR, S_IFBLK):
        node.rdev = e.rdev
    return node


def link_target(tree: Tree, e: TarEntry) -> Inode:
    target = tree.lookup(split_path(e.link))
    if target is None or target.is_dir:
        what = "missing" if target is None else "the directory"
        raise SourceError(f"{e.name.decode(errors='replace')}: hard link to {what} "
                          f"{e.link.decode(errors='replace')!r}")
    return target


def open_source(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - returned to the caller
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None

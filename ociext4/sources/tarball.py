"""A tar archive (plain, gzip or zstd; a file or standard input) as a source."""

from __future__ import annotations

import sys
from typing import BinaryIO

from ..errors import SourceError
from ..ext4.writer import Ext4Writer
from ..layers import Limits, TarEntry, read_entries
from ..tree import (
    NO_XATTRS,
    S_IFBLK,
    S_IFCHR,
    S_IFDIR,
    S_IFIFO,
    S_IFLNK,
    S_IFREG,
    SYMLINK_MAX,
    Inode,
    Tree,
    new_dir,
    split_path,
)

_KINDS = {"0": S_IFREG, "2": S_IFLNK, "3": S_IFCHR, "4": S_IFBLK, "5": S_IFDIR, "6": S_IFIFO}
# Modes and mtimes repeat across an image (a package's files share them), and
# each parsed one is a fresh int of 28-32 bytes kept for the tree's life: an
# entry_node cache shares them, up to this many distinct values.
SHARED_INTS_MAX = 1 << 16


def read_tar(stream: BinaryIO, name: str, writer: Ext4Writer,
             limits: Limits | None = None) -> Inode:
    """Applies the archive's members in order (later duplicates win) and
    returns the root of the resulting tree."""
    tree = Tree(new_dir(), on_release=writer.release)
    ints: dict[int, int] = {}
    for entry in read_entries(stream, name, writer, limits):
        try:
            _apply(tree, entry, writer, ints)
        except SourceError as e:
            raise SourceError(f"{name}: {e}") from None
        tree.collect()
    return tree.root


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


def _apply(tree: Tree, e: TarEntry, writer: Ext4Writer, ints: dict[int, int]) -> None:
    parts = split_path(e.name)
    if e.type == "1":
        target = link_target(tree, e)
        if parts:
            tree.put(parts, target, new_dir)
        return
    tree.put(parts, entry_node(e, writer, ints), new_dir)


def open_source(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - returned to the caller
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None

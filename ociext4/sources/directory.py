"""A host directory as the source of an image (the job of `mke2fs -d`)."""

from __future__ import annotations

import errno
import os
import stat

from ..errors import SourceError
from ..ext4.writer import Ext4Writer
from ..tree import NO_XATTRS, S_IFLNK, S_IFREG, Inode

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = {stat.S_IFREG, stat.S_IFDIR, stat.S_IFLNK, stat.S_IFCHR, stat.S_IFBLK,
          stat.S_IFIFO, stat.S_IFSOCK}


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return {}
        raise
    return {n: os.getxattr(path, n, follow_symlinks=False) for n in names}


def _node(path: str, st: os.stat_result) -> Inode:
    kind = stat.S_IFMT(st.st_mode)
    if kind not in _KINDS:
        raise SourceError(f"{path}: unsupported file type {kind:o}")
    node = Inode(kind, mode=stat.S_IMODE(st.st_mode), uid=st.st_uid, gid=st.st_gid,
                 mtime_ns=st.st_mtime_ns)
    if kind in (stat.S_IFCHR, stat.S_IFBLK):
        node.rdev = (os.major(st.st_rdev), os.minor(st.st_rdev))
    return node


def _copy(writer: Ext4Writer, path: str, size: int) -> int:
    try:
        fd = os.open(path, _OPEN_FLAGS | os.O_NOATIME)
    except PermissionError:
        fd = os.open(path, _OPEN_FLAGS)  # O_NOATIME needs ownership
    try:
        return writer.add_fd(fd, size)
    finally:
        os.close(fd)


def read_directory(root: str | os.PathLike[str], writer: Ext4Writer) -> Inode:
    """Walks `root` without following symlinks; file data goes to `writer`
    as it is found.  Returns the tree's root inode."""
    top = os.fspath(root)
    try:
        st = os.lstat(top)
    except OSError as e:
        raise SourceError(f"{top}: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SourceError(f"{top}: not a directory")
    tree_root = _node(top, st)
    tree_root.children = {}
    tree_root.names = 1
    tree_root.xattrs = _xattrs(top) or NO_XATTRS
    links: dict[tuple[int, int], Inode] = {}
    skip = writer.file_id  # the image itself, when written inside the source
    stack: list[tuple[str, Inode]] = [(top, tree_root)]
    try:
        while stack:
            dpath, dnode = stack.pop()
            children = dnode.children
            assert children is not None
            # Name order, not readdir order, so that a copy of the tree gives
            # the same image.
            with os.scandir(dpath) as it:
                entries = sorted(it, key=lambda e: e.name)
            for entry in entries:
                if entry.inode() == skip[1] and entry.stat(follow_symlinks=False).st_dev == skip[0]:
                    continue
                node = _entry(entry, writer, links)
                if node.is_dir and node.children is None:
                    node.children = {}
                    stack.append((entry.path, node))
                children[os.fsencode(entry.name)] = node
                node.names += 1
    except OSError as e:
        raise SourceError(f"{e.filename or top}: {e.strerror}") from None
    return tree_root


def _entry(entry: os.DirEntry[str], writer: Ext4Writer,
           links: dict[tuple[int, int], Inode]) -> Inode:
    st = entry.stat(follow_symlinks=False)
    linked = st.st_nlink > 1 and not stat.S_ISDIR(st.st_mode)
    key = (st.st_dev, st.st_ino)
    if linked and key in links:
        return links[key]
    path = entry.path
    node = _node(path, st)
    node.xattrs = _xattrs(path) or NO_XATTRS
    if node.xattrs:
        try:
            writer.check_xattrs(node.xattrs)
        except SourceError as e:
            raise SourceError(f"{path}: {e}") from None
    if node.kind == S_IFREG:
        node.size = st.st_size
        if st.st_size:
            node.data = _copy(writer, path, st.st_size)
    elif node.kind == S_IFLNK:
        node.target = os.readlink(os.fsencode(path))
    if linked:
        links[key] = node
    return node

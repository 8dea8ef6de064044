"""A tar archive (plain, gzip or zstd; a file or standard input) as a source."""

from __future__ import annotations

import io
import os
import sys
import tarfile
from decimal import Decimal, InvalidOperation
from typing import BinaryIO

from ..compression import open_decompressed
from ..errors import SourceError
from ..ext4.writer import Ext4Writer
from ..tree import (
    S_IFBLK,
    S_IFCHR,
    S_IFIFO,
    S_IFLNK,
    S_IFREG,
    Inode,
    Tree,
    new_dir,
    split_path,
)

_XATTR = "SCHILY.xattr."
_DEVICES = {tarfile.CHRTYPE: S_IFCHR, tarfile.BLKTYPE: S_IFBLK}


def _raw(name: str) -> bytes:
    return name.encode("utf-8", "surrogateescape")


def _time_ns(member: tarfile.TarInfo, key: str, fallback: float | None) -> int | None:
    # PAX times are decimal strings; going through float would lose the
    # nanoseconds.
    text = member.pax_headers.get(key)
    if text is not None:
        try:
            return int(Decimal(text) * 10**9)
        except InvalidOperation:
            raise SourceError(f"{member.name}: bad PAX {key} {text!r}") from None
    return None if fallback is None else int(fallback) * 10**9


def _attrs(member: tarfile.TarInfo) -> dict[str, object]:
    xattrs = {k[len(_XATTR):]: _raw(v) for k, v in member.pax_headers.items()
              if k.startswith(_XATTR)}
    return {
        "mode": member.mode & 0o7777, "uid": member.uid, "gid": member.gid,
        "mtime_ns": _time_ns(member, "mtime", member.mtime),
        "atime_ns": _time_ns(member, "atime", None),
        "xattrs": xattrs,
    }


def _file_data(writer: Ext4Writer, tf: tarfile.TarFile, member: tarfile.TarInfo) -> int | None:
    f = tf.extractfile(member)
    assert f is not None
    if member.sparse:
        # Only the stored pieces are written; the gaps stay holes.
        pieces = []
        for off, size in member.sparse:
            if size:
                f.seek(off)
                pieces.append((off, f.read(size)))
        return writer.add_chunks(pieces) if pieces else None
    return writer.add_stream(f, member.size) if member.size else None


def read_tar(stream: BinaryIO, name: str, writer: Ext4Writer) -> Inode:
    """Applies the archive's members in order (later duplicates win) and
    returns the root of the resulting tree."""
    raw = stream if isinstance(stream, io.BufferedReader) else io.BufferedReader(stream, 1 << 20)  # type: ignore[arg-type]
    data, _ = open_decompressed(raw, name)
    tree = Tree(new_dir(), on_release=lambda node: _release(writer, node))
    try:
        with tarfile.open(fileobj=data, mode="r|", bufsize=64 << 10,
                          encoding="utf-8", errors="surrogateescape") as tf:
            for member in tf:
                _apply(tree, tf, member, writer)
                tree.collect()
    except tarfile.TarError as e:
        raise SourceError(f"{name}: not a valid tar archive ({e})") from None
    except EOFError as e:
        raise SourceError(f"{name}: archive is truncated ({e})") from None
    except (OSError, ValueError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise SourceError(f"{name}: cannot decompress ({e})") from None
    return tree.root


def _release(writer: Ext4Writer, node: Inode) -> None:
    if node.data is not None:
        writer.discard(node.data)
        node.data = None


def _apply(tree: Tree, tf: tarfile.TarFile, member: tarfile.TarInfo, writer: Ext4Writer) -> None:
    parts = split_path(_raw(member.name))
    attrs = _attrs(member)
    if member.islnk():
        target = tree.lookup(split_path(_raw(member.linkname)))
        if target is None or target.is_dir:
            raise SourceError(f"{member.name}: hard link to missing {member.linkname!r}")
        if parts:
            tree.put(parts, target, new_dir)
        return
    if member.isdir():
        node = new_dir()
    elif member.issym():
        node = Inode(S_IFLNK, target=_raw(member.linkname))
        if not node.target:
            raise SourceError(f"{member.name}: symlink with an empty target")
    elif member.ischr() or member.isblk():
        node = Inode(_DEVICES[member.type], rdev=(member.devmajor, member.devminor))
    elif member.isfifo():
        node = Inode(S_IFIFO)
    elif member.isreg():
        node = Inode(S_IFREG, size=member.size, data=_file_data(writer, tf, member))
    else:
        raise SourceError(f"{member.name}: unsupported tar entry type {member.type!r}")
    for key, value in attrs.items():
        setattr(node, key, value)
    tree.put(parts, node, new_dir)


def open_source(path: str) -> BinaryIO:
    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - returned to the caller
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror}") from None


def is_tar_path(path: str) -> bool:
    return path == "-" or not os.path.isdir(path)

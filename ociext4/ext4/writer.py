"""Drives the C writer: streams file data in, then commits a finished tree.

The image is written under a temporary name beside the output and renamed
into place only when complete, so a failure never leaves a half image; a
block device is written in place (ociext4.output).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Self

from ..errors import ImageError, SourceError
from ..output import Output
from ..tree import S_IFDIR, S_IFLNK, S_IFREG, Inode, new_dir
from . import plan as planning
from . import records
from . import verity as verity_tree
from . import xattrs as xattr_codec
from ._writer import ffi, lib

CHUNK = 1 << 20
# Field by field as C lays them out (checked when .records is imported).
_INODE = records.INODE.struct
_DIRENT = records.DIRENT.struct
LOST_FOUND = b"lost+found"


@dataclass(frozen=True, slots=True)
class Ext4Options:
    size: int | None = None          # bytes; None sizes the image from its content
    free: int | None = None          # headroom in bytes when sizing from content
    journal: bool = True
    uuid: uuidlib.UUID | None = None  # None: derived from the content
    hash_seed: uuidlib.UUID | None = None
    label: str = ""
    timestamp: int = 0               # superblock times (seconds since the epoch)
    max_size: int = planning.DEFAULT_MAX_BYTES
    fsync: bool = True
    verity: bool = False             # append a dm-verity hash tree (ociext4.ext4.verity)
    verity_salt: bytes | None = None  # None: derived from the content


@dataclass(frozen=True, slots=True)
class ImageInfo:
    path: Path
    size: int
    blocks: int
    free_blocks: int
    inodes: int
    free_inodes: int
    groups: int
    uuid: uuidlib.UUID
    verity: verity_tree.VerityInfo | None = None
    verity_seconds: float = 0.0


class Ext4Writer:
    """Write file data with `add_*`, then `commit(root)`; or `abort()`."""

    def __init__(self, path: str | os.PathLike[str], options: Ext4Options | None = None) -> None:
        self.path = Path(path)
        self.options = options or Ext4Options()
        if self.options.size is not None and self.options.size < 1 << 20:
            raise ImageError(f"{self.path}: size {self.options.size} is below 1 MiB")
        planning.check_timestamp(self.options.timestamp)
        self._out = Output(self.path)
        self._fd: int | None = self._out.fd
        if self.options.verity and self._out.is_device:
            self.abort()
            raise ImageError(f"{self.path}: --verity appends a hash tree after the file "
                             "system, so it needs a file, not a block device")
        try:
            self._size = self._image_size()
            # A given size is also the limit, so a source that cannot fit
            # fails early instead of after streaming all of its data.
            max_bytes = self._size or self.options.max_size
            self._out.zero(max_bytes)
        except BaseException:
            self.abort()
            raise
        err = ffi.new("char[]", 256)
        params = ffi.new("oe_open_params *", {"max_blocks": max_bytes // planning.BLOCK_SIZE})
        w = lib.oe_open(self._out.fd, params, err, 256)
        if w == ffi.NULL:
            self.abort()
            raise ImageError(f"{self.path}: {ffi.string(err).decode()}")
        self._w = ffi.gc(w, lib.oe_close)

    def _image_size(self) -> int | None:
        """The size asked for; on a device, the device's unless one is asked
        for that fits."""
        size, device = self.options.size, self._out.device_size
        if device is None:
            return size
        if size is not None and size > device:
            raise ImageError(f"{self.path}: size {size} is larger than the device "
                             f"({device} bytes)")
        size = (size or device) // planning.BLOCK_SIZE * planning.BLOCK_SIZE
        if size < 1 << 20:
            raise ImageError(f"{self.path}: the device holds {device} bytes, below 1 MiB")
        return size

    @property
    def is_device(self) -> bool:
        """Whether the output is a block device, written in place (so there
        is no file beside it to keep metadata in)."""
        return self._out.is_device

    @property
    def file_id(self) -> tuple[int, int]:
        """(st_dev, st_ino) of the image being written, so a source walking
        the directory it lies in can leave it out."""
        assert self._fd is not None
        st = os.fstat(self._fd)
        return st.st_dev, st.st_ino

    @property
    def handle(self) -> object:
        """The C writer, for readers that stream into it (ociext4.layers)."""
        return self._w

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            self.abort()

    @property
    def failed(self) -> bool:
        """Whether a data call has failed; every later one then fails the
        same way (the C writer's errors are sticky)."""
        return bool(lib.oe_failed(self._w))

    def error(self) -> ImageError:
        """The C writer's last error, with its errno when a system call failed."""
        errno = lib.oe_errno(self._w)
        return ImageError(f"{self.path}: {ffi.string(lib.oe_error(self._w)).decode()}",
                          errno or None)

    def _check(self, rc: int) -> None:
        if rc != 0:
            raise self.error()

    def _begin(self) -> int:
        handle = ffi.new("int64_t *")
        self._check(lib.oe_file_begin(self._w, handle))
        return int(handle[0])

    def add_bytes(self, data: bytes) -> int:
        h = self._begin()
        if data:
            self._check(lib.oe_file_write(self._w, 0, ffi.from_buffer(data), len(data)))
        self._check(lib.oe_file_end(self._w))
        return h

    def add_stream(self, stream: BinaryIO, size: int) -> int:
        """Copies `size` bytes from a stream (a tar member, say)."""
        h = self._begin()
        off = 0
        while off < size:
            chunk = stream.read(min(CHUNK, size - off))
            if not chunk:
                raise ImageError(f"{self.path}: source ended {size - off} bytes early")
            self._check(lib.oe_file_write(self._w, off, ffi.from_buffer(chunk), len(chunk)))
            off += len(chunk)
        self._check(lib.oe_file_end(self._w))
        return h

    def add_chunks(self, chunks: list[tuple[int, bytes]]) -> int:
        """A sparse file: (offset, bytes) pieces in order; gaps are holes."""
        h = self._begin()
        for off, data in chunks:
            self._check(lib.oe_file_write(self._w, off, ffi.from_buffer(data), len(data)))
        self._check(lib.oe_file_end(self._w))
        return h

    def add_fd(self, fd: int, size: int) -> int:
        """Copies a file's first `size` bytes, keeping its holes."""
        h = self._begin()
        self._check(lib.oe_file_copy_fd(self._w, fd, size))
        self._check(lib.oe_file_end(self._w))
        return h

    def discard(self, handle: int) -> None:
        self._check(lib.oe_file_discard(self._w, handle))

    def check_xattrs(self, xattrs: dict[str, bytes]) -> None:
        """Raises SourceError if the xattrs cannot be stored on one inode."""
        if self.failed:
            raise self.error()
        packed = xattr_codec.pack(xattrs)
        if lib.oe_xattrs_check(self._w, ffi.from_buffer(packed), len(packed)) != 0:
            raise SourceError(ffi.string(lib.oe_error(self._w)).decode())

    def release(self, node: Inode) -> None:
        """Frees the data of a file that lost its last name (Tree's on_release)."""
        if node.data is not None:
            self.discard(node.data)
            node.data = None

    def abort(self) -> None:
        self._fd = None
        self._out.abort()

    def commit(self, root: Inode) -> ImageInfo:
        """Lays out and writes everything else, then renames into place."""
        if self._fd is None:
            raise ImageError(f"{self.path}: writer already closed")
        if self.failed:
            raise self.error()
        try:
            info = self._commit(root)
        except BaseException:
            self.abort()
            raise
        return info

    def _commit(self, root: Inode) -> ImageInfo:
        opts = self.options
        records, inodes, dirents, blob, n_dirs = _flatten(root, opts.timestamp)
        digest = hashlib.sha256(inodes)
        digest.update(dirents)
        digest.update(blob)
        fs_uuid = opts.uuid or uuidlib.UUID(bytes=digest.digest()[:16], version=5)
        seed = opts.hash_seed or uuidlib.UUID(bytes=digest.digest()[16:], version=5)
        used = lib.oe_data_blocks(self._w) + n_dirs + len(records) // 16 + 1
        sizing = planning.plan(used_blocks=used, entries=len(records),
                               size=self._size, free=opts.free, journal=opts.journal)
        label = opts.label.encode()
        if len(label) > 16:
            raise ImageError(f"{self.path}: label {opts.label!r} is longer than 16 bytes")
        params = ffi.new("oe_commit_params *", {
            "blocks": sizing.blocks,
            "free_blocks": sizing.free_blocks,
            "min_inodes": sizing.min_inodes,
            "journal_blocks": sizing.journal_blocks,
            "log_groups_per_flex": 4,
            "timestamp": opts.timestamp,
            "uuid": list(fs_uuid.bytes),
            "hash_seed": list(seed.bytes),
            "label": list(label.ljust(16, b"\0")),
        })
        result = ffi.new("oe_commit_result *")
        self._check(lib.oe_commit(
            self._w, params,
            ffi.from_buffer("oe_inode[]", inodes), len(records),
            ffi.from_buffer("oe_dirent[]", dirents), len(dirents) // _DIRENT.size,
            ffi.from_buffer(blob), len(blob), result))
        tree, tree_seconds = None, 0.0
        if opts.verity:
            started = time.perf_counter()
            salt = opts.verity_salt
            tree = verity_tree.append(
                self._out.fd, result.blocks,
                verity_tree.derived_salt(digest.digest()) if salt is None else salt, fs_uuid,
                str(self.path))
            tree_seconds = time.perf_counter() - started
        self._fd = None
        self._out.finish(opts.fsync)
        return ImageInfo(self.path, result.blocks * planning.BLOCK_SIZE, result.blocks,
                         result.free_blocks, result.inodes, result.free_inodes, result.groups,
                         fs_uuid, tree, tree_seconds)


# Times in this range are stored as they are (see plan.clamp_time_ns).
_PLAIN_TIMES = range(0, planning.AMBIGUOUS_START_NS)


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


Packed = tuple[list[Inode], bytearray, bytearray, bytes, int]


Numbering = tuple[list[Inode], dict[Inode, int], list[int], list[int], dict[int, list[bytes]], int]


def _number(root: Inode, lost_found: Inode) -> Numbering:
    """Inode order (a directory's entries get consecutive numbers, lost+found
    the first free one) and each record's position in it, parent and count
    of names; each directory's sorted names, and how many names in all."""
    index: dict[Inode, int] = {root: 0}   # Inodes hash by identity
    records: list[Inode] = [root]
    parents: list[int] = [0]
    nlinks: list[int] = [0]
    if lost_found.kind == S_IFDIR:
        index[lost_found] = 1
        records.append(lost_found)
        parents.append(0)
        nlinks.append(0)
    pending = [root]
    names_of: dict[int, list[bytes]] = {}
    total = 0
    while pending:
        d = pending.pop()
        children = d.children
        assert children is not None
        di = index[d]
        names = names_of[di] = sorted(children)
        total += len(names)
        subdirs = []
        for name in names:
            child = children[name]
            ci = index.get(child)
            if ci is None:
                ci = index[child] = len(records)
                records.append(child)
                parents.append(di)
                nlinks.append(0)
                if child.kind == S_IFDIR:
                    subdirs.append(child)
            elif child.kind == S_IFDIR:
                if child is not lost_found or di != 0:
                    raise ImageError(f"directory {name!r} has two parents")
                subdirs.append(child)
            nlinks[ci] += 1
        pending.extend(reversed(subdirs))
    return records, index, parents, nlinks, names_of, total


def _flatten(root: Inode, timestamp: int) -> Packed:
    """Numbers the inodes and packs them for the C writer."""
    if root.children is None:
        raise ImageError("the root must be a directory")
    if LOST_FOUND not in root.children:
        lf = new_dir(0o700, mtime_ns=timestamp * 10**9)
        root.children[LOST_FOUND] = lf
        lf.names = 1
    lost_found = root.children[LOST_FOUND]
    records, index, parents, nlinks, names_of, total = _number(root, lost_found)

    inodes = bytearray(_INODE.size * len(records))
    dirents = bytearray(_DIRENT.size * total)
    blob: list[bytes] = []      # names, symlink targets and xattrs, joined at the end
    blob_len = 0
    n_dirents = 0
    n_dirs = 0
    pack_inode, pack_dirent = _INODE.pack_into, _DIRENT.pack_into
    for i, node in enumerate(records):
        kind = node.kind
        dirent_first = n_dirents
        extra_off = extra_len = xattr_off = xattr_len = 0
        file = -1
        nlink = nlinks[i] or 1
        children = node.children
        if kind == S_IFDIR:
            assert children is not None
            n_dirs += 1
            subdirs = 0
            for name in names_of[i]:
                child = children[name]
                if len(name) > 255:
                    raise ImageError(f"name {name[:40]!r}... is longer than 255 bytes")
                pack_dirent(dirents, n_dirents * _DIRENT.size, blob_len, index[child], len(name))
                n_dirents += 1
                blob.append(name)
                blob_len += len(name)
                subdirs += child.kind == S_IFDIR
            nlink = 2 + subdirs
        elif kind == S_IFLNK:
            extra_off, extra_len = blob_len, len(node.target)
            blob.append(node.target)
            blob_len += extra_len
        elif kind == S_IFREG and node.data is not None:
            file = node.data
        if node.xattrs:
            packed = xattr_codec.pack(node.xattrs)
            pad = -blob_len % 4
            blob.append(b"\0" * pad)
            xattr_off, xattr_len = blob_len + pad, len(packed)
            blob.append(packed)
            blob_len += pad + xattr_len
        pack_inode(
            inodes, i * _INODE.size,
            kind | (node.mode & 0o7777), node.uid, node.gid, nlink,
            *_times(node),
            node.size if kind == S_IFREG else 0, file, node.rdev[0], node.rdev[1],
            extra_off, extra_len, xattr_len, xattr_off,
            dirent_first, n_dirents - dirent_first, parents[i],
            4 if i == 1 and node is lost_found else 0)
    return records, inodes, dirents, b"".join(blob), n_dirs

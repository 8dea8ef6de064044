"""Drives the C writer: streams file data in, then commits a finished tree.

The image is written under a temporary name beside the output and renamed
into place only when complete, so a failure never leaves a half image; a
block device is written in place (ociext4.output).
"""

from __future__ import annotations

import os
import time
import uuid as uuidlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Self

from ..errors import ImageError, SourceError
from ..output import Output
from ..tree import S_IFREG, Inode, Node, plain_data
from . import plan as planning
from . import records
from . import verity as verity_tree
from . import xattrs as xattr_codec
from ._writer import ffi, lib
from .pack import pack_tree

CHUNK = 1 << 20
_DIRENT = records.DIRENT.struct


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
    verity_seconds: float = 0.0      # the tree's part of the commit (leaves hashed as written)
    verity_read_back: int = 0        # blocks the tree read back (written in part, or salt late)


_TOO_LARGE = f"above {planning.MAX_BYTES >> 40} TiB, the largest image ociext4 makes"


class Ext4Writer:
    """Write file data with `add_*`, then `commit(root)`; or `abort()`."""

    def __init__(self, path: str | os.PathLike[str], options: Ext4Options | None = None) -> None:
        self.path = Path(path)
        self.options = options or Ext4Options()
        if self.options.size is not None and self.options.size < 1 << 20:
            raise ImageError(f"{self.path}: size {self.options.size} is below 1 MiB")
        for what, value in (("size", self.options.size), ("max_size", self.options.max_size),
                            ("free", self.options.free)):
            if value is not None and value > planning.MAX_BYTES:
                raise ImageError(f"{self.path}: {what} {value} is {_TOO_LARGE}")
        planning.check_timestamp(self.options.timestamp)
        self._out = Output(self.path)
        self._deferred: list[int] | None = None
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
        if self.options.verity:
            self._begin_verity()

    def _begin_verity(self) -> None:
        """Has the C writer hash every block as it writes it, with the salt
        if it is known now (else the blocks are read back at the commit)."""
        salt = self.options.verity_salt
        rc = lib.oe_verity_begin(self._w, salt is not None, salt or b"", len(salt or b""))
        if rc != 0:
            error = self.error()
            self.abort()
            raise error

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
        if size > planning.MAX_BYTES:
            raise ImageError(f"{self.path}: the device holds {device} bytes, {_TOO_LARGE}: "
                             "ask for a size")
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
        if self._deferred is not None:
            self._deferred.append(handle)
            return
        self._check(lib.oe_file_discard(self._w, handle))

    @contextmanager
    def discards_deferred(self) -> Iterator[None]:
        """Holds discards back while file data is written on another thread
        (ociext4.layers): the C writer is not shared between threads, and a
        discard only matters at the commit."""
        if self._deferred is not None:
            yield
            return
        self._deferred = []
        try:
            yield
        finally:
            held, self._deferred = self._deferred, None
            if not self.failed:
                for handle in held:
                    self.discard(handle)

    def check_xattrs(self, xattrs: Mapping[str, bytes]) -> None:
        """Raises SourceError if the xattrs cannot be stored on one inode."""
        packed = xattr_codec.pack(xattrs)
        err = ffi.new("char[]", 160)
        if lib.oe_xattrs_check(ffi.from_buffer(packed), len(packed), err, 160) != 0:
            raise SourceError(ffi.string(err).decode())

    def release(self, node: Node) -> None:
        """Frees the data of a file that lost its last name (Tree's on_release)."""
        if type(node) is bytes:
            data = plain_data(node)
            if data is not None:
                self.discard(data)
            return
        if node.kind == S_IFREG and node.data is not None:
            self.discard(node.data)
            node.data = None

    def abort(self) -> None:
        self._fd = None
        self._out.abort()

    def commit(self, root: Inode) -> ImageInfo:
        """Lays out and writes everything else, then renames into place.
        The tree is consumed: its directories are emptied as they are
        written, so that it and the packed records are not held at once."""
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
        packed = pack_tree(root, opts.timestamp)
        inodes, dirents, blob, count = packed.inodes, packed.dirents, packed.blob, packed.count
        n_dirs = packed.dirs
        digest = packed.digest
        del packed
        digest.update(dirents)
        digest.update(blob)
        fs_uuid = opts.uuid or uuidlib.UUID(bytes=digest.digest()[:16], version=5)
        seed = opts.hash_seed or uuidlib.UUID(bytes=digest.digest()[16:], version=5)
        used = lib.oe_data_blocks(self._w) + n_dirs + count // 16 + 1
        sizing = planning.plan(used_blocks=used, entries=count,
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
            ffi.from_buffer("oe_inode[]", inodes), count,
            ffi.from_buffer("oe_dirent[]", dirents), len(dirents) // _DIRENT.size,
            ffi.from_buffer(blob), len(blob), result))
        tree, tree_seconds, read_back = None, 0.0, 0
        if opts.verity:
            started = time.perf_counter()
            salt = opts.verity_salt
            if salt is None:
                salt = verity_tree.derived_salt(digest.digest())
            leaves, read_back = verity_tree.leaves(self._w, result.blocks, salt, str(self.path))
            tree = verity_tree.append(self._out.fd, result.blocks, salt, fs_uuid, leaves,
                                      str(self.path))
            tree_seconds = time.perf_counter() - started
        self._fd = None
        self._out.finish(opts.fsync)
        return ImageInfo(self.path, result.blocks * planning.BLOCK_SIZE, result.blocks,
                         result.free_blocks, result.inodes, result.free_inodes, result.groups,
                         fs_uuid, tree, tree_seconds, read_back)

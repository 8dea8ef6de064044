"""Layer blobs as sources hand them over: a stream to read, and a check of
its size and digest once it has been read to the end (hashed beside the
layer's tar: see ociext4.hashing.LayerDigests)."""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from .compression import PIECE, STREAM_PIECE
from .digests import check_bytes
from .errors import SourceError
from .hashing import LayerDigests
from .model import Layer

# What a layer blob is read through: a file, or a raw stream over one.
Stream = BinaryIO | io.RawIOBase


def check_blob(name: str, layer: Layer, size: int, digest: str) -> None:
    """Raises unless a layer blob read whole had the size and digest its
    descriptor gives."""
    check_bytes(f"{name}: layer {layer.digest}", layer.digest, layer.size, size, digest)


class Window(io.RawIOBase):
    """Bytes [offset, offset + size) of an open file (to its end without a
    size), read with pread: windows on one file, on any threads, never move
    each other (or the file's own position)."""

    def __init__(self, f: BinaryIO | io.RawIOBase, offset: int = 0,
                 size: int | None = None) -> None:
        super().__init__()
        self._fd, self._pos = f.fileno(), offset
        self._end = None if size is None else offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = len(b) if self._end is None else min(len(b), self._end - self._pos)
        if n <= 0:
            return 0
        got = os.preadv(self._fd, [memoryview(b)[:n]], self._pos)
        self._pos += got
        return got


class HashedBlob(io.RawIOBase):
    """A layer blob open for reading, with its LayerDigests: the layer's tar,
    inflated from it by layers.layer_pieces(), is hashed beside the blob on
    one thread; check() then compares the blob with its descriptor.  The
    blob is hashed from `blob()`, a window on the same open file, so what is
    checked is what was inflated even if the path is replaced meanwhile."""

    def __init__(self, f: io.RawIOBase, layer: Layer, name: str,
                 blob: Callable[[], io.RawIOBase] | None) -> None:
        super().__init__()
        self._f, self._layer, self._name = f, layer, name
        self.digests = LayerDigests(blob)

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        return self._f.readinto(b) or 0

    def close(self) -> None:
        # The digests' thread reads the same file: it stops first.
        self.digests.stop()
        self._f.close()
        super().close()

    def check(self) -> None:
        try:
            size, digest = self.digests.blob_digest()
        except OSError as e:
            raise SourceError(f"{self._name}: layer {self._layer.digest}: "
                              f"{e.strerror or e}") from None
        check_blob(self._name, self._layer, size, digest)


@dataclass
class LayerBlob:
    """One layer's bytes, open for reading.  `finish()` checks what was read
    (digest, size) and closes; `close()` only closes.  A blob is not tied to
    the iterator that made it, so the next one can be opened while this one
    is still being read.  `abandon()` tells a stream that may wait for its
    bytes (a layer read as it downloads) to stop waiting: the reader gave up.
    """

    layer: Layer
    stream: Stream
    check: Callable[[], None] | None = None
    on_close: Callable[[], None] | None = None
    on_abandon: Callable[[], None] | None = None

    @property
    def piece(self) -> int:
        """Bytes of tar a piece of this layer holds at most: fewer for a
        stream that may wait for its bytes (compression.STREAM_PIECE)."""
        return STREAM_PIECE if self.on_abandon is not None else PIECE

    def abandon(self) -> None:
        if self.on_abandon is not None:
            self.on_abandon()

    def finish(self) -> None:
        try:
            if self.check is not None:
                self.check()
        finally:
            self.close()

    def close(self) -> None:
        if self.on_close is not None:
            closer, self.on_close = self.on_close, None
            closer()

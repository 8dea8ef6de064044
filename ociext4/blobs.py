"""Layer blobs as sources hand them over: a stream to read, and a check of
its size and digest once it has been read to the end."""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .digests import check_bytes
from .errors import SourceError
from .hashing import BackgroundHash
from .model import Layer


def check_blob(name: str, layer: Layer, size: int, digest: str) -> None:
    """Raises unless a layer blob read whole had the size and digest its
    descriptor gives."""
    check_bytes(f"{name}: layer {layer.digest}", layer.digest, layer.size, size, digest)


class VerifyingReader(io.RawIOBase):
    """Reads a blob and checks its size and digest once it is read to the end."""

    def __init__(self, f: BinaryIO, layer: Layer, name: str) -> None:
        super().__init__()
        self._f, self._layer, self._name = f, layer, name
        # Hashed on another thread: the reading thread is the one inflating.
        self._hash = BackgroundHash()
        self._n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._f.readinto(b)  # type: ignore[attr-defined]
        if n:
            self._hash.update(bytes(memoryview(b)[:n]))
            self._n += n
        return n or 0

    def close(self) -> None:
        self._hash.close()
        super().close()

    def check(self) -> None:
        buf = bytearray(1 << 20)
        while self.readinto(buf):
            pass
        check_blob(self._name, self._layer, self._n, "sha256:" + self._hash.hexdigest())


class BlobCheck:
    """Checks a blob file's size and digest on a thread of its own, reading
    the file by itself.  The thread that inflates the layer then reads the
    file undisturbed: handing it every piece to hash would make it wait
    whenever the hashing falls behind, and it is the one the others wait for."""

    def __init__(self, path: Path, layer: Layer, name: str) -> None:
        self._path, self._layer, self._name = path, layer, name
        self._size = 0
        self._digest = ""
        self._error: OSError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        h = hashlib.sha256()
        try:
            with open(self._path, "rb", buffering=0) as f:
                while not self._stop.is_set() and (piece := f.read(1 << 20)):
                    h.update(piece)
                    self._size += len(piece)
        except OSError as e:
            self._error = e
        self._digest = "sha256:" + h.hexdigest()

    def stop(self) -> None:
        """Gives up early: the layer was not read to its end."""
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise SourceError(f"{self._name}: layer {self._layer.digest}: "
                              f"{self._error.strerror or self._error}")
        check_blob(self._name, self._layer, self._size, self._digest)


@dataclass
class LayerBlob:
    """One layer's bytes, open for reading.  `finish()` checks what was read
    (digest, size) and closes; `close()` only closes.  A blob is not tied to
    the iterator that made it, so the next one can be opened while this one
    is still being read."""

    layer: Layer
    stream: BinaryIO
    check: Callable[[], None] | None = None
    on_close: Callable[[], None] | None = None

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

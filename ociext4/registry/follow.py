"""Reading a layer blob while it downloads.

A pull fetches the layers on threads while the unpack applies them bottom
first; without this, the unpack waits for each blob to be whole in the
cache before it reads a byte of it (the bottom layer: the download's whole
time).  A FollowedBlob reads the download's partial file as it grows, from
the cache's ingest/, and so starts inflating with the first bytes.

What it reads is hashed as it goes and checked against the layer's digest
at the end: the partial file may start over (a server that ignores Range,
a download replaced after a failure) or be another process's download of
the same blob, and the cache's own check covers the file the download
left, not necessarily the bytes read from it.  So the bytes inflated are
checked, whatever happened to the file.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

from ..blobs import check_blob
from ..errors import SourceError
from ..hashing import Sha256
from ..model import Layer
from ..store import Store

POLL = 0.005   # seconds between looks at a download that has no new bytes yet


class FollowedBlob(io.RawIOBase):
    """The blob of `layer`, read from its partial file while `settled`
    (Pull.settled for the layer) says the download goes on, then from the
    cache.  check() waits for the download and compares what was read with
    the layer's descriptor."""

    def __init__(self, store: Store, layer: Layer, name: str,
                 settled: Callable[[float | None], bool]) -> None:
        super().__init__()
        self._partial = store.ingest_path(layer.digest)
        self._final = store.blob_path(layer.digest)
        self._layer, self._name, self._settled = layer, name, settled
        self._size = layer.size or None
        self._fd: int | None = None
        self._pos = 0
        self._finished = False      # the download is over and _fd is the cached blob
        self._abandoned = False
        self._hash = Sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        want = len(view) if self._size is None else min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        while True:
            if self._fd is not None:
                n = os.preadv(self._fd, [view[:want]], self._pos)
                if n:
                    self._hash.update(view[:n])
                    self._pos += n
                    return n
            if self._finished:
                return 0
            if self._abandoned:
                raise SourceError(f"{self._name}: layer {self._layer.digest}: given up "
                                  "while it was downloading")
            if self._settled(POLL):
                self._finished = True
                self._open_if_other(self._final)
            else:
                self._open_if_other(self._partial)

    def _open_if_other(self, path: os.PathLike[str]) -> None:
        """Reads from `path` from now on, unless the file open already is
        the one there; the partial file may not be there (yet, or any more)."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            if self._finished:
                raise
            return
        if self._fd is not None:
            if os.fstat(self._fd).st_ino == st.st_ino:
                return
            os.close(self._fd)
            self._fd = None
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if self._finished:
                raise

    @property
    def abandoned(self) -> bool:
        return self._abandoned

    def abandon(self) -> None:
        """Stops waiting for bytes (from any thread): a read that would wait
        raises instead, so whoever reads can be stopped and joined."""
        self._abandoned = True

    def check(self) -> None:
        """Raises the download's error, or unless what was read is the blob.
        After abandon() it does not wait: a download not over yet has no
        verdict to give, and the reader's own error is the one to report;
        but what was read to the blob's size is compared as it is (a gzip
        CRC fails only once its last bytes are read, often before the
        download has settled: its digest names the fault better)."""
        if self._abandoned:
            whole = self._size is not None and self._pos == self._size
            # settled(0) raises the download's error, as settled(None) does.
            if not whole and not self._settled(0):
                return
        else:
            self._settled(None)
        rest = bytearray(1 << 20)
        while self.readinto(rest):
            pass
        check_blob(self._name, self._layer, self._pos, "sha256:" + self._hash.hexdigest())

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        super().close()

"""Reading a layer blob while it downloads.

A pull fetches the layers on threads while the unpack applies them bottom
first; without this, the unpack waits for each blob to be whole in the
cache before it reads a byte of it (the bottom layer: the download's whole
time).  A FollowedBlob reads the download's partial file as it grows, from
the cache's ingest/, and so starts inflating with the first bytes.

What it reads is not hashed again here.  The download hashes what it
writes, and the cache names a blob only once that matched its digest; the
check waits for that verdict and raises the download's error.  The partial
file may start over (a server that ignores Range, a download replaced after
a failure) or be another process's download of the same blob, so the bytes
read may not be the bytes the download checked: what covers them is the
layer's diff_id, checked over every byte inflated from them
(layers.read_batches), as for any layer.  A second hash here would run on
the inflating thread, the one the unpack waits for: 0.3 s of a cold
unpack of the opamlike image (bench/README.md).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any

from ..errors import SourceError
from ..model import Layer
from ..store import Store

POLL = 0.005   # seconds between looks at a download that has no new bytes yet
# How long check() waits, after abandon(), for the verdict of a download
# whose every byte was read: it is only the digest, fsync and rename away.
VERDICT = 10.0


class FollowedBlob(io.RawIOBase):
    """The blob of `layer`, read from its partial file while `settled`
    (Pull.settled for the layer) says the download goes on, then from the
    cache.  check() waits for the download and raises its error."""

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
        """Raises the download's error (a blob that is not what its digest
        names, a registry that failed).  After abandon() it does not wait
        for a download that is not over: it has no verdict to give yet,
        and the reader's own error is the one to report.  But a reader that
        read the blob to its size was stopped by what it read (a gzip CRC
        fails only at the blob's end, often before the download has
        settled), and the digest names that fault better: then the verdict
        is waited for, up to VERDICT seconds."""
        if self._abandoned:
            whole = self._size is not None and self._pos == self._size
            # settled() raises the download's error, whatever its timeout.
            self._settled(VERDICT if whole else 0)
        else:
            self._settled(None)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        super().close()

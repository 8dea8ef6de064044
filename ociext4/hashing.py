"""sha256 on another thread: hashlib lets go of the GIL on big buffers, so a
digest is computed while the thread that reads keeps reading."""

from __future__ import annotations

import hashlib
import queue
import threading


class BackgroundHash:
    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (piece := self._queue.get()) is not None:
            self._hash.update(piece)

    def update(self, piece: bytes) -> None:
        """`piece` must not change afterwards: it is hashed later."""
        self._queue.put(piece)

    def hexdigest(self) -> str:
        self.close()
        return self._hash.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

"""Running an iterator one step ahead on another thread, so that producing
pieces (inflating) and consuming them (writing the image) overlap."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")
_END = object()


class Prefetch(Generic[T]):
    """Iterates `source` on a worker thread, at most `depth` items ahead.
    An exception in the worker is raised here, in order; `close()` stops
    the worker even if the consumer gave up half way."""

    def __init__(self, source: Iterator[T], depth: int = 4, name: str | None = None) -> None:
        self._source = source
        self._queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=name)
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            for item in self._source:
                if not self._put(item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            self._put(e)
            return
        self._put(_END)

    def __iter__(self) -> Iterator[T]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():
            # Room for a worker waiting on a full queue; then the join
            # returns as soon as the worker ends.  Not a blocking get: a
            # worker that has put its end but not yet returned would keep
            # close() waiting out the get's timeout for an item that never
            # comes.
            try:
                self._queue.get_nowait()
            except queue.Empty:
                pass
            self._thread.join(0.01)

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Starting on the next layer while the current one is being applied.

Layers must be applied in order, but inflating one does not depend on the
ones below it.  While a layer is applied, the thread inflating it keeps one
core busy and the other is partly idle; a Lookahead uses that idle time to
open the next layer and inflate its first pieces (a bounded amount), at a
lower priority so it never slows the layer in progress.  When that layer's
turn comes, its buffered pieces are handed over first and inflating goes on,
at normal priority, on the thread that takes over.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from itertools import chain
from typing import Generic, TypeVar

from .tuning import trim_heap

T = TypeVar("T")

NICE = 10            # below the threads the current layer waits for
# Bytes of inflated pieces held at most.  They are held while the current
# layer's tree is at its largest: at a million entries 48 MiB put the peak
# 30 MB higher; the opamlike image was no slower with 16.
BUDGET = 16 << 20
MIN_BUDGET = 1 << 20


def budget_for(compressed: int | None) -> int:
    """What to hold of a layer whose blob is `compressed` bytes (None when
    no descriptor says): as many inflated bytes as the blob has, between
    MIN_BUDGET and BUDGET.  Holding pieces saves the time of inflating
    them, and a small blob inflates in little time however large it
    grows (a layer of whiteouts: 1 MB of gzip, 50 MB of tar headers,
    20 ms), while what is held is held at the current layer's peak."""
    if compressed is None:
        return BUDGET
    return max(MIN_BUDGET, min(BUDGET, compressed))


class Lookahead(Generic[T]):
    """Runs `open_next()` (which returns some handle and the piece iterator of
    the next layer) on a thread, then pulls pieces from it until `budget`
    bytes are held or `take()` is called.  `take()` returns the handle and
    an iterator over the held pieces followed by the rest; an exception
    raised on the thread is raised there, in order.  `cancel()` gives up
    without waiting; the handle, if one was opened, goes to `release`.
    `budget` may be a function of the handle, asked once it is opened."""

    def __init__(self, open_next: Callable[[], tuple[T, Iterator[bytes]] | None],
                 release: Callable[[T], None],
                 budget: int | Callable[[T], int] = BUDGET) -> None:
        self._open_next = open_next
        self._release = release
        self._budget = budget
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._cancelled = self._done = self._released = False
        self._opened: tuple[T, Iterator[bytes]] | None = None
        self._held: list[bytes] = []
        self._ended = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True, name="ociext4-lookahead")
        self._thread.start()

    def _run(self) -> None:
        try:
            self._pull()
        finally:
            with self._lock:
                self._done = True
            self._release_if_cancelled()

    def _pull(self) -> None:
        try:
            # Opened at normal priority: threads it starts (a blob's digest)
            # inherit this thread's niceness and are waited for later.
            self._opened = self._open_next()
            if self._opened is None:
                return
            try:
                os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICE)
            except (OSError, AttributeError):
                pass
            pieces, held = self._opened[1], 0
            budget = self._budget if isinstance(self._budget, int) else self._budget(
                self._opened[0])
            while held < budget and not self._stop.is_set():
                piece = next(pieces, None)
                if piece is None:
                    self._ended = True
                    return
                self._held.append(piece)
                held += len(piece)
        except BaseException as e:  # noqa: BLE001 - raised again by take()
            self._error = e

    def take(self) -> tuple[T, Iterator[bytes]] | None:
        """Stops the thread; None when there was no next layer."""
        self._stop.set()
        self._thread.join()
        with self._lock:
            self._released = True   # the caller owns the handle now
        if self._opened is None:
            if self._error is not None:
                raise self._error
            return None
        handle, rest = self._opened
        held, self._held = self._held, []
        tail: Iterator[bytes] = iter(()) if self._ended else rest
        if self._error is not None:
            tail = chain(tail, _raising(self._error))
        return handle, chain(_handing_over(held), tail)

    def cancel(self) -> None:
        """Gives up without waiting: the thread stops after its piece (or
        after opening the layer, if it is waiting for one to download)."""
        self._stop.set()
        with self._lock:
            self._cancelled = True
        self._release_if_cancelled()

    def _release_if_cancelled(self) -> None:
        with self._lock:
            if not (self._cancelled and self._done) or self._released or self._opened is None:
                return
            self._released = True
            self._held = []
        self._release(self._opened[0])


def _handing_over(held: list[bytes]) -> Iterator[bytes]:
    """The held pieces, each let go of as it is handed over, then their
    memory back to the system.  They were made on the lookahead's thread,
    and the pieces inflated after them on another thread come from another
    malloc arena, which does not reuse theirs: without the trim the freed
    pieces stay counted while the layer is applied (at a million entries
    the peak was the next layer's, 30 MB higher)."""
    held.reverse()
    while held:
        yield held.pop()
    trim_heap()


def _raising(error: BaseException) -> Iterator[bytes]:
    raise error
    yield b""  # pragma: no cover - makes this a generator

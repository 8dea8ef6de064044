"""tqdm bars on stderr for a pull: a total (bytes and rate) and one per layer
being downloaded, a few at most however many layers the image has; the
downloads report from several threads."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any

from ociext4.ocilayout import Image

MAX_BARS = 4  # layer bars at once, under the total: a pull fetches three at a time


class DownloadBars:
    def __init__(self, show: bool) -> None:
        self._show = show
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
        self._slots: dict[str, int] = {}
        self._sizes: dict[str, int] = {}
        self._total: Any = None

    def __enter__(self) -> DownloadBars:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        with self._lock:
            for bar in self._bars.values():
                bar.close()
            if self._total is not None:
                self._total.close()
            self._bars.clear()
            self._slots.clear()
            self._total = None

    @property
    def open_bars(self) -> int:
        """Bars on the terminal now, the total included."""
        with self._lock:
            return len(self._bars) + (self._total is not None)

    def begin(self, image: Image, cached: set[str]) -> None:
        if not self._show:
            return
        missing = [lay for lay in image.layers if lay.digest not in cached]
        if not missing:
            return
        with self._lock:
            self._sizes = {lay.digest: lay.size for lay in missing}
            self._total = self._bar(sum(self._sizes.values()), 0,
                                    f"total ({len(missing)} layers)")

    def _bar(self, total: int, position: int, desc: str) -> Any:
        from tqdm import tqdm

        return tqdm(total=total or None, position=position, desc=desc, unit="B",
                    unit_scale=True, unit_divisor=1024, file=sys.stderr, dynamic_ncols=True,
                    leave=False)

    def advance(self, digest: str, nbytes: int) -> None:
        if not self._show:
            return
        with self._lock:
            bar = self._bars.get(digest)
            if bar is None and digest in self._sizes and len(self._bars) < MAX_BARS:
                # A bar appears when a download starts, in the first free row.
                slot = min(set(range(1, MAX_BARS + 1)) - set(self._slots.values()))
                bar = self._bars[digest] = self._bar(self._sizes[digest], slot, digest[7:19])
                self._slots[digest] = slot
            if bar is not None:
                bar.update(nbytes)
                if bar.total and bar.n >= bar.total:
                    bar.close()
                    del self._bars[digest], self._slots[digest]
            if self._total is not None:
                self._total.update(nbytes)

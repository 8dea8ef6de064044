"""tqdm bars on stderr for a pull: one per layer being downloaded and a total
(bytes and rate); the downloads report from several threads."""

from __future__ import annotations

import sys
import threading
from types import TracebackType
from typing import Any

from ociext4.ocilayout import Image


class DownloadBars:
    def __init__(self, show: bool) -> None:
        self._show = show
        self._lock = threading.Lock()
        self._bars: dict[str, Any] = {}
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
            self._total = None

    def begin(self, image: Image, cached: set[str]) -> None:
        if not self._show:
            return
        from tqdm import tqdm

        missing = [lay for lay in image.layers if lay.digest not in cached]
        if not missing:
            return
        common = {"unit": "B", "unit_scale": True, "unit_divisor": 1024, "file": sys.stderr,
                  "dynamic_ncols": True, "leave": False}
        with self._lock:
            self._total = tqdm(total=sum(lay.size for lay in missing), position=0,
                               desc=f"total ({len(missing)} layers)", **common)
            for i, lay in enumerate(missing):
                self._bars[lay.digest] = tqdm(total=lay.size or None, position=i + 1,
                                              desc=lay.digest[7:19], **common)

    def advance(self, digest: str, nbytes: int) -> None:
        if not self._show:
            return
        with self._lock:
            if (bar := self._bars.get(digest)) is not None:
                bar.update(nbytes)
                if bar.total and bar.n >= bar.total:
                    bar.close()
                    del self._bars[digest]
            if self._total is not None:
                self._total.update(nbytes)

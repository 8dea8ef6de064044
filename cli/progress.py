"""A tqdm bar on stderr for layers as they stream (the library never prints)."""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any

from ociext4.layers import LayerStats


class LayerProgress:
    def __init__(self, show: bool) -> None:
        self._show = show
        self._bar: Any = None
        self._layer = -1
        self._done_bytes = 0
        self._last = 0

    def __enter__(self) -> LayerProgress:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, index: int, count: int, st: LayerStats) -> None:
        if not self._show:
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=None, unit="B", unit_scale=True, unit_divisor=1024,
                             file=sys.stderr, dynamic_ncols=True, leave=False)
        if index != self._layer:
            self._layer, self._last = index, 0
        # The rate is of stored (compressed) bytes, as they are read.
        self._bar.update(st.bytes_in - self._last)
        self._last = st.bytes_in
        self._bar.set_description(f"layer {index + 1}/{count}", refresh=False)
        self._bar.set_postfix(entries=st.entries, refresh=False)

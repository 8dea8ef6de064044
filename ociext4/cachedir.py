"""Where `ociext4 run` keeps what it can rebuild: initramfs archives,
unpacked kernels and images, the KVM probe's verdict. They live in run/
under the cache root, beside (not inside) the blob store's OCI layout."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """ROOT/run/KIND, ROOT being $OCIEXT4_CACHE, else $XDG_CACHE_HOME/ociext4,
    else ~/.cache/ociext4; created on first use."""
    base = os.environ.get("OCIEXT4_CACHE")
    if base:
        root = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "ociext4"
    path = root / "run" / kind
    path.mkdir(parents=True, exist_ok=True)
    return path

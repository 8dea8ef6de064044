"""Where ociext4 keeps what it can rebuild: initramfs archives, unpacked
images, the KVM probe's verdict."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(kind: str) -> Path:
    """$OCIEXT4_CACHE/KIND, else $XDG_CACHE_HOME/ociext4/KIND, else
    ~/.cache/ociext4/KIND; created on first use."""
    base = os.environ.get("OCIEXT4_CACHE")
    if base:
        root = Path(base)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = (Path(xdg) if xdg else Path.home() / ".cache") / "ociext4"
    path = root / kind
    path.mkdir(parents=True, exist_ok=True)
    return path

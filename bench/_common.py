"""Helpers the benchmark scripts share."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsck(img: Path) -> tuple[str, str]:
    p = subprocess.run(
        ["e2fsck", "-fn", str(img)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    return ("pass" if p.returncode == 0 else f"fail (rc {p.returncode})"), p.stdout

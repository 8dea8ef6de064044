"""Helpers the benchmark scripts share."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


def find_ociext4() -> str | None:
    """The `ociext4` console script of the Python running the bench (beside
    sys.executable), else the one on PATH.  A version manager's shim on PATH
    (pyenv's is a bash script that execs two more) adds 0.1-0.3 s to every
    run, which is the machine's, not ociext4's."""
    beside = Path(sys.executable).parent / "ociext4"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("ociext4")

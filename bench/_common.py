"""Helpers the benchmark scripts share."""

from __future__ import annotations

import compileall
import importlib.util
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


def byte_compile() -> None:
    """Compiles the ociext4 and ociext4_cli packages' bytecode, as a pip
    install does at install time.  An editable install (this checkout's)
    leaves it to the first import, and where PYTHONDONTWRITEBYTECODE is set
    (these machines set it) Python never writes it, so every run would
    compile the sources again: about 0.1 s a run, the setup's, not
    ociext4's."""
    for name in ("ociext4", "ociext4_cli"):
        spec = importlib.util.find_spec(name)
        for where in (spec.submodule_search_locations or []) if spec else []:
            compileall.compile_dir(where, quiet=1)


def find_ociext4() -> str | None:
    """The `ociext4` console script of the Python running the bench (beside
    sys.executable), else the one on PATH, its bytecode compiled
    (byte_compile).  A version manager's shim on PATH (pyenv's is a bash
    script that execs two more) adds 0.1-0.3 s to every run, which is the
    machine's, not ociext4's."""
    byte_compile()
    beside = Path(sys.executable).parent / "ociext4"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("ociext4")

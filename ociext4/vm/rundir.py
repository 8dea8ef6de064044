"""Each run's temporary directory (its initrd, virtiofsd sockets), locked
while the run lives, so a later run can sweep the directories of runs that
were killed (SIGKILL leaves no chance to clean up)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .. import tempfiles

PREFIX = "ociext4-run-"
LOCK = ".lock"
# A directory younger than this may be a run between mkdtemp and its lock.
GRACE_SECONDS = 30.0


def sweep(root: Path | None = None, now: float | None = None) -> list[Path]:
    """Removes the directories of dead runs; returns them."""
    base = Path(root or tempfile.gettempdir())
    now = time.time() if now is None else now
    removed = []
    for d in base.glob(PREFIX + "*"):
        try:
            if not d.is_dir() or d.is_symlink() or now - d.stat().st_mtime < GRACE_SECONDS:
                continue
            fd = os.open(d / LOCK, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            fd = -1   # old enough and never locked: an earlier version's leftover
        except OSError:
            continue
        try:
            if fd >= 0:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue   # its run holds the lock: alive
        finally:
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(d, ignore_errors=True)
        removed.append(d)
    return removed


@contextlib.contextmanager
def run_directory() -> Iterator[Path]:
    with contextlib.suppress(OSError):
        sweep()
    with tempfiles.directory(PREFIX) as d:
        fd = os.open(d / LOCK, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield d
        finally:
            os.close(fd)

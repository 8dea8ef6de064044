"""The files this process is writing under temporary names, so that an
interrupt can remove them without unwinding the program.

A signal handler that raises an exception can land between a lock being
taken and the code that releases it (inside queue.Queue, say) and hang the
exit; removing the temporary files and exiting at once cannot.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_live: set[Path] = set()


def track(path: Path) -> None:
    _live.add(path)


def untrack(path: Path) -> None:
    _live.discard(path)


def remove_all() -> None:
    """Removes every tracked file or directory (safe to call from a signal
    handler)."""
    for path in list(_live):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)
        _live.discard(path)


@contextlib.contextmanager
def directory(prefix: str) -> Iterator[Path]:
    """A temporary directory that an interrupt removes too."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        path = Path(tmp)
        track(path)
        try:
            yield path
        finally:
            untrack(path)

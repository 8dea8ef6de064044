"""The files this process is writing under temporary names, so that an
interrupt can remove them without unwinding the program.

A signal handler that raises an exception can land between a lock being
taken and the code that releases it (inside queue.Queue, say) and hang the
exit; removing the temporary files and exiting at once cannot.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_live: set[Path] = set()


def track(path: Path) -> None:
    _live.add(path)


def untrack(path: Path) -> None:
    _live.discard(path)


def remove_all() -> None:
    """Removes every tracked file (safe to call from a signal handler)."""
    for path in list(_live):
        with contextlib.suppress(OSError):
            os.unlink(path)
        _live.discard(path)

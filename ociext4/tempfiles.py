"""The files this process is writing under temporary names, so that an
interrupt can remove them without unwinding the program; and the ones that
processes which died without that chance (SIGKILL, a crash) left behind.

A signal handler that raises an exception can land between a lock being
taken and the code that releases it (inside queue.Queue, say) and hang the
exit; removing the temporary files and exiting at once cannot.

A temporary beside an output is named `.NAME.OWNER.RANDOM.partial`, where
OWNER is `BOOT-PID-START`: the boot it was made in, the writing process and
that process's start time.  A later run can then tell a dead owner from a
live one even when the pid has been reused since.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_OWNER = re.compile(r"([0-9a-f]{8})-([0-9]+)-([0-9]+)\.[a-z0-9_]+\.partial")

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


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]
    except OSError:
        return "0" * 8


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot, or None when no
    such process exists."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: count
    # fields from the last ')'.
    return stat[stat.rindex(b")") + 2:].split()[19].decode()


def _owner() -> str:
    pid = os.getpid()
    return f"{_boot_id()}-{pid}-{_start_time(pid) or 0}"


def create_beside(path: Path) -> tuple[int, Path]:
    """A new temporary file in `path`'s directory, named for `path` and this
    process, and tracked; returns its descriptor and name."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_owner()}.", suffix=".partial",
                               dir=path.parent)
    track(Path(tmp))
    return fd, Path(tmp)


def owner_is_alive(name: str, prefix: str) -> bool | None:
    """Whether the process that made the temporary `name` (whose name
    starts with `prefix`) still runs; None when the name is not one of
    create_beside's."""
    m = _OWNER.fullmatch(name[len(prefix):]) if name.startswith(prefix) else None
    if m is None:
        return None
    boot, pid, start = m.groups()
    if boot != _boot_id():
        return False
    return _start_time(int(pid)) == start


def sweep_beside(path: Path) -> list[Path]:
    """Removes the temporaries that dead processes left for `path`; returns
    them.  Those of live processes (another run writing the same output)
    and files named otherwise are left alone."""
    prefix = f".{path.name}."
    removed = []
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix)]
    except OSError:
        return removed
    for name in names:
        if owner_is_alive(name, prefix) is False:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path.parent / name)
                removed.append(path.parent / name)
    return removed

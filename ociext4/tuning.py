"""Process-wide tuning for big unpacks.  The library never applies it on its
own (it changes the whole process's allocator); the command line does, and
so may a build script that does nothing else."""

from __future__ import annotations

import ctypes

_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD, _M_ARENA_MAX = -3, -1, -8


def tune_allocator() -> None:
    """Layers arrive as pieces of up to 1 MiB.  By default glibc maps and
    unmaps each one, so every piece faults in freshly zeroed pages: about a
    tenth of an unpack's CPU time.  Keeping them in the heap costs ~20 MB
    per arena.  Pieces are made on one thread and freed on another; with an
    arena per thread each would keep its own cache of them (peak RSS 370 MB
    instead of 230 MB on a large image), so two arenas at most.  Free
    memory at the top of a heap is handed back past 16 MiB: at 64 MiB a
    million-entry unpack peaked ~30 MB higher, and the large opamlike image
    was no faster."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc: nothing to tune
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 16 << 20)
    mallopt(_M_ARENA_MAX, 2)

"""Process-wide tuning for big unpacks.  The library never applies it on its
own (it changes the whole process's allocator); the command line does, and
so may a build script that does nothing else."""

from __future__ import annotations

import ctypes
from collections.abc import Callable

_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD, _M_ARENA_MAX = -3, -1, -8


def tune_allocator() -> None:
    """Layers arrive as pieces of up to 2 MiB.  By default glibc maps and
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



HTTP_READ = 1 << 20
_http_reads = False     # tune_http_reads() was called


def tune_http_reads() -> None:
    """httpcore reads a response 64 KiB at a time, and each read goes once
    through h11's state machine in Python: for a layer download that
    machinery, not the bytes, is most of the client's CPU.  Reading up to
    1 MiB a time took a cold pull of the opamlike image from 3.3-3.6 s of
    CPU to 2.2-2.4 s (on two cores it competes with the unpack).  It is a
    class attribute of httpcore's, so process-wide like the rest of this
    module.  This only asks for it: the registry client applies it when it
    first connects (`apply_http_reads`), so that commands which never
    download do not pay for importing httpcore."""
    global _http_reads
    _http_reads = True


def apply_http_reads() -> None:
    """Raises httpcore's read size if tune_http_reads() asked for it; an
    httpcore without that attribute is left alone."""
    if not _http_reads:
        return
    from httpcore._sync import http11

    conn = getattr(http11, "HTTP11Connection", None)
    if conn is not None and isinstance(getattr(conn, "READ_NUM_BYTES", None), int):
        conn.READ_NUM_BYTES = max(conn.READ_NUM_BYTES, HTTP_READ)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None   # not glibc


_TRIM = _malloc_trim()


def trim_heap() -> None:
    """Hands the free pages inside malloc's heaps back to the system (glibc's
    malloc_trim; elsewhere nothing).  Freed memory otherwise stays counted
    until the heap's top is free, or is kept for reuse by the arena that
    freed it (one a thread).  Safe for a library to call: it changes no
    setting, only gives back what no one holds."""
    if _TRIM is not None:
        _TRIM(0)

"""Entry point: parses arguments, runs a command, turns errors into one line."""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import signal
import sys
import time
import uuid
from collections.abc import Sequence

from ociext4 import __version__, tempfiles
from ociext4.errors import Ociext4Error

from .cache import add_cache
from .inspect import add_inspect
from .login import add_login
from .mkfs import add_mkfs
from .pull import add_pull
from .run import add_run
from .unpack import add_unpack


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ociext4", description="Turn directories, tarballs and OCI images into ext4 images.")
    parser.add_argument("--version", action="version", version=f"ociext4 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_mkfs(sub)
    add_unpack(sub)
    add_pull(sub)
    add_inspect(sub)
    add_cache(sub)
    add_run(sub)
    add_login(sub)
    return parser


def add_image_options(p: argparse.ArgumentParser) -> None:
    """Options every command that writes an image shares."""
    from .units import parse_size

    p.add_argument("--size", type=parse_size, metavar="SIZE",
                   help="image size (e.g. 2G); default: sized from the content")
    p.add_argument("--free", type=parse_size, metavar="SIZE",
                   help="free space to leave when sizing from content "
                        "(default: 10%% of the content, at least 64M)")
    p.add_argument("--no-journal", action="store_true", help="leave out the journal")
    p.add_argument("--uuid", type=uuid.UUID, help="file-system UUID (default: from the content)")
    p.add_argument("--label", default="", help="volume label (at most 16 bytes)")
    p.add_argument("--no-fsync", action="store_true", help="do not fsync the image before renaming")


def timestamp_from_env() -> int:
    # Reproducible-builds convention for "when was this made".
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else 0


def _keep_freed_memory() -> None:
    """Layers arrive as pieces of up to 1 MiB.  By default glibc maps and
    unmaps each one, so every piece faults in freshly zeroed pages: about a
    tenth of an unpack's CPU time.  Keeping them in the heap costs ~20 MB
    per arena."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return  # not glibc: nothing to tune
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    mallopt(-1, 64 << 20)  # M_TRIM_THRESHOLD
    # Pieces are made on one thread and freed on another; with an arena per
    # thread each would keep its own cache of them (peak RSS 370 MB instead
    # of 230 MB on a large image).
    mallopt(-8, 2)         # M_ARENA_MAX


def _on_signal(signum: int, frame: object) -> None:
    """SIGINT and SIGTERM: remove what is being written and exit at once.
    Raising an exception here instead could land inside a lock's critical
    section (a queue between threads) and hang the exit."""
    tempfiles.remove_all()
    word, code = ("interrupted", 130) if signum == signal.SIGINT else ("terminated", 143)
    os.write(2, f"ociext4: {word}\n".encode())
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    _keep_freed_memory()
    # An unpack allocates millions of small objects and none of them form
    # cycles; the collector's passes over them cost ~5% of its time.
    gc.freeze()
    gc.disable()
    try:
        return int(args.run(args, started) or 0)
    except Ociext4Error as e:
        print(f"ociext4: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        print(f"ociext4: error: {where}{e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

"""Entry point: parses arguments, runs a command, turns errors into one line."""

from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from ociext4 import __version__, tempfiles
from ociext4.errors import Ociext4Error
from ociext4.tuning import tune_allocator

from .cache import add_cache
from .inspect import add_inspect
from .login import add_login
from .mkfs import add_mkfs
from .pull import add_pull
from .run import add_run
from .unpack import add_unpack


class Parser(argparse.ArgumentParser):
    """Option errors as one line, like every other error.  `error_code` is
    the exit code for them (docker run says 125 where others say 2)."""

    error_code = 2

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("ociext4").strip()
        where = f"{command}: " if command else ""
        self.exit(self.error_code, f"ociext4: error: {where}{message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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


def _on_signal(signum: int, frame: object) -> None:
    """SIGINT, SIGTERM and SIGHUP (a closed terminal, a cancelled CI job):
    remove what is being written and exit at once.
    Raising an exception here instead could land inside a lock's critical
    section (a queue between threads) and hang the exit."""
    tempfiles.remove_all()
    word = {signal.SIGINT: "interrupted", signal.SIGHUP: "hung up"}.get(signum, "terminated")
    os.write(2, f"ociext4: {word}\n".encode())
    os._exit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    started = time.perf_counter()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    tune_allocator()
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

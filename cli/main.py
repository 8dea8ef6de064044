"""Entry point: parses arguments, runs a command, turns errors into one line."""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import NoReturn

from ociext4 import __version__, tempfiles
from ociext4.errors import Ociext4Error
from ociext4.tuning import tune_allocator, tune_http_reads

# name: (module, the function that adds its parser, one line of help).  A
# command's module loads the library parts it needs, so only the command
# given is imported: `--version`, `--help` and a local unpack start without
# the registry client or the runner.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "mkfs": ("mkfs", "add_mkfs", "make an ext4 image from a directory or a tar archive"),
    "unpack": ("unpack", "add_unpack", "make an ext4 image from a container image"),
    "pull": ("pull", "add_pull", "fetch an image from a registry into the cache"),
    "inspect": ("inspect", "add_inspect", "show an image's digest, platform, layers and config"),
    "cache": ("cache", "add_cache", "list, free or check the cache"),
    "run": ("run", "add_run", "boot an image in a VM and run a command in it"),
    "login": ("login", "add_login", "check and store credentials for a registry"),
    "logout": ("login", "add_logout", "forget stored credentials for a registry"),
}


class Parser(argparse.ArgumentParser):
    """Option errors as one line, like every other error.  `error_code` is
    the exit code for them (docker run says 125 where others say 2)."""

    error_code = 2

    def error(self, message: str) -> NoReturn:
        command = self.prog.removeprefix("ociext4").strip()
        where = f"{command}: " if command else ""
        self.exit(self.error_code, f"ociext4: error: {where}{message} (see {self.prog} --help)\n")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; given `argv`, only the command it names is built in
    full (the others are listed for --help but never parsed)."""
    parser = Parser(
        prog="ociext4", description="Turn directories, tarballs and OCI images into ext4 images.")
    parser.add_argument("--version", action="version", version=f"ociext4 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (module, adder, help) in COMMANDS.items():
        if wanted is None or wanted == name:
            add = getattr(importlib.import_module(f"{__package__}.{module}"), adder)
            add(sub, help)
        else:
            sub.add_parser(name, help=help)
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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    started = time.perf_counter()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    tune_allocator()
    tune_http_reads()
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

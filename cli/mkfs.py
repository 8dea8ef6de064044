"""`ociext4 mkfs SOURCE OUT.img`: a directory or tar archive to an ext4 image."""

from __future__ import annotations

import argparse
import os
import sys
import time

from ociext4.ext4 import Ext4Options, Ext4Writer
from ociext4.sources.directory import read_directory
from ociext4.sources.tarball import open_source, read_tar


def add_mkfs(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .limits import add_limit_options
    from .main import add_image_options

    p = sub.add_parser(
        "mkfs", help="make an ext4 image from a directory or a tar archive",
        description="Make an ext4 image from a directory or a tar archive "
                    "(plain, gzip or zstd; '-' reads standard input).")
    p.add_argument("source", help="directory, tar archive, or - for standard input")
    p.add_argument("output", help="image file to write (replaced atomically)")
    add_image_options(p)
    add_limit_options(p, layers=False)
    p.add_argument("--stats", action="store_true", help="print what was written and how fast")
    p.set_defaults(run=run_mkfs)


def options_from(args: argparse.Namespace) -> Ext4Options:
    from .main import timestamp_from_env

    return Ext4Options(size=args.size, free=args.free, journal=not args.no_journal,
                       uuid=args.uuid, label=args.label, timestamp=timestamp_from_env(),
                       fsync=not args.no_fsync)


def run_mkfs(args: argparse.Namespace, started: float) -> int:
    from .limits import limits_from

    with Ext4Writer(args.output, options_from(args)) as writer:
        if args.source != "-" and os.path.isdir(args.source):
            root = read_directory(args.source, writer)
        else:
            with open_source(args.source) as stream:
                root = read_tar(stream, args.source, writer, limits_from(args))
        read_done = time.perf_counter()
        info = writer.commit(root)
    if args.stats:
        done = time.perf_counter()
        used = (info.blocks - info.free_blocks) * 4096
        print(f"{info.path}: {info.size >> 20} MiB, {used >> 20} MiB used, "
              f"{info.inodes - info.free_inodes} inodes, uuid {info.uuid}; "
              f"read+data {read_done - started:.2f}s, metadata {done - read_done:.2f}s, "
              f"total {done - started:.2f}s", file=sys.stderr)
    return 0

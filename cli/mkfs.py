"""`ociext4 mkfs SOURCE OUT.img`: a directory or tar archive to an ext4 image."""

from __future__ import annotations

import argparse
import sys

from ociext4 import api

from .imageopts import add_image_options, image_kwargs
from .limits import add_limit_options, limits_from


def add_mkfs(sub: argparse._SubParsersAction, help: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "mkfs", help=help,
        description="Make an ext4 image from a directory or a tar archive "
                    "(plain, gzip or zstd; '-' reads standard input).")
    p.add_argument("source", help="directory, tar archive, or - for standard input")
    p.add_argument("output", help="image file to write (replaced atomically)")
    add_image_options(p)
    add_limit_options(p, layers=False)
    p.add_argument("--stats", action="store_true", help="print what was written and how fast")
    p.set_defaults(run=run_mkfs)


def run_mkfs(args: argparse.Namespace, started: float) -> int:
    result = api.mkfs(args.source, args.output, limits=limits_from(args), **image_kwargs(args))
    if args.stats:
        info = result.info
        used = (info.blocks - info.free_blocks) * 4096
        print(f"{info.path}: {info.size >> 20} MiB, {used >> 20} MiB used, "
              f"{info.inodes - info.free_inodes} inodes, uuid {info.uuid}; "
              f"read+data {result.read_seconds:.2f}s, metadata {result.commit_seconds:.2f}s, "
              f"total {result.read_seconds + result.commit_seconds:.2f}s"
              + (f" (verity tree {info.verity_seconds:.2f}s, root hash {info.verity.root_hash})"
                 if info.verity else ""), file=sys.stderr)
    return 0

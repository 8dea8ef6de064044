"""`ociext4 unpack SOURCE OUT.img`: a container image to an ext4 image."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from ociext4.errors import SourceError
from ociext4.ext4 import Ext4Writer
from ociext4.ocilayout import Platform
from ociext4.reference import parse_local
from ociext4.sources.image import read_image

CONFIG_KEYS = ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "Labels")


def add_unpack(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .main import add_image_options

    p = sub.add_parser(
        "unpack", help="make an ext4 image from a container image",
        description="Flatten a container image's layers into an ext4 image. SOURCE is "
                    "oci:DIR[:TAG|@DIGEST] (an OCI image layout) or docker-archive:FILE "
                    "(docker save output). The image config is written beside the image "
                    "as OUT.img.json.")
    p.add_argument("source", help="oci:DIR[:TAG|@DIGEST] or docker-archive:FILE")
    p.add_argument("output", help="image file to write (replaced atomically)")
    add_image_options(p)
    p.add_argument("--platform", type=Platform.parse,
                   help="os/arch[/variant] (default: the host's)")
    p.add_argument("--stats", action="store_true", help="print what was written and how fast")
    p.set_defaults(run=run_unpack)


def run_unpack(args: argparse.Namespace, started: float) -> int:
    from .mkfs import options_from

    ref = parse_local(args.source)
    if ref is None:
        raise SourceError(f"{args.source}: pulling from registries is not implemented yet; "
                          "use oci:DIR or docker-archive:FILE")
    with Ext4Writer(args.output, options_from(args)) as writer:
        root, image = read_image(ref, writer, args.platform)
        read_done = time.perf_counter()
        info = writer.commit(root)
    cfg = image.config.get("config") or {}
    meta = {"manifest": image.manifest_digest,
            "platform": f"{image.config.get('os', '')}/{image.config.get('architecture', '')}",
            "config": {k: cfg[k] for k in CONFIG_KEYS if k in cfg}}
    tmp = f"{args.output}.json.partial"
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, f"{args.output}.json")
    if args.stats:
        done = time.perf_counter()
        print(f"{info.path}: {len(image.layers)} layers, {info.size >> 20} MiB, "
              f"{info.inodes - info.free_inodes} inodes; layers {read_done - started:.2f}s, "
              f"metadata {done - read_done:.2f}s, total {done - started:.2f}s", file=sys.stderr)
    return 0

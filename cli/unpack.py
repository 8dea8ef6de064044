"""`ociext4 unpack SOURCE OUT.img`: a container image to an ext4 image."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ociext4 import tempfiles
from ociext4.ext4 import Ext4Writer
from ociext4.layers import LayerStats
from ociext4.ocilayout import CONFIG_KEYS, Image
from ociext4.reference import RegistryRef, parse_reference
from ociext4.sources.image import Progress, read_image, read_layout_image
from ociext4.tree import Inode

from .progress import LayerProgress
from .pullprogress import DownloadBars
from .registryopts import (
    add_platform_option,
    add_registry_options,
    options_from,
    show_progress,
    store_from,
)


def add_unpack(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from .limits import add_limit_options
    from .main import add_image_options

    p = sub.add_parser(
        "unpack", help="make an ext4 image from a container image",
        description="Flatten a container image's layers into an ext4 image. SOURCE is "
                    "an image name in a registry (alpine, ocaml/opam:tag, host:5000/repo@sha256:…; "
                    "what is not cached is pulled, and the bottom layer is applied while the "
                    "others download), oci:DIR[:TAG|@DIGEST] (an OCI image layout) or "
                    "docker-archive:FILE (docker save output). The image config is written "
                    "beside the image as OUT.img.json.")
    p.add_argument("source", help="registry image name, oci:DIR[:TAG|@DIGEST] or "
                                  "docker-archive:FILE")
    p.add_argument("output", help="image file to write (replaced atomically)")
    add_image_options(p)
    add_limit_options(p)
    add_platform_option(p)
    p.add_argument("--stats", nargs="?", const="text", choices=["text", "json"],
                   help="per-stage bytes, entries, seconds and MB/s: a table on stderr, "
                        "or with --stats=json a JSON document on stdout")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: only when stderr is a terminal)")
    add_registry_options(p)
    p.set_defaults(run=run_unpack)


def derived_uuid(digest: str, purpose: str) -> uuid.UUID:
    """Same image, same UUID: the manifest digest decides it."""
    return uuid.UUID(bytes=hashlib.sha256(f"ociext4 {purpose} {digest}".encode()).digest()[:16],
                     version=5)


Reader = Callable[[Ext4Writer, Progress, list[LayerStats]], tuple[Inode, Image]]


def run_unpack(args: argparse.Namespace, started: float) -> int:
    from .limits import limits_from

    ref = parse_reference(args.source)
    limits = limits_from(args)
    show = show_progress(args)
    if not isinstance(ref, RegistryRef):
        local = ref
        return _unpack(args, started, show, lambda writer, progress, layers: read_image(
            local, writer, args.platform, limits, progress=progress, stats=layers))
    from ociext4.registry import Pull  # only here: see registryopts.options_from

    store = store_from(args)
    with DownloadBars(show) as bars, \
            Pull(ref, store, args.platform, options_from(args), bars) as pull:
        image = pull.start()

        def read(writer: Ext4Writer, progress: Progress, layers: list[LayerStats]
                 ) -> tuple[Inode, Image]:
            root = read_layout_image(store.root, image, writer, pull.wait, limits,
                                     progress=progress, stats=layers)
            pull.finish()  # every layer is in: tag the image in the cache
            return root, image

        return _unpack(args, started, show, read)


def _unpack(args: argparse.Namespace, started: float, show: bool, read: Reader) -> int:
    from .mkfs import options_from as image_options

    layers: list[LayerStats] = []
    with Ext4Writer(args.output, image_options(args)) as writer, LayerProgress(show) as bar:
        root, image = read(writer, bar.update, layers)
        read_done = time.perf_counter()
        writer.options = dataclasses.replace(
            writer.options,
            uuid=writer.options.uuid or derived_uuid(image.manifest_digest, "uuid"),
            hash_seed=derived_uuid(image.manifest_digest, "hash-seed"))
        info = writer.commit(root)
    done = time.perf_counter()
    write_config(args.output, image)
    if args.stats:
        report(args.stats, layers, read_done - started, done - read_done, info)
    return 0


def write_config(output: str, image: Any) -> None:
    cfg = image.config.get("config") or {}
    meta = {"manifest": image.manifest_digest,
            "platform": f"{image.config.get('os', '')}/{image.config.get('architecture', '')}",
            "config": {k: cfg[k] for k in CONFIG_KEYS if k in cfg}}
    tmp = Path(f"{output}.json.partial")
    tempfiles.track(tmp)
    with open(tmp, "w") as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write("\n")
    os.replace(tmp, f"{output}.json")
    tempfiles.untrack(tmp)


def _rate(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds > 0 else 0.0


def report(kind: str, layers: list[LayerStats], read_s: float, commit_s: float,
           info: Any) -> None:
    stages: list[dict[str, Any]] = [
        {"stage": f"layer {i + 1}", "digest": st.name, "compression": st.compression,
         "bytes_in": st.bytes_in, "bytes_out": st.bytes_out, "entries": st.entries,
         "seconds": round(st.seconds, 3), "mb_per_s": round(_rate(st.bytes_out, st.seconds), 1)}
        for i, st in enumerate(layers)]
    used = (info.blocks - info.free_blocks) * 4096
    stages.append({"stage": "metadata", "bytes_in": 0, "bytes_out": used,
                   "entries": info.inodes - info.free_inodes, "seconds": round(commit_s, 3),
                   "mb_per_s": round(_rate(used, commit_s), 1)})
    total = {"stage": "total", "bytes_in": sum(s.bytes_in for s in layers),
             "bytes_out": used, "entries": sum(s.entries for s in layers),
             "seconds": round(read_s + commit_s, 3),
             "mb_per_s": round(_rate(sum(s.bytes_out for s in layers), read_s + commit_s), 1)}
    stages.append(total)
    if kind == "json":
        # For machines: the only thing on stdout.
        print(json.dumps({"image": str(info.path), "uuid": str(info.uuid), "stages": stages},
                         indent=1))
        return
    print(f"{'stage':<10} {'in MB':>9} {'out MB':>9} {'entries':>9} {'seconds':>8} {'MB/s':>7}",
          file=sys.stderr)
    for s in stages:
        print(f"{s['stage']:<10} {s['bytes_in'] / 1e6:>9.1f} {s['bytes_out'] / 1e6:>9.1f} "
              f"{s['entries']:>9} {s['seconds']:>8.2f} {s['mb_per_s']:>7.1f}", file=sys.stderr)

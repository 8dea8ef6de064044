"""`ociext4 unpack SOURCE OUT.img`: a container image to an ext4 image."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ociext4 import api
from ociext4.layers import LayerStats
from ociext4.model import Image

from .imageopts import add_image_options, image_kwargs
from .limits import add_limit_options, limits_from
from .progress import LayerProgress
from .pullprogress import DownloadBars
from .registryopts import add_platform_option, add_registry_options, show_progress


def add_unpack(sub: argparse._SubParsersAction, help: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "unpack", help=help,
        description="Flatten a container image's layers into an ext4 image. SOURCE is "
                    "an image name in a registry (alpine, ocaml/opam:tag, host:5000/repo@sha256:…; "
                    "what is not cached is pulled, and the bottom layer is applied while the "
                    "others download), oci:DIR[:TAG|@DIGEST] (an OCI image layout) or "
                    "docker-archive:FILE[:NAME:TAG|:@INDEX] (docker save output). The image "
                    "config is written beside the image as OUT.img.json.")
    p.add_argument("source", help="registry image name, oci:DIR[:TAG|@DIGEST] or "
                                  "docker-archive:FILE[:NAME:TAG|:@INDEX]")
    p.add_argument("output", help="image file to write (replaced atomically)")
    add_image_options(p)
    add_limit_options(p)
    add_platform_option(p)
    p.add_argument("--stats", nargs="?", const="text", choices=["text", "json"],
                   help="per-stage bytes, entries, seconds and MB/s: a table on stderr, "
                        "or with --stats=json a JSON document on stdout")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: only when stderr is a terminal)")
    p.add_argument("--digestfile", metavar="FILE",
                   help="write the manifest digest to FILE (as skopeo copy --digestfile)")
    add_registry_options(p)
    p.set_defaults(run=run_unpack)


class Bars(api.Progress):
    """Download bars (registry images) and the layer bar, on stderr."""

    def __init__(self, downloads: DownloadBars, layers: LayerProgress) -> None:
        self._downloads, self._layers = downloads, layers

    def begin(self, image: Image, cached: set[str]) -> None:
        self._downloads.begin(image, cached)

    def advance(self, digest: str, nbytes: int) -> None:
        self._downloads.advance(digest, nbytes)

    def layer(self, index: int, count: int, stats: LayerStats) -> None:
        self._layers.update(index, count, stats)


def run_unpack(args: argparse.Namespace, started: float) -> int:
    from .registryopts import registry_kwargs

    show = show_progress(args)
    with DownloadBars(show) as downloads, LayerProgress(show) as layers:
        result = api.unpack(args.source, args.output, platform=args.platform,
                            limits=limits_from(args), progress=Bars(downloads, layers),
                            **image_kwargs(args), **registry_kwargs(args, args.source))
    if args.digestfile:
        from .pull import write_digestfile

        write_digestfile(args.digestfile, result.manifest_digest)
    if args.stats:
        report(args.stats, result)
    return 0


def _rate(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6 if seconds > 0 else 0.0


def report(kind: str, result: api.UnpackResult) -> None:
    st = result.stats
    layers, info = st.layers, st.info
    stages: list[dict[str, Any]] = [
        {"stage": f"layer {i + 1}", "digest": ls.name, "compression": ls.compression,
         "bytes_in": ls.bytes_in, "bytes_out": ls.bytes_out, "entries": ls.entries,
         "seconds": round(ls.seconds, 3), "mb_per_s": round(_rate(ls.bytes_out, ls.seconds), 1)}
        for i, ls in enumerate(layers)]
    used = (info.blocks - info.free_blocks) * 4096
    metadata_s = st.commit_seconds - info.verity_seconds
    stages.append({"stage": "metadata", "bytes_in": 0, "bytes_out": used,
                   "entries": info.inodes - info.free_inodes,
                   "seconds": round(metadata_s, 3),
                   "mb_per_s": round(_rate(used, metadata_s), 1)})
    if info.verity is not None:
        tree = info.verity.data_blocks * 4096
        stages.append({"stage": "verity", "bytes_in": tree, "bytes_out": 0,
                       "entries": 0, "seconds": round(info.verity_seconds, 3),
                       "mb_per_s": round(_rate(tree, info.verity_seconds), 1)})
    total_s = st.read_seconds + st.commit_seconds
    stages.append({"stage": "total", "bytes_in": sum(ls.bytes_in for ls in layers),
                   "bytes_out": used, "entries": sum(ls.entries for ls in layers),
                   "seconds": round(total_s, 3),
                   "mb_per_s": round(_rate(sum(ls.bytes_out for ls in layers), total_s), 1)})
    if kind == "json":
        # For machines: the only thing on stdout.
        print(json.dumps({"image": str(info.path), "uuid": str(info.uuid),
                          "manifest": result.manifest_digest, "index": result.index_digest,
                          "platform": str(result.platform or ""), "stages": stages,
                          "verity": info.verity.to_json() if info.verity else None}, indent=1))
        return
    print(f"{'stage':<10} {'in MB':>9} {'out MB':>9} {'entries':>9} {'seconds':>8} {'MB/s':>7}",
          file=sys.stderr)
    for s in stages:
        print(f"{s['stage']:<10} {s['bytes_in'] / 1e6:>9.1f} {s['bytes_out'] / 1e6:>9.1f} "
              f"{s['entries']:>9} {s['seconds']:>8.2f} {s['mb_per_s']:>7.1f}", file=sys.stderr)

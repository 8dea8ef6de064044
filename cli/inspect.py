"""`ociext4 inspect REF`: what an image reference resolves to."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ociext4 import api
from ociext4.model import CONFIG_KEYS
from ociext4.store import PullPolicy

from .registryopts import add_platform_option, add_registry_options, registry_kwargs


def add_inspect(sub: argparse._SubParsersAction, help: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inspect", help=help,
        description="Resolve an image reference (a registry name, oci:DIR[:TAG|@DIGEST] or "
                    "docker-archive:FILE[:NAME:TAG|:@INDEX]) for a platform and print its "
                    "manifest digest (and the index's, if it came from one), platform, layers "
                    "(media type, size) and config. Registry manifests and configs are kept "
                    "in the cache; no layer is downloaded. An image without the host's "
                    "platform lists the platforms it has.")
    p.add_argument("reference", help="registry name, oci:DIR[:TAG|@DIGEST] or "
                                     "docker-archive:FILE[:NAME:TAG|:@INDEX]")
    add_platform_option(p)
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    p.add_argument("--raw", action="store_true",
                   help="print the manifest or index the reference names, as the registry "
                        "served it")
    add_registry_options(p)
    p.set_defaults(run=run_inspect, pull=PullPolicy.ALWAYS)  # as skopeo inspect


def describe(result: api.InspectResult) -> dict[str, Any]:
    image = result.image
    if image is None:
        return {"name": result.name, "platforms": [str(p) for p in result.platforms]}
    cfg = image.config.config.to_json()
    return {
        "name": result.name,
        "digest": image.manifest_digest,
        "index": image.index_digest,
        "mediaType": image.media_type,
        "platform": str(image.platform or ""),
        "created": image.config.created,
        "layers": [{"digest": lay.digest, "mediaType": lay.media_type, "size": lay.size,
                    "diff_id": lay.diff_id} for lay in image.layers],
        "size": image.size,
        "config": {"digest": image.config_digest, "size": image.config_size,
                   **{k: cfg[k] for k in CONFIG_KEYS if k in cfg}},
    }


def run_inspect(args: argparse.Namespace, started: float) -> int:
    result = api.inspect(args.reference, platform=args.platform, policy=args.pull,
                         **registry_kwargs(args, args.reference))
    if args.raw:
        if not result.raw:
            print(f"ociext4: error: {args.reference}: --raw is for registry images",
                  file=sys.stderr)
            return 1
        sys.stdout.buffer.write(result.raw)
        return 0
    info = describe(result)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"name:      {info['name']}")
    if "platforms" in info:
        print(f"platforms: {', '.join(info['platforms']) or 'none'} "
              "(none for this host: choose one with --platform)")
        return 0
    print(f"digest:    {info['digest']}")
    if info["index"]:
        print(f"index:     {info['index']}")
    if info["mediaType"]:
        print(f"type:      {info['mediaType']}")
    print(f"platform:  {info['platform'] or '(not given)'}")
    if info["created"]:
        print(f"created:   {info['created']}")
    cfg = info["config"]
    if cfg["digest"]:
        print(f"config:    {cfg['digest']} ({cfg['size']} bytes)")
    for key in CONFIG_KEYS:
        if key in cfg:
            print(f"  {key + ':':<13}{json.dumps(cfg[key])}")
    print(f"layers:    {len(info['layers'])}, {info['size'] / 1e6:.1f} MB")
    for i, lay in enumerate(info["layers"], 1):
        print(f"  {i:>3}  {lay['digest']}  {lay['size'] or 0:>12}  {lay['mediaType']}")
    return 0

"""`ociext4 inspect REF`: what an image reference resolves to."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ociext4.dockerarchive import DockerArchive
from ociext4.ocilayout import CONFIG_KEYS, open_image
from ociext4.reference import RegistryRef, parse_reference

from .registryopts import add_platform_option, add_registry_options, options_from, store_from


def add_inspect(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "inspect", help="show an image's digest, platform, layers and config",
        description="Resolve an image reference (a registry name, oci:DIR[:TAG|@DIGEST] or "
                    "docker-archive:FILE) for a platform and print its manifest digest, "
                    "platform, layers (media type, size) and config. Registry manifests and "
                    "configs are kept in the cache; no layer is downloaded.")
    p.add_argument("reference", help="registry name, oci:DIR[:TAG|@DIGEST] or docker-archive:FILE")
    add_platform_option(p)
    p.add_argument("--json", action="store_true", help="one JSON document on stdout")
    add_registry_options(p)
    p.set_defaults(run=run_inspect)


def describe(args: argparse.Namespace) -> dict[str, Any]:
    ref = parse_reference(args.reference)
    if isinstance(ref, RegistryRef):
        from ociext4.registry import Pull  # only here: see registryopts.options_from

        with Pull(ref, store_from(args), args.platform, options_from(args)) as pull:
            r = pull.resolve()
        image, media = r.image, r.descriptor.get("mediaType", "")
        cfg_digest, cfg_size = r.config_descriptor.get("digest"), r.config_descriptor.get("size")
        name, plat = ref.name, r.platform
    else:
        if ref.transport == "docker-archive":
            archive = DockerArchive(Path(ref.path))
            try:
                image = archive.image()
            finally:
                archive.close()
        else:
            image = open_image(Path(ref.path), ref.tag, ref.digest, args.platform)
        media, cfg_digest, cfg_size, name = "", None, None, args.reference
        plat = "/".join(str(image.config[k]) for k in ("os", "architecture", "variant")
                        if image.config.get(k))
    cfg = image.config.get("config") or {}
    return {
        "name": name,
        "digest": image.manifest_digest,
        "mediaType": media,
        "platform": plat,
        "created": image.config.get("created"),
        "layers": [{"digest": lay.digest, "mediaType": lay.media_type, "size": lay.size,
                    "diff_id": lay.diff_id} for lay in image.layers],
        "size": sum(lay.size for lay in image.layers),
        "config": {"digest": cfg_digest, "size": cfg_size,
                   **{k: cfg[k] for k in CONFIG_KEYS if k in cfg}},
    }


def run_inspect(args: argparse.Namespace, started: float) -> int:
    info = describe(args)
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    print(f"name:      {info['name']}")
    print(f"digest:    {info['digest']}")
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
        print(f"  {i:>3}  {lay['digest']}  {lay['size']:>12}  {lay['mediaType']}")
    return 0

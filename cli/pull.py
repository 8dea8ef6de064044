"""`ociext4 pull REF`: fill the cache with an image from a registry."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from ociext4 import api
from ociext4.errors import SourceError
from ociext4.store import PullPolicy

from .pullprogress import DownloadBars
from .registryopts import (
    add_platform_option,
    add_registry_options,
    options_from,
    show_progress,
)


def add_pull(sub: argparse._SubParsersAction, help: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "pull", help=help,
        description="Fetch an image's manifest, config and layers into the cache (an OCI "
                    "image layout), verifying every blob; what is cached already costs no "
                    "download. Prints oci:CACHE@DIGEST, which unpack, umoci and skopeo read.")
    p.add_argument("reference", help="image name, e.g. alpine, ocaml/opam:debian, "
                                     "host:5000/repo:tag, repo@sha256:…")
    add_platform_option(p)
    add_registry_options(p)
    p.set_defaults(pull=PullPolicy.ALWAYS)
    p.add_argument("--digestfile", metavar="FILE",
                   help="write the manifest digest to FILE (as skopeo copy --digestfile)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: only when stderr is a terminal)")
    p.set_defaults(run=run_pull)


def run_pull(args: argparse.Namespace, started: float) -> int:
    with DownloadBars(show_progress(args)) as bars:
        pulled = api.pull(args.reference, platform=args.platform, cache=args.cache,
                          registry=options_from(args), progress=bars, policy=args.pull)
    image = pulled.image
    if args.digestfile:
        write_digestfile(args.digestfile, pulled.manifest_digest)
    if not args.quiet:
        size = image.size
        if pulled.index_digest:
            print(f"{pulled.name}: index {pulled.index_digest}", file=sys.stderr)
        print(f"{pulled.name}: {pulled.manifest_digest} ({pulled.platform or 'no platform'}, "
              f"{len(image.layers)} layers, {size / 1e6:.1f} MB)", file=sys.stderr)
    print(pulled.oci_reference)
    return 0


def write_digestfile(path: str, digest: str) -> None:
    """The digest alone, no newline, as skopeo writes it."""
    from ociext4 import tempfiles

    tmp = Path(f"{path}.partial")
    tempfiles.track(tmp)
    try:
        tmp.write_text(digest)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise SourceError(f"{path}: cannot write the digest file ({e.strerror})") from None
    finally:
        tempfiles.untrack(tmp)

"""`ociext4 cache ls|prune`: see and free the blob cache."""

from __future__ import annotations

import argparse
import json

from .registryopts import add_cache_option, store_from


def add_cache(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cache", help="list or free the blob cache",
                       description="The cache is an OCI image layout; images in it are "
                                   "named by their full reference (host/repo:tag).")
    csub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    ls = csub.add_parser("ls", help="list cached images and the space they use")
    add_cache_option(ls)
    ls.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ls.set_defaults(run=run_ls)
    pr = csub.add_parser("prune", help="remove blobs no cached image needs",
                         description="Forget the named images (or, with --all, every image), "
                                     "then delete every blob no remaining image needs and "
                                     "every half-written download.")
    add_cache_option(pr)
    pr.add_argument("names", nargs="*", metavar="NAME", help="cached image names to forget")
    pr.add_argument("--all", action="store_true", help="forget every image: empty the cache")
    pr.set_defaults(run=run_prune)


def run_ls(args: argparse.Namespace, started: float) -> int:
    store = store_from(args)
    blobs = store.all_blobs()
    images, used = [], set()
    for e in store.entries():
        needed = store.referenced(e.digest, e.from_index)
        used |= needed
        images.append({"name": e.name, "digest": e.digest, "platform": e.platform,
                       "size": sum(blobs.get(d, 0) for d in needed),
                       "complete": all(d in blobs for d in needed)})
    total = sum(blobs.values())
    unused = sum(size for d, size in blobs.items() if d not in used)
    if args.json:
        print(json.dumps({"cache": str(store.root), "images": images, "blobs": len(blobs),
                          "bytes": total, "unused_bytes": unused}, indent=1))
        return 0
    width = max([len(i["name"]) for i in images] + [4])
    print(f"{'NAME':<{width}}  {'PLATFORM':<14} {'DIGEST':<19} {'SIZE':>10}")
    for i in images:
        flag = "" if i["complete"] else "  (incomplete)"
        print(f"{i['name']:<{width}}  {i['platform']:<14} {i['digest'][:19]:<19} "
              f"{i['size'] / 1e6:>8.1f}MB{flag}")
    print(f"{len(images)} images, {len(blobs)} blobs, {total / 1e6:.1f} MB in {store.root} "
          f"({unused / 1e6:.1f} MB used by no image)")
    return 0


def run_prune(args: argparse.Namespace, started: float) -> int:
    store = store_from(args)
    files, freed = store.prune(args.names, everything=args.all)
    print(f"removed {files} files, {freed / 1e6:.1f} MB freed")
    return 0

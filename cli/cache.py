"""`ociext4 cache ls|prune|verify`: see, free and check the cache."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ociext4.errors import SourceError
from ociext4.reference import parse_registry
from ociext4.store import Store, tree_usage

from .registryopts import add_cache_option, add_registry_options, options_from, store_from


def add_cache(sub: argparse._SubParsersAction, help: str) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("cache", help=help,
                       description="The cache is an OCI image layout (images named by their "
                                   "full reference, host/repo:tag) beside the run cache of "
                                   "unpacked images, kernels and initramfs files.")
    csub = p.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    ls = csub.add_parser("ls", help="list cached images and what each part of the cache uses",
                         description="Sizes are bytes on disk, as du counts them; the total "
                                     "is du's for the cache root.")
    add_cache_option(ls)
    ls.add_argument("--json", action="store_true", help="one JSON document on stdout")
    ls.set_defaults(run=run_ls)
    pr = csub.add_parser("prune", help="remove what is not needed",
                         description="Forget the named images, then delete every blob no "
                                     "remaining image needs and the partial downloads of "
                                     "processes that are gone; or remove whole kinds with "
                                     "--images, --run, --partial, --all.")
    add_cache_option(pr)
    pr.add_argument("names", nargs="*", metavar="NAME",
                    help="cached images to forget, as you would pull them "
                         "(host:5000/app means host:5000/app:latest)")
    pr.add_argument("--images", action="store_true", help="forget every image and its blobs")
    pr.add_argument("--run", action="store_true", dest="run_cache",
                    help="the run cache: unpacked images, kernels, initramfs files")
    pr.add_argument("--partial", action="store_true",
                    help="partial downloads no process is writing, and quarantined blobs")
    pr.add_argument("--all", action="store_true", help="all of it: an empty cache")
    pr.set_defaults(run=run_prune)
    ve = csub.add_parser("verify", help="rehash every blob",
                         description="Rehash every blob; a damaged one is reported (exit 1) "
                                     "and, with --repair, moved to quarantine/ and fetched "
                                     "again for the images that need it.")
    add_registry_options(ve)
    ve.add_argument("--repair", action="store_true",
                    help="move damaged blobs aside and fetch them again")
    ve.set_defaults(run=run_verify)


def usage(store: Store) -> dict[str, Any]:
    """What each part of the cache holds, in bytes on disk; `other` is the
    layout's own files and directories, so the parts add up to the total."""
    from ociext4.cachedir import run_usage

    blobs = store.all_blobs()
    images, used = [], set()
    for e in store.entries():
        needed = store.referenced(e.digest, e.from_index)
        used |= needed
        images.append({"name": e.name, "digest": e.digest, "platform": e.platform,
                       "size": sum(blobs.get(d, 0) for d in needed),
                       "complete": all(d in blobs for d in needed)})
    seen: set[tuple[int, int]] = set()
    on_disk = {d: tree_usage(store.blob_path(d), seen) for d in blobs}
    parts = {"images": sum(n for d, n in on_disk.items() if d in used),
             "unused": sum(n for d, n in on_disk.items() if d not in used),
             "partial": sum(tree_usage(p, seen) for p, _, _ in store.partials()),
             "quarantine": sum(tree_usage(p, seen) for p in store.quarantine_files())}
    run = run_usage(store.root)
    total = tree_usage(store.root)
    parts["other"] = total - sum(parts.values()) - sum(run.values())
    return {"cache": str(store.root), "images": images, "blobs": len(blobs),
            "bytes": sum(blobs.values()),
            "unused_bytes": sum(n for d, n in blobs.items() if d not in used),
            "partial_downloads": [{"path": str(p), "bytes": n, "active": alive}
                                  for p, n, alive in store.partials()
                                  if p.name.endswith(".partial")],
            "disk": {**parts, "run": run, "total": total}}


def run_ls(args: argparse.Namespace, started: float) -> int:
    info = usage(store_from(args))
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    images = info["images"]
    width = max([len(i["name"]) for i in images] + [4])
    print(f"{'NAME':<{width}}  {'PLATFORM':<14} {'DIGEST':<19} {'SIZE':>10}")
    for i in images:
        flag = "" if i["complete"] else "  (incomplete)"
        print(f"{i['name']:<{width}}  {i['platform']:<14} {i['digest'][:19]:<19} "
              f"{i['size'] / 1e6:>8.1f}MB{flag}")
    disk = info["disk"]
    print(f"{len(images)} images, {info['blobs']} blobs in {info['cache']}")
    rows = [("images", disk["images"]), ("unused blobs", disk["unused"]),
            ("partial downloads", disk["partial"]), ("quarantined", disk["quarantine"]),
            *((f"run/{k}", v) for k, v in sorted(disk["run"].items())),
            ("layout files", disk["other"]), ("total", disk["total"])]
    for label, n in rows:
        print(f"  {label:<20} {n / 1e6:>10.1f} MB")
    return 0


def canonical(name: str) -> str:
    """A name as typed (127.0.0.1:5000/app) to the cache's (…/app:latest)."""
    try:
        return parse_registry(name).name
    except SourceError:
        return name


def run_prune(args: argparse.Namespace, started: float) -> int:
    from ociext4.cachedir import prune_run

    store = store_from(args)
    kinds = args.images or args.run_cache or args.partial or args.all
    files, freed = 0, 0
    if args.names or not kinds or args.images or args.partial or args.all:
        files, freed = store.prune(
            [canonical(n) for n in args.names], images=args.images or args.all,
            unused=bool(args.names) or not kinds or args.images or args.all,
            partial=not kinds or args.partial or args.all,
            quarantine=args.partial or args.all)
    if args.run_cache or args.all:
        n, b = prune_run(store.root)
        files, freed = files + n, freed + b
    print(f"removed {files} files, {freed / 1e6:.1f} MB freed")
    return 0


def run_verify(args: argparse.Namespace, started: float) -> int:
    store = store_from(args)
    sizes = store.all_blobs()
    damaged = [d for d in (store.verify(digest) for digest in sorted(sizes)) if d is not None]
    for d in damaged:
        print(f"{d.path}: damaged ({d.why}); moved to {d.moved_to}", file=sys.stderr)
    if not args.repair:
        if damaged:
            print(f"ociext4: error: {len(damaged)} of {len(sizes)} blobs damaged; "
                  "`ociext4 cache verify --repair` fetches them again", file=sys.stderr)
            return 1
        print(f"{len(sizes)} blobs verified")
        return 0
    from ociext4.registry.pull import repair

    opts = options_from(args)
    for e in store.entries():
        if not all(store.has(d) for d in store.referenced(e.digest)):
            repair(store, e, opts)
    print(f"{len(sizes)} blobs verified, {len(damaged)} fetched again")
    return 0

#!/usr/bin/env python3
"""Time `ociext4 unpack REGISTRY/REF out.img` (cold and warm cache) against
`skopeo copy docker://… oci:…` + `umoci unpack` + `mkfs.ext4 -d`.

A docker-registry is started on 127.0.0.1 (storage under the work dir) and
the opamlike OCI layout (fixtures/build_opamlike.py, cached) is pushed into it
with skopeo (not timed). Then, in one run, each timed with time.perf_counter:
  cold     ociext4 unpack HOST/opamlike:latest IMG --cache EMPTY   (pull + unpack, overlapped)
  warm     the same again with the cache filled (only the manifest is fetched)
  local    ociext4 unpack oci:LAYOUT:latest IMG   (the same image from the local layout)
  skopeo   skopeo copy docker://HOST/opamlike:latest oci:DIR:latest
  umoci    umoci unpack --image DIR:latest BUNDLE
  mkfs     mkfs.ext4 -q -F -d BUNDLE/rootfs IMG SIZE
--repeat times (default 1), medians reported, with cold / local (the
issue's goal: at most 1.2x); `--no-peers` leaves out skopeo, umoci and
mkfs.ext4. The ociext4 and mkfs.ext4 images are checked with `e2fsck -fn`.
Everything lives in a temp dir under --workdir that is removed at the end.

    python3 bench/compare_pull.py [--repeat 1] [--layout DIR] [--workdir DIR] [--no-peers] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO / "tests"))
from _common import find_ociext4, fsck  # noqa: E402
from compare_unpack import HEADROOM, INODE_RATIO, build_fixture, run_measured, tree_size  # noqa: E402
from support.registry import start_registry  # noqa: E402

STEPS = ("cold", "warm", "local", "skopeo", "umoci", "mkfs", "skopeo+umoci+mkfs")
LABELS = {"cold": "ociext4 unpack, cold cache", "warm": "ociext4 unpack, warm cache",
          "local": "ociext4 unpack oci:LAYOUT",
          "skopeo": "skopeo copy docker:// oci:", "umoci": "umoci unpack",
          "mkfs": "mkfs.ext4 -d", "skopeo+umoci+mkfs": "skopeo + umoci + mkfs.ext4 -d"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--layout", type=Path, help="push this OCI layout instead of opamlike")
    ap.add_argument("--tag", default="latest")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--no-peers", action="store_true",
                    help="time ociext4 only (no skopeo, umoci, mkfs.ext4)")
    ap.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    ociext4 = find_ociext4()
    if ociext4 is None:
        raise SystemExit("bench: ociext4 is not on PATH (pip install -e . from the repo root)")
    for tool in ("skopeo", "umoci", "mkfs.ext4", "e2fsck"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is not on PATH")
    layout = Path(build_fixture(args.layout)["path"])
    times: dict[str, list[float]] = {s: [] for s in STEPS}
    checks: dict[str, str] = {}
    work = Path(tempfile.mkdtemp(prefix="ociext4-pull-bench-", dir=args.workdir))
    reg = None
    try:
        reg = start_registry(work / "registry")
        t0 = time.perf_counter()
        ref = reg.push(layout, "opamlike", args.tag, src_tag=args.tag)
        log(f"bench: pushed {layout} to {ref} in {time.perf_counter() - t0:.1f} s")
        for run in range(args.repeat):
            tag = f"[{run + 1}/{args.repeat}]"
            cache, img = work / "cache", work / "ociext4.img"
            shutil.rmtree(cache, ignore_errors=True)
            os.sync()
            dt, _ = run_measured([ociext4, "unpack", ref, str(img), "--cache", str(cache),
                                  "--quiet"])
            times["cold"].append(dt)
            img.unlink()
            os.sync()
            dt2, _ = run_measured([ociext4, "unpack", ref, str(img), "--cache", str(cache),
                                   "--quiet"])
            times["warm"].append(dt2)
            if run == 0:
                checks["ociext4"] = fsck(img)[0]
            img.unlink()
            os.sync()
            dl, _ = run_measured([ociext4, "unpack", f"oci:{layout}:{args.tag}", str(img),
                                  "--quiet"])
            times["local"].append(dl)
            img.unlink()
            log(f"{tag} ociext4 unpack: cold {dt:.2f} s, warm {dt2:.2f} s, local {dl:.2f} s")
            if args.no_peers:
                continue

            oci, bundle, img_m = work / "oci", work / "bundle", work / "mkfs.img"
            shutil.rmtree(oci, ignore_errors=True)
            shutil.rmtree(bundle, ignore_errors=True)
            os.sync()
            ds, _ = run_measured(["skopeo", "copy", "-q", "--src-tls-verify=false",
                                  f"docker://{ref}", f"oci:{oci}:latest"])
            du, _ = run_measured(["umoci", "unpack", "--image", f"{oci}:latest", str(bundle)])
            entries, size = tree_size(bundle / "rootfs")
            # Sized as compare_unpack.py sizes it; mkfs.ext4 fsyncs the image itself.
            size = max(int(size * HEADROOM), int(entries * INODE_RATIO * 1.1))
            size_k = (size // 1024 + 3) // 4 * 4
            os.sync()
            dm, _ = run_measured(["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d",
                                  str(bundle / "rootfs"), str(img_m), f"{size_k}k"])
            times["skopeo"].append(ds)
            times["umoci"].append(du)
            times["mkfs"].append(dm)
            times["skopeo+umoci+mkfs"].append(ds + du + dm)
            log(f"{tag} skopeo copy {ds:.2f} s, umoci unpack {du:.2f} s, mkfs.ext4 -d {dm:.2f} s")
            if run == 0:
                checks["mkfs"] = fsck(img_m)[0]
            img_m.unlink()
            shutil.rmtree(bundle)
    finally:
        if reg is not None:
            reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {s: statistics.median(v) for s, v in times.items() if v}
    report: dict[str, Any] = {
        "layout": str(layout), "repeat": args.repeat, "median_seconds": med, "runs": times,
        "e2fsck": checks, "cpus": os.cpu_count(),
        "cold_over_local": med["cold"] / med["local"],
    }
    if not args.no_peers:
        report["speedup_cold"] = med["skopeo+umoci+mkfs"] / med["cold"]
        report["speedup_warm"] = med["skopeo+umoci+mkfs"] / med["warm"]
    failed = int(any(v != "pass" for v in checks.values()))
    if args.json:
        print(json.dumps(report, indent=1))
        return failed
    for s in STEPS:
        if s in med:
            print(f"{LABELS[s]:<32} {med[s]:>8.2f} s")
    print(f"ociext4 cold / local: {report['cold_over_local']:.2f}x (goal <= 1.2x)")
    if not args.no_peers:
        print(f"skopeo+umoci+mkfs / ociext4 cold: {report['speedup_cold']:.1f}x, "
              f"warm: {report['speedup_warm']:.1f}x")
    print(f"e2fsck: {checks}")
    return failed


if __name__ == "__main__":
    sys.exit(main())

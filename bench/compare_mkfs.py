#!/usr/bin/env python3
"""Time `ociext4 mkfs` against `mkfs.ext4 -d` on the big Debian tree.

Columns (each run --repeat times, interleaved, median reported):
  mke2fs  mkfs.ext4 -q -F -d DIR IMG SIZE   (SIZE = du of the tree + ~30%)
  dir     ociext4 mkfs DIR IMG
  tar     ociext4 mkfs TREE.tar IMG          (plain tar of the same tree)
  gz      ociext4 mkfs TREE.tar.gz IMG       (only with --gz)
Every timing ends with an fsync of the image (as mke2fs does itself) unless
--no-fsync. Each image is checked once with `e2fsck -fn`. Images live in a temp dir that
is removed at the end.

    python3 bench/compare_mkfs.py [--repeat 3] [--gz] [--cold] [--only mke2fs] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fixtures"))
from _common import find_ociext4, fsck, fsync_file  # noqa: E402  (bench/ is sys.path[0])
from _debtree import tar_tree  # noqa: E402

COLUMNS = ("mke2fs", "dir", "tar", "gz")
LABELS = {
    "mke2fs": "mkfs.ext4 -d DIR",
    "dir": "ociext4 mkfs DIR",
    "tar": "ociext4 mkfs TAR",
    "gz": "ociext4 mkfs TAR.gz",
}
HEADROOM = 1.30
# mke2fs' default for filesystems of this size: one inode per 16 KiB.
INODE_RATIO = 16384


@dataclass
class Result:
    column: str
    tool: str
    cmd: list[str]
    times: list[float] = field(default_factory=list)
    median: float | None = None
    ratio: float | None = None
    fsck: str | None = None
    fsck_output: str | None = None
    image_bytes: int | None = None
    allocated_bytes: int | None = None


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_fixture(args: argparse.Namespace, need_tar: bool, need_gz: bool) -> dict[str, Any]:
    if args.tree is not None:
        # A caller's own tree: tars are made in the temp dir, not cached.
        return {"path": str(args.tree.resolve())}
    cmd = [
        sys.executable,
        str(REPO / "fixtures" / "build_bigdir.py"),
        "--json",
        "--min-entries",
        str(args.min_entries),
    ]
    if need_tar:
        cmd.append("--tar")
    if need_gz:
        cmd.append("--tar-gz")
    log("bench: building/reusing the big tree (fixtures/build_bigdir.py)")
    out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def du_bytes(path: Path) -> int:
    out = subprocess.run(
        ["du", "-s", "-B1", str(path)], check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return int(out.split()[0])


def count_entries(path: Path) -> int:
    n = 0
    for _d, dirs, files in os.walk(path):
        n += len(dirs) + len(files)
    return n


def warm(paths: list[Path]) -> None:
    """Read the inputs once so the first timed tool doesn't pay for the disk."""
    buf = bytearray(1 << 20)
    for p in paths:
        files = [p] if p.is_file() else [Path(d) / f for d, _, fs in os.walk(p) for f in fs]
        for f in files:
            if f.is_symlink():
                continue
            try:
                with open(f, "rb", buffering=0) as fh:
                    while fh.readinto(buf):
                        pass
            except OSError:
                pass


def drop_caches() -> None:
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as e:
        raise SystemExit(f"bench: --cold needs to write /proc/sys/vm/drop_caches: {e}") from e


def parse_only(value: str) -> list[str]:
    cols = [c.strip() for c in value.split(",") if c.strip()]
    bad = [c for c in cols if c not in COLUMNS]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown column(s) {bad}; choose from {','.join(COLUMNS)}"
        )
    return cols


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Time ociext4 mkfs against mkfs.ext4 -d on the big Debian tree."
    )
    ap.add_argument(
        "--repeat", type=int, default=3, help="timed runs per tool; the median is reported"
    )
    ap.add_argument("--gz", action="store_true", help="also time ociext4 mkfs on the gzip'd tar")
    ap.add_argument(
        "--only",
        type=parse_only,
        default=None,
        metavar="COLS",
        help=f"comma-separated subset of {','.join(COLUMNS)} "
        "(e.g. --only mke2fs before ociext4 is installed)",
    )
    ap.add_argument(
        "--cold", action="store_true", help="sync and drop the page cache before every run (root)"
    )
    ap.add_argument(
        "--no-fsync",
        action="store_true",
        help="don't fsync each image inside its timing (mke2fs fsyncs by itself anyway)",
    )
    ap.add_argument(
        "--same-size", action="store_true", help="pass mkfs.ext4's SIZE to ociext4 as --size too"
    )
    ap.add_argument(
        "--tree", type=Path, help="benchmark this directory instead of the big Debian tree"
    )
    ap.add_argument(
        "--min-entries", type=int, default=100_000, help="passed to fixtures/build_bigdir.py"
    )
    ap.add_argument(
        "--workdir", type=Path, help="parent of the temp dir for images (default: $TMPDIR)"
    )
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")

    explicit = args.only is not None
    cols = args.only if explicit else [c for c in COLUMNS if c != "gz" or args.gz]
    ociext4 = find_ociext4()
    if ociext4 is None and any(c != "mke2fs" for c in cols):
        if explicit:
            raise SystemExit("bench: ociext4 is not on PATH (pip install -e . from the repo root)")
        log("bench: WARNING: ociext4 is not on PATH; timing mkfs.ext4 -d only")
        cols = ["mke2fs"]

    info = build_fixture(args, need_tar="tar" in cols, need_gz="gz" in cols)
    tree = Path(info["path"])
    entries = int(info["entries"]) if "entries" in info else count_entries(tree)
    used = du_bytes(tree)
    # Enough blocks for the data plus ~30%, and enough inodes at mke2fs'
    # default ratio: a tree of tiny files runs out of inodes before blocks.
    size = max(int(used * HEADROOM), int(entries * INODE_RATIO * 1.1))
    size_k = (size // 1024 + 3) // 4 * 4

    work = Path(tempfile.mkdtemp(prefix="ociext4-bench-", dir=args.workdir))
    try:
        tar = Path(info["tar"]) if "tar" in info else work / "tree.tar"
        tgz = Path(info["tar_gz"]) if "tar_gz" in info else work / "tree.tar.gz"
        if "tar" in cols and not tar.exists():
            tar_tree(tree, tar, gzip=False)
        if "gz" in cols and not tgz.exists():
            tar_tree(tree, tgz, gzip=True)

        img = {c: work / f"{c}.img" for c in cols}
        extra = ["--size", str(size_k * 1024)] if args.same_size else []
        commands = {
            "mke2fs": [
                "mkfs.ext4",
                "-q",
                "-F",
                "-E",
                "root_owner=0:0",
                "-d",
                str(tree),
                str(img.get("mke2fs")),
                f"{size_k}k",
            ],
            "dir": [str(ociext4), "mkfs", str(tree), str(img.get("dir")), *extra],
            "tar": [str(ociext4), "mkfs", str(tar), str(img.get("tar")), *extra],
            "gz": [str(ociext4), "mkfs", str(tgz), str(img.get("gz")), *extra],
        }
        results = {c: Result(column=c, tool=LABELS[c], cmd=commands[c]) for c in cols}

        log(
            f"bench: tree {tree}: {entries} entries, {used / 2**30:.2f} GiB on disk; "
            f"mkfs.ext4 size {size_k}k"
        )
        if not args.cold:
            warm([tree] + [p for c, p in (("tar", tar), ("gz", tgz)) if c in cols])
        # Interleave the tools so drift (thermal, other load) hits all alike.
        for rep in range(args.repeat):
            for c in cols:
                r = results[c]
                img[c].unlink(missing_ok=True)
                # Write-back of the previous image must not land in this timing.
                os.sync()
                if args.cold:
                    drop_caches()
                t0 = time.perf_counter()
                p = subprocess.run(
                    r.cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
                )
                if p.returncode != 0:
                    raise SystemExit(
                        f"bench: {' '.join(r.cmd)} failed (rc {p.returncode}):\n{p.stdout}"
                    )
                if not args.no_fsync:
                    # mke2fs fsyncs its output before exiting; charge every
                    # tool for a durable image so none wins by leaving dirty
                    # pages behind.
                    fsync_file(img[c])
                dt = time.perf_counter() - t0
                r.times.append(dt)
                log(f"bench: run {rep + 1}/{args.repeat} {r.tool}: {dt:.2f} s")
                if rep == 0:
                    st = img[c].stat()
                    r.image_bytes, r.allocated_bytes = st.st_size, st.st_blocks * 512
                    r.fsck, out = fsck(img[c])
                    if r.fsck != "pass":
                        r.fsck_output = out[-4000:]
        base = results["mke2fs"] if "mke2fs" in results else None
        for r in results.values():
            r.median = statistics.median(r.times)
            if base is not None:
                r.ratio = r.median / statistics.median(base.times)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    report = {
        "tree": str(tree),
        "entries": entries,
        "du_bytes": used,
        "mke2fs_size_bytes": size_k * 1024,
        "repeat": args.repeat,
        "cold": args.cold,
        "fsync": not args.no_fsync,
        "mke2fs_version": subprocess.run(
            ["mke2fs", "-V"], capture_output=True, text=True
        ).stderr.splitlines()[0],
        "results": [asdict(r) for r in results.values()],
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0 if all(r.fsck == "pass" for r in results.values()) else 1

    print(
        f"tree: {tree} ({entries} entries, {used / 2**30:.2f} GiB du), {args.repeat} runs, "
        f"{'cold' if args.cold else 'warm'} cache, {report['mke2fs_version']}"
    )
    hdr = (
        f"{'tool':<22} {'median s':>9} {'min s':>8} {'vs mkfs.ext4 -d':>16} "
        f"{'image MiB':>10}  e2fsck -fn"
    )
    print(hdr)
    print("-" * len(hdr))
    for r in results.values():
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        alloc = f"{(r.allocated_bytes or 0) / 2**20:.0f}"
        print(
            f"{r.tool:<22} {r.median:>9.2f} {min(r.times):>8.2f} {ratio:>16} {alloc:>10}  {r.fsck}"
        )
    for r in results.values():
        if r.fsck_output:
            print(f"\n{r.tool}: e2fsck -fn output (tail):\n{r.fsck_output}")
    return 0 if all(r.fsck == "pass" for r in results.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

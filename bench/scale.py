#!/usr/bin/env python3
"""Time and peak memory per entry of `ociext4 unpack` from 10k to 1M (or 5M) entries.

The images are fixtures/build_scale.py's: one gzip layer of N files of 32
bytes in directories of 1000, then a layer whiting out every tenth. For each
N this runs `ociext4 unpack oci:LAYOUT:latest IMG --no-fsync` as a child and
reports its wall time and peak RSS (ru_maxrss from wait4), each per entry
(N), its CPU seconds and, of them, the kernel's (system) seconds (on disk
the page cache's work, not ours, shows there), and the marginal bytes per
entry between one size and the next (what an entry costs once start-up is
paid for). Beside it, up to --mkfs-max entries,
`mkfs.ext4 -d` of the same flattened tree (written to disk first, untimed).
Every image is checked with `e2fsck -fn` unless --no-fsck.

    python3 bench/scale.py                       # 10k, 100k, 1M
    python3 bench/scale.py --huge                # and 5M (about 20 GB of image)
    python3 bench/scale.py --sizes 100000 --per-dir 0 --json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fixtures"))
import build_scale  # noqa: E402
from _common import fsck  # noqa: E402  (bench/ is sys.path[0])

OCIEXT4 = [sys.executable, "-m", "ociext4_cli.main"]
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
HUGE = 5_000_000


@dataclass
class Row:
    tool: str
    entries: int
    seconds: float
    cpu_seconds: float          # user and system
    sys_seconds: float          # of which system (the kernel's)
    peak_rss: int               # bytes
    fsck: str = "not run"
    marginal_bytes: float | None = None

    @property
    def us_per_entry(self) -> float:
        return self.seconds / self.entries * 1e6

    @property
    def bytes_per_entry(self) -> float:
        return self.peak_rss / self.entries


def run_measured(cmd: list[str]) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, system seconds and peak RSS in bytes of one child."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"scale: {' '.join(cmd)} exited {proc.returncode}:\n{err}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_stime, usage.ru_maxrss * 1024


def check(img: Path, enabled: bool) -> str:
    if not enabled:
        return "not run"
    result, output = fsck(img)
    if result != "pass":
        print(output[-2000:], file=sys.stderr)
    return result


def unpack(n: int, per_dir: int, work: Path, do_fsck: bool) -> Row:
    stamp = build_scale.build(n, per_dir)
    img = work / f"scale-{n}.img"
    seconds, cpu, sys_s, rss = run_measured(
        [*OCIEXT4, "unpack", f"oci:{stamp['path']}:latest", str(img), "--no-fsync",
         # The default limit (2M tar members) is below the 5M run's layers.
         "--max-entries", str(n * 12 // 10 + 10_000)])
    row = Row("ociext4 unpack", n, seconds, cpu, sys_s, rss, check(img, do_fsck))
    img.unlink()
    return row


def mkfs(n: int, per_dir: int, work: Path, do_fsck: bool) -> Row:
    tree = build_scale.write_flattened_tree(n, per_dir, work / f"tree-{n}")
    # One block a file and a directory, 30% headroom, the inode tables, 64 MiB.
    files = n - -(-n // 10)
    dirs = -(-n // per_dir) if per_dir else 1
    inodes = files * 12 // 10 + dirs + 100
    size = (files + dirs) * 4096 * 13 // 10 + inodes * 256 + (64 << 20)
    img = work / f"mkfs-{n}.img"
    subprocess.run(["sync"], check=True)
    seconds, cpu, sys_s, rss = run_measured(
        ["mkfs.ext4", "-q", "-F", "-N", str(inodes), "-E", "root_owner=0:0", "-d", str(tree),
         str(img), f"{size // 1024}k"])
    row = Row("mkfs.ext4 -d", n, seconds, cpu, sys_s, rss, check(img, do_fsck))
    img.unlink()
    shutil.rmtree(tree)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")],
                    default=list(DEFAULT_SIZES), help="comma-separated N (default 10k,100k,1M)")
    ap.add_argument("--huge", action="store_true", help=f"also {HUGE:,} entries")
    ap.add_argument("--per-dir", type=int, default=1000,
                    help="files a directory (default 1000; 0: one directory)")
    ap.add_argument("--mkfs-max", type=int, default=100_000,
                    help="run mkfs.ext4 -d up to this N (default 100k; 0: never)")
    ap.add_argument("--workdir", type=Path, help="parent of the temp dir for images")
    ap.add_argument("--no-fsck", action="store_true", help="skip e2fsck -fn of the images")
    ap.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = ap.parse_args(argv)
    sizes = sorted(set(args.sizes + ([HUGE] if args.huge else [])))

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="ociext4-scale.", dir=args.workdir) as tmp:
        work = Path(tmp)
        for n in sizes:
            print(f"scale: building or finding the {n:,}-entry layout", file=sys.stderr)
            build_scale.build(n, args.per_dir)
            print(f"scale: ociext4 unpack, {n:,} entries", file=sys.stderr)
            rows.append(unpack(n, args.per_dir, work, not args.no_fsck))
            if n <= args.mkfs_max:
                print(f"scale: mkfs.ext4 -d, {n:,} entries", file=sys.stderr)
                rows.append(mkfs(n, args.per_dir, work, not args.no_fsck))
    for tool in {r.tool for r in rows}:
        mine = [r for r in rows if r.tool == tool]
        for prev, cur in zip(mine, mine[1:], strict=False):
            cur.marginal_bytes = (cur.peak_rss - prev.peak_rss) / (cur.entries - prev.entries)

    if args.json:
        print(json.dumps([asdict(r) | {"us_per_entry": r.us_per_entry,
                                        "bytes_per_entry": r.bytes_per_entry} for r in rows],
                         indent=1))
    else:
        print(f"{'tool':<16}{'entries':>11}{'seconds':>9}{'cpu s':>8}{'sys s':>8}{'us/entry':>10}"
              f"{'peak MB':>9}{'B/entry':>9}{'marginal':>10}  e2fsck")
        for r in rows:
            marginal = f"{r.marginal_bytes:.0f}" if r.marginal_bytes is not None else "-"
            print(f"{r.tool:<16}{r.entries:>11,}{r.seconds:>9.2f}{r.cpu_seconds:>8.2f}"
                  f"{r.sys_seconds:>8.2f}"
                  f"{r.us_per_entry:>10.2f}{r.peak_rss / 1e6:>9.0f}{r.bytes_per_entry:>9.0f}"
                  f"{marginal:>10}  {r.fsck}")
    return 0 if all(r.fsck in ("pass", "not run") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())

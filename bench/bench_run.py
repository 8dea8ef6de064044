#!/usr/bin/env python3
"""Time from starting `ociext4 run` to its exit, for a cached image, under
TCG (and under KVM where a probe boot proves it works).

The image is the fixtures' busybox layout (fixtures/runimages.py), run as
`oci:LAYOUT` so the lookup through the image cache is inside the timing; one
untimed run first fills the caches (unpacked image, initramfs, KVM verdict).
Each timed run is a fresh `ociext4 run ... -- true` subprocess: interpreter
start-up, the cache lookup, writing the run's initrd, QEMU, the kernel's
boot, the init, power-off.

    python3 bench/bench_run.py [--runs N] [--accel tcg|kvm|auto] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fixtures"))

from runimages import busybox_layout  # noqa: E402


def timed(argv: list[str], cpu: list[float] | None = None) -> float:
    """Wall seconds of one run; its CPU seconds (ociext4 and QEMU, user and
    system) go to `cpu`: on a machine shared with other work the wall time
    swings with the load, the CPU time much less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    p = subprocess.run(argv, capture_output=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} exited {p.returncode}: {p.stderr.decode()}")
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--accel", default="tcg", choices=["tcg", "kvm", "auto"])
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    ociext4 = shutil.which("ociext4")
    if ociext4 is None:
        raise SystemExit("bench: ociext4 is not on PATH (pip install -e .)")
    with tempfile.TemporaryDirectory(prefix="ociext4-bench-run-") as tmp:
        os.environ["OCIEXT4_CACHE"] = str(Path(tmp, "cache"))
        layout = busybox_layout(Path(tmp, "busybox"))
        run = [ociext4, "run", "--accel", args.accel, f"oci:{layout}", "--", "true"]
        first = timed(run)   # unpacks into the cache, builds the initramfs
        startup = statistics.median(timed([ociext4, "--version"]) for _ in range(5))
        cpu: list[float] = []
        times = [timed(run, cpu) for _ in range(args.runs)]
        load = os.getloadavg()[0]
    result = {"accel": args.accel, "runs": args.runs, "first_run_s": round(first, 3),
              "median_s": round(statistics.median(times), 3),
              "min_s": round(min(times), 3), "max_s": round(max(times), 3),
              "cpu_median_s": round(statistics.median(cpu), 3),
              "cli_startup_median_s": round(startup, 3), "cpus": os.cpu_count(),
              "load_average_1min": round(load, 2)}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"ociext4 run --accel {args.accel} (cached busybox image, `true`), "
              f"{args.runs} runs: median {result['median_s']:.2f} s, "
              f"min {result['min_s']:.2f} s, max {result['max_s']:.2f} s; "
              f"CPU (ociext4 + QEMU) median {result['cpu_median_s']:.2f} s; "
              f"first run (unpack + initramfs) {first:.2f} s; "
              f"`ociext4 --version` alone {startup:.2f} s; load average {load:.1f} "
              f"on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

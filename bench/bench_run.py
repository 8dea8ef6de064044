#!/usr/bin/env python3
"""Time from starting `ociext4 run` to its exit, for a cached image, under
TCG (and under KVM where a probe boot proves it works), and the rate of
bulk data through the guest's stdout and through stdin (`-i`).

The image is the fixtures' busybox layout (fixtures/runimages.py), run as
`oci:LAYOUT` so the lookup through the image cache is inside the timing; one
untimed run first fills the caches (unpacked image, initramfs, KVM verdict).
Each timed run is a fresh `ociext4 run ... -- true` subprocess: interpreter
start-up, the cache lookup, writing the run's initrd, QEMU, the kernel's
boot, the init, power-off.

Throughput: runs that move --mb MiB out (`dd if=/dev/zero` in the guest to
the host's /dev/null) and in (`-i` from the host's /dev/zero to `dd
of=/dev/null` in the guest); a rate is the data over the run's time less
the median boot-to-exit time of `true`.

    python3 bench/bench_run.py [--runs N] [--bulk-runs N] [--mb N] [--accel tcg|kvm|auto] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fixtures"))
sys.path.insert(0, str(REPO / "bench"))

from _common import find_ociext4  # noqa: E402
from runimages import busybox_layout  # noqa: E402


def timed(argv: list[str], cpu: list[float] | None = None, stdin: int | None = None) -> float:
    """Wall seconds of one run; its CPU seconds (ociext4 and QEMU, user and
    system) go to `cpu`: on a machine shared with other work the wall time
    swings with the load, the CPU time much less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    p = subprocess.run(argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"bench: {' '.join(argv)} exited {p.returncode}: {p.stderr.decode()}")
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return elapsed


def _rate(mib: int, times: list[float], boot: float) -> float | None:
    """MiB/s once the boot is taken off; None when no such run was made."""
    if not times:
        return None
    return round(mib / max(statistics.median(times) - boot, 1e-3), 1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--accel", default="tcg", choices=["tcg", "kvm", "auto"])
    ap.add_argument("--bulk-runs", type=int, default=3, help="0 skips the throughput runs")
    ap.add_argument("--mb", type=int, default=400, help="MiB per throughput run")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.runs < 1 or args.bulk_runs < 0 or args.mb < 1:
        ap.error("--runs and --mb must be at least 1, --bulk-runs at least 0")
    ociext4 = find_ociext4()
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
        boot = statistics.median(times)
        count = args.mb * 4   # blocks of 256 KiB
        out_run = [ociext4, "run", "--accel", args.accel, "--network", "none", f"oci:{layout}",
                   "--", "dd", "if=/dev/zero", "bs=256k", f"count={count}"]
        out_times = [timed(out_run) for _ in range(args.bulk_runs)]
        in_run = [ociext4, "run", "-i", "--accel", args.accel, "--network", "none",
                  f"oci:{layout}", "--", "dd", "of=/dev/null", "bs=256k"]
        in_times = []
        for _ in range(args.bulk_runs):
            feeder = subprocess.Popen(["head", "-c", str(args.mb << 20), "/dev/zero"],
                                      stdout=subprocess.PIPE)
            assert feeder.stdout is not None
            in_times.append(timed(in_run, stdin=feeder.stdout.fileno()))
            feeder.stdout.close()
            feeder.wait()
        load = os.getloadavg()[0]
    result = {"accel": args.accel, "runs": args.runs, "first_run_s": round(first, 3),
              "median_s": round(statistics.median(times), 3),
              "min_s": round(min(times), 3), "max_s": round(max(times), 3),
              "cpu_median_s": round(statistics.median(cpu), 3),
              "cli_startup_median_s": round(startup, 3), "cpus": os.cpu_count(),
              "bulk_mib": args.mb,
              "stdout_mib_s": _rate(args.mb, out_times, boot),
              "stdin_mib_s": _rate(args.mb, in_times, boot),
              "load_average_1min": round(load, 2)}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(f"ociext4 run --accel {args.accel} (cached busybox image, `true`), "
              f"{args.runs} runs: median {result['median_s']:.2f} s, "
              f"min {result['min_s']:.2f} s, max {result['max_s']:.2f} s; "
              f"CPU (ociext4 + QEMU) median {result['cpu_median_s']:.2f} s; "
              f"first run (unpack + initramfs) {first:.2f} s; "
              f"`ociext4 --version` alone {startup:.2f} s; stdout "
              f"{result['stdout_mib_s']} MiB/s, stdin {result['stdin_mib_s']} MiB/s "
              f"({args.mb} MiB each); load average {load:.1f} on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

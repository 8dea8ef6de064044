#!/usr/bin/env python3
"""Time `ociext4 unpack` against the decompression floor and `umoci unpack` + `mkfs.ext4 -d`.

On the opamlike OCI layout (fixtures/build_opamlike.py: 7 layers, >100k
entries, >500 MB of gzip), each run does, in this order and timed with
time.perf_counter:
  floor   ISA-L (isal_zlib, one thread) inflating every layer blob to nothing
  write   writing as many bytes as the layers inflate to into a file in the
          work dir (8 MiB writes, fsync unless --no-fsync): what the disk allows
  ociext4 ociext4 unpack oci:DIR:TAG IMG            (peak RSS from wait4)
  verity  ociext4 unpack --verity oci:DIR:TAG IMG   (with --verity; before or after
          the plain unpack, alternately, so drift hits both alike)
  umoci   umoci unpack --image DIR:TAG BUNDLE
  mkfs    mkfs.ext4 -q -F -d BUNDLE/rootfs IMG SIZE  (umoci+mkfs = the sum)
--repeat times (default 3), the median is reported; both images are checked
once with `e2fsck -fn` (the --verity image also with `veritysetup verify`).
Images and bundles live in a temp dir under --workdir that is removed at the
end. --no-umoci leaves out umoci and mkfs.ext4 (a minute a run).

    python3 bench/compare_unpack.py [--repeat 3] [--layout DIR] [--no-fsync] [--json]
                                    [--verity] [--no-umoci]
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

from isal import isal_zlib

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
from _common import find_ociext4, fsck  # noqa: E402

STEPS = ("floor", "write", "ociext4", "verity", "umoci", "mkfs", "umoci+mkfs")
LABELS = {
    "floor": "ISA-L inflate (floor)",
    "write": "write as many bytes",
    "ociext4": "ociext4 unpack",
    "verity": "ociext4 unpack --verity",
    "umoci": "umoci unpack",
    "mkfs": "mkfs.ext4 -d",
    "umoci+mkfs": "umoci + mkfs.ext4 -d",
}
# mkfs.ext4's image: the unpacked tree plus this much, and enough inodes at
# mke2fs' default of one per 16 KiB (as in compare_mkfs.py).
HEADROOM = 1.30
INODE_RATIO = 16384
# The targets of the issues (15: speed and memory at scale, 16: verity), shown
# beside what was measured.  An earlier issue's 15x against umoci + mkfs.ext4
# -d stays as the floor of what a change may give away.
TARGET_FLOOR_RATIO = 1.3
TARGET_SPEEDUP = 15.0
TARGET_RSS_MB = 200            # on the ~117k-entry opamlike image
TARGET_VERITY_RATIO = 1.10     # what --verity may add to an unpack


@dataclass
class Step:
    name: str
    label: str
    times: list[float] = field(default_factory=list)
    median: float | None = None
    peak_rss_bytes: list[int] = field(default_factory=list)
    # CPU seconds of the tool's process (user, system), from wait4.
    cpu_user: list[float] = field(default_factory=list)
    cpu_sys: list[float] = field(default_factory=list)

    def record(self, seconds: float, usage: os.struct_rusage | None = None) -> None:
        self.times.append(seconds)
        if usage is not None:
            self.peak_rss_bytes.append(usage.ru_maxrss * 1024)  # ru_maxrss is KiB on Linux
            self.cpu_user.append(usage.ru_utime)
            self.cpu_sys.append(usage.ru_stime)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def build_fixture(layout: Path | None) -> dict[str, Any]:
    if layout is not None:
        # A caller's own layout: find its layer blobs through the index.
        return {"path": str(layout.resolve()), "blobs": layer_blobs(layout.resolve())}
    log("bench: building/reusing the opamlike layout (fixtures/build_opamlike.py)")
    out = subprocess.run(
        [sys.executable, str(REPO / "fixtures" / "build_opamlike.py"), "--json"],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    info: dict[str, Any] = json.loads(out)
    return info


def layer_blobs(layout: Path) -> list[str]:
    """Layer blob paths of the first manifest in index.json (for --layout)."""
    def blob(digest: str) -> Path:
        algo, _, hexdigest = digest.partition(":")
        return layout / "blobs" / algo / hexdigest

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads(blob(index["manifests"][0]["digest"]).read_text())
    if "layers" not in manifest:  # a nested index: take its first manifest
        manifest = json.loads(blob(manifest["manifests"][0]["digest"]).read_text())
    return [str(blob(la["digest"])) for la in manifest["layers"]]


def inflate_to_nothing(blobs: list[Path]) -> int:
    """Inflate every blob with ISA-L on this thread; returns the bytes produced."""
    total = 0
    buf = bytearray(1 << 20)
    for path in blobs:
        # wbits=31: gzip framing. isal_zlib directly, not igzip's reader, so
        # the floor is the inflate alone, not Python's file layers.
        d = isal_zlib.decompressobj(wbits=31)
        with open(path, "rb", buffering=0) as fh:
            while n := fh.readinto(buf):
                total += len(d.decompress(memoryview(buf)[:n]))
                # A gzip blob may hold several members (pigz -i, concatenation).
                while d.eof and d.unused_data:
                    rest = d.unused_data
                    d = isal_zlib.decompressobj(wbits=31)
                    total += len(d.decompress(rest))
        total += len(d.flush())
    return total


def write_bytes(path: Path, total: int, fsync: bool) -> None:
    """The disk's share of the floor: `total` bytes written, not computed."""
    chunk = os.urandom(8 << 20)  # not zeros: no file system may skip them
    with open(path, "wb", buffering=0) as fh:
        left = total
        while left > 0:
            left -= fh.write(memoryview(chunk)[:min(left, len(chunk))])
        if fsync:
            os.fsync(fh.fileno())
    path.unlink()


def run_measured(cmd: list[str]) -> tuple[float, os.struct_rusage]:
    """Run cmd; returns (seconds, its rusage: peak RSS, CPU times)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert p.stdout is not None
    output = p.stdout.read()
    # wait4, not Popen.wait: it gives this child's own rusage, so the peak RSS
    # is the tool's and not the maximum over every child this script ran.
    _pid, status, usage = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    if p.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(cmd)} failed (rc {p.returncode}):\n"
            + output.decode(errors="replace")[-4000:]
        )
    return dt, usage


def cpu_median(step: Step) -> float:
    """Median user + system CPU seconds of a step's runs."""
    return statistics.median(u + s for u, s in zip(step.cpu_user, step.cpu_sys, strict=True))


def verity_check(img: Path) -> str:
    """`veritysetup verify` with every parameter from the sidecar."""
    if shutil.which("veritysetup") is None:
        return "skipped (no veritysetup)"
    v = json.loads(Path(f"{img}.json").read_text())["verity"]
    proc = subprocess.run(
        ["veritysetup", "verify", "--no-superblock",
         "--hash-offset", str(v["hash_offset"] + v["hash_block_size"]),
         "--data-blocks", str(v["data_blocks"]), "--salt", v["salt"],
         "--hash", v["hash_algorithm"], str(img), str(img), v["root_hash"]],
        capture_output=True, text=True)
    return "pass" if proc.returncode == 0 else f"fail: {proc.stderr.strip()[-500:]}"


def tree_size(root: Path) -> tuple[int, int]:
    """(entries, bytes allocated) of an unpacked tree, for mkfs.ext4's size."""
    entries = 0
    blocks = 0
    seen: set[tuple[int, int]] = set()
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            entries += 1
            st = os.lstat(os.path.join(d, name))
            if st.st_nlink > 1 and not os.path.isdir(os.path.join(d, name)):
                if (st.st_dev, st.st_ino) in seen:
                    continue
                seen.add((st.st_dev, st.st_ino))
            blocks += st.st_blocks
    return entries, blocks * 512


def warm(blobs: list[Path]) -> None:
    """Read the blobs once so no step pays for the disk."""
    buf = bytearray(1 << 20)
    for p in blobs:
        with open(p, "rb", buffering=0) as fh:
            while fh.readinto(buf):
                pass


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--repeat", type=int, default=3,
                    help="timed runs of each step; the median is reported")
    ap.add_argument("--layout", type=Path,
                    help="benchmark this OCI layout instead of the opamlike fixture")
    ap.add_argument("--tag", default="latest", help="tag in the layout (default: latest)")
    ap.add_argument("--workdir", type=Path,
                    help="parent of the temp dir for images and bundles (default: $TMPDIR)")
    ap.add_argument("--no-fsync", action="store_true",
                    help="pass --no-fsync to ociext4 (mkfs.ext4 fsyncs its image regardless)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON on stdout")
    ap.add_argument("--verity", action="store_true",
                    help="also time `ociext4 unpack --verity` (and check its tree)")
    ap.add_argument("--no-umoci", action="store_true",
                    help="leave out umoci unpack + mkfs.ext4 -d")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    ociext4 = find_ociext4()
    if ociext4 is None:
        raise SystemExit("bench: ociext4 is not on PATH (pip install -e . from the repo root)")
    for tool in ("e2fsck",) if args.no_umoci else ("umoci", "mkfs.ext4", "e2fsck"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is not on PATH (apt-get install umoci e2fsprogs)")
    if os.geteuid() != 0 and not args.no_umoci:
        # Rootless umoci would need --rootless and map owners away; the
        # comparison is meant as root, as both tools write owners as they are.
        raise SystemExit("bench: run as root (umoci unpack keeps owners only as root)")

    info = build_fixture(args.layout)
    layout = Path(info["path"])
    blobs = [Path(b) for b in info["blobs"]]
    gz_bytes = sum(b.stat().st_size for b in blobs)
    ref = f"oci:{layout}:{args.tag}"
    steps = {s: Step(name=s, label=LABELS[s]) for s in STEPS}
    fsck_result: dict[str, str] = {}
    fsck_output: dict[str, str] = {}
    verity_result = None
    inflated = 0
    mkfs_size_k = 0
    entries = 0

    work = Path(tempfile.mkdtemp(prefix="ociext4-unpack-bench-", dir=args.workdir))
    try:
        img_ours = work / "ociext4.img"
        img_mkfs = work / "mkfs.img"
        bundle = work / "bundle"
        log(f"bench: {layout}: {len(blobs)} layers, {gz_bytes / 2**20:.0f} MiB gzip; "
            f"work dir {work}")
        warm(blobs)
        # Interleave the steps so drift (other load on the machine) hits all alike.
        for rep in range(args.repeat):
            tag = f"bench: run {rep + 1}/{args.repeat}"
            # The previous run's deleted bundle is still being written back.
            os.sync()
            # Again each run: the 5 GB written and deleted by the previous run
            # can push the blobs out of the page cache (run 2 was 2-3x slower).
            warm(blobs)
            t0 = time.perf_counter()
            inflated = inflate_to_nothing(blobs)
            steps["floor"].record(time.perf_counter() - t0)
            log(f"{tag} floor: {steps['floor'].times[-1]:.2f} s ({inflated / 2**20:.0f} MiB)")
            os.sync()
            t0 = time.perf_counter()
            write_bytes(work / "write-floor", inflated, not args.no_fsync)
            steps["write"].record(time.perf_counter() - t0)
            log(f"{tag} write: {steps['write'].times[-1]:.2f} s")

            kinds = ["ociext4", "verity"] if args.verity else ["ociext4"]
            for kind in kinds if rep % 2 == 0 else kinds[::-1]:
                img_ours.unlink(missing_ok=True)
                img_ours.with_name(img_ours.name + ".json").unlink(missing_ok=True)
                # Write-back of the previous run's files must not land in this timing.
                os.sync()
                cmd = [ociext4, "unpack", ref, str(img_ours)] + (
                    ["--no-fsync"] if args.no_fsync else []) + (
                    ["--verity"] if kind == "verity" else [])
                dt, usage = run_measured(cmd)
                steps[kind].record(dt, usage)
                log(f"{tag} {LABELS[kind]}: {dt:.2f} s ({usage.ru_utime:.1f} s user, "
                    f"{usage.ru_stime:.1f} s sys), peak RSS {usage.ru_maxrss / 1024:.0f} MiB")
                if rep == 0:
                    fsck_result[kind], fsck_output[kind] = fsck(img_ours)
                if rep == 0 and kind == "verity":
                    verity_result = verity_check(img_ours)
                img_ours.unlink(missing_ok=True)
                img_ours.with_name(img_ours.name + ".json").unlink(missing_ok=True)
            if args.no_umoci:
                continue

            shutil.rmtree(bundle, ignore_errors=True)
            img_mkfs.unlink(missing_ok=True)
            os.sync()
            dt_u, usage = run_measured(["umoci", "unpack", "--image", f"{layout}:{args.tag}",
                                        str(bundle)])
            steps["umoci"].record(dt_u, usage)
            if rep == 0:
                # Sized once, outside the timings, from the first bundle.
                entries, used = tree_size(bundle / "rootfs")
                size = max(int(used * HEADROOM), int(entries * INODE_RATIO * 1.1))
                mkfs_size_k = (size // 1024 + 3) // 4 * 4
            # mkfs.ext4 fsyncs the image itself before it exits.
            dt_m, usage = run_measured(["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d",
                                        str(bundle / "rootfs"), str(img_mkfs), f"{mkfs_size_k}k"])
            steps["mkfs"].record(dt_m, usage)
            steps["umoci+mkfs"].record(dt_u + dt_m)
            log(f"{tag} umoci unpack: {dt_u:.2f} s, mkfs.ext4 -d: {dt_m:.2f} s")
            if rep == 0:
                fsck_result["mkfs"], fsck_output["mkfs"] = fsck(img_mkfs)
            shutil.rmtree(bundle, ignore_errors=True)
            img_mkfs.unlink(missing_ok=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for s in steps.values():
        s.median = statistics.median(s.times) if s.times else None
    floor = steps["floor"].median or 0.0
    # Inflating and writing can overlap on two cores; neither can be skipped.
    io_floor = max(floor, steps["write"].median or 0.0)
    ours = steps["ociext4"].median or 0.0
    theirs = steps["umoci+mkfs"].median or 0.0
    rss = max(steps["ociext4"].peak_rss_bytes)
    plain, verity = steps["ociext4"], steps["verity"]
    verity_ratio = verity_cpu_ratio = None
    if verity.median and plain.median:
        verity_ratio = verity.median / plain.median
        verity_cpu_ratio = cpu_median(verity) / cpu_median(plain)
    report = {
        "layout": str(layout),
        "layers": len(blobs),
        "gzip_bytes": gz_bytes,
        "inflated_bytes": inflated,
        "rootfs_entries": entries,
        "mkfs_size_bytes": mkfs_size_k * 1024,
        "repeat": args.repeat,
        "fsync": not args.no_fsync,
        "steps": [asdict(s) for s in steps.values()],
        "ociext4_over_floor": ours / floor if floor else None,
        "ociext4_over_max_inflate_write": ours / io_floor if io_floor else None,
        "umoci_mkfs_over_ociext4": theirs / ours if ours and theirs else None,
        "verity_over_ociext4": verity_ratio,
        "verity_over_ociext4_cpu": verity_cpu_ratio,
        "veritysetup_verify": verity_result,
        "ociext4_peak_rss_bytes": rss,
        "e2fsck": fsck_result,
        "targets": {"ociext4_over_floor_max": TARGET_FLOOR_RATIO,
                    "umoci_mkfs_over_ociext4_min": TARGET_SPEEDUP,
                    "peak_rss_mb_max": TARGET_RSS_MB,
                    "verity_over_ociext4_max": TARGET_VERITY_RATIO},
        "versions": {} if args.no_umoci else {
            "umoci": subprocess.run(["umoci", "--version"], capture_output=True,
                                    text=True).stdout.strip(),
            "mke2fs": subprocess.run(["mke2fs", "-V"], capture_output=True,
                                     text=True).stderr.splitlines()[0],
        },
        # The tools run from this checkout (pip install -e): say which one.
        "commit": subprocess.run(["git", "-C", str(REPO), "describe", "--always", "--dirty"],
                                 capture_output=True, text=True).stdout.strip() or None,
    }
    ok = all(v == "pass" for v in fsck_result.values()) and verity_result in (None, "pass")
    if args.json:
        print(json.dumps(report, indent=1))
        return 0 if ok else 1

    print(f"layout: {layout} ({len(blobs)} layers, {gz_bytes / 2**20:.0f} MiB gzip, "
          f"{inflated / 2**20:.0f} MiB tar"
          f"{f'; rootfs {entries} entries' if entries else ''}), {args.repeat} runs, "
          f"{'fsync' if not args.no_fsync else 'no fsync'} for ociext4, "
          f"checkout {report['commit']}")
    hdr = (f"{'step':<24} {'median s':>9} {'min s':>8} {'max s':>8} {'user s':>7} {'sys s':>6} "
           f"{'peak RSS MiB':>13}")
    print(hdr)
    print("-" * len(hdr))
    for s in steps.values():
        if s.median is None:
            continue
        peak = f"{max(s.peak_rss_bytes) / 2**20:.0f}" if s.peak_rss_bytes else "-"
        user = f"{statistics.median(s.cpu_user):.1f}" if s.cpu_user else "-"
        sys_ = f"{statistics.median(s.cpu_sys):.1f}" if s.cpu_sys else "-"
        print(f"{s.label:<24} {s.median:>9.2f} {min(s.times):>8.2f} {max(s.times):>8.2f} "
              f"{user:>7} {sys_:>6} {peak:>13}")
    print()
    print(f"ociext4 / floor:           {report['ociext4_over_floor']:.2f}x "
          f"(target <= {TARGET_FLOOR_RATIO}x)")
    print(f"ociext4 / max(floor, write): {report['ociext4_over_max_inflate_write']:.2f}x")
    if report["umoci_mkfs_over_ociext4"] is not None:
        print(f"(umoci + mkfs) / ociext4:  {report['umoci_mkfs_over_ociext4']:.1f}x "
              f"(target >= {TARGET_SPEEDUP:.0f}x)")
    if verity_ratio is not None and verity_cpu_ratio is not None:
        print(f"--verity / plain unpack:   {verity_ratio:.2f}x wall, {verity_cpu_ratio:.2f}x "
              f"CPU (target <= {TARGET_VERITY_RATIO:.2f}x); veritysetup verify: "
              f"{verity_result}")
    print(f"ociext4 peak RSS:          {rss / 2**20:.0f} MiB (target <= {TARGET_RSS_MB} MB)")
    for name, label in (("ociext4", "ociext4 image"), ("verity", "--verity image"),
                        ("mkfs", "mkfs.ext4 image")):
        if name not in fsck_result:
            continue
        print(f"e2fsck -fn {label + ':':<17} {fsck_result.get(name, '-')}")
    for name, out in fsck_output.items():
        if fsck_result.get(name) != "pass":
            print(f"\n{name}: e2fsck -fn output (tail):\n{out[-4000:]}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""Builds and runs the libFuzzer harnesses for the C core (ASan + UBSan).

    python3 tests/fuzz/fuzz.py tar --seconds 3600      # a long run, corpus kept
    python3 tests/fuzz/fuzz.py commit --seconds 3600

A crash leaves its input in the work directory; copy it into
tests/fuzz/regressions/ (named tar-* or commit-*) so every later run and the
test suite replay it."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CSRC = ROOT / "csrc"
# The writer as ociext4/ext4/_ffi_build.py compiles it (SOURCES there).
WRITER = ["writer.c", "commit.c", "extents.c", "dirs.c", "xattrs.c", "inodes.c", "journal.c",
          "layout.c", "groups.c", "super.c", "crc32c.c", "dirhash.c", "sha256.c", "verity.c"]
SOURCES = {
    "tar": ["tar.c", *WRITER],
    "commit": WRITER,
}
REGRESSIONS = HERE / "regressions"


def build(target: str, out: Path) -> Path:
    binary = out / f"fuzz_{target}"
    subprocess.run(
        ["clang", "-g", "-O1", "-fsanitize=fuzzer,address,undefined",
         "-fno-sanitize-recover=undefined", f"-I{CSRC}", str(HERE / f"fuzz_{target}.c"),
         *(str(CSRC / s) for s in SOURCES[target]), "-o", str(binary)],
        check=True, capture_output=True, text=True)
    return binary


def seeds(target: str, out: Path) -> Path:
    """The starting corpus: fixtures' small tars for the tar reader, and the
    regressions for both."""
    d = out / f"seeds_{target}"
    d.mkdir(exist_ok=True)
    if target == "tar":
        sys.path.insert(0, str(ROOT / "fixtures"))
        import hostile

        for name, data in hostile.fuzz_seeds().items():
            (d / name).write_bytes(data)
    for p in REGRESSIONS.glob(f"{target}-*"):
        (d / p.name).write_bytes(p.read_bytes())
    return d


def run(binary: Path, corpus: Path, seed_dir: Path,
        *limits: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(binary), "-rss_limit_mb=2048", "-max_len=65536", "-timeout=10", *limits,
         f"-artifact_prefix={corpus.parent}/", str(corpus), str(seed_dir)],
        capture_output=True, text=True, check=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=sorted(SOURCES))
    ap.add_argument("--seconds", type=int, default=600)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/ociext4-fuzz"))
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    corpus = args.workdir / f"corpus_{args.target}"
    corpus.mkdir(exist_ok=True)
    binary = build(args.target, args.workdir)
    proc = run(binary, corpus, seeds(args.target, args.workdir),
               f"-max_total_time={args.seconds}", "-print_final_stats=1")
    print(proc.stderr[-3000:])
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())

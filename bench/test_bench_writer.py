"""pytest-benchmark timings of `ociext4 mkfs` through its CLI.

Not part of the test suite (pytest's testpaths is tests/); run explicitly:

    python3 -m pytest bench/test_bench_writer.py

Each benchmark runs the installed `ociext4` in a subprocess, so the numbers
include interpreter start-up and import time, as a user would see them.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "pytest_benchmark", reason="pytest-benchmark is not installed (pip install pytest-benchmark)"
)

REPO = Path(__file__).resolve().parent.parent
OCIEXT4 = shutil.which("ociext4")

pytestmark = pytest.mark.skipif(
    OCIEXT4 is None,
    reason="ociext4 is not on PATH: run `pip install -e .` from the repo root first",
)

SYNTH_FILES = 10_000
ROUNDS = 5


def _tar(tree: Path, dest: Path, gz: bool = False) -> Path:
    # Same member naming and order as fixtures/_debtree.write_tar.
    members = sorted(os.listdir(tree))
    cmd = ["tar", "--sort=name", "--format=gnu", "--numeric-owner", "-C", str(tree)]
    cmd += ["-czf" if gz else "-cf", str(dest), "--", *members]
    subprocess.run(cmd, check=True, env={**os.environ, "GZIP": "-n"})
    return dest


def _make_synthetic(root: Path, nfiles: int, seed: int = 20240601) -> None:
    """A fixed pseudo-random tree: 100 directories two levels deep, file
    sizes skewed small like a real rootfs (most under 16 KiB, a few MiB-sized),
    plus symlinks, short and long, relative and dangling."""
    rng = random.Random(seed)
    dirs = [root / f"d{a:02}" / f"e{b:02}" for a in range(10) for b in range(10)]
    for d in dirs:
        d.mkdir(parents=True)
    files: list[Path] = []
    for i in range(nfiles):
        d = dirs[i % len(dirs)]
        r = rng.random()
        if r < 0.05:
            size = 0
        elif r < 0.995:
            size = int(2 ** rng.uniform(6, 16))
        else:
            size = rng.randrange(1 << 20, 4 << 20)
        f = d / f"file{i:05}.dat"
        f.write_bytes(rng.randbytes(size))
        files.append(f)
    for i in range(nfiles // 50):
        target = os.path.relpath(rng.choice(files), dirs[i % len(dirs)])
        if i % 10 == 0:
            # Longer than the 60 bytes that fit in the inode: a slow symlink.
            target = "../" * 8 + "x" * 80
        (dirs[i % len(dirs)] / f"link{i:04}").symlink_to(target)


@pytest.fixture(scope="session")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("synthetic")
    tree = base / "tree"
    tree.mkdir()
    _make_synthetic(tree, SYNTH_FILES)
    return {"dir": tree, "tar": _tar(tree, base / "tree.tar")}


@pytest.fixture(scope="session")
def smalldeb(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("smalldeb")
    try:
        out = subprocess.run(
            [sys.executable, str(REPO / "fixtures" / "build_smalldeb.py"), "--json"],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
    except subprocess.CalledProcessError as e:
        pytest.skip(f"cannot build the small deb tree (needs apt and dpkg-deb): {e}")
    info = json.loads(out)
    tree = Path(info["path"])
    return {"dir": tree, "tar": _tar(tree, base / "smalldeb.tar"), "tar.gz": Path(info["tar_gz"])}


def _bench_mkfs(benchmark: Any, src: Path, img: Path, stdin: bool = False) -> None:
    # stdin: the source arrives through a pipe (`ociext4 mkfs - IMG`), so the
    # writer cannot seek or stat it, as in `curl … | ociext4 mkfs - out.img`.
    cmd = [str(OCIEXT4), "mkfs", "-" if stdin else str(src), str(img)]

    def setup() -> None:
        # A fresh file each round: overwriting an existing image is a
        # different (and not the common) case.
        img.unlink(missing_ok=True)
        os.sync()

    def run() -> None:
        if stdin:
            cat = subprocess.Popen(["cat", str(src)], stdout=subprocess.PIPE)
            subprocess.run(cmd, check=True, stdin=cat.stdout, stdout=subprocess.DEVNULL)
            assert cat.stdout is not None
            cat.stdout.close()
            cat.wait()
        else:
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)

    benchmark.pedantic(run, setup=setup, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    # A fast writer of broken images is worth nothing.
    fsck = subprocess.run(
        ["e2fsck", "-fn", str(img)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert fsck.returncode == 0, fsck.stdout


@pytest.mark.benchmark(group="mkfs-synthetic-10k")
@pytest.mark.parametrize("kind", ["dir", "tar"])
def test_mkfs_synthetic(
    benchmark: Any, synthetic: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    _bench_mkfs(benchmark, synthetic[kind], tmp_path / "out.img")


@pytest.mark.benchmark(group="mkfs-smalldeb")
@pytest.mark.parametrize("kind", ["dir", "tar", "tar.gz", "tar.gz-stdin"])
def test_mkfs_smalldeb(
    benchmark: Any, smalldeb: dict[str, Path], kind: str, tmp_path: Path
) -> None:
    stdin = kind.endswith("-stdin")
    _bench_mkfs(benchmark, smalldeb[kind.removesuffix("-stdin")], tmp_path / "out.img", stdin=stdin)

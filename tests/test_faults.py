"""Faults around a running unpack: the disk filling up, SIGTERM and SIGINT
half way, and several runs at once.  Whatever happens, the output either
exists complete or not at all, and the next run succeeds with the same bytes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import OCIEXT4, ociext4
from ocilayouts import make_layout, member
from support.fscheck import e2fsck_clean, file_sha256, tmpfs


def _noise(n: int, seed: int) -> bytes:
    # Incompressible and reproducible, without hashing megabytes in Python.
    import random

    return random.Random(seed).randbytes(n)


@pytest.fixture(scope="session")
def layout_20m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = [member(f"data/f{i:02d}", _noise(1 << 20, i)) for i in range(20)]
    return make_layout(tmp_path_factory.mktemp("l20") / "oci", [files[:10], files[10:]])


@pytest.fixture(scope="session")
def layout_400m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Plain layers: building them is quick, and unpacking takes long enough
    # for a signal to land in the middle.
    files = [member(f"big/f{i:03d}", _noise(4 << 20, i)) for i in range(100)]
    return make_layout(tmp_path_factory.mktemp("l400") / "oci", [files[:50], files[50:]],
                       compression=None)


@pytest.fixture(scope="session")
def reference_20m(layout_20m: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "ref.img"
    ociext4("unpack", f"oci:{layout_20m}", out, "--no-fsync")
    return out


@pytest.fixture
def small_tmpfs(tmp_path: Path, needs_root: None) -> Iterator[Callable[[int], Path]]:
    with contextlib.ExitStack() as mounts:
        yield lambda size_bytes: mounts.enter_context(tmpfs(tmp_path / "mnt", size_bytes))


def _allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


@pytest.mark.parametrize("phase", ["file data", "metadata"])
def test_a_full_disk_gives_one_clear_error_and_leaves_nothing(
        phase, small_tmpfs, layout_20m, reference_20m):
    # Too small for the data, or one page short of the finished image (the
    # last writes are the metadata's).
    need = _allocated(reference_20m)
    mnt = small_tmpfs(8 << 20 if phase == "file data" else need - 4096)
    proc = ociext4("unpack", f"oci:{layout_20m}", mnt / "out.img", "--no-fsync", check=False)
    assert proc.returncode == 1
    [line] = proc.stderr.splitlines()
    assert line.startswith("ociext4: error: ") and line.endswith("No space left on device")
    assert list(mnt.iterdir()) == []


def _start(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*OCIEXT4, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _wait_for_partial(out_dir: Path, proc: subprocess.Popen[str], least: int) -> None:
    """Until the image being written holds `least` bytes of data."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        partial = [p for p in out_dir.iterdir() if p.name.endswith(".partial")]
        if partial and _allocated(partial[0]) >= least:
            return
        time.sleep(0.005)
    raise AssertionError(f"the unpack never got going: {proc.communicate()}")


@pytest.mark.parametrize(("sig", "code", "word"), [
    (signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted"),
    (signal.SIGHUP, 129, "hung up")])
def test_a_signal_mid_unpack_leaves_no_output_and_the_next_run_succeeds(
        sig, code, word, layout_400m, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start("unpack", f"oci:{layout_400m}", out_dir / "image.img", "--no-fsync")
    _wait_for_partial(out_dir, proc, 32 << 20)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.strip().endswith(f"ociext4: {word}")
    assert list(out_dir.iterdir()) == []
    ociext4("unpack", f"oci:{layout_400m}", out_dir / "image.img", "--no-fsync")
    e2fsck_clean(out_dir / "image.img")


def test_the_next_run_sweeps_the_partial_image_a_killed_unpack_left(layout_400m, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = _start("unpack", f"oci:{layout_400m}", out_dir / "image.img", "--no-fsync")
    _wait_for_partial(out_dir, proc, 32 << 20)
    proc.kill()   # no handler runs: the partial image stays behind
    proc.communicate(timeout=60)
    [left] = out_dir.iterdir()
    assert left.name.startswith(".image.img.") and left.name.endswith(".partial")
    ociext4("unpack", f"oci:{layout_400m}", out_dir / "image.img", "--no-fsync")
    assert sorted(p.name for p in out_dir.iterdir()) == ["image.img", "image.img.json"]


def test_two_unpacks_at_once_give_identical_images(layout_20m, reference_20m, tmp_path):
    procs = [_start("unpack", f"oci:{layout_20m}", tmp_path / f"{i}.img", "--no-fsync")
             for i in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    ref = file_sha256(reference_20m)
    assert all(file_sha256(tmp_path / f"{i}.img") == ref for i in range(2))


def test_two_unpacks_to_the_same_output_leave_one_complete_image(
        layout_20m, reference_20m, tmp_path):
    out = tmp_path / "same.img"
    procs = [_start("unpack", f"oci:{layout_20m}", out, "--no-fsync") for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    assert out.read_bytes() == reference_20m.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["same.img", "same.img.json"]


def test_ten_unpacks_in_a_row_give_identical_images(layout_20m, reference_20m, tmp_path):
    ref = reference_20m.read_bytes()
    for i in range(10):
        out = tmp_path / f"run{i}.img"
        ociext4("unpack", f"oci:{layout_20m}", out, "--no-fsync")
        assert out.read_bytes() == ref, f"run {i} differs"
        out.unlink()

"""Where an image may go: a regular file (renamed into place), a block device
(written in place), and the outputs that are refused, each named as given.

Block devices here are loop devices over files in the test's own directory,
reached through a private device node made there: nothing under the host's
/dev is ever written to."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import stat
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import dumpe2fs, ociext4
from ocilayouts import make_layout, member
from support.fscheck import compare_snapshots, e2fsck_clean, mounted, snapshot, tmpfs

from ociext4.errors import ImageError
from ociext4.ext4 import Ext4Options, Ext4Writer
from ociext4.tree import new_dir

pytestmark = pytest.mark.needs_root_loop

MiB = 1 << 20


@pytest.fixture
def loop_device(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Makes a loop device over a sparse file of the given size and returns
    a private block node for it in tmp_path; detaches them all at the end."""
    attached: list[str] = []

    def make(size: int, directory: Path | None = None) -> Path:
        backing = (directory or tmp_path) / f"disk{len(attached)}"
        with open(backing, "wb") as f:
            f.truncate(size)
        dev = subprocess.run(["losetup", "-f", "--show", str(backing)], check=True,
                             capture_output=True, text=True).stdout.strip()
        attached.append(dev)
        node = tmp_path / f"blk{len(attached)}"
        os.mknod(node, 0o600 | stat.S_IFBLK, os.stat(dev).st_rdev)
        return node

    try:
        yield make
    finally:
        for dev in attached:
            subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return make_layout(tmp_path / "layout", [
        [member("etc", kind=b"5", mode=0o755), member("etc/motd", b"hello\n"),
         member("big", os.urandom(3 * MiB))],
        [member("etc/more", b"more"), member(".wh.big")]])


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _one_line_error(proc: subprocess.CompletedProcess[str], text: str) -> None:
    assert proc.returncode == 1
    assert proc.stderr == f"ociext4: error: {text}\n"


def test_a_block_device_is_written_in_place_and_holds_the_image(tmp_path, loop_device, layout):
    dev = loop_device(64 * MiB)
    ociext4("unpack", f"oci:{layout}", dev, "--no-fsync")
    assert stat.S_ISBLK(os.stat(dev).st_mode)
    e2fsck_clean(dev)
    assert dumpe2fs(dev)["Block count"] == str(64 * MiB // 4096)   # sized to the device
    # The same image in a regular file of the device's size, byte for byte.
    twin = tmp_path / "twin.img"
    ociext4("unpack", f"oci:{layout}", twin, "--size", "64M", "--no-fsync")
    assert _digest(dev) == _digest(twin)
    with mounted(dev) as a, mounted(twin) as b:
        assert (a / "etc/motd").read_bytes() == b"hello\n"
        assert compare_snapshots(snapshot(b), snapshot(a)) == []
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]


def test_a_smaller_size_on_a_device_makes_an_image_of_that_size(loop_device, layout):
    dev = loop_device(64 * MiB)
    ociext4("unpack", f"oci:{layout}", dev, "--size", "20M", "--no-fsync")
    e2fsck_clean(dev)
    assert dumpe2fs(dev)["Block count"] == str(20 * MiB // 4096)


def test_a_device_is_zeroed_first_so_old_contents_cannot_pass_for_metadata(loop_device):
    dev = loop_device(16 * MiB)
    with open(dev, "r+b") as f:
        f.write(b"\xa5" * (16 * MiB))
    with Ext4Writer(dev, Ext4Options(journal=True)) as w:
        w.commit(new_dir())
    e2fsck_clean(dev)
    with open(dev, "rb") as f:
        assert b"\xa5" * 4096 not in f.read()


def test_a_mounted_device_is_refused_and_left_alone(tmp_path, loop_device, layout):
    dev = loop_device(64 * MiB)
    ociext4("unpack", f"oci:{layout}", dev, "--no-fsync")
    before = _digest(dev)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "ro", str(dev), str(mnt)], check=True)
    try:
        proc = ociext4("unpack", f"oci:{layout}", dev, check=False)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    _one_line_error(proc, f"{dev}: is mounted at {mnt}; unmount it first")
    assert _digest(dev) == before and stat.S_ISBLK(os.stat(dev).st_mode)


def test_a_device_too_small_for_the_image_is_refused_in_one_line(loop_device, layout):
    dev = loop_device(2 * MiB)
    proc = ociext4("unpack", f"oci:{layout}", dev, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"ociext4: error: {dev}: ")
    assert "more than the 512 blocks given" in proc.stderr
    assert stat.S_ISBLK(os.stat(dev).st_mode)


def test_a_size_over_the_device_is_refused_before_anything_is_written(loop_device, layout):
    dev = loop_device(8 * MiB)
    with open(dev, "r+b") as f:
        f.write(b"keep")
    proc = ociext4("unpack", f"oci:{layout}", dev, "--size", "9M", check=False)
    _one_line_error(proc, f"{dev}: size {9 * MiB} is larger than the device ({8 * MiB} bytes)")
    assert open(dev, "rb").read(4) == b"keep"


def test_a_device_below_one_mebibyte_is_refused(loop_device):
    dev = loop_device(512 * 1024)
    with pytest.raises(ImageError, match=r"the device holds 524288 bytes, below 1 MiB"):
        Ext4Writer(dev)


@pytest.fixture
def tmpfs_dir(tmp_path: Path) -> Iterator[Path]:
    # Asked for before loop_device, so that the device over it is detached first.
    with tmpfs(tmp_path / "tmpfs", 64 * MiB) as where:
        yield where


def test_a_device_above_16_tib_is_refused_unless_a_size_is_asked_for(tmpfs_dir, loop_device):
    dev = loop_device(17 << 40, tmpfs_dir)   # larger than an ext4 /tmp's files may be
    with pytest.raises(ImageError, match=rf"^{dev}: the device holds {17 << 40} bytes, above "
                                         "16 TiB, the largest image ociext4 makes: ask for a "
                                         "size$"):
        Ext4Writer(dev)
    with Ext4Writer(dev, Ext4Options(size=8 * MiB)) as w:
        assert w.is_device


def test_the_writer_says_whether_its_output_is_a_device(tmp_path, loop_device):
    with Ext4Writer(loop_device(8 * MiB)) as on_device, Ext4Writer(tmp_path / "f.img") as on_file:
        assert on_device.is_device and not on_file.is_device


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _char_device(path: Path) -> None:
    os.mknod(path, 0o600 | stat.S_IFCHR, os.makedev(1, 7))   # what /dev/full is


def _socket(path: Path) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()


@pytest.mark.parametrize(("make", "kind"), [
    (_fifo, "a FIFO"), (_char_device, "a character device"), (_socket, "a socket")])
def test_other_special_files_are_refused_and_left_unchanged(tmp_path, layout, make, kind):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "out.img"
    make(out)
    before = os.lstat(out)
    proc = ociext4("unpack", f"oci:{layout}", out, check=False)
    _one_line_error(proc, f"{out}: is {kind}; the output must be a regular file or a "
                          "block device")
    after = os.lstat(out)
    assert (after.st_mode, after.st_rdev, after.st_ino) == (before.st_mode, before.st_rdev,
                                                            before.st_ino)
    assert [p.name for p in out_dir.iterdir()] == ["out.img"]


def test_a_directory_as_output_is_named_as_given(tmp_path, layout):
    out = tmp_path / "out.img"
    out.mkdir()
    proc = ociext4("unpack", f"oci:{layout}", out, check=False)
    _one_line_error(proc, f"{out}: is a directory")
    assert list(out.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "layout", "out.img"]


def test_an_output_in_a_missing_directory_is_named_as_given(tmp_path, layout):
    out = tmp_path / "no" / "such" / "out.img"
    proc = ociext4("unpack", f"oci:{layout}", out, check=False)
    _one_line_error(proc, f"{out}: directory {out.parent} does not exist")


@contextlib.contextmanager
def _immutable(path: Path) -> Iterator[None]:
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("this file system has no immutable flag")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_an_immutable_output_is_named_as_given_and_kept(tmp_path, layout):
    out = tmp_path / "out.img"
    out.write_bytes(b"old image")
    with _immutable(out):
        proc = ociext4("unpack", f"oci:{layout}", out, check=False)
    _one_line_error(proc, f"{out}: is immutable (chattr), so it cannot be replaced")
    assert out.read_bytes() == b"old image"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layout", "out.img"]


def test_an_output_in_an_immutable_directory_is_named_as_given(tmp_path, layout):
    out_dir = tmp_path / "locked"
    out_dir.mkdir()
    out = out_dir / "out.img"
    with _immutable(out_dir):
        proc = ociext4("unpack", f"oci:{layout}", out, check=False)
    _one_line_error(proc, f"{out}: cannot create the image beside it: Operation not permitted")
    assert list(out_dir.iterdir()) == []

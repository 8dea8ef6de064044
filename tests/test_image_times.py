"""The image's own times (superblock and journal inode, from SOURCE_DATE_EPOCH):
stored as given across ext4's whole range, refused beyond it, never zeroed."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from cli_helpers import ociext4
from ociext4.ext4._writer import ffi, lib

from ociext4.errors import ImageError
from ociext4.ext4 import Ext4Options, Ext4Writer
from ociext4.ext4.plan import MAX_TIMESTAMP, check_timestamp

PAST_2446 = MAX_TIMESTAMP + 1
SUPERBLOCK = 1024
S_WTIME, S_LASTCHECK, S_MKFS_TIME = 0x30, 0x40, 0x108
S_WTIME_HI, S_LASTCHECK_HI, S_MKFS_TIME_HI = 0x274, 0x277, 0x276
TIME_LINE = r"\b(ctime|atime|mtime|crtime): 0x([0-9a-f]{8}):([0-9a-f]{8})"


def superblock_times(img: Path) -> list[int]:
    """s_wtime, s_lastcheck, s_mkfs_time with their high bytes, read raw."""
    with open(img, "rb") as f:
        f.seek(SUPERBLOCK)
        sb = f.read(1024)
    return [int.from_bytes(sb[lo:lo + 4], "little") | sb[hi] << 32
            for lo, hi in ((S_WTIME, S_WTIME_HI), (S_LASTCHECK, S_LASTCHECK_HI),
                           (S_MKFS_TIME, S_MKFS_TIME_HI))]


def journal_inode_times(img: Path) -> dict[str, int]:
    """Seconds of inode 8's four times, decoded from debugfs' raw words: a
    signed low word plus the epoch bits of the extra word."""
    out = subprocess.run(["debugfs", "-R", "stat <8>", str(img)], capture_output=True,
                         text=True, check=True).stdout
    times = {}
    for name, lo, extra in re.findall(TIME_LINE, out):
        low = int(lo, 16)
        times[name] = (low - (1 << 32) if low >= 1 << 31 else low) + ((int(extra, 16) & 3) << 32)
    return times


def mkfs_at(tmp_path: Path, seconds: int, monkeypatch: pytest.MonkeyPatch,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "f").write_bytes(b"x")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(seconds))
    return ociext4("mkfs", src, tmp_path / "out.img", "--no-fsync", check=check)


@pytest.mark.parametrize("seconds", [0, 2**31 - 1, 2**32 + 5, MAX_TIMESTAMP])
def test_superblock_and_journal_keep_the_timestamp_across_ext4s_range(
        seconds, tmp_path, monkeypatch):
    mkfs_at(tmp_path, seconds, monkeypatch)
    img = tmp_path / "out.img"
    assert superblock_times(img) == [seconds] * 3
    assert journal_inode_times(img) == dict.fromkeys(("ctime", "atime", "mtime", "crtime"),
                                                     seconds)
    assert subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True).returncode == 0


def test_source_date_epoch_past_2446_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    proc = mkfs_at(tmp_path, PAST_2446, monkeypatch, check=False)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        f"ociext4: error: timestamp {PAST_2446} is outside ext4's range for the image's times "
        f"(0 to {MAX_TIMESTAMP}, 1970-01-01 to 2446-05-10)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("seconds", [-1, PAST_2446, 2**63 - 1])
def test_the_library_refuses_an_out_of_range_timestamp_before_writing(seconds, tmp_path):
    with pytest.raises(ImageError, match="outside ext4's range"):
        check_timestamp(seconds)
    with pytest.raises(ImageError, match="outside ext4's range"):
        Ext4Writer(tmp_path / "out.img", Ext4Options(timestamp=seconds))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("seconds", [-1, PAST_2446])
def test_the_c_writer_refuses_an_out_of_range_timestamp_on_its_own(seconds, tmp_path):
    """A caller of the C core that skips the Python check still gets an error,
    not an image whose journal times are zero."""
    fd = os.open(tmp_path / "raw.img", os.O_RDWR | os.O_CREAT, 0o644)
    err = ffi.new("char[]", 256)
    w = ffi.gc(lib.oe_open(fd, ffi.new("oe_open_params *", {"max_blocks": 1 << 20}), err, 256),
               lib.oe_close)
    try:
        root = ffi.new("oe_inode[1]", [{"mode": 0o40755, "nlink": 2}])
        params = ffi.new("oe_commit_params *", {"journal_blocks": 1024, "timestamp": seconds,
                                                "free_blocks": 1024, "log_groups_per_flex": 4})
        result = ffi.new("oe_commit_result *")
        rc = lib.oe_commit(w, params, root, 1, ffi.NULL, 0, ffi.NULL, 0, result)
        assert rc == -1
        assert "outside ext4's range" in ffi.string(lib.oe_error(w)).decode()
    finally:
        os.close(fd)

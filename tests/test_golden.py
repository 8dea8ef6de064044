"""Golden output: a fixed tree (fixtures/build_golden.py) gives the same image
bytes and the same superblock as when the values below were recorded.

A change of format must be deliberate. When a change to the writer alters
these images on purpose: check the new images (e2fsck -fn, mount), record the
new sha256 and `dumpe2fs -h` values here (the failure shows them), and bump
the run cache's format key (IMAGE_CACHE_FORMAT, in ociext4/runcache.py as of this
writing) so images cached by `ociext4 run` are made again.  A change to the
golden tree itself changes the values too; that needs no bump.

The `dumpe2fs -h` text is that of e2fsprogs 1.47.0 (Debian 12), with each
line's whitespace normalised; another e2fsprogs may print other fields.
"""

# ruff: noqa: E501  (the recorded dumpe2fs lines are as long as dumpe2fs prints them)
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import build_golden
import pytest
from cli_helpers import ociext4

UUID = "6f1c3e2a-0d4b-4c5e-9a7f-1b2c3d4e5f60"
SOURCE_DATE_EPOCH = "1700000000"

# Recorded at commit beb6b2e (before the on-disk format was named in
# csrc/ext4_format.h and commit.c was split); IMAGE_CACHE_FORMAT was 1.
GOLDEN = {
    "default": (
        (),
        "ad40ff3ee8932d7ed62fa64d58e06578eaf326d01e56ababc9f49a28ef8229d2",
        """\
    Filesystem volume name: <none>
    Last mounted on: <not available>
    Filesystem UUID: 6f1c3e2a-0d4b-4c5e-9a7f-1b2c3d4e5f60
    Filesystem magic number: 0xEF53
    Filesystem revision #: 1 (dynamic)
    Filesystem features: has_journal ext_attr dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum
    Filesystem flags: signed_directory_hash
    Default mount options: user_xattr acl
    Filesystem state: clean
    Errors behavior: Continue
    Filesystem OS type: Linux
    Inode count: 13440
    Block count: 19456
    Reserved block count: 0
    Free blocks: 16544
    Free inodes: 4103
    First block: 0
    Block size: 4096
    Fragment size: 4096
    Group descriptor size: 64
    Blocks per group: 32768
    Fragments per group: 32768
    Inodes per group: 13440
    Inode blocks per group: 840
    Flex block group size: 16
    Filesystem created: Tue Nov 14 22:13:20 2023
    Last mount time: n/a
    Last write time: Tue Nov 14 22:13:20 2023
    Mount count: 0
    Maximum mount count: -1
    Last checked: Tue Nov 14 22:13:20 2023
    Check interval: 0 (<none>)
    Reserved blocks uid: 0 (user root)
    Reserved blocks gid: 0 (group root)
    First inode: 11
    Inode size: 256
    Required extra isize: 32
    Desired extra isize: 32
    Journal inode: 8
    Default directory hash: half_md4
    Directory Hash Seed: ba31c6eb-ae53-5156-8857-c77fb1212468
    Journal backup: inode blocks
    Checksum type: crc32c
    Checksum: 0x0bd70885
    Journal features: (none)
    Total journal size: 4096k
    Total journal blocks: 1024
    Max transaction length: 1024
    Fast commit length: 0
    Journal sequence: 0x00000001
    Journal start: 0
""",
    ),
    "no-journal-3-groups": (
        ("--no-journal", "--size", "300M", "--label", "golden"),
        "9b723144447675bcab1eed2d1fa69b134da405fe7c8420b1ce7d8af06fe4db52",
        """\
    Filesystem volume name: golden
    Last mounted on: <not available>
    Filesystem UUID: 6f1c3e2a-0d4b-4c5e-9a7f-1b2c3d4e5f60
    Filesystem magic number: 0xEF53
    Filesystem revision #: 1 (dynamic)
    Filesystem features: ext_attr dir_index filetype extent 64bit flex_bg sparse_super large_file huge_file dir_nlink extra_isize metadata_csum
    Filesystem flags: signed_directory_hash
    Default mount options: user_xattr acl
    Filesystem state: clean
    Errors behavior: Continue
    Filesystem OS type: Linux
    Inode count: 28320
    Block count: 76800
    Reserved block count: 0
    Free blocks: 73976
    Free inodes: 18983
    First block: 0
    Block size: 4096
    Fragment size: 4096
    Group descriptor size: 64
    Blocks per group: 32768
    Fragments per group: 32768
    Inodes per group: 9440
    Inode blocks per group: 590
    Flex block group size: 16
    Filesystem created: Tue Nov 14 22:13:20 2023
    Last mount time: n/a
    Last write time: Tue Nov 14 22:13:20 2023
    Mount count: 0
    Maximum mount count: -1
    Last checked: Tue Nov 14 22:13:20 2023
    Check interval: 0 (<none>)
    Reserved blocks uid: 0 (user root)
    Reserved blocks gid: 0 (group root)
    First inode: 11
    Inode size: 256
    Required extra isize: 32
    Desired extra isize: 32
    Default directory hash: half_md4
    Directory Hash Seed: ba31c6eb-ae53-5156-8857-c77fb1212468
    Checksum type: crc32c
    Checksum: 0xf160567a
""",
    ),
}


@pytest.fixture(scope="module")
def golden_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_golden.write_tar(tmp_path_factory.mktemp("golden") / "golden.tar")


def superblock(img: Path) -> str:
    """`dumpe2fs -h` as "Key: value" lines, whitespace normalised."""
    env = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}
    out = subprocess.run(["dumpe2fs", "-h", str(img)], capture_output=True, text=True,
                         check=True, env=env).stdout
    lines = []
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            lines.append(f"{key.strip()}: {' '.join(value.split())}")
    return "".join(f"    {line}\n" for line in lines)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_tree_gives_the_recorded_image_bytes_and_superblock(
        name, golden_tar, tmp_path, monkeypatch):
    options, want_sha, want_super = GOLDEN[name]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH)
    img = tmp_path / "golden.img"
    ociext4("mkfs", golden_tar, img, "--uuid", UUID, "--no-fsync", *options)
    fsck = subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert superblock(img) == want_super
    assert sha256(img) == want_sha


def test_golden_tar_is_the_same_bytes_every_time(tmp_path):
    a = build_golden.write_tar(tmp_path / "a.tar")
    b = build_golden.write_tar(tmp_path / "b.tar")
    assert a.read_bytes() == b.read_bytes()

"""`ociext4 mkfs` end to end: every image passes e2fsck -fn and, mounted by
the kernel, equals its source entry by entry."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import dumpe2fs, ociext4
from support import trees
from support.fscheck import (
    assert_same_tree,
    e2fsck_clean,
    file_sha256,
    mounted,
    snapshot,
    snapshot_from_tar,
)

pytestmark = pytest.mark.needs_root_loop

FEATURES = {"has_journal", "ext_attr", "dir_index", "filetype", "extent", "64bit", "flex_bg",
            "sparse_super", "large_file", "huge_file", "dir_nlink", "extra_isize",
            "metadata_csum"}


def mkfs(src: Path | str, img: Path, *opts: str) -> Path:
    ociext4("mkfs", src, img, *opts)
    return img


@pytest.mark.parametrize("name", sorted(trees.small_specs()))
def test_each_small_case_from_a_directory_mounts_identical(name, tmp_path):
    src = trees.make_tree(tmp_path / "src", trees.small_specs()[name])
    assert_same_tree(src, mkfs(src, tmp_path / "out.img"))


def test_all_small_cases_together_mount_identical(small_tree, tmp_path):
    assert_same_tree(small_tree, mkfs(small_tree, tmp_path / "out.img"))


def test_image_has_the_features_mke2fs_sets_by_default(small_tree, tmp_path):
    info = dumpe2fs(mkfs(small_tree, tmp_path / "out.img"))
    assert set(info["Filesystem features"].split()) == FEATURES
    assert info["Block size"] == "4096" and info["Inode size"] == "256"
    assert info["Checksum type"] == "crc32c"


def test_no_journal_leaves_the_journal_out(small_tree, tmp_path):
    img = mkfs(small_tree, tmp_path / "out.img", "--no-journal")
    assert set(dumpe2fs(img)["Filesystem features"].split()) == FEATURES - {"has_journal"}
    assert_same_tree(small_tree, img)


@pytest.mark.parametrize("compression", [None, "gz", "zst"])
def test_tar_source_mounts_as_the_archive_says(compression, tmp_path):
    spec = trees.combine(*(v for k, v in trees.small_specs().items()))
    suffix = {None: ".tar", "gz": ".tar.gz", "zst": ".tar.zst"}[compression]
    tar = trees.make_tar(tmp_path / f"src{suffix}", spec, compression=compression)
    img = mkfs(tar, tmp_path / "out.img")
    assert_same_tree(snapshot_from_tar(tar), img)


def test_tar_from_standard_input_gives_the_same_image_as_from_a_file(tmp_path):
    tar = trees.make_tar(tmp_path / "src.tar.gz", trees.files_of_edge_sizes(), compression="gz")
    ociext4("mkfs", tar, tmp_path / "a.img")
    ociext4("mkfs", "-", tmp_path / "b.img", stdin=tar.read_bytes())
    assert file_sha256(tmp_path / "a.img") == file_sha256(tmp_path / "b.img")


def test_50000_entries_in_one_directory_are_hashed(many_files_tree, tmp_path):
    img = mkfs(many_files_tree, tmp_path / "out.img")
    assert_same_tree(many_files_tree, img)
    with mounted(img) as mnt:
        (big,) = [p for p in mnt.iterdir() if p.is_dir() and p.name != "lost+found"]
        attrs = subprocess.run(["lsattr", "-d", str(big)], capture_output=True, text=True,
                               check=True).stdout.split()[0]
        assert "I" in attrs  # an htree directory: lookups go by hash, not by scan


def test_70000_subdirectories_use_dir_nlink(many_subdirs_tree, tmp_path):
    img = mkfs(many_subdirs_tree, tmp_path / "out.img")
    assert_same_tree(many_subdirs_tree, img)
    with mounted(img) as mnt:
        (big,) = [p for p in mnt.iterdir() if p.is_dir() and p.name != "lost+found"]
        assert os.lstat(big).st_nlink == 1  # more than 65000 subdirectories


def test_sparse_files_keep_their_holes(sparse_tree, tmp_path):
    img = mkfs(sparse_tree, tmp_path / "out.img")
    assert_same_tree(sparse_tree, img)
    with mounted(img) as mnt:
        for src in sparse_tree.rglob("*"):
            if src.is_file():
                dst = mnt / src.relative_to(sparse_tree)
                # Same data blocks; extent tree blocks may differ by one or two.
                assert os.lstat(dst).st_blocks <= os.lstat(src).st_blocks + 16


def test_file_over_512_mib_gets_a_deeper_extent_tree(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    chunk = trees.pattern(1 << 20)
    with open(src / "big", "wb") as f:
        for _ in range(600):
            f.write(chunk)
    img = mkfs(src, tmp_path / "out.img")
    assert_same_tree(src, img)
    out = subprocess.run(["debugfs", "-R", "stat /big", str(img)], capture_output=True,
                         text=True, check=True).stdout
    assert "(ETB0)" in out  # an extent tree block: depth >= 1
    (src / "big").unlink()


def test_thousands_of_extents_need_two_tree_levels(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "holey", "wb") as f:
        for i in range(2000):  # one data block every other block
            f.seek(i * 8192)
            f.write(b"%06d" % i)
    img = mkfs(src, tmp_path / "out.img")
    assert_same_tree(src, img)
    out = subprocess.run(["debugfs", "-R", "stat /holey", str(img)], capture_output=True,
                         text=True, check=True).stdout
    assert "(ETB1)" in out


def test_same_source_gives_the_same_bytes(small_tree, tmp_path):
    a = mkfs(small_tree, tmp_path / "a.img")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(small_tree), str(copy)], check=True)
    b = mkfs(copy, tmp_path / "b.img")
    assert a.read_bytes() == b.read_bytes()


def test_given_uuid_size_and_label_are_used(small_tree, tmp_path):
    uuid = "0b3c0a3e-5c43-4d2c-9d3f-3f4b8b4a9c11"
    img = mkfs(small_tree, tmp_path / "out.img", "--uuid", uuid, "--size", "300M",
               "--label", "rootfs")
    info = dumpe2fs(img)
    assert info["Filesystem UUID"] == uuid
    assert info["Filesystem volume name"] == "rootfs"
    assert int(info["Block count"]) * 4096 == 300 << 20
    assert img.stat().st_size == 300 << 20
    e2fsck_clean(img)


def test_free_space_option_sets_the_headroom(small_tree, tmp_path):
    img = mkfs(small_tree, tmp_path / "out.img", "--free", "1G")
    info = dumpe2fs(img)
    assert int(info["Free blocks"]) * 4096 >= 1 << 30
    assert img.stat().st_blocks * 512 < 64 << 20  # the free space is a hole


def test_size_too_small_for_the_inodes_fails_cleanly_and_leaves_nothing(many_files_tree,
                                                                        tmp_path):
    out = tmp_path / "out.img"
    proc = ociext4("mkfs", many_files_tree, out, "--size", "8M", check=False)
    assert proc.returncode == 1
    assert proc.stderr == (f"ociext4: error: {out}: "
                           "too many inodes (50013) for an image of this size\n")
    assert list(tmp_path.iterdir()) == []


def test_size_too_small_for_the_data_fails_cleanly_and_leaves_nothing(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(trees.pattern(20 << 20))
    out = tmp_path / "out.img"
    proc = ociext4("mkfs", src, out, "--size", "16M", check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "more than the 4096 blocks given" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_free_space_above_16_tib_is_refused_in_one_line(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    out = tmp_path / "out.img"
    proc = ociext4("mkfs", src, out, "--free", "9" * 30, check=False)
    assert proc.returncode == 1
    assert proc.stderr == (f"ociext4: error: {out}: free {'9' * 30} is above 16 TiB, the "
                           "largest image ociext4 makes\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


@pytest.mark.parametrize("size", ["17T", "16385G", "9" * 400])
def test_a_size_above_16_tib_is_refused_in_one_line_before_anything_is_written(tmp_path,
                                                                               size):
    src = tmp_path / "src"
    src.mkdir()
    out = tmp_path / "out.img"
    proc = ociext4("mkfs", src, out, "--size", size, check=False)
    value = int(size) if size.isdigit() else int(size[:-1]) << {"T": 40, "G": 30}[size[-1]]
    assert proc.returncode == 1
    assert proc.stderr == (f"ociext4: error: {out}: size {value} is above 16 TiB, the "
                           "largest image ociext4 makes\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_missing_source_is_a_one_line_error(tmp_path):
    proc = ociext4("mkfs", tmp_path / "nope", tmp_path / "out.img", check=False)
    assert proc.returncode == 1
    assert proc.stderr == f"ociext4: error: {tmp_path / 'nope'}: No such file or directory\n"
    assert list(tmp_path.iterdir()) == []


def test_truncated_tar_is_an_error_and_leaves_nothing(tmp_path):
    tar = trees.make_tar(tmp_path / "src.tar", trees.files_of_edge_sizes())
    cut = tmp_path / "cut.tar"
    cut.write_bytes(tar.read_bytes()[: 20000])
    proc = ociext4("mkfs", cut, tmp_path / "out.img", check=False)
    assert proc.returncode == 1 and "cut.tar" in proc.stderr
    assert proc.stderr.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tar", "src.tar"]


def test_existing_output_is_replaced_only_on_success(small_tree, tmp_path):
    out = tmp_path / "out.img"
    out.write_bytes(b"old")
    proc = ociext4("mkfs", tmp_path / "missing", out, check=False)
    assert proc.returncode == 1 and out.read_bytes() == b"old"
    mkfs(small_tree, out)
    e2fsck_clean(out)


def test_kernel_can_write_to_the_image(small_tree, tmp_path):
    img = mkfs(small_tree, tmp_path / "out.img")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", str(img), str(mnt)], check=True)
    try:
        (mnt / "new-dir").mkdir()
        (mnt / "new-dir" / "f").write_bytes(b"x" * 100_000)
        shutil.rmtree(mnt / next(p.name for p in small_tree.iterdir() if p.is_dir()))
    finally:
        subprocess.run(["umount", str(mnt)], check=True)
    e2fsck_clean(img)
    with mounted(img) as m:
        assert (m / "new-dir" / "f").stat().st_size == 100_000
        assert snapshot(m)  # still walks


def test_image_written_inside_its_source_directory_is_left_out(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"data")
    img = mkfs(src, src / "out.img")
    tmp = tmp_path / "copy.img"
    tmp.write_bytes(img.read_bytes())
    (src / "out.img").unlink()
    expected = snapshot(src)
    expected["."].mtime_ns = None  # creating and removing out.img changed it
    assert_same_tree(expected, tmp)


def test_times_e2fsck_reads_as_pre_1970_are_moved_before_2310(tmp_path):
    from ociext4.ext4.plan import AMBIGUOUS_START_NS

    ns_2350 = 11_992_320_000 * 10**9 + 5
    src = trees.make_tree(tmp_path / "src", [trees.File("f", b"x", mtime_ns=ns_2350)])
    img = mkfs(src, tmp_path / "out.img")
    e2fsck_clean(img)
    with mounted(img) as mnt:
        assert os.lstat(mnt / "f").st_mtime_ns == AMBIGUOUS_START_NS - 1

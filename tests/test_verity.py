"""`mkfs|unpack --verity`: the appended dm-verity hash tree, judged by
cryptsetup's own veritysetup."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest
from cli_helpers import OCIEXT4, dumpe2fs
from cli_helpers import ociext4 as cli
from hypothesis import given, settings
from hypothesis import strategies as st
from ociext4.ext4._writer import lib
from ocilayouts import cases, make_layout, member
from support.fscheck import assert_same_tree, e2fsck_clean

import ociext4
from ociext4.ext4 import verity
from ociext4.ext4.writer import Ext4Options, Ext4Writer

MARKER = b"verity-marker-0123456789abcdef" * 100

pytestmark = pytest.mark.skipif(shutil.which("veritysetup") is None,
                                reason="veritysetup (cryptsetup-bin) is not installed")


def source_tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hostname").write_text("verity\n")
    (root / "data").write_bytes(MARKER)
    (root / "big").write_bytes(os.urandom(3 << 20))
    return root


def side(img: Path) -> dict:
    return json.loads(Path(f"{img}.json").read_text())["verity"]


def veritysetup_verify(img: Path, v: dict, root_hash: str | None = None
                       ) -> subprocess.CompletedProcess[str]:
    # Every parameter from the sidecar; the tree proper starts one hash
    # block after hash_offset, past the superblock.
    return subprocess.run(
        ["veritysetup", "verify", "--hash-offset", str(v["hash_offset"] + v["hash_block_size"]),
         "--data-blocks", str(v["data_blocks"]), "--salt", v["salt"], "--hash", "sha256",
         "--no-superblock", "--data-block-size", "4096", "--hash-block-size", "4096",
         str(img), str(img), root_hash or v["root_hash"]],
        capture_output=True, text=True)


def flip_byte(img: Path, needle: bytes) -> int:
    """Flips a bit of the first byte of `needle` in the image; its offset."""
    data = img.read_bytes()
    at = data.index(needle)
    with open(img, "r+b") as f:
        f.seek(at)
        f.write(bytes([data[at] ^ 1]))
    return at


def test_mkfs_verity_image_is_accepted_by_veritysetup_verify(tmp_path):
    img = tmp_path / "out.img"
    cli("mkfs", "--verity", source_tree(tmp_path / "src"), img)
    v = side(img)
    assert v["hash_algorithm"] == "sha256"
    assert (v["data_block_size"], v["hash_block_size"]) == (4096, 4096)
    assert v["hash_offset"] == v["data_blocks"] * 4096
    assert img.stat().st_size == v["hash_offset"] + verity.tree_bytes(v["data_blocks"])
    proc = veritysetup_verify(img, v)
    assert proc.returncode == 0, proc.stderr
    # The superblock in the image is enough for veritysetup on its own.
    proc = subprocess.run(["veritysetup", "verify", "--hash-offset", str(v["hash_offset"]),
                           str(img), str(img), v["root_hash"]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_mkfs_verity_file_system_is_clean_and_has_no_journal(tmp_path):
    img = tmp_path / "out.img"
    cli("mkfs", "--verity", source_tree(tmp_path / "src"), img)
    e2fsck_clean(img)
    assert "has_journal" not in dumpe2fs(img)["Filesystem features"]


@pytest.mark.needs_root_loop
def test_mkfs_verity_image_mounts_identical_to_its_source(tmp_path):
    src = source_tree(tmp_path / "src")
    img = tmp_path / "out.img"
    cli("mkfs", "--verity", src, img)
    assert_same_tree(src, img)


def test_veritysetup_format_of_the_same_data_and_salt_gives_the_same_bytes(tmp_path):
    img = tmp_path / "out.img"
    cli("mkfs", "--verity", source_tree(tmp_path / "src"), img)
    v = side(img)
    theirs = tmp_path / "theirs.img"
    shutil.copyfile(img, theirs)
    os.truncate(theirs, v["hash_offset"])
    uuid = dumpe2fs(img)["Filesystem UUID"]
    proc = subprocess.run(
        ["veritysetup", "format", "--hash-offset", str(v["hash_offset"]), "--salt", v["salt"],
         "--data-blocks", str(v["data_blocks"]), "--uuid", uuid, str(theirs), str(theirs)],
        capture_output=True, text=True, check=True)
    root = [ln.split()[-1] for ln in proc.stdout.splitlines() if ln.startswith("Root hash")]
    assert root == [v["root_hash"]]
    assert theirs.read_bytes() == img.read_bytes()


def test_flipping_one_data_byte_makes_veritysetup_verify_fail(tmp_path):
    img = tmp_path / "out.img"
    cli("mkfs", "--verity", source_tree(tmp_path / "src"), img)
    v = side(img)
    at = flip_byte(img, MARKER)
    proc = veritysetup_verify(img, v)
    assert proc.returncode != 0
    assert f"failed at position {at - at % 4096}." in proc.stderr


def test_a_wrong_root_hash_fails_veritysetup_verify(tmp_path):
    img = tmp_path / "out.img"
    cli("mkfs", "--verity", source_tree(tmp_path / "src"), img)
    v = side(img)
    assert veritysetup_verify(img, v, "00" * 32).returncode != 0


def test_unpack_verity_salt_derives_from_the_manifest_and_output_is_deterministic(tmp_path):
    layout = make_layout(tmp_path / "layout", cases()["symlinked_parent"], "gz")
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    cli("unpack", "--verity", f"oci:{layout}", a)
    cli("unpack", "--verity", f"oci:{layout}", b)
    assert a.read_bytes() == b.read_bytes()
    doc = json.loads(Path(f"{a}.json").read_text())
    v = doc["verity"]
    assert bytes.fromhex(v["salt"]) == verity.derived_salt(doc["manifest"].encode())
    proc = veritysetup_verify(a, v)
    assert proc.returncode == 0, proc.stderr
    e2fsck_clean(a)


def test_verity_salt_option_is_the_salt_used(tmp_path):
    img = tmp_path / "out.img"
    cli("mkfs", "--verity-salt", "00ff11ee", source_tree(tmp_path / "src"), img)
    v = side(img)
    assert v["salt"] == "00ff11ee"
    assert veritysetup_verify(img, v).returncode == 0


def test_a_salt_that_is_not_hex_is_a_one_line_error(tmp_path):
    proc = cli("mkfs", "--verity-salt", "xyz", source_tree(tmp_path / "src"),
               tmp_path / "out.img", check=False)
    assert proc.returncode != 0
    assert "not hexadecimal" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "out.img").exists()


def test_stats_json_reports_the_verity_stage_and_root_hash(tmp_path):
    layout = make_layout(tmp_path / "layout", cases()["file_dir_file"], "gz")
    img = tmp_path / "out.img"
    proc = cli("unpack", "--verity", "--stats=json", f"oci:{layout}", img)
    doc = json.loads(proc.stdout)
    assert "verity" in [s["stage"] for s in doc["stages"]]
    assert doc["verity"] == side(img)


def test_python_api_results_carry_the_sidecars_verity(tmp_path):
    img = tmp_path / "out.img"
    result = ociext4.mkfs(source_tree(tmp_path / "src"), img, verity=True)
    assert result.info.verity is not None
    assert result.info.verity.to_json() == side(img)
    assert result.info.verity_seconds > 0
    layout = make_layout(tmp_path / "layout", cases()["file_dir_file"], "gz")
    unpacked = ociext4.unpack(f"oci:{layout}", tmp_path / "u.img", verity=True,
                              verity_salt=b"\x01\x02")
    assert unpacked.stats.info.verity is not None
    assert unpacked.stats.info.verity.salt == "0102"
    assert unpacked.stats.info.verity.to_json() == side(tmp_path / "u.img")


def test_the_image_names_its_own_tree_parameters(tmp_path):
    img = tmp_path / "out.img"
    cli("mkfs", "--verity", source_tree(tmp_path / "src"), img)
    v = side(img)
    assert verity.read_info(img, v["root_hash"]).to_json() == v


def test_an_image_without_verity_has_no_tree_to_read(tmp_path):
    img = tmp_path / "out.img"
    cli("mkfs", "--no-journal", source_tree(tmp_path / "src"), img)
    with pytest.raises(ociext4.errors.ImageError, match="made without --verity"):
        verity.read_info(img, "00" * 32)


def test_a_failed_write_of_the_tree_is_an_image_error_naming_the_image(tmp_path):
    img = tmp_path / "x.img"
    img.write_bytes(bytes(1 << 20))
    fd = os.open(img, os.O_RDONLY)
    try:
        with pytest.raises(ociext4.errors.ImageError,
                           match=r"^x\.img: writing the dm-verity hash tree: Bad file") as e:
            verity.append(fd, 256, b"salt", uuid.UUID(int=0), bytes(256 * 32), "x.img")
    finally:
        os.close(fd)
    assert e.value.errno == errno.EBADF


def test_a_sidecar_with_a_malformed_verity_is_a_one_line_error(tmp_path):
    img = tmp_path / "out.img"
    cli("mkfs", "--verity", source_tree(tmp_path / "src"), img)
    side_path = Path(f"{img}.json")
    doc = json.loads(side_path.read_text())
    doc["verity"]["root_hash"] = "xyz"
    side_path.write_text(json.dumps(doc))
    proc = cli("run", img, "--", "true", check=False)
    assert proc.returncode == 125
    assert proc.stderr.count("\n") == 1
    assert "verity" in proc.stderr and "not 64 hexadecimal digits" in proc.stderr


def leaves_of(path: Path, blocks: int, salt: bytes) -> bytes:
    """Level 0 as dm-verity defines it, from the file's bytes."""
    data = path.read_bytes()
    return b"".join(hashlib.sha256(salt + data[i * 4096:(i + 1) * 4096]).digest()
                    for i in range(blocks))


@pytest.mark.parametrize("blocks", [1, 100, 128, 129, 300, 16385])
def test_the_tree_of_any_data_size_is_veritysetups(tmp_path, blocks):
    """One level (up to 128 blocks) and more, laid out over given leaves,
    against veritysetup format of the same bytes."""
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    with open(ours, "wb") as f:
        f.truncate(blocks * 4096)
        for b in range(0, blocks, 7):           # data, holes between
            f.seek(b * 4096 + 100)
            f.write(os.urandom(50) + b"\0" * (4096 - 150))
        f.seek(blocks * 4096 - 1)
        f.write(b"\1")                          # the last block is data
    shutil.copyfile(ours, theirs)
    salt = b"\x12\x34"
    fd = os.open(ours, os.O_RDWR)
    try:
        info = verity.append(fd, blocks, salt, uuid.UUID(int=7), leaves_of(ours, blocks, salt))
    finally:
        os.close(fd)
    proc = subprocess.run(
        ["veritysetup", "format", "--hash-offset", str(blocks * 4096), "--salt", "1234",
         "--data-blocks", str(blocks), "--uuid", str(uuid.UUID(int=7)), str(theirs),
         str(theirs)], capture_output=True, text=True, check=True)
    assert f"Root hash:      \t{info.root_hash}" in proc.stdout
    assert ours.read_bytes() == theirs.read_bytes()
    assert ours.stat().st_size == blocks * 4096 + verity.tree_bytes(blocks)


# The tree's lowest level is hashed by the C writer as it writes each block
# (csrc/verity.c); what it could not hash then is read back at the commit.

BLOCKS = 12
_WRITES = st.lists(st.tuples(st.integers(0, BLOCKS * 4096 - 1), st.integers(1, 3 * 4096),
                             st.binary(max_size=4)), max_size=10)


@settings(max_examples=80, deadline=None)
@given(writes=_WRITES, salt=st.binary(max_size=40),
       when=st.sampled_from(["at-start", "at-end", "another-at-start"]))
def test_leaves_are_the_hashes_of_the_final_bytes_whatever_was_written_over_what(
        writes, salt, when):
    """Whole blocks, parts of blocks, blocks written again (the last write
    wins) and blocks never written (holes), with the salt known before the
    first write, only at the end, or changed at the end."""
    begin_salt = {"at-start": salt, "at-end": None, "another-at-start": salt + b"!"}[when]
    image = bytearray((BLOCKS + 3) * 4096)
    whole: set[int] = set()       # blocks the last write to covered entirely
    written: set[int] = set()
    with tempfile.TemporaryDirectory() as tmp:
        writer = Ext4Writer(Path(tmp) / "x.img",
                            Ext4Options(size=1 << 20, verity=True, verity_salt=begin_salt))
        try:
            # The file's full length, as the commit sizes it before the tree
            # (a block past the end of the file cannot be read back).
            assert lib.oe_write_at(writer.handle, b"\0", 1, len(image) - 1) == 0
            for off, length, seed in writes:
                data = hashlib.shake_256(seed).digest(length)
                assert lib.oe_write_at(writer.handle, data, length, off) == 0
                image[off:off + length] = data
                for b in range(off // 4096, -(-(off + length) // 4096)):
                    written.add(b)
                    if b * 4096 >= off and (b + 1) * 4096 <= off + length:
                        whole.add(b)
                    else:
                        whole.discard(b)
            leaves, read = verity.leaves(writer.handle, BLOCKS, salt)
        finally:
            writer.abort()
    assert leaves == b"".join(hashlib.sha256(salt + image[b * 4096:(b + 1) * 4096]).digest()
                              for b in range(BLOCKS))
    in_range = {b for b in written if b < BLOCKS}
    assert read == len(in_range - whole if when == "at-start" else in_range)


def source_tar(tmp_path: Path) -> Path:
    tar = tmp_path / "src.tar"
    with tarfile.open(tar, "w") as tf:
        tf.add(source_tree(tmp_path / "src"), arcname=".")
    return tar


def test_a_tree_hashed_as_written_is_byte_identical_to_one_read_back(tmp_path):
    """mkfs's default salt comes from the content, so its blocks are read
    back; given that salt up front, the same image is hashed as written."""
    tar = source_tar(tmp_path)
    late = ociext4.mkfs(tar, tmp_path / "late.img", verity=True)
    assert late.info.verity is not None
    early = ociext4.mkfs(tar, tmp_path / "early.img", verity=True,
                         verity_salt=bytes.fromhex(late.info.verity.salt))
    assert early.info.verity == late.info.verity
    assert (tmp_path / "early.img").read_bytes() == (tmp_path / "late.img").read_bytes()
    assert late.info.verity_read_back > (3 << 20) // 4096       # every block written
    assert early.info.verity_read_back < 16                     # the ones written in part
    assert veritysetup_verify(tmp_path / "early.img", side(tmp_path / "early.img")).returncode == 0


def test_blocks_copied_inside_the_kernel_are_read_back(tmp_path):
    """mkfs copies a big file of a directory on the same file system with
    copy_file_range, so its bytes never pass through the hashing."""
    img = tmp_path / "out.img"
    result = ociext4.mkfs(source_tree(tmp_path / "src"), img, verity=True, verity_salt=b"s")
    assert result.info.verity_read_back >= (3 << 20) // 4096
    assert veritysetup_verify(img, side(img)).returncode == 0


def test_data_a_later_layer_deletes_is_punched_out_and_hashed_as_zeros(tmp_path):
    gone, kept = os.urandom(1 << 20), os.urandom(1 << 20)
    layout = make_layout(tmp_path / "layout", [
        [member("gone", gone), member("kept", kept)],
        [member(".wh.gone")]], "gz")
    img = tmp_path / "out.img"
    result = ociext4.unpack(f"oci:{layout}", img, verity=True)
    assert gone[:4096] not in img.read_bytes()
    info = result.stats.info
    assert info.verity is not None and info.verity_read_back < 16
    proc = veritysetup_verify(img, side(img))
    assert proc.returncode == 0, proc.stderr
    e2fsck_clean(img)


def test_an_image_whose_data_are_all_holes_has_veritysetups_tree(tmp_path):
    (tmp_path / "empty").mkdir()
    img = tmp_path / "out.img"
    result = ociext4.mkfs(tmp_path / "empty", img, size=64 << 20, verity=True,
                          verity_salt=b"\x42")
    v = side(img)
    assert v["data_blocks"] == 16384 and result.info.verity_read_back < 16
    theirs = tmp_path / "theirs.img"
    shutil.copyfile(img, theirs)
    os.truncate(theirs, v["hash_offset"])
    proc = subprocess.run(
        ["veritysetup", "format", "--hash-offset", str(v["hash_offset"]), "--salt", v["salt"],
         "--data-blocks", str(v["data_blocks"]), "--uuid", dumpe2fs(img)["Filesystem UUID"],
         str(theirs), str(theirs)], capture_output=True, text=True, check=True)
    assert f"Root hash:      \t{v['root_hash']}" in proc.stdout
    assert theirs.read_bytes() == img.read_bytes()


def test_files_a_later_layer_deletes_together_are_punched_out_in_one_call(tmp_path):
    # Each punch is a system call that costs tens of microseconds on a disk
    # mounted with discard: what lies together goes in one.
    files = [os.urandom(5000 + i) for i in range(40)]
    layout = make_layout(tmp_path / "layout", [
        [member("d", kind=tarfile.DIRTYPE, mode=0o755),
         *(member(f"d/f{i:02}", data) for i, data in enumerate(files)),
         member("kept", os.urandom(9000))],
        [member(".wh.d")]], "gz")
    img, log = tmp_path / "out.img", tmp_path / "strace.log"
    subprocess.run(["strace", "-f", "-qq", "-e", "trace=fallocate", "-o", str(log), *OCIEXT4,
                    "unpack", f"oci:{layout}", str(img), "--verity"], check=True,
                   capture_output=True)
    punches = [line for line in log.read_text().splitlines() if "FALLOC_FL_PUNCH_HOLE" in line]
    assert len(punches) == 1, punches
    data = img.read_bytes()
    assert not any(f[:4096] in data for f in files)
    proc = veritysetup_verify(img, side(img))
    assert proc.returncode == 0, proc.stderr
    e2fsck_clean(img)

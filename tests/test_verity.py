"""`mkfs|unpack --verity`: the appended dm-verity hash tree, judged by
cryptsetup's own veritysetup."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from cli_helpers import dumpe2fs
from cli_helpers import ociext4 as cli
from ocilayouts import cases, make_layout
from support.fscheck import assert_same_tree, e2fsck_clean

import ociext4
from ociext4.ext4 import verity

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

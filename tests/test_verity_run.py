"""`ociext4 run` of a `--verity` image: real TCG boots with the root on
dm-verity, set up by the guest init from the root hash the host trusts."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cli_helpers import OCIEXT4, ociext4
from runimages import busybox_layout

# Runs keep their initramfs and unpacked images in the suite's private cache.
from test_vm_run import TCG, private_cache  # noqa: E402, F401

from ociext4.model import ContainerConfig
from ociext4.vm.kernel import find_kernel
from ociext4.vm.modules import module_groups, module_name
from ociext4.vm.runner import settings_for, verity_for
from ociext4.vm.spec import RunSpec

BIG = bytes(range(256)) * 4096 + b"tail"   # /data/big in the busybox image


@pytest.fixture(scope="module")
def verity_img(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("verity")
    layout = busybox_layout(root / "busybox")
    img = root / "busybox.img"
    ociext4("unpack", "--verity", f"oci:{layout}", img)
    return img


def copy_image(img: Path, dest: Path, sidecar: bool = True) -> Path:
    subprocess.run(["cp", "--sparse=always", str(img), str(dest)], check=True)
    if sidecar:
        shutil.copy(f"{img}.json", f"{dest}.json")
    return dest


def root_hash(img: Path) -> str:
    return json.loads(Path(f"{img}.json").read_text())["verity"]["root_hash"]


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return ociext4("run", *TCG, *args, check=False)


# ------------------------------------------------------------ host side


def test_a_verity_image_gets_the_table_over_the_disk_and_keeps_its_root_mode(verity_img):
    info = verity_for(verity_img, RunSpec())
    assert info is not None and info.root_hash == root_hash(verity_img)
    config = ContainerConfig(cmd=("true",))
    pairs = dict(settings_for(config, RunSpec(), host_resolv="", verity=info).pairs())
    assert pairs["root"] == "throwaway"
    read_only = dict(settings_for(config, RunSpec(read_only=True), host_resolv="",
                                  verity=info).pairs())
    assert read_only["root"] == "ro"
    assert pairs["verity"] == (f"1 /dev/vda /dev/vda 4096 4096 {info.data_blocks} "
                               f"{info.data_blocks + 1} sha256 {info.root_hash} {info.salt}")


def test_the_dm_group_loads_dm_mod_before_dm_verity_and_the_overlay():
    groups = module_groups(find_kernel().modules)
    names = [module_name(p) for p in groups["module.dm"]]
    assert names.index("dm_mod") < names.index("dm_verity")
    assert "overlay" in names
    assert not set(groups["module.dm"]) & set(groups["module"])


def test_run_rw_of_a_verity_image_is_refused_with_one_line(verity_img):
    p = run("--rw", verity_img, "--", "true")
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1 and "--rw cannot write" in p.stderr


def test_a_malformed_root_hash_is_a_one_line_option_error(verity_img):
    p = run("--verity-root-hash", "abc", verity_img, "--", "true")
    assert p.returncode == 125
    assert p.stderr.count("\n") == 1 and "not 64 hexadecimal digits" in p.stderr


def test_pinning_a_hash_on_an_image_without_a_tree_is_refused(tmp_path):
    (tmp_path / "src").mkdir()
    img = tmp_path / "plain.img"
    ociext4("mkfs", tmp_path / "src", img)
    p = run("--verity-root-hash", "ab" * 32, img, "--", "true")
    assert p.returncode == 125
    assert "made without --verity" in p.stderr and "Traceback" not in p.stderr


# ------------------------------------------------------------ real boots


def test_a_verity_image_boots_read_only_on_dm_verity_and_reads_its_files(verity_img):
    p = subprocess.run(
        [*OCIEXT4, "run", *TCG, "--read-only", str(verity_img), "--", "sh", "-c",
         "grep ' / ' /proc/mounts >&2; cat /data/big"], capture_output=True, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout == BIG
    device, mount_point, fstype, options = p.stderr.decode().split()[:4]
    assert (device, mount_point, fstype) == ("/dev/ociext4-root", "/", "ext4")
    assert options.startswith("ro,")


def test_the_throwaway_root_is_an_overlay_on_the_verified_image_left_unchanged(verity_img):
    before = verity_img.read_bytes()
    p = run(verity_img, "--", "sh", "-c",
            "echo kept-in-memory > /etc/new && cat /etc/new && mkdir -p /var/new/d && "
            "grep ' / ' /proc/mounts && ls -ld / | cut -c1-10")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0] == "kept-in-memory"
    assert lines[1].startswith("overlay / overlay rw,")
    assert lines[2] == "drwxr-xr-x"   # the image's root's mode, not the tmpfs's
    assert verity_img.read_bytes() == before


def test_a_flipped_data_byte_fails_that_files_read_with_an_io_error(verity_img, tmp_path):
    bad = copy_image(verity_img, tmp_path / "bad.img")
    data = bad.read_bytes()
    at = data.index(BIG[:4096]) + 5000
    with open(bad, "r+b") as f:
        f.seek(at)
        f.write(bytes([data[at] ^ 1]))
    p = subprocess.run([*OCIEXT4, "run", *TCG, str(bad), "--", "cat", "/data/big"],
                       capture_output=True, check=False)
    assert p.returncode != 0
    assert b"Input/output error" in p.stderr
    # What did come out is the file's true start: never a corrupted byte.
    assert len(p.stdout) < len(BIG) and BIG.startswith(p.stdout)
    ok = run(bad, "--", "cat", "/etc/passwd")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("root:x:0:0:")


def test_a_wrong_root_hash_refuses_to_boot_with_one_line(verity_img):
    p = run("--verity-root-hash", "00" * 32, verity_img, "--", "echo", "booted")
    assert p.returncode == 125
    assert p.stdout == ""
    assert p.stderr.count("\n") == 1
    assert "does not match the root hash" in p.stderr


def test_a_pinned_root_hash_boots_an_image_without_its_sidecar(verity_img, tmp_path):
    bare = copy_image(verity_img, tmp_path / "bare.img", sidecar=False)
    p = run("--read-only", "--verity-root-hash", root_hash(verity_img).upper(), bare, "--",
            "sh", "-c", "grep ' / ' /proc/mounts")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("/dev/ociext4-root / ext4 ro,")

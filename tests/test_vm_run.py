"""`ociext4 run` end to end: real QEMU boots under TCG of images unpacked by
`ociext4 unpack` from the fixtures' busybox and Debian layouts, with the
host's kernel (linux-image-cloud-amd64 on CI) and the init from csrc/init.

Every test here boots once (a few seconds each under TCG), so each pins
several behaviours of one run rather than booting per assertion."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import OCIEXT4, ociext4
from ocilayouts import make_docker_archive
from runimages import BUSYBOX_CONFIG, busybox_layers, busybox_layout, minbase_layout
from support.fscheck import e2fsck_clean, file_sha256, mounted, snapshot

from ociext4.vm.kernel import find_kernel

TCG = ("--accel", "tcg")
# Mount points the init mounts over: the guest sees the mounted file systems.
API_MOUNTS = {"proc", "sys", "dev", "tmp", "run"}
# Files the run binds over the image's, as docker does.
RUN_FILES = {"etc/hostname", "etc/hosts", "etc/resolv.conf"}


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Runs keep their initramfs, unpacked images and KVM verdict here."""
    cache = tmp_path_factory.mktemp("ociext4-cache")
    old = os.environ.get("OCIEXT4_CACHE")
    os.environ["OCIEXT4_CACHE"] = str(cache)
    yield cache
    if old is None:
        del os.environ["OCIEXT4_CACHE"]
    else:
        os.environ["OCIEXT4_CACHE"] = old


@pytest.fixture(scope="session")
def bb_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return busybox_layout(tmp_path_factory.mktemp("layouts") / "busybox")


@pytest.fixture(scope="session")
def bb_img(bb_layout: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    img = tmp_path_factory.mktemp("images") / "busybox.img"
    ociext4("unpack", f"oci:{bb_layout}", img)
    return img


@pytest.fixture(scope="session")
def minbase_img(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """debootstrap --variant=minbase bookworm (built once per machine, as root)."""
    if os.geteuid() != 0:
        pytest.skip("building the debootstrap image needs root")
    layout = minbase_layout(tmp_path_factory.mktemp("layouts") / "minbase")
    img = tmp_path_factory.mktemp("images") / "minbase.img"
    ociext4("unpack", f"oci:{layout}", img)
    return img


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return ociext4("run", *args, check=False)


def copy_image(img: Path, dest: Path) -> Path:
    subprocess.run(["cp", "--sparse=always", str(img), str(dest)], check=True)
    shutil.copy(f"{img}.json", f"{dest}.json")
    return dest


# ------------------------------------------------------------- output


def test_uname_shows_the_host_kernel_and_only_the_command_reaches_stdout(bb_img):
    p = run(*TCG, bb_img, "--", "uname", "-a")
    assert p.returncode == 0, p.stderr
    # Exactly one line: no kernel message, no init chatter on stdout.
    assert p.stdout.count("\n") == 1
    assert p.stdout.startswith(f"Linux ociext4 {find_kernel().version} ")
    assert p.stdout.rstrip().endswith("GNU/Linux")
    assert p.stderr == ""


def test_stdout_and_stderr_stay_apart_and_the_exit_code_is_the_commands(bb_img):
    p = run(*TCG, bb_img, "--", "sh", "-c", "echo out; echo err >&2; echo out2; exit 7")
    assert (p.returncode, p.stdout, p.stderr) == (7, "out\nout2\n", "err\n")


def test_console_shows_kernel_messages_on_stderr_never_on_stdout(bb_img):
    p = run(*TCG, "--console", bb_img, "--", "echo", "just this")
    assert p.returncode == 0
    assert p.stdout == "just this\n"
    assert "Linux version" in p.stderr and "virtio_blk" in p.stderr


def test_binary_output_arrives_byte_for_byte(bb_img):
    data = bytes(range(256)) * 4096 + b"tail"   # /data/big in the image
    p = subprocess.run([*OCIEXT4, "run", *TCG, str(bb_img), "--",
                        "sh", "-c", "cat /data/big; printf '\\r\\n\\0'"],
                       capture_output=True, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout == data + b"\r\n\0"


# ------------------------------------------------------- image config


def test_image_config_env_workdir_and_cmd_are_honoured(bb_img):
    assert json.loads(Path(f"{bb_img}.json").read_text())["config"] == BUSYBOX_CONFIG
    p = run(*TCG, bb_img)   # the image's Cmd: echo "$GREETING"; pwd; id -u
    assert (p.returncode, p.stdout, p.stderr) == (0, "hello from the image\n/work\n0\n", "")


def test_env_workdir_and_user_options_override_the_image(bb_img):
    p = run(*TCG, "-e", "GREETING=hi", "-e", "EXTRA=x y", "-w", "/home/user", "-u", "user",
            bb_img, "--", "sh", "-c",
            'echo "$GREETING|$EXTRA|$HOME|$HOSTNAME|$PATH"; pwd; id; hostname; cat .profile')
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [
        "hi|x y|/home/user|ociext4|/usr/sbin:/usr/bin:/sbin:/bin", "/home/user",
        "uid=1000(user) gid=1000(user) groups=100(users),1000(user),2000(extra)",
        "ociext4", "# nothing"]


def test_numeric_user_and_named_group(bb_img):
    p = run(*TCG, "-u", "4321:extra", "-w", "/data", bb_img, "--", "sh", "-c",
            "id; cat owned; cat /home/user/.profile")
    assert p.returncode == 1
    assert p.stdout.splitlines() == ["uid=4321 gid=2000(extra) groups=2000(extra)",
                                     "owned by 4321:8765"]
    assert "Permission denied" in p.stderr


def test_entrypoint_option_replaces_entrypoint_and_cmd(bb_img):
    p = run(*TCG, "--entrypoint", "/data/script", bb_img, "--", "one", "two")
    assert (p.returncode, p.stdout) == (0, "script ran one two\n")


def test_unknown_user_cannot_run(bb_img):
    p = run(*TCG, "-u", "nosuch", bb_img, "--", "id")
    assert p.returncode == 126
    assert "unable to find user nosuch" in p.stderr and p.stdout == ""


# ------------------------------------------------------ failing commands


def test_missing_command_exits_127(bb_img):
    p = run(*TCG, bb_img, "--", "no-such-command", "x")
    assert p.returncode == 127
    assert "no-such-command" in p.stderr and p.stdout == ""


def test_non_executable_file_exits_126(bb_img):
    p = run(*TCG, bb_img, "--", "/data/notexec")
    assert p.returncode == 126
    assert "/data/notexec" in p.stderr and "Permission denied" in p.stderr


def test_killed_command_reports_its_signal_as_128_plus_n(bb_img):
    p = run(*TCG, bb_img, "--", "sh", "-c", "echo before; kill -9 $$; echo after")
    assert (p.returncode, p.stdout) == (137, "before\n")


def test_orphans_are_reaped_and_background_processes_do_not_hold_the_vm(bb_img):
    script = ("(sh -c 'exit 3' &); (sh -c 'exit 4' &); sleep 1; "
              "ps -o stat,comm | grep -c '^Z' ; sleep 1000 & echo started")
    p = run(*TCG, bb_img, "--", "sh", "-c", script)
    assert (p.returncode, p.stdout) == (0, "0\nstarted\n"), p.stderr


def test_timeout_stops_the_vm_with_125(bb_img):
    p = run(*TCG, "--timeout", "6", bb_img, "--", "sleep", "1000")
    assert p.returncode == 125
    assert "timed out" in p.stderr


# ------------------------------------------------------- the image file


def test_default_root_is_writable_and_its_writes_leave_the_image_unchanged(bb_img):
    before = file_sha256(bb_img)
    p = run(*TCG, "-w", "/new/work dir", bb_img, "--", "sh", "-c",
            "echo new > /data/new && touch /root/x && mkdir -p /var/lib/foo && "
            "echo t > /tmp/t && cat /data/new /tmp/t && pwd")
    assert (p.returncode, p.stdout, p.stderr) == (0, "new\nt\n/new/work dir\n", "")
    assert file_sha256(bb_img) == before


def test_read_only_root_refuses_writes_but_has_its_tmpfs(bb_img):
    p = run(*TCG, "--read-only", bb_img, "--", "sh", "-c",
            "echo t > /tmp/t && cat /tmp/t; echo new > /data/new")
    assert p.returncode != 0 and p.stdout == "t\n" and "Read-only file system" in p.stderr


@pytest.mark.needs_root_loop
def test_rw_keeps_the_guests_writes_in_a_clean_image(bb_img, tmp_path):
    img = copy_image(bb_img, tmp_path / "rw.img")
    before = file_sha256(img)
    p = run(*TCG, "--rw", img, "--", "sh", "-c",
            "echo written > /data/new && rm /data/empty && mkdir /made && echo ok")
    assert (p.returncode, p.stdout) == (0, "ok\n"), p.stderr
    assert file_sha256(img) != before
    e2fsck_clean(img)
    with mounted(img) as mnt:
        assert (mnt / "data/new").read_text() == "written\n"
        assert not (mnt / "data/empty").exists() and (mnt / "made").is_dir()


# -------------------------------------------- the guest sees the image


GUEST_LISTING = (
    "cd / && export QUOTING_STYLE=literal LC_ALL=C && "
    "find . -xdev ! -path ./lost+found ! -path './lost+found/*' "
    "-exec stat -c 'E|%n|%f|%u|%g|%s|%Y|%h' {} + && "
    "find . -xdev -type l -exec stat -c 'L|%n|%N' {} + && "
    "find . -xdev -type f ! -path './lost+found/*' -exec sha256sum {} +")

_TYPES = {stat.S_IFREG: "reg", stat.S_IFDIR: "dir", stat.S_IFLNK: "lnk", stat.S_IFCHR: "chr",
          stat.S_IFBLK: "blk", stat.S_IFIFO: "fifo", stat.S_IFSOCK: "sock"}


def _rel(name: str) -> str:
    return "." if name == "." else name.removeprefix("./")


def guest_view(listing: str) -> dict[str, tuple]:
    entries: dict[str, list] = {}
    for line in listing.splitlines():
        if line.startswith("E|"):
            _, name, mode, uid, gid, size, mtime, nlink = line.split("|")
            m = int(mode, 16)
            kind = _TYPES[stat.S_IFMT(m)]
            entries[_rel(name)] = [kind, stat.S_IMODE(m), int(uid), int(gid),
                                   int(size) if kind == "reg" else None, None, None, int(mtime),
                                   int(nlink) if kind == "reg" else None]
        elif line.startswith("L|"):
            _, name, quoted = line.split("|", 2)
            target = quoted.split(" -> ", 1)[1]
            if quoted.startswith("'"):   # busybox quotes both names
                target = target[1:-1]
            entries[_rel(name)][6] = target.encode()
        else:
            digest, name = line.split("  ", 1)
            entries[_rel(name)][5] = digest
    return {k: tuple(v) for k, v in entries.items()
            if k.split("/")[0] not in API_MOUNTS and k not in RUN_FILES}


def host_view(img: Path) -> dict[str, tuple]:
    with mounted(img) as mnt:
        snap = snapshot(mnt)
    return {k: (e.type, e.mode, e.uid, e.gid, e.size, e.sha256, e.target,
                e.mtime_ns // 10**9 if e.mtime_ns is not None else None, e.nlink)
            for k, e in snap.items() if k.split("/")[0] not in API_MOUNTS and k not in RUN_FILES}


def assert_guest_sees_the_image(img: Path, shell: str) -> int:
    # --read-only: nothing made in a throwaway layer (mount points, /etc files).
    p = run(*TCG, "--read-only", "--memory", "768", img, "--", shell, "-c", GUEST_LISTING)
    assert p.returncode == 0, p.stderr
    # cli_helpers reads output as latin-1; names are UTF-8 (or raw bytes).
    listing = p.stdout.encode("latin-1").decode("utf-8", "surrogateescape")
    guest, host = guest_view(listing), host_view(img)
    diffs = [f"{k}: guest {guest.get(k)} host {host.get(k)}"
             for k in sorted(guest.keys() | host.keys()) if guest.get(k) != host.get(k)]
    assert not diffs, f"{len(diffs)} differences:\n" + "\n".join(diffs[:30])
    return len(host)


@pytest.mark.needs_root_loop
def test_guest_sees_every_file_of_the_busybox_image_as_the_mount_does(bb_img):
    assert assert_guest_sees_the_image(bb_img, "sh") > 250


@pytest.mark.needs_root_loop
def test_guest_sees_every_file_of_the_debootstrap_image_as_the_mount_does(minbase_img):
    assert assert_guest_sees_the_image(minbase_img, "sh") > 5000


# ------------------------------------------------ the debootstrap image


@pytest.mark.needs_root
def test_debootstrap_image_runs_dynamically_linked_programs_as_its_users(minbase_img):
    p = run(*TCG, "-u", "nobody", "-w", "/tmp", minbase_img, "--", "bash", "-c",
            'echo "$BASH_VERSION"; id; pwd; echo "$HOME"; ls -ld /usr/bin/apt-get; '
            'readlink -f /bin/sh; touch /tmp/mine && stat -c %U /tmp/mine')
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].startswith("5.2")
    assert lines[1:4] == ["uid=65534(nobody) gid=65534(nogroup) groups=65534(nogroup)", "/tmp",
                          "/nonexistent"]
    assert lines[4].startswith("-rwxr-xr-x 1 root root ")
    assert lines[5:] == ["/usr/bin/dash", "nobody"]


# ------------------------------------------------- image references


def test_oci_reference_is_unpacked_once_then_reused(bb_layout, private_cache):
    first = run(*TCG, f"oci:{bb_layout}:latest", "--", "echo", "first")
    assert (first.returncode, first.stdout) == (0, "first\n"), first.stderr
    images = sorted((private_cache / "run/images").glob("*.img"))
    assert len(images) == 1
    made = images[0].stat()
    second = run(*TCG, f"oci:{bb_layout}", "--", "sh", "-c", 'echo "$GREETING"')
    assert (second.returncode, second.stdout) == (0, "hello from the image\n")
    again = sorted((private_cache / "run/images").glob("*.img"))
    assert again == images
    assert (again[0].stat().st_ino, again[0].stat().st_mtime_ns) == (made.st_ino,
                                                                     made.st_mtime_ns)


def test_docker_archive_reference_runs_its_config(tmp_path):
    archive = make_docker_archive(tmp_path / "saved.tar", busybox_layers(),
                                  config=BUSYBOX_CONFIG)
    p = run(*TCG, f"docker-archive:{archive}")
    assert (p.returncode, p.stdout) == (0, "hello from the image\n/work\n0\n"), p.stderr


def test_auto_accel_probes_once_and_runs(bb_img, private_cache):
    p = run("--accel", "auto", bb_img, "--", "echo", "auto")
    assert (p.returncode, p.stdout) == (0, "auto\n"), p.stderr
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        verdicts = list((private_cache / "run/accel").glob("kvm-probe-*.json"))
        assert len(verdicts) == 1
        assert isinstance(json.loads(verdicts[0].read_text())["kvm"], bool)


# ------------------------------------------------------ refused input


def test_bad_input_fails_with_125_and_one_line(bb_img, tmp_path):
    bare = tmp_path / "bare.img"
    shutil.copy(bb_img, bare)   # no bare.img.json: no config, so no command
    cases = {
        "Not/An:Image!": "no such image file, and not an image name",
        str(tmp_path / "missing.img"): "no such image file",
        str(bare): "no command",
    }
    for image, message in cases.items():
        p = run(*TCG, image)
        assert p.returncode == 125, (image, p.stderr)
        assert p.stderr.startswith("ociext4: error: ") and message in p.stderr
        assert p.stderr.count("\n") == 1 and p.stdout == ""
    junk = tmp_path / "junk.img"
    junk.write_bytes(bytes(range(256)) * 8192)
    p = run(*TCG, junk, "--", "true")   # boots; the init cannot mount it
    assert p.returncode == 125 and "does not mount as ext4" in p.stderr and p.stdout == ""
    p = run(*TCG, "--rw", f"oci:{tmp_path}")
    assert p.returncode == 125 and "--rw" in p.stderr
    p = run(*TCG, bb_img, "-u", "user", "--", "id")
    assert p.returncode == 125 and "options go before the image" in p.stderr
    p = run(*TCG, "--kernel", tmp_path / "vmlinuz-none", bb_img, "--", "true")
    assert p.returncode == 125 and "vmlinuz-none: no such kernel image" in p.stderr

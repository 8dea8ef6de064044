"""The VM's host side without booting: the cpio writer (read back by GNU
cpio), module resolution, kernel lookup, QEMU's command line, the merge of
image config and command line, and what an outcome means as an exit code."""

from __future__ import annotations

import lzma
import os
import subprocess
from pathlib import Path

import pytest
import zstandard

from ociext4.errors import DocumentError
from ociext4.model import ContainerConfig, container_config
from ociext4.vm import cpio
from ociext4.vm.errors import VmError
from ociext4.vm.initramfs import base_members, records, settings_archive
from ociext4.vm.kernel import find_kernel
from ociext4.vm.modules import module_name, parse_builtin, parse_dep, read_module, resolve
from ociext4.vm.qemu import Channels, Share, VmSpec, command_line, kernel_cmdline
from ociext4.vm.relay import Outcome, Status, parse_status
from ociext4.vm.runner import exit_code, settings_for
from ociext4.vm.settings import Overrides, SettingsError, guest_settings, merge_env
from ociext4.vm.spec import Publish, RunSpec, Volume

# ---------------------------------------------------------------- cpio


def _extract(archive: bytes, dest: Path) -> list[str]:
    dest.mkdir()
    listing = subprocess.run(["cpio", "-t", "--quiet"], input=archive, capture_output=True,
                             check=True).stdout.decode().splitlines()
    subprocess.run(["cpio", "-i", "-d", "--quiet", "--no-absolute-filenames"], input=archive,
                   cwd=dest, check=True)
    return listing


def test_cpio_archive_reads_back_with_gnu_cpio(tmp_path):
    data = bytes(range(256)) * 37 + b"odd"   # a length that needs padding
    archive = cpio.archive([cpio.directory("d"), cpio.file("d/f", data, 0o640),
                            cpio.file("x", b"", 0o755), cpio.symlink("d/l", "../x"),
                            cpio.directory("d/e", 0o700)])
    assert len(archive) % 512 == 0
    assert _extract(archive, tmp_path / "out") == ["d", "d/f", "x", "d/l", "d/e"]
    out = tmp_path / "out"
    assert (out / "d/f").read_bytes() == data
    assert (out / "d/f").stat().st_mode & 0o777 == 0o640
    assert (out / "x").stat().st_size == 0 and os.access(out / "x", os.X_OK)
    assert os.readlink(out / "d/l") == "../x"
    assert (out / "d/e").stat().st_mode & 0o777 == 0o700


def test_cpio_rejects_absolute_and_empty_names():
    for bad in ("/etc", ""):
        with pytest.raises(ValueError):
            cpio.archive([cpio.file(bad, b"")])


def test_settings_archive_appends_to_a_base_archive(tmp_path):
    base = cpio.archive([cpio.directory("ociext4"), cpio.file("init", b"#!", 0o755)])
    both = base + settings_archive(records([("arg", "echo"), ("arg", "a b\nc")]))
    # GNU cpio stops at the first trailer; the kernel reads on. Each part
    # must be a whole archive on its own.
    assert _extract(both[len(base):], tmp_path / "run") == ["ociext4/settings"]
    assert (tmp_path / "run/ociext4/settings").read_bytes() == b"arg=echo\0arg=a b\nc\0"
    assert _extract(both[:len(base)], tmp_path / "base") == ["ociext4", "init"]


def test_records_refuse_nul_bytes():
    with pytest.raises(VmError, match="NUL"):
        records([("arg", "a\0b")])


def test_base_initramfs_holds_init_modules_in_order_and_their_list(tmp_path):
    mods = tmp_path / "mods"
    (mods / "kernel/a").mkdir(parents=True)
    (mods / "kernel/a/one.ko").write_bytes(b"ONE")
    (mods / "kernel/a/two.ko.xz").write_bytes(lzma.compress(b"TWO"))
    archive = cpio.archive(base_members(b"INIT", mods, ["kernel/a/one.ko", "kernel/a/two.ko.xz"]))
    names = _extract(archive, tmp_path / "out")
    assert names == ["init", "ociext4", "ociext4/modules.d", "ociext4/modules.d/00-one.ko",
                     "ociext4/modules.d/01-two.ko", "ociext4/modules"]
    out = tmp_path / "out"
    assert (out / "ociext4/modules.d/01-two.ko").read_bytes() == b"TWO"
    assert (out / "ociext4/modules").read_bytes() == (
        b"module=/ociext4/modules.d/00-one.ko\0module=/ociext4/modules.d/01-two.ko\0")


# ------------------------------------------------------------- modules

DEP = """\
kernel/drivers/virtio/virtio.ko.zst: kernel/drivers/virtio/virtio_ring.ko.zst
kernel/drivers/virtio/virtio_ring.ko.zst:
kernel/drivers/virtio/virtio_pci_modern_dev.ko.zst:
kernel/drivers/virtio/virtio_pci.ko.zst: kernel/drivers/virtio/virtio_pci_modern_dev.ko.zst \
kernel/drivers/virtio/virtio.ko.zst kernel/drivers/virtio/virtio_ring.ko.zst
kernel/drivers/block/virtio_blk.ko.zst: kernel/drivers/virtio/virtio.ko.zst \
kernel/drivers/virtio/virtio_ring.ko.zst
kernel/fs/jbd2/jbd2.ko.zst:
kernel/fs/ext4/ext4.ko.zst: kernel/fs/jbd2/jbd2.ko.zst kernel/fs/mbcache.ko.zst
kernel/fs/mbcache.ko.zst:
kernel/drivers/char/virtio-console.ko.zst: kernel/drivers/virtio/virtio.ko.zst
"""


def test_modules_load_after_their_dependencies():
    order = resolve(["virtio_pci", "virtio_blk", "ext4"], parse_dep(DEP), set())
    names = [module_name(p) for p in order]
    assert sorted(names) == sorted(["virtio_ring", "virtio", "virtio_pci_modern_dev",
                                    "virtio_pci", "virtio_blk", "jbd2", "mbcache", "ext4"])
    assert len(names) == len(set(names))
    for mod, deps in parse_dep(DEP).items():
        if mod in names:
            for d in deps[1]:
                assert names.index(module_name(d)) < names.index(mod), (mod, d)


def test_built_in_modules_are_left_out_and_unknown_ones_named():
    dep = parse_dep(DEP)
    builtin = parse_builtin("kernel/fs/ext4/ext4.ko\nkernel/drivers/block/virtio_blk.ko\n")
    assert [module_name(p) for p in resolve(["ext4", "virtio_blk"], dep, builtin)] == []
    with pytest.raises(VmError, match="virtio_scsi"):
        resolve(["virtio_scsi"], dep, builtin)


def test_module_names_treat_dash_and_underscore_alike():
    assert module_name("kernel/drivers/char/virtio-console.ko.zst") == "virtio_console"
    assert [module_name(p) for p in resolve(["virtio-console"], parse_dep(DEP), set())] == [
        "virtio_ring", "virtio", "virtio_console"]


def test_compressed_modules_are_read_decompressed(tmp_path):
    elf = b"\x7fELF" + bytes(5000)
    (tmp_path / "a.ko.xz").write_bytes(lzma.compress(elf, format=lzma.FORMAT_XZ))
    (tmp_path / "b.ko.zst").write_bytes(zstandard.ZstdCompressor().compress(elf))
    (tmp_path / "c.ko").write_bytes(elf)
    for name in ("a.ko.xz", "b.ko.zst", "c.ko"):
        assert read_module(tmp_path / name) == elf


# -------------------------------------------------------------- kernel


def _kernel_tree(tmp_path: Path, versions: list[str], with_modules: list[str]) -> tuple[Path, Path]:
    boot, lib = tmp_path / "boot", tmp_path / "modules"
    boot.mkdir()
    for v in versions:
        (boot / f"vmlinuz-{v}").write_bytes(b"bzImage")
    for v in with_modules:
        (lib / v).mkdir(parents=True)
        (lib / v / "modules.dep").write_text("")
    return boot, lib


def test_the_newest_kernel_with_modules_is_chosen(tmp_path):
    boot, lib = _kernel_tree(tmp_path, ["6.1.0-9-cloud-amd64", "6.1.0-56-cloud-amd64",
                                        "6.10.0-1-amd64"], ["6.1.0-9-cloud-amd64",
                                                            "6.1.0-56-cloud-amd64"])
    k = find_kernel(None, boot, lib)
    assert k.version == "6.1.0-56-cloud-amd64"
    assert k.image == boot / "vmlinuz-6.1.0-56-cloud-amd64"
    assert k.modules == lib / "6.1.0-56-cloud-amd64"


def test_no_kernel_names_the_package_to_install(tmp_path):
    boot, lib = _kernel_tree(tmp_path, [], [])
    with pytest.raises(VmError, match="linux-image-cloud-amd64"):
        find_kernel(None, boot, lib)
    with pytest.raises(VmError, match="no such kernel"):
        find_kernel(tmp_path / "nope", boot, lib)


# ---------------------------------------------------------------- qemu

CH = Channels(None, 5, 6, 7)


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_qemu_command_line_boots_the_kernel_directly_with_the_image_copy_on_write():
    argv = command_line(VmSpec(Path("/boot/vmlinuz"), Path("/tmp/i,rd"), Path("/x/a,b.img"),
                               memory_mib=768, cpus=2), CH)
    assert argv[:3] == ["qemu-system-x86_64", "-nodefaults", "-no-user-config"]
    assert _opt(argv, "-kernel") == ["/boot/vmlinuz"] and _opt(argv, "-initrd") == ["/tmp/i,rd"]
    assert _opt(argv, "-m") == ["768"] and _opt(argv, "-smp") == ["2"]
    assert _opt(argv, "-accel") == ["tcg"] and "-cpu" not in argv
    assert _opt(argv, "-machine") == ["q35"]
    assert _opt(argv, "-drive") == ["file=/x/a,,b.img,if=none,id=disk,format=raw,snapshot=on"]
    # The console on the one serial port; the streams on numbered virtio-serial ports
    # over the sockets QEMU inherits.
    assert _opt(argv, "-serial") == ["chardev:con"]
    assert _opt(argv, "-chardev") == ["null,id=con", "socket,id=out,fd=5", "socket,id=ctl,fd=6",
                                      "socket,id=in,fd=7"]
    assert _opt(argv, "-device") == [
        "virtio-serial-pci,id=vser,max_ports=4",
        "virtserialport,bus=vser.0,nr=1,chardev=out,name=ociext4.out",
        "virtserialport,bus=vser.0,nr=2,chardev=ctl,name=ociext4.ctl",
        "virtserialport,bus=vser.0,nr=3,chardev=in,name=ociext4.in",
        "virtio-blk-pci,drive=disk"]
    assert "-no-reboot" in argv and "-netdev" not in argv


def test_qemu_command_line_rw_kvm_and_no_disk():
    argv = command_line(VmSpec(Path("k"), Path("i"), Path("a.img"), accel="kvm", rw=True), CH)
    assert _opt(argv, "-drive")[0].endswith(",snapshot=off")
    assert _opt(argv, "-accel") == ["kvm"] and _opt(argv, "-cpu") == ["host"]
    assert "-drive" not in command_line(VmSpec(Path("k"), Path("i"), None), CH)
    with pytest.raises(VmError):
        command_line(VmSpec(Path("k"), Path("i"), None, accel="hax"), CH)


def test_a_relative_image_path_with_a_colon_is_passed_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = command_line(VmSpec(Path("k"), Path("i"), Path("rootfs-12:30.img")), CH)
    assert _opt(argv, "-drive")[0].startswith(f"file={tmp_path}/rootfs-12:30.img,")


def test_user_network_forwards_published_ports_and_volumes_share_memory():
    spec = VmSpec(Path("k"), Path("i"), None, memory_mib=256, network="user",
                  publish=(Publish(18080, 8080), Publish(5353, 53, "udp", "::1")),
                  shares=(Share("vol0", Path("/run/a,b.sock")),))
    argv = command_line(spec, CH)
    assert _opt(argv, "-netdev") == [
        "user,id=net0,hostfwd=tcp:127.0.0.1:18080-:8080,hostfwd=udp:[::1]:5353-:53"]
    assert "virtio-net-pci,netdev=net0" in _opt(argv, "-device")
    assert _opt(argv, "-object") == ["memory-backend-memfd,id=mem,size=256M,share=on"]
    assert _opt(argv, "-numa") == ["node,memdev=mem"]
    assert "socket,id=vfs0,path=/run/a,,b.sock" in _opt(argv, "-chardev")
    assert "vhost-user-fs-pci,chardev=vfs0,tag=vol0" in _opt(argv, "-device")


def test_kernel_messages_go_to_the_console_port_only():
    assert kernel_cmdline(False).split() == ["console=ttyS0", "panic=-1", "cryptomgr.notests",
                                             "no_timer_check", "quiet"]
    assert "quiet" not in kernel_cmdline(True).split()


# ------------------------------------------------------------ settings

def cfg(doc: dict) -> ContainerConfig:
    return container_config(doc, "config")


CONFIG = {"Entrypoint": ["/entry"], "Cmd": ["default", "arg"], "Env": ["A=1", "PATH=/bin"],
          "WorkingDir": "/srv", "User": "app"}


def test_image_config_becomes_the_guest_settings():
    s = guest_settings(cfg(CONFIG), Overrides(), host_env={})
    assert s.argv == ["/entry", "default", "arg"]
    assert s.env == ["A=1", "PATH=/bin", "HOSTNAME=ociext4"]
    assert (s.workdir, s.user, s.rw) == ("/srv", "app", False)
    assert ("arg", "/entry") in s.pairs() and ("workdir", "/srv") in s.pairs()


def test_command_line_overrides_follow_docker_run():
    o = Overrides(command=["x", "y"], env=["A=2", "B", "C", "D="], workdir="/w", user="0:0",
                  rw=True)
    s = guest_settings(cfg(CONFIG), o, host_env={"B": "from host"})
    assert s.argv == ["/entry", "x", "y"]          # arguments replace Cmd only
    assert s.env == ["A=2", "PATH=/bin", "B=from host", "D=", "HOSTNAME=ociext4"]
    assert (s.workdir, s.user, s.rw) == ("/w", "0:0", True)
    # --entrypoint replaces Entrypoint and drops the image's Cmd.
    assert guest_settings(cfg(CONFIG), Overrides(entrypoint="sh"), {}).argv == ["sh"]
    assert guest_settings(cfg(CONFIG), Overrides(entrypoint="sh", command=["-c", "x"]),
                          {}).argv == ["sh", "-c", "x"]
    assert guest_settings(cfg(CONFIG), Overrides(entrypoint="", command=["ls"]), {}).argv == ["ls"]


def test_defaults_without_a_config():
    s = guest_settings(cfg({}), Overrides(command=["ls"]), host_env={})
    assert s.workdir == "/" and s.user == ""
    assert s.env[0].startswith("PATH=/usr/local/sbin:") and s.env[1] == "HOSTNAME=ociext4"
    assert guest_settings(cfg({"Cmd": "echo hi"}), Overrides(), {}).argv == ["/bin/sh", "-c",
                                                                         "echo hi"]


def test_unrunnable_settings_are_refused():
    with pytest.raises(SettingsError, match="no command"):
        guest_settings(cfg({"Env": ["A=1"]}), Overrides(), {})
    with pytest.raises(SettingsError, match="not absolute"):
        guest_settings(cfg({}), Overrides(command=["ls"], workdir="rel"), {})
    # A config whose Env is no list never gets this far: the model refuses it.
    with pytest.raises(DocumentError, match=r"config: config\.Env: expected an array"):
        cfg({"Env": "A=1"})
    with pytest.raises(SettingsError, match="no variable name"):
        merge_env([], ["=x"], "h", {})


# --------------------------------------------------------- outcomes


def test_status_frames_parse_and_map_to_docker_exit_codes():
    assert parse_status(b"exit 7") == Status("exit", 7)
    assert parse_status(b"signal 9") == Status("signal", 9)
    assert parse_status(b"exit") is None and parse_status(b"what 1") is None

    def out(status: Status | None, timed_out: bool = False, killed: bool = False,
            output_error: str | None = None) -> Outcome:
        return Outcome(status, timed_out, 0, b"[ 1.0] Kernel panic - not syncing", b"",
                       killed, output_error)

    assert exit_code(out(Status("exit", 7))) == (7, None)
    assert exit_code(out(Status("exit", 0))) == (0, None)
    assert exit_code(out(Status("signal", 9))) == (137, None)
    assert exit_code(out(Status("error", 125))) == (125, None)
    assert exit_code(out(None, killed=True)) == (137, None)
    assert exit_code(out(Status("exit", 0), output_error="stdout: No space left on device")) \
        == (125, "stdout: No space left on device")
    code, why = exit_code(out(None))
    assert code == 125 and "Kernel panic" in why
    code, why = exit_code(out(Status("exit", 0), timed_out=True))
    assert code == 125 and "timed out" in why


# ------------------------------------------------------- run settings


def test_run_settings_tell_the_init_the_root_mode_network_volumes_and_etc_files():
    spec = RunSpec(command=("ls",), hostname="box", interactive=True, tty=True,
                   volumes=(Volume(Path("/h"), "/data", True),), tmpfs=("/scratch",))
    s = settings_for(cfg({}), spec, winsize=(30, 100), host_env={},
                     host_resolv="nameserver 127.0.0.53\nsearch example.org\noptions edns0\n")
    pairs = s.pairs()
    assert ("root", "throwaway") in pairs and ("interactive", "1") in pairs
    assert ("tty", "1") in pairs and ("winsize", "30 100") in pairs
    assert ("net.addr", "10.0.2.15/24") in pairs and ("net.gw", "10.0.2.2") in pairs
    assert ("volume", "vol0\t/data\tro") in pairs and ("tmpfs", "/scratch") in pairs
    assert dict(pairs)["resolv"] == "nameserver 10.0.2.3\nsearch example.org\noptions edns0\n"
    hosts = dict(pairs)["hosts"].splitlines()
    assert hosts[0] == "127.0.0.1\tlocalhost" and hosts[-1] == "10.0.2.15\tbox"
    none = settings_for(cfg({}), RunSpec(command=("ls",), network="none", read_only=True),
                        host_env={}).pairs()
    assert ("root", "ro") in none and "net.addr" not in dict(none)
    assert "resolv" not in dict(none) and "box" not in dict(none)["hosts"]
    assert ("root", "rw") in settings_for(cfg({}), RunSpec(command=("ls",), rw=True),
                                          host_env={}).pairs()

"""QEMU's command line for one run: direct kernel boot of a q35 machine with
virtio-pci, the image as a virtio block device, and four serial ports (the
kernel's console, the command's stdout and stderr, the init's status)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import VmError

QEMU = "qemu-system-x86_64"
QEMU_HINT = "install QEMU (Debian: apt-get install qemu-system-x86)"


@dataclass(frozen=True, slots=True)
class Channels:
    """Where QEMU writes each serial port: paths it can open (e.g. /dev/fd/N),
    or None to drop the port's bytes."""

    console: str | None
    stdout: str
    stderr: str
    control: str


@dataclass(frozen=True, slots=True)
class VmSpec:
    kernel: Path
    initrd: Path
    disk: Path | None          # None: no disk (the KVM probe)
    accel: str = "tcg"         # "kvm" or "tcg"
    memory_mib: int = 512
    cpus: int = 1
    rw: bool = False
    console: bool = False      # full kernel messages rather than quiet


def find_qemu() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise VmError(f"{QEMU} not found; {QEMU_HINT}")
    return path


def _opt(value: str) -> str:
    # QEMU's option syntax: a comma inside a value is written twice.
    return value.replace(",", ",,")


def _serial(name: str, path: str | None) -> list[str]:
    dev = f"file,id={name},path={_opt(path)}" if path else f"null,id={name}"
    return ["-chardev", dev, "-serial", f"chardev:{name}"]


def kernel_cmdline(console: bool) -> str:
    # panic=-1 reboots at once on a panic, which -no-reboot turns into an exit.
    # Without --console only warnings and worse reach ttyS0 (kept for errors).
    # cryptomgr.notests skips the crypto self-tests: ~0.2 s of CPU under TCG
    # in a VM that lives for one command.
    args = ["console=ttyS0", "panic=-1", "cryptomgr.notests"]
    if not console:
        args.append("quiet")
    return " ".join(args)


def command_line(spec: VmSpec, ch: Channels, qemu: str = QEMU) -> list[str]:
    if spec.accel not in ("kvm", "tcg"):
        raise VmError(f"accelerator {spec.accel!r}: expected kvm or tcg")
    argv = [qemu, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-machine", "q35", "-accel", spec.accel]
    if spec.accel == "kvm":
        argv += ["-cpu", "host"]
    argv += ["-m", str(spec.memory_mib), "-smp", str(spec.cpus),
             "-kernel", str(spec.kernel), "-initrd", str(spec.initrd),
             "-append", kernel_cmdline(spec.console)]
    argv += _serial("con", ch.console) + _serial("out", ch.stdout)
    argv += _serial("err", ch.stderr) + _serial("ctl", ch.control)
    if spec.disk is not None:
        drive = f"file={_opt(str(spec.disk))},if=none,id=disk,format=raw"
        # snapshot=on: the guest's writes go to a temporary overlay, so the
        # image file stays byte for byte as it was.
        drive += ",snapshot=off" if spec.rw else ",snapshot=on"
        argv += ["-drive", drive, "-device", "virtio-blk-pci,drive=disk"]
    return argv

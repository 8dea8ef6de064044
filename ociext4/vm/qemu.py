"""QEMU's command line for one run: direct kernel boot of a q35 machine with
virtio-pci, the image as a virtio block device, the kernel's console on the
first serial port, the command's streams on three virtio-serial ports,
optionally user-mode networking and virtiofs shares."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from .errors import VmError
from .spec import Publish

QEMU = "qemu-system-x86_64"
QEMU_HINT = "install QEMU (Debian: apt-get install qemu-system-x86)"

# QEMU's user-mode network: its fixed addresses (the guest's, the gateway
# that reaches the host's 127.0.0.1, the DNS relay to the host's resolver).
GUEST_ADDR = "10.0.2.15/24"
GATEWAY = "10.0.2.2"
DNS = "10.0.2.3"


@dataclass(frozen=True, slots=True)
class Channels:
    """How QEMU reaches this process: the console as a path it can open
    (e.g. /dev/fd/N) or None to drop it; the three virtio-serial ports as
    connected socket descriptors QEMU inherits."""

    console: str | None
    out: int
    ctl: int
    stdin: int


@dataclass(frozen=True, slots=True)
class Share:
    """A virtiofs share: the tag the guest mounts, virtiofsd's socket."""

    tag: str
    socket: Path


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
    network: str = "none"      # "user" or "none"
    publish: tuple[Publish, ...] = ()
    shares: tuple[Share, ...] = ()


def find_qemu() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise VmError(f"{QEMU} not found; {QEMU_HINT}")
    return path


def _opt(value: str) -> str:
    # QEMU's option syntax: a comma inside a value is written twice.
    return value.replace(",", ",,")


def kernel_cmdline(console: bool) -> str:
    # panic=-1 reboots at once on a panic, which -no-reboot turns into an exit.
    # Without --console only warnings and worse reach ttyS0 (kept for errors).
    # cryptomgr.notests skips the crypto self-tests: ~0.2 s of CPU under TCG
    # in a VM that lives for one command.  no_timer_check: under TCG on a
    # loaded host the kernel's IO-APIC timer check can miss the ticks it
    # waits for and panic ("timer doesn't work through Interrupt-remapped
    # IO-APIC"); seen here with five test runs sharing two cores.
    args = ["console=ttyS0", "panic=-1", "cryptomgr.notests", "no_timer_check"]
    if not console:
        args.append("quiet")
    return " ".join(args)


def _hostfwd(p: Publish) -> str:
    host = f"[{p.host_ip}]" if ":" in p.host_ip else p.host_ip
    return f"hostfwd={p.protocol}:{host}:{p.host_port}-:{p.guest_port}"


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
    con = f"file,id=con,path={_opt(ch.console)}" if ch.console else "null,id=con"
    argv += ["-chardev", con, "-serial", "chardev:con"]
    # Port numbers are fixed so the init finds each one as /dev/vport*pN.
    argv += ["-device", "virtio-serial-pci,id=vser,max_ports=4"]
    for nr, (name, fd) in enumerate((("out", ch.out), ("ctl", ch.ctl), ("in", ch.stdin)),
                                    start=1):
        argv += ["-chardev", f"socket,id={name},fd={fd}",
                 "-device", f"virtserialport,bus=vser.0,nr={nr},chardev={name},"
                            f"name=ociext4.{name}"]
    if spec.disk is not None:
        # Absolute: QEMU reads "name:" in front of a relative path as a protocol.
        drive = f"file={_opt(str(spec.disk.absolute()))},if=none,id=disk,format=raw"
        # snapshot=on: the guest's writes go to a temporary overlay, so the
        # image file stays byte for byte as it was.
        drive += ",snapshot=off" if spec.rw else ",snapshot=on"
        argv += ["-drive", drive, "-device", "virtio-blk-pci,drive=disk"]
    if spec.network == "user":
        netdev = "user,id=net0" + "".join(f",{_hostfwd(p)}" for p in spec.publish)
        argv += ["-netdev", netdev, "-device", "virtio-net-pci,netdev=net0"]
    if spec.shares:
        # vhost-user needs the guest's memory shared with virtiofsd.
        argv += ["-object", f"memory-backend-memfd,id=mem,size={spec.memory_mib}M,share=on",
                 "-numa", "node,memdev=mem"]
        for i, share in enumerate(spec.shares):
            argv += ["-chardev", f"socket,id=vfs{i},path={_opt(str(share.socket))}",
                     "-device", f"vhost-user-fs-pci,chardev=vfs{i},tag={share.tag}"]
    return argv

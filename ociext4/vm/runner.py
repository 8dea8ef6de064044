"""One run: kernel, initramfs, accelerator, volumes, boot; and the exit
code the outcome means, docker's way. `run_vm` is the one entry point the
command line and the Python API share."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .. import sidecar
from ..cachedir import cache_dir
from ..ext4.verity import VerityInfo, read_info
from ..model import ContainerConfig
from . import terminal, virtiofs
from .accel import choose_accel
from .errors import VmError
from .initramfs import base_initramfs, records, write_initrd
from .kernel import find_kernel
from .qemu import DNS, GATEWAY, GUEST_ADDR, VmSpec
from .relay import Outcome, Streams, boot
from .rundir import run_directory
from .settings import GuestMount, GuestSettings, Overrides, guest_settings, hosts_file, resolv_file
from .spec import RunSpec
from .vmlinux import pvh_kernel

EXIT_VM = 125  # ociext4 or the VM failed, as docker run says it
GUEST_DISK = "/dev/vda"   # the image, as the guest's kernel names it


@dataclass(frozen=True, slots=True)
class RunOutcome:
    exit_code: int
    error: str | None       # why ociext4 itself failed (exit_code 125), for one line
    outcome: Outcome


def _host_resolv() -> str:
    try:
        return Path("/etc/resolv.conf").read_text(errors="replace")
    except OSError:
        return ""


def verity_for(image: Path, spec: RunSpec) -> VerityInfo | None:
    """The hash tree the root is verified against: the pinned root hash, or
    the sidecar's; None for an image made without --verity."""
    root_hash = spec.verity_root_hash
    if root_hash is None:
        side = sidecar.read(image)
        if side is None or side.verity is None:
            return None
        root_hash = side.verity.root_hash
    info = read_info(image, root_hash)
    if spec.rw:
        raise VmError(f"{image}: --rw cannot write an image with a dm-verity hash tree "
                      "(its root is read-only)")
    return info


def settings_for(config: ContainerConfig, spec: RunSpec,
                 winsize: tuple[int, int] | None = None,
                 host_env: Mapping[str, str] | None = None,
                 host_resolv: str | None = None,
                 verity: VerityInfo | None = None) -> GuestSettings:
    """The image config and the spec merged into what the init is told;
    with `verity`, the root on dm-verity over the disk (its throwaway
    writes on an overlay, in the guest's memory)."""
    base = guest_settings(config, Overrides(
        command=spec.command, entrypoint=spec.entrypoint, env=spec.env, workdir=spec.workdir,
        user=spec.user, hostname=spec.hostname, rw=spec.rw), host_env)
    net = spec.network == "user"
    address = GUEST_ADDR.split("/")[0] if net else None
    return GuestSettings(
        base.argv, base.env, base.workdir, base.user, base.hostname, rw=spec.rw,
        read_only=spec.read_only and not spec.rw, interactive=spec.interactive, tty=spec.tty,
        winsize=winsize if spec.tty else None, hosts=hosts_file(spec.hostname, address),
        resolv=resolv_file(DNS, _host_resolv() if host_resolv is None else host_resolv)
        if net else None,
        network=(GUEST_ADDR, GATEWAY) if net else None,
        mounts=tuple(GuestMount(f"vol{i}", v.target, v.read_only)
                     for i, v in enumerate(spec.volumes)),
        tmpfs=spec.tmpfs, verity=verity.table(GUEST_DISK) if verity is not None else None)


def run_vm(image: Path, config: ContainerConfig, spec: RunSpec,
           stdin: int | BinaryIO | None = None, stdout: int | BinaryIO | None = None,
           stderr: int | BinaryIO | None = None) -> RunOutcome:
    """Boots `image` and runs the command the config and spec make; streams
    are descriptors or file objects (None: stdin empty, output dropped)."""
    stdin_fd = stdin if isinstance(stdin, int) else None
    if stdin is not None and not isinstance(stdin, int):
        try:
            stdin_fd = stdin.fileno()
        except (AttributeError, OSError, ValueError):
            stdin_fd = None
    size_fd = stdin_fd if stdin_fd is not None and os.isatty(stdin_fd) else None
    winsize = terminal.window_size(size_fd) if spec.tty and size_fd is not None else None
    settings = settings_for(config, spec, winsize, verity=verity_for(image, spec))
    kernel = find_kernel(spec.kernel)
    base = base_initramfs(kernel, cache_dir("initramfs"))
    boot_image = pvh_kernel(kernel.image, cache_dir("kernels")) or kernel.image
    accel = choose_accel(spec.accel, boot_image, base, cache_dir("accel"))
    io = Streams(stdin if spec.interactive else None, stdout, stderr,
                 (lambda: terminal.window_size(size_fd)) if size_fd is not None else None)
    with run_directory() as tmp, virtiofs.serving(spec.volumes, tmp) as shares:
        initrd = write_initrd(base, records(settings.pairs()), tmp / "initrd")
        vm = VmSpec(boot_image, initrd, image, accel=accel, memory_mib=spec.memory_mib,
                    cpus=spec.cpus, rw=spec.rw, console=spec.console, network=spec.network,
                    publish=spec.publish, shares=shares)
        with terminal.raw(size_fd if spec.tty and spec.interactive else None):
            outcome = boot(vm, io, spec.timeout, show_console=spec.console,
                           interactive=spec.interactive, tty=spec.tty,
                           forward_signals=spec.forward_signals, stop_timeout=spec.stop_timeout)
    code, why = exit_code(outcome)
    return RunOutcome(code, why, outcome)


def exit_code(outcome: Outcome) -> tuple[int, str | None]:
    """The process's exit code and, when ociext4 itself failed, why."""
    st = outcome.status
    if outcome.timed_out:
        return EXIT_VM, "timed out; the VM was stopped"
    if outcome.output_error:
        return EXIT_VM, outcome.output_error
    if outcome.killed:
        # docker stop's way: still running after the grace period, killed.
        return 137, None
    if st is not None:
        if st.kind == "exit":
            return st.value, None
        if st.kind == "signal":
            # docker's convention: death by signal N is 128+N.
            return 128 + st.value, None
        return st.value or EXIT_VM, None   # the init said why on stderr
    detail = (outcome.qemu_stderr or outcome.console_tail).decode("utf-8", "replace").strip()
    detail = " ".join(detail.splitlines()[-6:])[-600:]
    return EXIT_VM, (f"the VM stopped without reporting a status (QEMU exit "
                     f"{outcome.qemu_returncode})" + (f": {detail}" if detail else ""))

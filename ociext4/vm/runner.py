"""One run: kernel, initramfs, accelerator, boot; and the exit code the
outcome means, docker's way."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .. import tempfiles
from ..cachedir import cache_dir
from .accel import choose_accel
from .initramfs import base_initramfs, records, write_initrd
from .kernel import find_kernel
from .qemu import VmSpec
from .relay import Outcome, boot
from .settings import GuestSettings
from .vmlinux import pvh_kernel

EXIT_VM = 125  # ociext4 or the VM failed, as docker run says it


@dataclass(frozen=True, slots=True)
class VmOptions:
    kernel: Path | None = None
    accel: str = "auto"
    memory_mib: int = 512
    cpus: int = 1
    timeout: float | None = None
    console: bool = False


def run_vm(image: Path, settings: GuestSettings, opts: VmOptions, stdout: BinaryIO,
           stderr: BinaryIO) -> Outcome:
    kernel = find_kernel(opts.kernel)
    base = base_initramfs(kernel, cache_dir("initramfs"))
    boot_image = pvh_kernel(kernel.image, cache_dir("kernels")) or kernel.image
    accel = choose_accel(opts.accel, boot_image, base, cache_dir("accel"))
    with tempfiles.directory("ociext4-run-") as tmp:
        initrd = write_initrd(base, records(settings.pairs()), tmp / "initrd")
        spec = VmSpec(boot_image, initrd, image, accel=accel,
                      memory_mib=opts.memory_mib, cpus=opts.cpus, rw=settings.rw,
                      console=opts.console)
        return boot(spec, stdout, stderr, opts.timeout, show_console=opts.console)


def exit_code(outcome: Outcome) -> tuple[int, str | None]:
    """The process's exit code and, when ociext4 itself failed, why."""
    st = outcome.status
    if outcome.timed_out:
        return EXIT_VM, "timed out; the VM was stopped"
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

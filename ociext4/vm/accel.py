"""Choosing KVM or TCG. `/dev/kvm` opening is not proof that KVM works: on
some hosts QEMU aborts with `-cpu host` or guests die with "KVM internal
error", so `auto` believes only a probe boot that reports back within a few
seconds, and caches the verdict per QEMU, kernel and host CPU."""

from __future__ import annotations

import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path

from .. import tempfiles
from .errors import VmError
from .initramfs import records, write_initrd
from .qemu import VmSpec, find_qemu
from .relay import Outcome, Status, Streams, boot

PROBE_TIMEOUT = 5.0


def kvm_opens(dev: str = "/dev/kvm") -> bool:
    try:
        os.close(os.open(dev, os.O_RDWR | os.O_CLOEXEC))
    except OSError:
        return False
    return True


def _host_cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def probe_key(kernel: Path, qemu: str) -> str:
    st = os.stat(qemu)
    text = f"{qemu} {st.st_size} {st.st_mtime_ns} {kernel} {os.stat(kernel).st_mtime_ns} " \
           f"{_host_cpu()} {os.uname().release}"
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def probe_boot(kernel: Path, base_initrd: Path, workdir: Path) -> Outcome:
    """Boots the init with no disk and nothing to run under KVM."""
    initrd = write_initrd(base_initrd, records([("probe", "1")]), workdir / "probe.initrd")
    spec = VmSpec(kernel, initrd, None, accel="kvm", memory_mib=256)
    sink = io.BytesIO()
    return boot(spec, Streams(None, sink, sink), timeout=PROBE_TIMEOUT)


def kvm_works(kernel: Path, base_initrd: Path, cache: Path,
              probe: Callable[[Path, Path, Path], Outcome] = probe_boot) -> bool:
    path = cache / f"kvm-probe-{probe_key(kernel, find_qemu())}.json"
    try:
        return bool(json.loads(path.read_text())["kvm"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    with tempfiles.directory("ociext4-probe-") as tmp:
        outcome = probe(kernel, base_initrd, tmp)
    ok = outcome.status == Status("exit", 0) and not outcome.timed_out
    tmp_path = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tmp_path.write_text(json.dumps({"kvm": ok, "qemu_returncode": outcome.qemu_returncode,
                                    "timed_out": outcome.timed_out}) + "\n")
    os.replace(tmp_path, path)
    return ok


def choose_accel(wanted: str, kernel: Path, base_initrd: Path, cache: Path) -> str:
    if wanted == "tcg":
        return "tcg"
    if wanted == "kvm":
        if not kvm_opens():
            raise VmError("--accel kvm: /dev/kvm cannot be opened")
        return "kvm"
    if wanted != "auto":
        raise VmError(f"--accel {wanted}: expected auto, kvm or tcg")
    if not kvm_opens():
        return "tcg"
    return "kvm" if kvm_works(kernel, base_initrd, cache) else "tcg"

"""Finding the kernel to boot and the directory of its modules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import VmError

INSTALL_HINT = "install a kernel (Debian: apt-get install linux-image-cloud-amd64) or pass --kernel"


@dataclass(frozen=True, slots=True)
class Kernel:
    image: Path        # the bzImage QEMU loads
    version: str       # uname -r of that kernel
    modules: Path      # /lib/modules/<version>


def _version_key(version: str) -> list[tuple[int, str]]:
    # "6.1.0-56-cloud-amd64" sorts by its numbers first: 6.1.0-9 < 6.1.0-56.
    return [(int(p), "") if p.isdigit() else (-1, p) for p in re.split(r"[.\-+~]", version)]


def image_version(image: Path) -> str | None:
    """The release a bzImage says it is (its header's kernel_version string,
    boot protocol 2.00+), so a renamed file still finds its modules."""
    try:
        with open(image, "rb") as f:
            head = f.read(0x10000)
    except OSError:
        return None
    if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
        return None
    offset = int.from_bytes(head[0x20E:0x210], "little")
    start = 0x200 + offset
    if not offset or start >= len(head):
        return None
    text = head[start:start + 256].split(b"\0", 1)[0].decode("ascii", "replace")
    return text.split()[0] if text.split() else None


def find_kernel(explicit: Path | None = None, boot: Path = Path("/boot"),
                lib_modules: Path = Path("/lib/modules")) -> Kernel:
    """`explicit` (--kernel), else the newest /boot/vmlinuz-* that has its
    modules installed."""
    if explicit is not None:
        if not explicit.is_file():
            raise VmError(f"{explicit}: no such kernel image")
        # Its modules are looked up by the version it carries (else by its
        # name's); a kernel with the drivers built in needs none, which the
        # module resolver decides.
        version = image_version(explicit) or explicit.name.removeprefix("vmlinuz-")
        return Kernel(explicit, version, lib_modules / version)
    candidates = sorted((p for p in boot.glob("vmlinuz-*") if p.is_file()),
                        key=lambda p: _version_key(p.name.removeprefix("vmlinuz-")), reverse=True)
    if not candidates:
        raise VmError(f"no kernel found in {boot} (no vmlinuz-*); {INSTALL_HINT}")
    for image in candidates:
        version = image.name.removeprefix("vmlinuz-")
        if (lib_modules / version / "modules.dep").is_file():
            return Kernel(image, version, lib_modules / version)
    raise VmError(f"{candidates[0]}: its modules are missing ({lib_modules}/"
                  f"{candidates[0].name.removeprefix('vmlinuz-')}); {INSTALL_HINT}")

"""The kernel modules the guest needs, resolved through modules.dep in the
order they must load, and read decompressed (.ko, .ko.xz, .ko.zst)."""

from __future__ import annotations

import gzip
import lzma
import re
from collections.abc import Iterable
from pathlib import Path

import zstandard

from .errors import VmError

# What the guest needs to reach its disk, its file system and the host's
# streams; their dependencies (virtio, virtio_ring, virtio_pci_*_dev, jbd2,
# ...) follow.
GUEST_MODULES = ("virtio_pci", "virtio_blk", "ext4", "virtio_console")
# Loaded only by runs that use them: each module costs boot time under TCG.
NET_MODULES = ("virtio_net",)
FS_MODULES = ("virtiofs",)
# A root on dm-verity (dm_mod and dm_bufio follow), and the overlay that
# gives it a throwaway writable layer.
DM_MODULES = ("dm_verity", "overlay")

_SUFFIX = re.compile(r"\.ko(\.xz|\.zst|\.gz)?$")


def module_name(path: str) -> str:
    """modprobe's name for a module file: `-` and `_` are the same."""
    return _SUFFIX.sub("", path.rsplit("/", 1)[-1]).replace("-", "_")


def parse_dep(text: str) -> dict[str, tuple[str, list[str]]]:
    """modules.dep as {name: (path, [dependency paths])}."""
    out: dict[str, tuple[str, list[str]]] = {}
    for line in text.splitlines():
        path, sep, deps = line.partition(":")
        if sep and path.strip():
            out[module_name(path.strip())] = (path.strip(), deps.split())
    return out


def parse_builtin(text: str) -> set[str]:
    return {module_name(line.strip()) for line in text.splitlines() if line.strip()}


def resolve(wanted: Iterable[str], dep: dict[str, tuple[str, list[str]]],
            builtin: set[str]) -> list[str]:
    """Paths (relative to the modules directory) of `wanted` and everything
    they depend on, each after its dependencies, built-in ones left out."""
    by_path = {path: deps for path, deps in dep.values()}
    order: list[str] = []
    done: set[str] = set()

    def visit(path: str, stack: tuple[str, ...]) -> None:
        if path in done:
            return
        if path in stack:
            raise VmError(f"modules.dep: dependency loop through {path}")
        for d in by_path.get(path, []):
            visit(d, (*stack, path))
        done.add(path)
        order.append(path)

    for name in wanted:
        key = name.replace("-", "_")
        if key in builtin:
            continue
        if key in dep:
            visit(dep[key][0], ())
        else:
            raise VmError(f"kernel module {name} is neither in modules.dep nor built in")
    return order


def guest_modules(modules_dir: Path, wanted: Iterable[str] = GUEST_MODULES) -> list[str]:
    """The module paths to load, in order; none when the kernel has no
    modules directory (everything needed must then be built in)."""
    try:
        dep = parse_dep((modules_dir / "modules.dep").read_text())
    except FileNotFoundError:
        return []
    try:
        builtin = parse_builtin((modules_dir / "modules.builtin").read_text())
    except FileNotFoundError:
        builtin = set()
    return resolve(wanted, dep, builtin)


def module_groups(modules_dir: Path) -> dict[str, list[str]]:
    """The always-loaded modules ("module") and those for the network
    ("module.net"), volumes ("module.fs") and dm-verity ("module.dm"), each
    group without what an earlier one already loads."""
    groups: dict[str, list[str]] = {}
    seen: set[str] = set()
    for key, wanted in (("module", GUEST_MODULES), ("module.net", NET_MODULES),
                        ("module.fs", FS_MODULES), ("module.dm", DM_MODULES)):
        paths = [p for p in guest_modules(modules_dir, wanted) if p not in seen]
        seen.update(paths)
        groups[key] = paths
    return groups


def read_module(path: Path) -> bytes:
    """The module's ELF bytes: the initramfs holds them uncompressed so the
    init needs no decompressor."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".zst"):
        return zstandard.ZstdDecompressor().decompress(data, max_output_size=256 << 20)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    return data

"""The guest's initramfs: a cached archive with our init and the kernel's
modules, and a small per-run archive of settings appended to it (the kernel
unpacks concatenated newc archives in order)."""

from __future__ import annotations

import hashlib
import os
import shutil
from importlib import resources
from pathlib import Path

from .. import tempfiles
from . import cpio
from .errors import VmError
from .kernel import Kernel
from .modules import module_groups, read_module

FORMAT = 2  # bump when the archive's layout changes
INIT_NAME = "ociext4-init"


def init_binary() -> bytes:
    """The static init built at install time from csrc/init/init.c."""
    ref = resources.files("ociext4.vm") / INIT_NAME
    try:
        return ref.read_bytes()
    except FileNotFoundError:
        raise VmError(f"the guest init ({INIT_NAME}) is missing: reinstall ociext4 "
                      "with gcc and a static libc (Debian: libc6-dev)") from None


def records(pairs: list[tuple[str, str]]) -> bytes:
    """The init's settings format: NUL-terminated key=value records."""
    out = bytearray()
    for key, value in pairs:
        if "=" in key or "\0" in key or "\0" in value:
            raise VmError(f"setting {key}: NUL bytes cannot be passed to the guest")
        out += f"{key}={value}".encode("utf-8", "surrogateescape") + b"\0"
    return bytes(out)


def base_members(init: bytes, modules_dir: Path, module_paths: list[str],
                 optional: dict[str, list[str]] | None = None) -> list[cpio.Member]:
    """The init, the modules, and their list: `module_paths` always loaded,
    `optional` ({"module.net": [...], ...}) loaded by the runs that ask."""
    members = [cpio.file("init", init, 0o755), cpio.directory("ociext4"),
               cpio.directory("ociext4/modules.d")]
    order: list[tuple[str, str]] = []
    tagged = [("module", rel) for rel in module_paths]
    tagged += [(key, rel) for key, paths in (optional or {}).items() for rel in paths]
    for i, (key, rel) in enumerate(tagged):
        # Numbered flat names: two modules may share a base name.
        name = f"ociext4/modules.d/{i:02d}-{rel.rsplit('/', 1)[-1].split('.ko')[0]}.ko"
        members.append(cpio.file(name, read_module(modules_dir / rel)))
        order.append((key, "/" + name))
    members.append(cpio.file("ociext4/modules", records(order)))
    return members


def _cache_key(kernel: Kernel, init: bytes, module_paths: list[str]) -> str:
    h = hashlib.sha256(f"ociext4-initramfs {FORMAT} {kernel.version}\n".encode())
    h.update(hashlib.sha256(init).digest())
    for rel in module_paths:
        st = (kernel.modules / rel).stat()
        h.update(f"{rel} {st.st_size} {st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def base_initramfs(kernel: Kernel, cache: Path) -> Path:
    """The cached archive for this kernel and init, built on first use."""
    init = init_binary()
    groups = module_groups(kernel.modules)
    every = [p for paths in groups.values() for p in paths]
    path = cache / f"{kernel.version}-{_cache_key(kernel, init, every)}.cpio"
    if path.is_file():
        return path
    always = groups.pop("module")
    data = cpio.archive(base_members(init, kernel.modules, always, groups))
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    tempfiles.track(tmp)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tempfiles.untrack(tmp)
    return path


def settings_archive(settings: bytes) -> bytes:
    # ociext4/ already exists: the base archive made it.
    return cpio.archive([cpio.file("ociext4/settings", settings)])


def write_initrd(base: Path, settings: bytes, dest: Path) -> Path:
    """The run's initrd: the cached archive with the settings appended."""
    with open(base, "rb") as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
        out.write(settings_archive(settings))
    return dest

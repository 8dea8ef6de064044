"""The uncompressed kernel inside a bzImage, for PVH direct boot.

QEMU boots an ELF vmlinux that carries a PVH entry note straight into the
kernel: no BIOS real-mode path, no decompressing 40-50 MB under TCG on every
boot (about 0.4 s of CPU here). The ELF is unpacked once per kernel file and
cached; a kernel without the note, or packed with something we cannot
decompress, boots as the bzImage instead."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import struct
from pathlib import Path

import zstandard

from .. import tempfiles

_XEN_ELFNOTE_PHYS32_ENTRY = 18
_MAX_VMLINUX = 1 << 30


def payload(bzimage: bytes) -> bytes | None:
    """The compressed kernel a bzImage carries (boot protocol >= 2.08)."""
    if len(bzimage) < 0x250 or bzimage[0x202:0x206] != b"HdrS":
        return None
    version = struct.unpack_from("<H", bzimage, 0x206)[0]
    if version < 0x208:
        return None
    setup_sects = bzimage[0x1F1] or 4
    offset, length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + offset
    if start + length > len(bzimage):
        return None
    return bzimage[start:start + length]


def _lz4_legacy(data: bytes) -> bytes:
    import lz4.block

    out, pos = bytearray(), 4
    while pos + 4 <= len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        if size == 0x184C2102:   # a concatenated stream's next magic
            pos += 4
            continue
        pos += 4
        if size == 0 or pos + size > len(data):
            break
        out += lz4.block.decompress(data[pos:pos + size], uncompressed_size=8 << 20)
        pos += size
        if len(out) > _MAX_VMLINUX:
            raise ValueError("too large")
    return bytes(out)


def decompress(data: bytes) -> bytes | None:
    """The kernel's own compressors, by magic; None for ones we lack (lzo)."""
    try:
        if data.startswith(b"\x1f\x8b"):
            return gzip.decompress(data)
        if data.startswith(b"\xfd7zXZ\x00"):
            return lzma.decompress(data, format=lzma.FORMAT_XZ)
        if data.startswith(b"\x5d\x00\x00"):
            return lzma.decompress(data, format=lzma.FORMAT_ALONE)
        if data.startswith(b"BZh"):
            return bz2.decompress(data)
        if data.startswith(b"\x28\xb5\x2f\xfd"):
            return zstandard.ZstdDecompressor().decompress(data, max_output_size=_MAX_VMLINUX)
        if data.startswith(b"\x02\x21\x4c\x18"):
            return _lz4_legacy(data)
    except (OSError, ValueError, EOFError, lzma.LZMAError, zstandard.ZstdError, ImportError):
        return None
    return None


def has_pvh_note(elf: bytes) -> bool:
    """Whether a 64-bit little-endian ELF has Xen's PHYS32_ENTRY note."""
    if len(elf) < 64 or elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    phoff, = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for i in range(phnum):
        base = phoff + i * phentsize
        if base + 56 > len(elf):
            return False
        p_type, = struct.unpack_from("<I", elf, base)
        if p_type != 4:   # PT_NOTE
            continue
        off, = struct.unpack_from("<Q", elf, base + 8)
        size, = struct.unpack_from("<Q", elf, base + 32)
        pos, end = off, min(off + size, len(elf))
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == _XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def pvh_kernel(bzimage: Path, cache: Path) -> Path | None:
    """The cached PVH-bootable vmlinux of `bzimage`, or None to boot it as is."""
    st = bzimage.stat()
    key = hashlib.sha256(f"{bzimage.resolve()} {st.st_size} {st.st_mtime_ns}".encode())
    out = cache / f"vmlinux-{key.hexdigest()[:20]}"
    none = out.with_name(out.name + ".none")
    if out.is_file():
        return out
    if none.is_file():
        return None
    packed = payload(bzimage.read_bytes())
    elf = decompress(packed) if packed is not None else None
    target = out if elf is not None and has_pvh_note(elf) else none
    tmp = target.with_name(f"{target.name}.{os.getpid()}.partial")
    tempfiles.track(tmp)
    try:
        tmp.write_bytes(elf if target is out and elf is not None else b"")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        tempfiles.untrack(tmp)
    return out if target is out else None

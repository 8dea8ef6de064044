"""Unpacking a bzImage's kernel for PVH boot: the boot header, every
compressor the kernel may use that Python reads, the PVH note, the cache."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct

import lz4.block
import pytest
import zstandard

from ociext4.vm.vmlinux import decompress, has_pvh_note, payload, pvh_kernel


def elf_with_notes(notes: list[tuple[bytes, int]]) -> bytes:
    """A minimal ELF64 with one PT_NOTE segment holding `notes`."""
    body = b""
    for name, ntype in notes:
        name += b"\0"
        desc = b"\0" * 4
        body += struct.pack("<III", len(name), len(desc), ntype)
        body += name + b"\0" * (-len(name) % 4) + desc
    ehdr = bytearray(64)
    ehdr[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", ehdr, 0x20, 64)          # e_phoff
    struct.pack_into("<HH", ehdr, 0x36, 56, 1)      # e_phentsize, e_phnum
    phdr = bytearray(56)
    struct.pack_into("<I", phdr, 0, 4)              # PT_NOTE
    struct.pack_into("<Q", phdr, 8, 120)            # p_offset
    struct.pack_into("<Q", phdr, 32, len(body))     # p_filesz
    return bytes(ehdr + phdr + body)


def bzimage(packed: bytes, setup_sects: int = 3) -> bytes:
    head = bytearray((setup_sects + 1) * 512)
    head[0x1F1] = setup_sects
    head[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", head, 0x206, 0x20F)
    struct.pack_into("<II", head, 0x248, 100, len(packed))
    return bytes(head) + b"\x90" * 100 + packed + b"trailer"


def lz4_legacy(data: bytes) -> bytes:
    out = b"\x02\x21\x4c\x18"
    for i in range(0, len(data), 8 << 20):
        block = lz4.block.compress(data[i:i + (8 << 20)], store_size=False)
        out += struct.pack("<I", len(block)) + block
    return out


PVH_ELF = elf_with_notes([(b"Xen", 6), (b"Xen", 18)]) + bytes(range(256)) * 100


@pytest.mark.parametrize("pack", [gzip.compress, bz2.compress, lzma.compress,
                                  lambda d: lzma.compress(d, format=lzma.FORMAT_ALONE),
                                  zstandard.ZstdCompressor().compress, lz4_legacy],
                         ids=["gzip", "bzip2", "xz", "lzma", "zstd", "lz4"])
def test_the_kernel_comes_out_of_the_bzimage_whatever_packed_it(pack):
    image = bzimage(pack(PVH_ELF))
    assert decompress(payload(image)) == PVH_ELF


def test_unknown_packing_and_non_bzimages_give_none():
    assert decompress(b"\x89LZO\x00garbage") is None
    assert decompress(b"\x1f\x8bnot really gzip") is None
    assert payload(b"MZ" + bytes(1000)) is None


def test_pvh_note_is_found_only_where_it_is():
    assert has_pvh_note(PVH_ELF)
    assert not has_pvh_note(elf_with_notes([(b"Xen", 6), (b"GNU", 18)]))
    assert not has_pvh_note(b"\x7fELF" + bytes(100))


def test_pvh_kernel_is_cached_and_a_kernel_without_the_note_boots_as_is(tmp_path):
    good, bad = tmp_path / "vmlinuz-good", tmp_path / "vmlinuz-bad"
    good.write_bytes(bzimage(gzip.compress(PVH_ELF)))
    bad.write_bytes(bzimage(gzip.compress(elf_with_notes([(b"Xen", 6)]))))
    cache = tmp_path / "cache"
    cache.mkdir()
    out = pvh_kernel(good, cache)
    assert out is not None and out.read_bytes() == PVH_ELF
    assert pvh_kernel(good, cache) == out
    assert pvh_kernel(bad, cache) is None
    assert sorted(p.name.endswith(".none") for p in cache.iterdir()) == [False, True]


def test_the_hosts_kernel_unpacks_to_a_pvh_elf(tmp_path):
    from ociext4.vm.kernel import find_kernel

    out = pvh_kernel(find_kernel().image, tmp_path)
    assert out is not None
    with open(out, "rb") as f:
        assert f.read(4) == b"\x7fELF"

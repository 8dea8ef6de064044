"""Opening a possibly compressed byte stream: the format comes from its magic
bytes, not its name."""

from __future__ import annotations

import io
from typing import BinaryIO

from .errors import SourceError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ"
BZIP2_MAGIC = b"BZh"


def sniff(head: bytes) -> str:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    # A zstd stream may open with a skippable frame (magic 0x184D2A5?).
    if head.startswith(ZSTD_MAGIC) or (len(head) >= 4 and head[0] & 0xF0 == 0x50
                                       and head[1:4] == b"\x2a\x4d\x18"):
        return "zstd"
    if head.startswith(XZ_MAGIC):
        return "xz"
    if head.startswith(BZIP2_MAGIC):
        return "bzip2"
    return "plain"


def open_decompressed(raw: io.BufferedReader, name: str) -> tuple[BinaryIO, str]:
    """Returns a reader of the decompressed bytes and the format's name."""
    kind = sniff(raw.peek(8)[:8])
    if kind == "gzip":
        # ISA-L inflates 2-4x faster than zlib, and the threaded reader
        # inflates on the other core while this one writes.
        from isal import igzip_threaded

        return igzip_threaded.open(raw, "rb", threads=1, block_size=1 << 20), kind
    if kind == "zstd":
        import zstandard

        reader = zstandard.ZstdDecompressor().stream_reader(
            raw, read_size=1 << 20, read_across_frames=True, closefd=False)
        return io.BufferedReader(reader, 1 << 20), kind  # type: ignore[arg-type]
    if kind in ("xz", "bzip2"):
        raise SourceError(f"{name}: {kind} compression is not supported (use gzip, zstd or plain)")
    return raw, kind

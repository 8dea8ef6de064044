"""Decompressing a layer stream: the format comes from its magic bytes, not
its name, and the output arrives as bounded pieces."""

from __future__ import annotations

import io
from collections.abc import Iterator

from .errors import SourceError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ"
BZIP2_MAGIC = b"BZh"
PIECE = 1 << 20
INFLATE_INPUT = 1 << 17


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


def decompressed(raw: io.BufferedReader, name: str,
                 piece: int = PIECE) -> tuple[str, Iterator[bytes]]:
    """The format's name and the decompressed bytes as pieces of at most
    `piece` bytes, so a small bomb never becomes one huge buffer."""
    kind = sniff(raw.peek(8)[:8])
    if kind == "gzip":
        return kind, _gzip(raw, name, piece)
    if kind == "zstd":
        return kind, _zstd(raw, name, piece)
    if kind in ("xz", "bzip2"):
        raise SourceError(f"{name}: {kind} compression is not supported (use gzip, zstd or plain)")
    return kind, iter(lambda: raw.read(piece), b"")


def _gzip(raw: io.BufferedReader, name: str, piece: int) -> Iterator[bytes]:
    # isal_zlib rather than a file object over it: ISA-L inflates 2-4x faster
    # than zlib, and pieces come out without another copy.
    from isal import isal_zlib

    d = isal_zlib.decompressobj(wbits=31)
    pending = b""
    started = False     # inside a member: its end must come before the input's
    try:
        while True:
            if not pending:
                # A small input per call: its output then rarely hits the
                # piece limit, which would copy the unconsumed rest each time.
                pending = raw.read(INFLATE_INPUT)
                if not pending:
                    break
            if not started and not pending.startswith(GZIP_MAGIC[:len(pending)]):
                if pending.strip(b"\0"):
                    raise SourceError(f"{name}: data after the end of the gzip stream")
                pending = b""   # zero padding after the last member, as tar writes it
                continue
            started = True
            out = d.decompress(pending, piece)
            pending = d.unconsumed_tail
            if out:
                yield out
            if d.eof:
                # eStargz and pigz -i write many members back to back.
                pending = d.unused_data
                d = isal_zlib.decompressobj(wbits=31)
                started = False
    except isal_zlib.error as e:
        raise SourceError(f"{name}: cannot decompress gzip ({e})") from None
    if started:
        raise SourceError(f"{name}: gzip stream is truncated")


def _zstd(raw: io.BufferedReader, name: str, piece: int) -> Iterator[bytes]:
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(
        raw, read_size=piece, read_across_frames=True, closefd=False)
    try:
        while out := reader.read(piece):
            yield out
    except zstandard.ZstdError as e:
        raise SourceError(f"{name}: cannot decompress zstd ({e})") from None

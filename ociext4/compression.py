"""Decompressing a layer stream: the format comes from its magic bytes, not
its name, and the output arrives as bounded pieces."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

from .errors import SourceError

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
XZ_MAGIC = b"\xfd7zXZ"
BZIP2_MAGIC = b"BZh"
# Bytes of tar a piece holds at most.  Each piece costs a few hand-overs
# between threads and a call into C for its tar entries, whatever its size;
# 2 MiB against 1 MiB: opamlike's unpack 0.14-0.36 s faster (four sets of
# interleaved runs on tmpfs, bench/README.md) for 6-18 MiB more peak RSS.
PIECE = 2 << 20
# The same for a stream that may wait for its bytes (a layer read as it
# downloads): a piece is handed on only once whole, so an error in a
# layer's first bytes would wait for the download to bring the rest.
STREAM_PIECE = 1 << 20
# Bytes of a gzip blob the inflating thread takes at a time, at most.  Each
# take is a return from ISA-L to Python, and the thread must get the GIL
# back for it: while another thread runs Python (the tree), that waits.
# ISA-L's own 512 KiB meant ~1500 such returns on opamlike; 4 MiB, ~190
# (and 3-6 MiB more peak RSS, measured: a buffer for the layer applied, one
# for the next).
GZIP_READ = 4 << 20
# A take of a stream that waits for its bytes (a layer read as it
# downloads, a pipe) waits for no more than this, ISA-L's own take.
GZIP_TAKE_WAITS = 512 << 10


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


def decompressed(raw: io.BufferedReader, name: str, piece: int = PIECE,
                 gzip_read: int = GZIP_READ) -> tuple[str, Iterator[bytes]]:
    """The format's name and the decompressed bytes as pieces of at most
    `piece` bytes, so a small bomb never becomes one huge buffer; a gzip
    stream is taken at most `gzip_read` bytes at a time."""
    kind = sniff(raw.peek(8)[:8])
    if kind == "gzip":
        return kind, _gzip(raw, name, piece, gzip_read)
    if kind == "zstd":
        return kind, _zstd(raw, name, piece)
    if kind in ("xz", "bzip2"):
        raise SourceError(f"{name}: {kind} compression is not supported (use gzip, zstd or plain)")
    return kind, iter(lambda: raw.read(piece), b"")


class _Takes(io.RawIOBase):
    """A buffered stream read in takes that end once they hold `least`
    bytes: a file's are what was asked, but one of a stream that waits for
    its bytes waits for no more than `least` (io.BufferedReader would wait
    until the take was full)."""

    def __init__(self, raw: io.BufferedReader, least: int) -> None:
        super().__init__()
        self._raw, self._least = raw, least

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        view = memoryview(b).cast("B")
        want = min(len(view), self._least)
        got = 0
        while got < want and (n := self._raw.readinto1(view[got:])):
            got += n
        return got


def _gzip(raw: io.BufferedReader, name: str, piece: int, read: int) -> Iterator[bytes]:
    # ISA-L's own C reader: it inflates 2-4x faster than zlib, reads every
    # member (eStargz, pigz -i) and skips the zero padding tar may add.
    # igzip.open() wraps it just so, with no say in how much it takes.  It
    # is a private name (isal_zlib's since isal 1.6): without it, that.
    from isal import igzip, isal_zlib

    reader_type = getattr(isal_zlib, "_GzipReader", None)
    reader = (igzip.open(raw, "rb") if reader_type is None else
              io.BufferedReader(reader_type(_Takes(raw, GZIP_TAKE_WAITS), read)))
    try:
        while out := reader.read(piece):
            yield out
    except EOFError:
        raise SourceError(f"{name}: gzip stream is truncated or followed by data that is "
                          "not gzip") from None
    except (isal_zlib.error, OSError) as e:
        if isinstance(e, OSError) and e.errno is not None:
            raise
        raise SourceError(f"{name}: cannot decompress gzip ({e})") from None


def _zstd(raw: io.BufferedReader, name: str, piece: int) -> Iterator[bytes]:
    import zstandard

    reader = zstandard.ZstdDecompressor().stream_reader(
        raw, read_size=piece, read_across_frames=True, closefd=False)
    try:
        while out := reader.read(piece):
            yield out
    except zstandard.ZstdError as e:
        raise SourceError(f"{name}: cannot decompress zstd ({e})") from None

"""Compression is sniffed from magic bytes, not names."""

from __future__ import annotations

import gzip
import io
import random
import struct

import pytest
import zstandard

from ociext4.compression import GZIP_TAKE_WAITS, decompressed, sniff
from ociext4.errors import SourceError

PAYLOAD = b"hello tar" * 1000


@pytest.mark.parametrize(("data", "kind"), [
    (gzip.compress(PAYLOAD), "gzip"),
    (zstandard.ZstdCompressor().compress(PAYLOAD), "zstd"),
    (PAYLOAD, "plain"),
])
def test_sniffed_stream_decompresses_to_the_payload(data, kind):
    found, pieces = decompressed(io.BufferedReader(io.BytesIO(data)), "x")
    assert found == kind
    assert b"".join(pieces) == PAYLOAD


class _CountedTakes(io.BufferedReader):
    takes = 0

    def readinto1(self, b) -> int:
        self.takes += 1
        return super().readinto1(b)


@pytest.mark.parametrize("take", [512 << 10, 4 << 20])
def test_a_gzip_stream_is_taken_in_reads_of_the_size_asked(take):
    """Each take is a return to Python on the inflating thread, which must
    then get the GIL back: large takes, few returns."""
    payload = random.Random(7).randbytes(12 << 20)      # incompressible: 12 MiB stored
    data = gzip.compress(payload, compresslevel=1)
    raw = _CountedTakes(io.BytesIO(data), 1 << 20)
    _, pieces = decompressed(raw, "x", gzip_read=take)
    assert b"".join(pieces) == payload
    assert len(data) // take <= raw.takes <= len(data) // take + 3


class _Stalls(io.RawIOBase):
    """64 KiB a read, and after `available` bytes a download that stalls."""

    def __init__(self, data: bytes, available: int) -> None:
        super().__init__()
        self._data, self._pos, self._available = data, 0, available

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._pos == len(self._data):
            return 0
        if self._pos >= self._available:
            raise AssertionError("read past the bytes there are yet: it would wait")
        n = min(len(b), 64 << 10, self._available - self._pos)
        b[:n] = self._data[self._pos:self._pos + n]
        self._pos += n
        return n


def test_a_gzip_take_of_a_stream_that_waits_waits_for_no_more_than_isal_did():
    """A layer read as it downloads: its first piece inflates from the bytes
    already there, though they are fewer than a take, as long as they are
    as many as ISA-L's own reader took (GZIP_TAKE_WAITS)."""
    payload = b"".join(b"line %d\n" % i for i in range(2_000_000))
    data = gzip.compress(payload)
    assert len(data) > 2 * GZIP_TAKE_WAITS
    raw = io.BufferedReader(_Stalls(data, GZIP_TAKE_WAITS + (64 << 10)), 1 << 20)
    _, pieces = decompressed(raw, "x", piece=64 << 10, gzip_read=4 << 20)
    assert next(pieces) == payload[:64 << 10]


def test_a_gzip_take_of_a_pipe_gathers_as_much_as_isal_took(monkeypatch):
    """A pipe hands over 64 KiB a read: a take gathers GZIP_TAKE_WAITS of
    them, so the inflating thread does not come back to Python for each."""
    from ociext4 import compression

    takes = []
    take = compression._Takes.readinto

    def counted(self, b):
        takes.append(take(self, b))
        return takes[-1]

    monkeypatch.setattr(compression._Takes, "readinto", counted)
    payload = random.Random(3).randbytes(4 << 20)
    data = gzip.compress(payload, compresslevel=1)
    raw = io.BufferedReader(_Stalls(data, len(data)), 1 << 20)
    _, pieces = decompressed(raw, "x", gzip_read=4 << 20)
    assert b"".join(pieces) == payload
    assert all(n >= GZIP_TAKE_WAITS for n in takes[1:-2])
    assert len(takes) <= len(data) // GZIP_TAKE_WAITS + 3


def test_gzip_still_inflates_with_an_isal_that_lacks_its_private_reader(monkeypatch):
    """The reader whose takes are set is a private name of isal's: an isal
    without it falls back on igzip.open(), whose takes are its own."""
    from isal import isal_zlib

    monkeypatch.delattr(isal_zlib, "_GzipReader")
    payload = random.Random(5).randbytes(3 << 20)
    data = gzip.compress(payload, compresslevel=1) + gzip.compress(b"tail")
    raw = _CountedTakes(io.BytesIO(data), 1 << 20)
    _, pieces = decompressed(raw, "x", gzip_read=4 << 20)
    assert b"".join(pieces) == payload + b"tail"
    assert raw.takes == 0           # not read through _Takes


def test_multi_member_gzip_reads_every_member():
    data = gzip.compress(b"a" * 10) + gzip.compress(b"b" * 10)
    _, pieces = decompressed(io.BufferedReader(io.BytesIO(data)), "x")
    assert b"".join(pieces) == b"a" * 10 + b"b" * 10


def test_multi_frame_zstd_reads_every_frame():
    c = zstandard.ZstdCompressor()
    data = c.compress(b"a" * 10) + c.compress(b"b" * 10)
    _, pieces = decompressed(io.BufferedReader(io.BytesIO(data)), "x")
    assert b"".join(pieces) == b"a" * 10 + b"b" * 10


def test_xz_is_refused_with_the_input_named():
    with pytest.raises(SourceError, match="layer.tar: xz"):
        decompressed(io.BufferedReader(io.BytesIO(b"\xfd7zXZ\x00rest")), "layer.tar")


def test_sniff_needs_only_the_first_bytes():
    assert sniff(b"\x1f\x8b") == "gzip"
    assert sniff(b"\x28\xb5\x2f\xfd") == "zstd"
    assert sniff(b"") == "plain"


def test_zstd_with_skippable_frames_reads_the_real_frames():
    c = zstandard.ZstdCompressor()
    skip = struct.pack("<II", 0x184D2A50, 5) + b"hello"
    data = skip + c.compress(b"a" * 10) + skip + c.compress(b"b" * 10)
    kind, pieces = decompressed(io.BufferedReader(io.BytesIO(data)), "x")
    assert kind == "zstd" and b"".join(pieces) == b"a" * 10 + b"b" * 10


def test_estargz_style_gzip_of_one_member_per_file_reads_whole():
    members = [gzip.compress(bytes([i]) * 1000) for i in range(50)]
    _, pieces = decompressed(io.BufferedReader(io.BytesIO(b"".join(members))), "x")
    assert b"".join(pieces) == b"".join(bytes([i]) * 1000 for i in range(50))


def test_gzip_bomb_comes_out_in_pieces_no_larger_than_asked():
    data = gzip.compress(b"\0" * (8 << 20))
    _, pieces = decompressed(io.BufferedReader(io.BytesIO(data)), "x", piece=1 << 16)
    sizes = [len(p) for p in pieces]
    assert max(sizes) <= 1 << 16 and sum(sizes) == 8 << 20


def test_truncated_gzip_is_an_error_naming_the_input():
    data = gzip.compress(PAYLOAD * 10)[:-20]
    _, pieces = decompressed(io.BufferedReader(io.BytesIO(data)), "layer.tgz")
    with pytest.raises(SourceError, match="layer.tgz: gzip stream is truncated or followed"):
        b"".join(pieces)


def test_corrupt_gzip_is_an_error_naming_the_input():
    data = bytearray(gzip.compress(bytes(range(256)) * 100))
    data[20:40] = b"\xff" * 20
    _, pieces = decompressed(io.BufferedReader(io.BytesIO(bytes(data))), "layer.tgz")
    with pytest.raises(SourceError, match="layer.tgz: cannot decompress gzip"):
        b"".join(pieces)


def test_zero_padding_after_gzip_is_ignored_but_other_trailing_data_is_not():
    data = gzip.compress(PAYLOAD)
    _, pieces = decompressed(io.BufferedReader(io.BytesIO(data + b"\0" * 1000)), "x")
    assert b"".join(pieces) == PAYLOAD
    _, pieces = decompressed(io.BufferedReader(io.BytesIO(data + b"junk")), "x")
    with pytest.raises(SourceError, match="x: gzip stream is truncated or followed by data "
                                          "that is not gzip"):
        b"".join(pieces)


def test_corrupt_zstd_is_an_error_naming_the_input():
    data = bytearray(zstandard.ZstdCompressor().compress(bytes(range(256)) * 100))
    data[10:] = b"\xff" * (len(data) - 10)
    _, pieces = decompressed(io.BufferedReader(io.BytesIO(bytes(data))), "layer.zst")
    with pytest.raises(SourceError, match="layer.zst: cannot decompress zstd"):
        b"".join(pieces)

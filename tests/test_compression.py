"""Compression is sniffed from magic bytes, not names."""

from __future__ import annotations

import gzip
import io
import struct

import pytest
import zstandard

from ociext4.compression import open_decompressed, sniff
from ociext4.errors import SourceError

PAYLOAD = b"hello tar" * 1000


@pytest.mark.parametrize(("data", "kind"), [
    (gzip.compress(PAYLOAD), "gzip"),
    (zstandard.ZstdCompressor().compress(PAYLOAD), "zstd"),
    (PAYLOAD, "plain"),
])
def test_sniffed_stream_decompresses_to_the_payload(data, kind):
    stream, found = open_decompressed(io.BufferedReader(io.BytesIO(data)), "x")
    assert found == kind
    assert stream.read() == PAYLOAD


def test_multi_member_gzip_reads_every_member():
    data = gzip.compress(b"a" * 10) + gzip.compress(b"b" * 10)
    stream, _ = open_decompressed(io.BufferedReader(io.BytesIO(data)), "x")
    assert stream.read() == b"a" * 10 + b"b" * 10


def test_multi_frame_zstd_reads_every_frame():
    c = zstandard.ZstdCompressor()
    data = c.compress(b"a" * 10) + c.compress(b"b" * 10)
    stream, _ = open_decompressed(io.BufferedReader(io.BytesIO(data)), "x")
    assert stream.read() == b"a" * 10 + b"b" * 10


def test_xz_is_refused_with_the_input_named():
    with pytest.raises(SourceError, match="layer.tar: xz"):
        open_decompressed(io.BufferedReader(io.BytesIO(b"\xfd7zXZ\x00rest")), "layer.tar")


def test_sniff_needs_only_the_first_bytes():
    assert sniff(b"\x1f\x8b") == "gzip"
    assert sniff(b"\x28\xb5\x2f\xfd") == "zstd"
    assert sniff(b"") == "plain"


def test_zstd_with_skippable_frames_reads_the_real_frames():
    c = zstandard.ZstdCompressor()
    skip = struct.pack("<II", 0x184D2A50, 5) + b"hello"
    data = skip + c.compress(b"a" * 10) + skip + c.compress(b"b" * 10)
    stream, kind = open_decompressed(io.BufferedReader(io.BytesIO(data)), "x")
    assert kind == "zstd" and stream.read() == b"a" * 10 + b"b" * 10


def test_estargz_style_gzip_of_one_member_per_file_reads_whole():
    members = [gzip.compress(bytes([i]) * 1000) for i in range(50)]
    stream, _ = open_decompressed(io.BufferedReader(io.BytesIO(b"".join(members))), "x")
    assert stream.read() == b"".join(bytes([i]) * 1000 for i in range(50))

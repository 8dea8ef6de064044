"""The C core's own SHA-256 (csrc/sha256.c), which hashes dm-verity's data
blocks as they are written: both implementations, portable C and the x86
SHA extensions, against hashlib."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ociext4.ext4._writer import ffi, lib

AUTO, PORTABLE, SHANI = 0, 1, 2


def digest(impl: int, data: bytes) -> bytes | None:
    out = ffi.new("uint8_t[32]")
    if lib.oe_sha256_digest(impl, data, len(data), out) != 0:
        return None
    return bytes(out)


def pair(impl: int, prefix: bytes, a: bytes, b: bytes) -> tuple[bytes, bytes]:
    assert len(a) == len(b)
    out_a, out_b = ffi.new("uint8_t[32]"), ffi.new("uint8_t[32]")
    assert lib.oe_sha256_digest_pair(impl, prefix, len(prefix), a, b, len(a), out_a, out_b) == 0
    return bytes(out_a), bytes(out_b)


def cpu_has_sha_ni() -> bool:
    return any(line.startswith("flags") and " sha_ni" in line
               for line in Path("/proc/cpuinfo").read_text().splitlines())


IMPLS = [pytest.param(PORTABLE, id="portable"),
         pytest.param(SHANI, id="sha-ni", marks=pytest.mark.skipif(
             digest(SHANI, b"") is None, reason="this CPU has no SHA extensions"))]


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=10_000))
def test_digest_is_hashlibs_for_any_message(impl, data):
    assert digest(impl, data) == hashlib.sha256(data).digest()


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("length", [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129])
def test_digest_is_hashlibs_at_every_padding_boundary(impl, length):
    data = bytes(range(256)) * (length // 256 + 1)
    assert digest(impl, data[:length]) == hashlib.sha256(data[:length]).digest()


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=100, deadline=None)
@given(salt=st.binary(max_size=256), seed_a=st.binary(max_size=16),
       seed_b=st.binary(max_size=16))
def test_salted_blocks_hashed_two_at_once_are_hashlibs(impl, salt, seed_a, seed_b):
    """dm-verity's leaf, SHA-256(salt || 4 KiB block), as the writer hashes
    blocks: in pairs, after a shared salted prefix of any length."""
    a = hashlib.shake_256(b"a" + seed_a).digest(4096)
    b = hashlib.shake_256(b"b" + seed_b).digest(4096)
    assert pair(impl, salt, a, b) == (hashlib.sha256(salt + a).digest(),
                                      hashlib.sha256(salt + b).digest())
    assert digest(impl, salt + a) == hashlib.sha256(salt + a).digest()


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=200, deadline=None)
@given(prefix=st.binary(max_size=200), length=st.integers(0, 300), seed=st.binary(max_size=8))
def test_pairs_of_any_length_after_any_prefix_are_hashlibs(impl, prefix, length, seed):
    a = hashlib.shake_256(b"a" + seed).digest(length) if length else b""
    b = hashlib.shake_256(b"b" + seed).digest(length) if length else b""
    assert pair(impl, prefix, a, b) == (hashlib.sha256(prefix + a).digest(),
                                        hashlib.sha256(prefix + b).digest())


def test_the_sha_extensions_are_found_exactly_when_the_cpu_has_them():
    assert (digest(SHANI, b"abc") is not None) == cpu_has_sha_ni()
    assert digest(AUTO, b"abc") == hashlib.sha256(b"abc").digest()


def test_an_unknown_implementation_is_refused():
    assert digest(7, b"abc") is None

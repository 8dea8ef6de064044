"""The layer and download digests (ociext4.hashing): the C hasher against
hashlib for any bytes in any pieces, two messages hashed side by side, a
layer's blob and tar on one thread, and a flipped byte still refused."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from cli_helpers import ociext4
from hypothesis import given, settings
from hypothesis import strategies as st
from ocilayouts import layer_tar, make_docker_archive, make_layout, member

from ociext4.blobs import Window
from ociext4.errors import SourceError
from ociext4.ext4 import Ext4Options, Ext4Writer
from ociext4.hashing import AUTO, PORTABLE, SHA_NI, LayerDigests, Sha256, update_pair
from ociext4.layers import read_entries

IMPLS = [pytest.param(PORTABLE, id="portable"),
         pytest.param(SHA_NI, id="sha-ni", marks=pytest.mark.skipif(
             not Sha256.available(SHA_NI), reason="this CPU has no SHA extensions"))]


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    """`data` cut at the given offsets (taken modulo its length, any order)."""
    at = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(at, at[1:], strict=False)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=3000), cuts=st.lists(st.integers(0, 3000), max_size=8))
def test_any_bytes_fed_in_any_pieces_hash_as_hashlib_hashes_them(impl, data, cuts):
    h = Sha256(impl=impl)
    for p in pieces(data, cuts):
        h.update(p)
    assert h.hexdigest() == sha(data) and h.size == len(data)


@pytest.mark.parametrize("impl", IMPLS)
@settings(max_examples=200, deadline=None)
@given(a=st.binary(max_size=2000), b=st.binary(max_size=2000),
       cuts=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 2000)), max_size=6))
def test_two_messages_fed_side_by_side_in_any_lengths_hash_as_hashlib(impl, a, b, cuts):
    """Pieces of unequal length, either side empty, blocks part filled on
    one side and not the other: each message still hashes as alone."""
    ha, hb = Sha256(impl=impl), Sha256(impl=impl)
    pa, pb = pieces(a, [c[0] for c in cuts]), pieces(b, [c[1] for c in cuts])
    for i in range(max(len(pa), len(pb))):
        update_pair(ha, pa[i] if i < len(pa) else b"", hb, pb[i] if i < len(pb) else b"")
    assert (ha.hexdigest(), hb.hexdigest()) == (sha(a), sha(b))


def test_long_messages_side_by_side_hash_as_hashlib():
    # Enough whole blocks for the two-stream compression to run for long.
    a = hashlib.shake_256(b"a").digest(3 << 20)
    b = hashlib.shake_256(b"b").digest(1 << 20 | 37)
    for impl in [PORTABLE, AUTO]:
        ha, hb = Sha256(impl=impl), Sha256(impl=impl)
        update_pair(ha, a[:5], hb, b"")
        update_pair(ha, memoryview(a)[5:], hb, bytearray(b))
        assert (ha.hexdigest(), hb.hexdigest()) == (sha(a), sha(b))


def test_messages_on_two_implementations_are_still_hashed_right():
    if not Sha256.available(SHA_NI):
        pytest.skip("this CPU has no SHA extensions")
    ha, hb = Sha256(impl=PORTABLE), Sha256(impl=SHA_NI)
    update_pair(ha, b"x" * 1000, hb, b"y" * 700)
    assert (ha.hexdigest(), hb.hexdigest()) == (sha(b"x" * 1000), sha(b"y" * 700))


def test_a_digest_midway_leaves_the_hash_to_go_on_and_reset_empties_it():
    h = Sha256(b"abc")
    assert h.hexdigest() == sha(b"abc")
    h.update(b"def")
    assert h.hexdigest() == sha(b"abcdef") and h.digest() == hashlib.sha256(b"abcdef").digest()
    h.reset()
    assert h.hexdigest() == sha(b"") and h.size == 0


def test_an_implementation_this_cpu_lacks_or_that_does_not_exist_is_refused():
    with pytest.raises(ValueError, match="not available"):
        Sha256(impl=7)


def _file(tmp_path: Path, data: bytes) -> io.RawIOBase:
    path = tmp_path / "blob"
    path.write_bytes(data)
    return open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the test


@settings(max_examples=60, deadline=None)
@given(tar=st.binary(max_size=5000), blob=st.binary(max_size=5000),
       cuts=st.lists(st.integers(0, 5000), max_size=6))
def test_a_layers_tar_and_blob_get_their_own_digests_whichever_is_longer(
        tmp_path_factory, tar, blob, cuts):
    f = _file(tmp_path_factory.mktemp("d"), blob)
    try:
        d = LayerDigests(lambda: Window(f))
        assert b"".join(d.feed(iter(pieces(tar, cuts)), same_as_blob=False)) == tar
        assert d.tar_digest() == "sha256:" + sha(tar)
        assert d.blob_digest() == (len(blob), "sha256:" + sha(blob))
        d.stop()
    finally:
        f.close()


def test_an_uncompressed_layers_blob_digest_is_its_tars(tmp_path):
    tar = b"t" * 3000
    f = _file(tmp_path, b"never read")
    d = LayerDigests(lambda: Window(f))
    list(d.feed(iter([tar[:1000], tar[1000:]]), same_as_blob=True))
    assert d.tar_digest() == "sha256:" + sha(tar)
    assert d.blob_digest() == (len(tar), "sha256:" + sha(tar))
    f.close()


@pytest.mark.parametrize("same", [False, True])
def test_a_blob_whose_tar_stopped_short_is_still_hashed_whole(tmp_path, same):
    blob = b"b" * 5000
    f = _file(tmp_path, blob)
    d = LayerDigests(lambda: Window(f))
    fed = d.feed(iter([blob[:1000], blob[1000:2000], blob[2000:]]), same_as_blob=same)
    next(fed)   # one piece, then the reader gives up (a bad gzip stream, say)
    assert d.blob_digest() == (len(blob), "sha256:" + sha(blob))
    f.close()


def test_a_blob_that_cannot_be_read_raises_its_error_at_the_check(tmp_path):
    def unreadable() -> io.RawIOBase:
        raise PermissionError(13, "Permission denied")

    d = LayerDigests(unreadable)
    list(d.feed(iter([b"tar"]), same_as_blob=False))
    assert d.tar_digest() == "sha256:" + sha(b"tar")
    with pytest.raises(PermissionError):
        d.blob_digest()


def test_stopping_early_leaves_no_thread_behind():
    d = LayerDigests(None)
    fed = d.feed(iter([b"x"] * 100), same_as_blob=False)
    next(fed)
    d.stop()
    assert not d._thread.is_alive()
    assert list(fed) == [b"x"] * 99   # still passed on, no longer hashed


def test_windows_on_one_file_read_their_own_ranges(tmp_path):
    f = _file(tmp_path, bytes(range(100)))
    a, b = Window(f, 10, 5), Window(f, 50)
    assert a.read(3) == bytes([10, 11, 12]) and b.read(2) == bytes([50, 51])
    assert a.read() == bytes([13, 14]) and a.read() == b"" and b.read() == bytes(range(52, 100))
    f.close()


def _flip_in_member(archive: Path, prefix: str, at: int) -> None:
    """Flips one byte `at` bytes into the data of the member named `prefix`…"""
    with tarfile.open(archive) as tf:
        m = next(m for m in tf if m.name.startswith(prefix) and m.size > at)
    data = bytearray(archive.read_bytes())
    data[m.offset_data + at] ^= 1
    archive.write_bytes(bytes(data))


def _refused(proc, img: Path, *wanted: str) -> None:
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("ociext4: error: ") and "Traceback" not in proc.stderr
    for text in wanted:
        assert text in proc.stderr, proc.stderr
    assert not img.exists()


LAYER = [member("a", b"hello" * 1000), member("b", b"world" * 100)]


@pytest.mark.parametrize("compression", [None, "gz"])
def test_a_flipped_byte_in_a_layout_blob_is_refused_naming_the_blob(tmp_path, compression):
    layout = make_layout(tmp_path / "layout", [LAYER], compression)
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"][7:])
                          .read_text())
    blob = layout / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    data = bytearray(blob.read_bytes())
    data[len(data) // 3] ^= 1
    blob.write_bytes(bytes(data))
    img = tmp_path / "out.img"
    _refused(ociext4("unpack", f"oci:{layout}", img, check=False), img,
             f"layer sha256:{blob.name} does not match its digest")


def test_a_flipped_byte_in_a_docker_archive_layer_is_refused_naming_it(tmp_path):
    archive = make_docker_archive(tmp_path / "saved.tar", [LAYER], modern=True)
    with tarfile.open(archive) as tf:
        layer = next(m for m in tf if m.name.startswith("blobs/") and m.size > 5000)
    _flip_in_member(archive, layer.name, 1000)
    img = tmp_path / "out.img"
    _refused(ociext4("unpack", f"docker-archive:{archive}", img, check=False), img,
             f"layer sha256:{layer.name.rsplit('/', 1)[1]} does not match its digest")


def test_a_flipped_byte_in_a_legacy_docker_layer_is_refused_by_its_diff_id(tmp_path):
    archive = make_docker_archive(tmp_path / "saved.tar", [LAYER])
    _flip_in_member(archive, "0" * 63, 1000)
    img = tmp_path / "out.img"
    _refused(ociext4("unpack", f"docker-archive:{archive}", img, check=False), img,
             "uncompressed layer does not match diff_id sha256:")


@pytest.mark.parametrize("gz", [False, True])
def test_a_tar_read_straight_from_a_stream_is_held_to_its_diff_id(tmp_path, gz):
    """read_entries on a stream no source hashes (a caller's own): the tar
    is hashed there, and only the right diff_id passes."""
    tar = layer_tar(LAYER)
    blob = gzip.compress(tar) if gz else tar
    with Ext4Writer(tmp_path / "a.img", Ext4Options(fsync=False)) as w:
        got = [e.name for e in read_entries(io.BytesIO(blob), "t", w, chunk=4096,
                                            diff_id="sha256:" + sha(tar))]
        assert got == [b"a", b"b"]
        with pytest.raises(SourceError, match="^t: uncompressed layer does not match diff_id"):
            list(read_entries(io.BytesIO(blob), "t", w, diff_id="sha256:" + sha(blob + b"x")))

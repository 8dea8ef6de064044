"""The blob cache: nothing unverified under a digest, an OCI layout others
can read, two processes at once, prune keeps what images need."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.mutations import dumps, mutations

from ociext4.errors import CacheError, DigestMismatch, DocumentError, SourceError
from ociext4.ocilayout import open_image
from ociext4.store import Store, default_root


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_image(store: Store, name: str, layer: bytes) -> str:
    """A one-layer image (uncompressed tar bytes do not matter to the store)."""
    store.put(digest_of(layer), layer, "layer")
    cfg = json.dumps({"os": "linux", "architecture": "amd64",
                      "rootfs": {"type": "layers", "diff_ids": [digest_of(layer)]}}).encode()
    store.put(digest_of(cfg), cfg, "config")
    man = json.dumps({"schemaVersion": 2,
                      "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"digest": digest_of(cfg), "size": len(cfg)},
                      "layers": [{"digest": digest_of(layer), "size": len(layer),
                                  "mediaType": "application/vnd.oci.image.layer.v1.tar"}]}
                     ).encode()
    store.put(digest_of(man), man, "manifest")
    store.tag(name, {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                     "digest": digest_of(man), "size": len(man),
                     "platform": {"os": "linux", "architecture": "amd64"}})
    return digest_of(man)


def test_default_root_follows_flag_env_and_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv("OCIEXT4_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "ociext4"
    monkeypatch.setenv("OCIEXT4_CACHE", str(tmp_path / "env"))
    assert default_root() == tmp_path / "env"
    assert default_root(tmp_path / "flag") == tmp_path / "flag"


def test_a_blob_is_renamed_into_place_only_when_it_matches(tmp_path):
    store = Store(tmp_path / "c")
    data = b"x" * 1000
    ing = store.ingest(digest_of(data), len(data), "layer L")
    ing.write(data[:500])
    assert not store.has(digest_of(data))
    ing.write(data[500:])
    assert ing.commit() == store.blob_path(digest_of(data))
    assert store.read(digest_of(data)) == data

    wrong = store.ingest(digest_of(b"other"), 5, "layer W")
    wrong.write(b"abcde")
    with pytest.raises(DigestMismatch, match="layer W does not match its digest"):
        wrong.commit()
    short = store.ingest(digest_of(b"other"), 5, "layer S")
    short.write(b"oth")
    with pytest.raises(DigestMismatch, match="layer S is 3 bytes"):
        short.commit()
    too_long = store.ingest(digest_of(b"other"), 5, "layer T")
    with pytest.raises(DigestMismatch, match="more than the 5 bytes"):
        too_long.write(b"others")
    too_long.discard()
    assert not store.has(digest_of(b"other"))
    assert list((store.root / "ingest").iterdir()) == []


def test_the_cache_is_an_oci_layout_open_image_reads(tmp_path):
    store = Store(tmp_path / "c")
    digest = put_image(store, "reg.example/a:1", b"layer-bytes")
    assert json.loads((store.root / "oci-layout").read_text())["imageLayoutVersion"] == "1.0.0"
    image = open_image(store.root, tag="reg.example/a:1")
    assert image.manifest_digest == digest
    assert [lay.digest for lay in image.layers] == [digest_of(b"layer-bytes")]


def test_tagging_again_replaces_the_entry_for_that_name_and_platform(tmp_path):
    store = Store(tmp_path / "c")
    put_image(store, "reg.example/a:1", b"one")
    second = put_image(store, "reg.example/a:1", b"two")
    put_image(store, "reg.example/b:1", b"one")
    assert [(e.name, e.digest) for e in store.entries()] == [
        ("reg.example/a:1", second), ("reg.example/b:1", store.entries()[1].digest)]


def _worker(root: str, n: int, shared: bytes) -> None:
    store = Store(Path(root))
    for i in range(25):
        put_image(store, f"reg.example/p{n}:{i}", shared + str(i % 3).encode())


def test_two_processes_share_the_cache_without_losing_entries(tmp_path):
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path / "c"), n, b"same-layer"))
             for n in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = Store(tmp_path / "c")
    assert sorted(e.name for e in store.entries()) == sorted(
        f"reg.example/p{n}:{i}" for n in range(2) for i in range(25))
    for digest in store.all_blobs():
        assert store.read(digest) is not None  # every blob holds what its name says
    assert list((store.root / "ingest").iterdir()) == []


def test_prune_keeps_what_tagged_images_need(tmp_path):
    store = Store(tmp_path / "c")
    put_image(store, "reg.example/keep:1", b"kept layer")
    put_image(store, "reg.example/drop:1", b"dropped layer")
    store.put(digest_of(b"stray"), b"stray", "stray blob")
    (store.root / "ingest" / "leftover.123.partial").write_bytes(b"half")
    before = store.all_blobs()
    removed, freed = store.prune(["reg.example/drop:1"])
    after = store.all_blobs()
    assert digest_of(b"kept layer") in after and digest_of(b"dropped layer") not in after
    assert digest_of(b"stray") not in after
    assert removed == len(before) - len(after) + 1
    assert freed == sum(before.values()) - sum(after.values()) + 4
    assert open_image(store.root, tag="reg.example/keep:1").layers
    store.prune(everything=True)
    assert store.all_blobs() == {} and store.entries() == []


def test_a_cache_dir_that_cannot_be_made_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(Exception, match="cannot create the cache"):
        Store(blocker / "c")
    assert os.path.exists(blocker)


def test_discard_removes_the_partial_even_when_closing_it_fails(tmp_path):
    store = Store(tmp_path / "c")
    ing = store.ingest(digest_of(b"abc"), 3, "layer F")
    assert ing is not None
    ing.write(b"ab")
    real_close = ing._f.close

    def failing_close() -> None:
        real_close()
        raise OSError(28, "No space left on device")

    ing._f.close = failing_close  # type: ignore[method-assign]
    ing.discard()
    assert list((store.root / "ingest").iterdir()) == []


def test_a_partial_download_is_resumed_after_its_bytes_are_rehashed(tmp_path):
    store = Store(tmp_path / "c")
    data = b"0123456789" * 100
    first = store.ingest(digest_of(data), len(data), "layer R")
    assert first is not None
    first.write(data[:400])
    first.discard(keep=True)  # a dropped connection, or the process killed
    again = store.ingest(digest_of(data), len(data), "layer R")
    assert again is not None and again.offset == again.resumed == 400
    again.write(data[400:])
    assert again.commit() == store.blob_path(digest_of(data))
    assert store.read(digest_of(data)) == data
    assert list((store.root / "ingest").iterdir()) == []


def test_a_second_ingest_of_a_blob_waits_for_the_first_and_finds_it_stored(tmp_path):
    store = Store(tmp_path / "c")
    data = b"shared blob"
    first = store.ingest(digest_of(data), len(data), "layer S")
    assert first is not None
    polls = []

    def waiting() -> None:
        polls.append(1)
        if len(polls) == 3:  # the first finishes while the second waits
            first.write(data)
            first.commit()

    assert store.ingest(digest_of(data), len(data), "layer S", waiting) is None
    assert len(polls) >= 3 and store.read(digest_of(data)) == data


def test_a_damaged_blob_is_moved_to_quarantine_when_read(tmp_path):
    store = Store(tmp_path / "c")
    put_image(store, "reg.example/q:1", b"layer")
    path = store.blob_path(digest_of(b"layer"))
    path.write_bytes(b"lay3r")
    assert store.read(digest_of(b"layer")) is None
    assert not path.exists()
    [moved] = store.quarantine_files()
    assert moved.read_bytes() == b"lay3r" and store.quarantined[digest_of(b"layer")] == moved
    assert store.verify(digest_of(b"layer")) is None  # not there: nothing to say


def test_a_new_cache_on_a_read_only_directory_leaves_no_temporary_file(tmp_path):
    root = tmp_path / "c"
    (root / "blobs" / "sha256").mkdir(parents=True)
    (root / "ingest").mkdir()
    os.chmod(root, 0o555)
    try:
        if os.access(root, os.W_OK):
            pytest.skip("root writes through read-only modes")
        with pytest.raises(CacheError, match="oci-layout: cannot write"):
            Store(root)
        assert sorted(p.name for p in root.iterdir()) == ["blobs", "ingest"]
    finally:
        os.chmod(root, 0o755)


def test_run_cache_partials_of_dead_processes_are_swept_and_live_ones_kept(tmp_path,
                                                                          monkeypatch):
    import fcntl

    from ociext4.cachedir import cache_dir

    monkeypatch.setenv("OCIEXT4_CACHE", str(tmp_path / "c"))
    images = cache_dir("images")
    dead = images / ".aaa.img.x1y2.partial"
    live = images / ".bbb.img.z3w4.partial"
    for p in (dead, live):
        p.write_bytes(b"half an image")
    kernels = cache_dir("kernels")
    mine = kernels / f"vmlinux-a.{os.getpid()}.partial"
    gone = kernels / "vmlinux-b.999999999.partial"
    for p in (mine, gone):
        p.write_bytes(b"half a kernel")
    with open(images / "bbb.img.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # an unpack of bbb is running
        cache_dir("images")
        cache_dir("kernels")
    assert not dead.exists() and live.exists()
    assert mine.exists() and not gone.exists()



@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_index_json_is_one_document_error_for_ls_lookup_tag_and_prune(tmp_path, data):
    root = Path(tempfile.mkdtemp(dir=tmp_path))
    store = Store(root)
    put_image(store, "r.example/a:1", b"layer one")
    good = json.loads((root / "index.json").read_text())
    (root / "index.json").write_bytes(dumps(data.draw(mutations(good)).apply(good)))
    for use in (store.entries, lambda: store.lookup("r.example/a:1"),
                lambda: store.tag("r.example/b:1", good["manifests"][0]),
                lambda: store.prune(["r.example/a:1"])):
        try:
            use()
        except DocumentError as e:
            assert str(e).startswith(f"{root / 'index.json'}: ")
        except SourceError as e:  # prune of a name the damaged index lost
            assert "no cached image named" in str(e)

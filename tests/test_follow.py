"""FollowedBlob (ociext4/registry/follow.py) against a real cache: a blob read
from its partial file while an Ingest writes it on another thread, as a
pull's download does.  Its check is the download's verdict; what the reader
read, even when the file started over in between, is covered by the
layer's diff_id once it is inflated (ociext4/sources/image.py)."""

from __future__ import annotations

import hashlib
import io
import random
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ociext4 import model
from ociext4.blobs import LayerBlob
from ociext4.errors import DigestMismatch, SourceError
from ociext4.ext4.writer import Ext4Options, Ext4Writer
from ociext4.model import Layer
from ociext4.registry import follow
from ociext4.registry.follow import FollowedBlob
from ociext4.sources.image import flatten_image
from ociext4.store import Store

BLOB = random.Random(7).randbytes(300_000)
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
LAYER = Layer(media_type="application/vnd.oci.image.layer.v1.tar", digest=DIGEST, diff_id=DIGEST,
              size=len(BLOB))


class Download:
    """Writes the blob into the cache on a thread, one step at a time, as
    the test tells it; `settled` is what a Pull would answer."""

    def __init__(self, store: Store, steps: list[Callable[[], None]]) -> None:
        self.store, self.steps = store, steps
        self.go = threading.Semaphore(0)
        self.done = threading.Event()
        self.error: BaseException | None = None
        # The reader asks this while it waits: a reader that would wait for
        # ever fails the test instead of hanging it.
        self.deadline = time.monotonic() + 30
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for step in self.steps:
                self.go.acquire()
                step()
        except BaseException as e:  # noqa: BLE001 - handed to the reader
            self.error = e
        finally:
            self.done.set()

    def step(self) -> None:
        self.go.release()

    def settled(self, timeout: float | None) -> bool:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("the reader waited for bytes that were never written")
        if not self.done.wait(left if timeout is None else min(timeout, left)):
            if timeout is None:
                raise AssertionError("the download never ended")
            return False
        if self.error is not None:
            raise self.error
        return True


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "cache")


def read(blob: FollowedBlob, n: int) -> bytes:
    out = bytearray()
    buf = bytearray(n)
    while len(out) < n:
        got = blob.readinto(memoryview(buf)[:n - len(out)])
        assert got
        out += buf[:got]
    return bytes(out)


def test_bytes_are_read_as_they_are_written_and_the_check_passes(store):
    ing = store.ingest(DIGEST, len(BLOB), "blob")
    assert ing is not None
    half = len(BLOB) // 2
    dl = Download(store, [lambda: ing.write(BLOB[:half]), lambda: ing.write(BLOB[half:]),
                          ing.commit])
    blob = FollowedBlob(store, LAYER, "reg", dl.settled)
    dl.step()
    assert read(blob, half) == BLOB[:half]        # before the rest is written
    assert not dl.done.is_set()
    dl.step()
    dl.step()
    assert read(blob, len(BLOB) - half) == BLOB[half:]
    assert blob.readinto(bytearray(10)) == 0
    blob.check()
    blob.close()
    dl.thread.join()


def one_file_tar(data: bytes) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("f")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class OneLayer:
    """An image source of one layer, handed over as the registry source
    hands over a layer it follows."""
    name = "reg"

    def __init__(self, layer: Layer, blob: FollowedBlob) -> None:
        self.layer, self.blob = layer, blob

    def layer_blobs(self, image: model.Image):
        yield LayerBlob(self.layer, self.blob, self.blob.check, self.blob.close,
                        self.blob.abandon)


def test_bytes_read_before_the_file_started_over_fail_the_layer_on_its_diff_id(store, tmp_path):
    """The reader inflates bytes the download later replaced (the first
    server sent other bytes, then the file started over): the download's
    own verdict is right, and the layer's diff_id is what fails."""
    tar = one_file_tar(BLOB)
    digest = "sha256:" + hashlib.sha256(tar).hexdigest()
    layer = Layer(media_type="application/vnd.oci.image.layer.v1.tar", digest=digest,
                  diff_id=digest, size=len(tar))
    ing = store.ingest(digest, len(tar), "blob")
    assert ing is not None
    at = len(tar) // 2                  # in the file's data: its header is 512 bytes
    ing.write(tar[:at] + bytes([tar[at] ^ 1]) + tar[at + 1:])

    def settled(timeout: float | None) -> bool:
        if timeout is not None:
            return False                # the reader opens the partial file
        # check(), once every byte was read: the file starts over now.
        ing.restart()
        ing.write(tar)
        ing.commit()
        return True

    blob = FollowedBlob(store, layer, "reg", settled)
    config = model.ImageConfig("linux", "amd64", "", None, model.ContainerConfig(), (digest,))
    image = model.Image("sha256:" + "0" * 64, model.OCI_MANIFEST, "sha256:" + "1" * 64, config,
                        (layer,))
    with Ext4Writer(tmp_path / "x.img", Ext4Options(fsync=False)) as w, \
            pytest.raises(SourceError, match=f"reg: layer {digest}: uncompressed layer does not "
                                             f"match diff_id {digest}"):
        flatten_image(OneLayer(layer, blob), image, w)
    assert store.has(digest)            # the cache took the right bytes


def test_a_partial_file_replaced_by_a_new_download_is_followed(store):
    first = store.ingest(DIGEST, len(BLOB), "blob")
    assert first is not None
    half = len(BLOB) // 2
    later: list = []

    def replace() -> None:
        first.discard()                 # the file goes, as a failed download's does
        ing = store.ingest(DIGEST, len(BLOB), "blob")
        assert ing is not None
        later.append(ing)
        ing.write(BLOB)

    dl = Download(store, [lambda: first.write(BLOB[:half]), replace,
                          lambda: later[0].commit()])
    blob = FollowedBlob(store, LAYER, "reg", dl.settled)
    dl.step()
    assert read(blob, half) == BLOB[:half]
    dl.step()
    assert read(blob, len(BLOB) - half) == BLOB[half:]
    dl.step()
    blob.check()
    dl.thread.join()


def test_a_blob_another_process_downloaded_is_read_from_the_cache(store):
    store.put(DIGEST, BLOB, "blob")
    blob = FollowedBlob(store, LAYER, "reg", lambda timeout: True)
    assert read(blob, len(BLOB)) == BLOB
    blob.check()


def test_a_failed_download_is_the_readers_error(store):
    ing = store.ingest(DIGEST, len(BLOB), "blob")
    assert ing is not None

    def fail() -> None:
        ing.discard()
        raise DigestMismatch("reg: layer: the registry sent other bytes")

    dl = Download(store, [lambda: ing.write(BLOB[:5000]), fail])
    blob = FollowedBlob(store, LAYER, "reg", dl.settled)
    dl.step()
    assert read(blob, 5000) == BLOB[:5000]
    dl.step()
    with pytest.raises(DigestMismatch, match="other bytes"):
        blob.readinto(bytearray(100))
    dl.thread.join()


def test_an_abandoned_reader_stops_waiting_and_its_check_does_not_wait(store):
    ing = store.ingest(DIGEST, len(BLOB), "blob")
    assert ing is not None
    dl = Download(store, [lambda: ing.write(BLOB[:5000]), ing.discard])
    blob = FollowedBlob(store, LAYER, "reg", dl.settled)
    dl.step()
    assert read(blob, 5000) == BLOB[:5000]
    done: list[BaseException] = []

    def reader() -> None:
        try:
            blob.readinto(bytearray(100))   # waits: nothing more is written
        except BaseException as e:  # noqa: BLE001 - looked at below
            done.append(e)

    t = threading.Thread(target=reader)
    t.start()
    time.sleep(0.05)
    assert t.is_alive()
    blob.abandon()
    t.join(5)
    assert not t.is_alive()
    assert "given up while it was downloading" in str(done[0])
    blob.check()                      # the download is not over: no verdict, no wait
    dl.step()
    dl.thread.join()


def test_an_abandoned_reader_that_read_every_byte_gets_the_downloads_verdict(store):
    """A stream error found at the blob's end (a gzip CRC) abandons the
    reader before the download has settled: its check waits for the
    download's digest, which names the fault better."""
    ing = store.ingest(DIGEST, len(BLOB), "blob")
    assert ing is not None
    wrong = bytes([BLOB[0] ^ 1]) + BLOB[1:]
    dl = Download(store, [lambda: ing.write(wrong), ing.commit])
    blob = FollowedBlob(store, LAYER, "reg", dl.settled)
    dl.step()
    assert read(blob, len(BLOB)) == wrong
    blob.abandon()
    threading.Timer(0.05, dl.step).start()
    with pytest.raises(DigestMismatch, match="blob does not match its digest"):
        blob.check()
    assert dl.done.is_set()
    assert not store.has(DIGEST)
    dl.thread.join()


def test_an_abandoned_reader_that_read_every_byte_waits_for_a_verdict_only_so_long(store,
                                                                                   monkeypatch):
    monkeypatch.setattr(follow, "VERDICT", 0.1)
    ing = store.ingest(DIGEST, len(BLOB), "blob")
    assert ing is not None
    dl = Download(store, [lambda: ing.write(BLOB), ing.commit])
    blob = FollowedBlob(store, LAYER, "reg", dl.settled)
    dl.step()
    assert read(blob, len(BLOB)) == BLOB
    blob.abandon()
    # The download never commits: no verdict, no error.  (Waiting for one
    # would have Download.settled fail the test at its deadline.)
    blob.check()
    assert not dl.done.is_set()
    dl.step()
    dl.thread.join()
    blob.check()                      # now it has one, and it is good


def test_a_layer_that_may_wait_for_its_bytes_is_inflated_in_smaller_pieces(store):
    """A piece is handed on only once whole: a followed layer's pieces are
    small, so an error in its first bytes does not wait for the download
    to bring more (tests/registry/test_registry_stream.py runs it whole)."""
    from ociext4.compression import PIECE, STREAM_PIECE

    followed = FollowedBlob(store, LAYER, "reg", lambda timeout: True)
    assert LayerBlob(LAYER, followed, followed.check, followed.close,
                     followed.abandon).piece == STREAM_PIECE
    assert LayerBlob(LAYER, io.BytesIO(BLOB)).piece == PIECE
    assert STREAM_PIECE < PIECE

"""FollowedBlob (ociext4/registry/follow.py) against a real cache: a blob read
from its partial file while an Ingest writes it on another thread, as a
pull's download does.  What the reader read is what its check covers, even
when the file started over in between."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from ociext4.errors import DigestMismatch
from ociext4.model import Layer
from ociext4.registry.follow import FollowedBlob
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


def test_bytes_read_before_the_file_started_over_are_checked_not_the_file(store):
    ing = store.ingest(DIGEST, len(BLOB), "blob")
    assert ing is not None
    wrong = bytes(b ^ 1 for b in BLOB[:1000])
    dl = Download(store, [lambda: ing.write(wrong), ing.restart,
                          lambda: ing.write(BLOB), ing.commit])
    blob = FollowedBlob(store, LAYER, "reg", dl.settled)
    dl.step()
    assert read(blob, 1000) == wrong
    for _ in range(3):
        dl.step()
    # The download itself is right (the cache took it); what was read is not.
    with pytest.raises(DigestMismatch, match=f"reg: layer {DIGEST}"):
        blob.check()
    assert store.has(DIGEST)
    dl.thread.join()


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


def test_an_abandoned_reader_that_read_every_byte_is_checked_without_waiting(store):
    """A stream error found at the blob's end (a gzip CRC) abandons the
    reader before the download has settled: what was read is whole, so its
    digest is the verdict, given at once."""
    ing = store.ingest(DIGEST, len(BLOB), "blob")
    assert ing is not None
    wrong = bytes([BLOB[0] ^ 1]) + BLOB[1:]
    dl = Download(store, [lambda: ing.write(wrong), ing.discard])
    blob = FollowedBlob(store, LAYER, "reg", dl.settled)
    dl.step()
    assert read(blob, len(BLOB)) == wrong
    blob.abandon()
    with pytest.raises(DigestMismatch, match=f"reg: layer {DIGEST}"):
        blob.check()                  # the download has not settled: no wait
    assert not dl.done.is_set()
    dl.step()
    dl.thread.join()

"""SHA-256 on the C core's implementation (csrc/hash.c: x86's SHA extensions
where the CPU has them, else portable C), and a layer's two digests, its
blob's and its tar's, computed together on one thread.

Two messages hashed at once cost little more than one: SHA-NI waits on each
instruction's latency, and a second, independent message fills those waits
(csrc/sha256.c's compress2).  A layer has two such messages, the blob as
stored and the tar it inflates to, so they are hashed side by side for as
far as the shorter one goes."""

from __future__ import annotations

import io
import queue
import threading
from collections.abc import Callable, Iterator

from .ext4._writer import ffi, lib

AUTO, PORTABLE, SHA_NI = 0, 1, 2
CHUNK = 1 << 20
Data = bytes | bytearray | memoryview


class Sha256:
    """hashlib.sha256's update, digest and hexdigest.  Each update is one C
    call without the GIL, so feed it large pieces (a MiB or so) from a
    thread of its own and the other threads run meanwhile.  One thread at a
    time may use it."""

    __slots__ = ("_h",)

    def __init__(self, data: Data = b"", impl: int = AUTO) -> None:
        h = lib.oe_hash_new(impl)
        if h == ffi.NULL:
            if impl == AUTO:
                raise MemoryError
            raise ValueError(f"SHA-256 implementation {impl} is not available on this CPU")
        self._h = ffi.gc(h, lib.oe_hash_free)
        if data:
            self.update(data)

    @staticmethod
    def available(impl: int) -> bool:
        h = lib.oe_hash_new(impl)
        lib.oe_hash_free(h)
        return h != ffi.NULL

    @property
    def handle(self) -> object:
        """The C context, for C functions that feed it (csrc/contentid.h)."""
        return self._h

    @property
    def size(self) -> int:
        """How many bytes it has hashed."""
        return int(lib.oe_hash_size(self._h))

    def update(self, data: Data) -> None:
        buf = ffi.from_buffer("uint8_t[]", data)
        lib.oe_hash_update(self._h, buf, len(buf))

    def digest(self) -> bytes:
        out = ffi.new("uint8_t[32]")
        lib.oe_hash_digest(self._h, out)
        return bytes(out)

    def hexdigest(self) -> str:
        return self.digest().hex()

    def reset(self) -> None:
        """Back to the empty message."""
        lib.oe_hash_reset(self._h)


def update_pair(a: Sha256, data_a: Data, b: Sha256, data_b: Data) -> None:
    """`a.update(data_a); b.update(data_b)`, the blocks both have hashed side
    by side.  `a` and `b` are two hashes, not one."""
    buf_a = ffi.from_buffer("uint8_t[]", data_a)
    buf_b = ffi.from_buffer("uint8_t[]", data_b)
    lib.oe_hash_update2(a._h, buf_a, len(buf_a), b._h, buf_b, len(buf_b))


def file_digest(f: io.RawIOBase, h: Sha256 | None = None) -> Sha256:
    """Hashes what is left of `f` (into `h`, or a new hash)."""
    h = h if h is not None else Sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    while n := f.readinto(buf):
        h.update(view[:n])
    return h


# What the layer's thread is told besides tar pieces.
_SAME = object()     # the tar is the blob itself (an uncompressed layer)
_END = object()      # the tar is complete: finish the blob and stop
_FINISH = object()   # no more tar is coming (it stopped short): finish the blob
_STOP = object()     # give up: nobody wants the digests any more
_LAST = (_END, _FINISH, _STOP)


class LayerDigests:
    """The two digests of one layer on one thread: the tar's pieces are
    handed over as they are inflated (feed()), and the thread reads the
    blob from a handle of its own (`open_blob`) as far as the tar has come,
    so the two are hashed side by side.  The thread that inflates, which
    the others wait for, only hands pieces on.  Without `open_blob` (the
    blob's digest is checked elsewhere, or not known), the tar alone."""

    def __init__(self, open_blob: Callable[[], io.RawIOBase] | None) -> None:
        self._open_blob = open_blob
        self._tar = Sha256()
        self._blob = Sha256() if open_blob is not None else None
        self._reader: io.RawIOBase | None = None
        self._buf = bytearray()
        self._blob_left = open_blob is not None   # blob bytes the thread may still read
        self._same = False
        self._tar_whole = False
        self._error: OSError | None = None
        self._crash: BaseException | None = None
        self._last_taken = False
        self._tar_ended = threading.Event()
        self._lock = threading.Lock()
        self._last_sent = False
        self._queue: queue.Queue[object] = queue.Queue(maxsize=8)
        self._thread = threading.Thread(target=self._run, daemon=True, name="ociext4-digests")
        self._thread.start()

    def feed(self, pieces: Iterator[bytes], same_as_blob: bool) -> Iterator[bytes]:
        """`pieces`, the layer's whole tar, each piece handed on to be hashed
        as it passes; `same_as_blob` when the pieces are the blob's bytes
        from its first to its last (so one digest serves for both)."""
        if same_as_blob:
            self._put(_SAME)
        for piece in pieces:
            self._put(piece)
            yield piece
        self._send_last(_END)

    def tar_digest(self) -> str:
        """The digest of the tar, once feed() has passed all of it on."""
        self._tar_ended.wait()
        if self._crash is not None:
            raise self._crash
        assert self._tar_whole, "the tar was not fed to its end"
        return "sha256:" + self._tar.hexdigest()

    def blob_digest(self) -> tuple[int, str]:
        """The blob's size and digest, read to its end if the tar stopped
        short; OSError if it could not be read."""
        self._send_last(_FINISH)
        self._thread.join()
        if self._crash is not None:
            raise self._crash
        if self._error is not None:
            raise self._error
        assert self._blob is not None and self._open_blob is not None
        if self._same and not self._tar_whole:
            reader = self._open_blob()
            try:
                file_digest(reader, self._blob)
            finally:
                reader.close()
        done = self._tar if self._same and self._tar_whole else self._blob
        return done.size, "sha256:" + done.hexdigest()

    def stop(self) -> None:
        """Gives up (a layer not read to its end, or done with)."""
        self._send_last(_STOP)
        self._thread.join()

    def _put(self, item: object) -> None:
        # Nothing goes in after the last word: the thread may be gone.
        with self._lock:
            if self._last_sent:
                return
        self._queue.put(item)

    def _send_last(self, item: object) -> None:
        with self._lock:
            if self._last_sent:
                return
            self._last_sent = True
        self._queue.put(item)

    def _run(self) -> None:
        try:
            while self._take(self._queue.get()):
                pass
        except BaseException as e:  # noqa: BLE001 - raised by the digests' readers
            self._crash = e
            # Whoever feeds must never block on a queue nobody empties.
            while not self._last_taken and self._queue.get() not in _LAST:
                pass
        finally:
            self._tar_ended.set()
            if self._reader is not None:
                self._reader.close()

    def _take(self, item: object) -> bool:
        """Handles one word from feed() or the owner; False after the last."""
        if item is _SAME:
            self._same = True
            self._blob_left = False
        elif item not in _LAST:
            self._piece(item)  # type: ignore[arg-type]
        else:
            self._last_taken = True
            self._tar_whole = item is _END
            self._tar_ended.set()
            if item is not _STOP and self._blob is not None and self._blob_left:
                self._read_rest()
            return False
        return True

    def _piece(self, piece: bytes) -> None:
        blob = self._next_blob(len(piece)) if self._blob_left else None
        if blob:
            assert self._blob is not None
            update_pair(self._tar, piece, self._blob, blob)
        else:
            self._tar.update(piece)

    def _next_blob(self, want: int) -> memoryview | None:
        """Up to `want` more bytes of the blob, fewer only at its end."""
        try:
            if self._reader is None:
                assert self._open_blob is not None
                self._reader = self._open_blob()
            if len(self._buf) < want:
                self._buf = bytearray(want)
            view = memoryview(self._buf)[:want]
            got = 0
            while got < want and (n := self._reader.readinto(view[got:])):
                got += n
        except OSError as e:
            self._error, self._blob_left = e, False
            return None
        if got < want:
            self._blob_left = False
        return view[:got]

    def _read_rest(self) -> None:
        try:
            if self._reader is None:
                assert self._open_blob is not None
                self._reader = self._open_blob()
            assert self._blob is not None
            file_digest(self._reader, self._blob)
        except OSError as e:
            self._error = e

"""Reading a layer (a tar stream, compressed or not) as a sequence of entries.

The C reader parses the headers and streams file data straight into the
image as it goes, on a thread of its own; Python sees each member once, as a
TarEntry, from batches the reader hands over.
"""

from __future__ import annotations

import io
import os
import struct
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .blobs import HashedBlob, Stream
from .compression import PIECE, decompressed
from .digests import check_diff_id
from .errors import SourceError
from .ext4._writer import ffi, lib
from .ext4.records import TAR_ENTRY, TAR_SEG
from .ext4.writer import Ext4Writer
from .hashing import LayerDigests
from .prefetch import Prefetch
from .tree import NO_XATTRS, PLAIN

# The blob's read buffer: it holds what sniff() peeks at.  Larger reads go
# past it (a piece of a plain or zstd layer, a gzip take: see compression).
READ = 1 << 20
_NO_RDEV = (0, 0)
_ENTRY = TAR_ENTRY.struct  # field by field as C lays it out (checked at import)
ENTRY_SIZE = _ENTRY.size
_SEG = TAR_SEG.struct
_U64_MAX = (1 << 64) - 1


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds on what one image (or archive) may ask for.  The defaults leave
    real images plenty of room; raise them for odd ones."""

    max_meta: int = 1 << 20         # a PAX header, GNU long name or sparse map
    max_path: int = 4096            # a path or link target (so depth <= 2048)
    max_bytes: int = 64 << 30       # decompressed tar bytes, all layers together
    max_entries: int = 2_000_000    # tar members, all layers together (~350 B of RAM each)
    max_layers: int = 256


@dataclass(slots=True)
class Budget:
    """What one image has used of its Limits so far, across its layers."""

    limits: Limits
    bytes: int = 0
    entries: int = 0

    def spend(self, name: str, nbytes: int, entries: int) -> None:
        self.bytes += nbytes
        self.entries += entries
        if self.bytes > self.limits.max_bytes:
            raise SourceError(f"{name}: more than {self.limits.max_bytes} bytes of decompressed "
                              "data, over the limit (raise it with --max-bytes)")
        if self.entries > self.limits.max_entries:
            raise SourceError(f"{name}: more than {self.limits.max_entries} entries, over the "
                              "limit (raise it with --max-entries)")


@dataclass(slots=True)
class LayerStats:
    """What reading one layer took; updated as it streams."""

    name: str
    bytes_in: int = 0       # as stored (compressed)
    bytes_out: int = 0      # decompressed tar bytes
    entries: int = 0
    seconds: float = 0.0
    compression: str = ""
    # The layer's digests, when layer_pieces() found a blob that hashes its
    # tar: read_entries() then takes the diff_id from them.
    digests: LayerDigests | None = field(default=None, repr=False, compare=False)


class _Counting(io.RawIOBase):
    def __init__(self, raw: Any, stats: LayerStats) -> None:
        super().__init__()
        self._raw, self._stats = raw, stats

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._raw.readinto(b) or 0
        self._stats.bytes_in += n
        return n


@dataclass(slots=True)
class TarEntry:
    type: str                   # the typeflag: "0" file, "1" hard link, "2" symlink, ...
    name: bytes
    link: bytes
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    atime_ns: int | None
    rdev: tuple[int, int]       # (major, minor)
    size: int
    data: int | None            # the writer's handle for a regular file's bytes
    xattrs: Mapping[str, bytes]
    offset: int                 # of the member's header in the stream


def _xattrs(raw: bytes) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(raw):
        nlen, vlen = struct.unpack_from("<II", raw, pos)
        pos += 8
        name = raw[pos:pos + nlen].decode("utf-8", "surrogateescape")
        out[name] = raw[pos + nlen:pos + nlen + vlen]
        pos += nlen + vlen
    return out


ATIME = lib.OE_TAR_ATIME
PLAIN_NAME = lib.OE_TAR_PLAIN_NAME


def entry_of(rec: tuple[Any, ...], strings: bytes) -> TarEntry:
    """One of the reader's records (TAR_ENTRY's fields, in a batch's
    `strings`) as a TarEntry."""
    (typ, mode, uid, gid, msec, asec, mnsec, ansec, flags, major, minor, name_len,
     name_off, link_off, link_len, xattr_len, xattr_off, size, data, offset) = rec
    # The shared empty values where a member has none (nearly all): no
    # tuple, dict or bytes object made for each.
    return TarEntry(
        chr(typ), strings[name_off:name_off + name_len],
        strings[link_off:link_off + link_len] if link_len else b"", mode, uid, gid,
        msec * 10**9 + mnsec, asec * 10**9 + ansec if flags & ATIME else None,
        (major, minor) if major or minor else _NO_RDEV, size, data if data >= 0 else None,
        _xattrs(strings[xattr_off:xattr_off + xattr_len]) if xattr_len else NO_XATTRS,
        offset)


def records(raw: bytes) -> Iterator[tuple[Any, ...]]:
    """A batch's records, one tuple of TAR_ENTRY's fields each."""
    return _ENTRY.iter_unpack(raw)


def runs(raw: bytes, strings: bytes, plain_sec_end: int,
         marker: bytes) -> tuple[Iterator[tuple[int, ...]], bytes, bytes]:
    """A batch cut into segments, in order (csrc/tarruns.h): runs of plain
    files of one directory whose mtimes are below `plain_sec_end` seconds
    and whose names do not start with `marker`, with their basenames (NUL
    between two) and their plain records, and the members between them, to
    apply one by one.  Each segment is a tuple of TAR_SEG's fields; the
    names and records are those bytes, for the runs' offsets."""
    n = len(raw) // ENTRY_SIZE
    segs = ffi.new("oe_tar_seg[]", max(n, 1))
    names = ffi.new("uint8_t[]", max(len(strings), 1))
    recs = ffi.new("uint8_t[]", max(n * PLAIN.size, 1))
    count = lib.oe_tar_runs(ffi.from_buffer("oe_tar_entry[]", raw), n, ffi.from_buffer(strings),
                            len(strings), plain_sec_end, marker, len(marker), segs, n, names,
                            len(names), recs, len(recs))
    if count < 0:   # the reader's own batch: a bug, not the input's fault
        raise OSError(ffi.errno, f"cutting a batch into runs: {os.strerror(ffi.errno)}")
    return (_SEG.iter_unpack(ffi.buffer(segs, count * _SEG.size)), ffi.buffer(names)[:],
            ffi.buffer(recs)[:])


def _decode(raw: bytes, strings: bytes) -> Iterator[TarEntry]:
    # One at a time, not a list of the batch: a piece's thousand entries and
    # their temporaries alive at once interleave the tree's objects with
    # theirs in CPython's arenas, which then cannot be given back while the
    # tree is packed for the commit (~25 MB more peak at 1M entries).
    for rec in records(raw):
        yield entry_of(rec, strings)


def layer_pieces(stream: Stream, name: str, stats: LayerStats,
                 chunk: int = PIECE) -> Iterator[bytes]:
    """A (possibly compressed) tar stream as decompressed pieces of at most
    `chunk` bytes; `stats` counts the bytes read and names the compression.
    A HashedBlob's pieces are hashed (with the blob) as they are inflated."""
    raw = io.BufferedReader(_Counting(stream, stats), READ)
    stats.compression, pieces = decompressed(raw, name, chunk)
    if not isinstance(stream, HashedBlob):
        return pieces
    stats.digests = stream.digests
    # Plain pieces are every byte of the blob read from its start, so the
    # tar's digest is the blob's too, once they have all been read.
    return stream.digests.feed(pieces, same_as_blob=stats.compression == "plain")


def read_entries(stream: Stream | None, name: str, writer: Ext4Writer,
                 limits: Limits | None = None, chunk: int = PIECE,
                 diff_id: str | None = None, stats: LayerStats | None = None,
                 budget: Budget | None = None,
                 pieces: Iterator[bytes] | None = None,
                 abandon: Callable[[], None] | None = None) -> Iterator[TarEntry]:
    """The members of a (possibly compressed) tar stream, in order, as
    TarEntry records: read_batches(), one member at a time."""
    batches = read_batches(stream, name, writer, limits, chunk, diff_id, stats, budget,
                           pieces, abandon)
    try:
        for raw, strings in batches:
            yield from _decode(raw, strings)
    finally:
        batches.close()   # now, not when collected: it joins the threads


def read_batches(stream: Stream | None, name: str, writer: Ext4Writer,
                 limits: Limits | None = None, chunk: int = PIECE,
                 diff_id: str | None = None, stats: LayerStats | None = None,
                 budget: Budget | None = None,
                 pieces: Iterator[bytes] | None = None,
                 abandon: Callable[[], None] | None = None) -> Iterator[tuple[bytes, bytes]]:
    """The members of a (possibly compressed) tar stream, in order, in
    batches of (records, strings): see records() and entry_of().  `chunk`
    is how much is decompressed and handed to C at a time.  With `diff_id`,
    the decompressed stream must hash to it (checked at its end).  `stats`,
    if given, is kept up to date as the layer streams; `budget` carries the
    image's use of its limits from one layer to the next.  `pieces`, from
    layer_pieces(), replaces `stream` when the layer was opened earlier.
    The data is written on another thread while the entries are iterated:
    until the iteration ends, the caller gives `writer` no data of its own
    (its discards are held back until then).  `abandon`, if given, is called
    when the iteration stops early (an error, the caller giving up), before
    the threads are joined: it must stop a stream that waits for bytes
    (LayerBlob.abandon)."""
    limits = limits or Limits()
    budget = budget if budget is not None else Budget(limits)
    stats = stats if stats is not None else LayerStats(name)
    started = time.perf_counter()
    if pieces is None:
        assert stream is not None
        pieces = layer_pieces(stream, name, stats, chunk)
    # A bound past what C counts in is no bound: it is C's largest.
    tar = lib.oe_tar_new(writer.handle, ffi.new("oe_tar_limits *", {
        "max_meta": min(limits.max_meta, _U64_MAX), "max_path": min(limits.max_path, _U64_MAX)}))
    if tar == ffi.NULL:
        raise MemoryError
    tar = ffi.gc(tar, lib.oe_tar_free)

    def check(rc: int) -> None:
        if rc != 0:
            if writer.failed:  # the image, not the layer: a full disk, say
                raise writer.error()
            raise SourceError(f"{name}: {ffi.string(lib.oe_tar_error(tar)).decode()}")

    digests = own = None
    if diff_id is not None:
        digests = stats.digests
        if digests is None:  # pieces nobody hashes yet: the tar alone, here
            digests = own = LayerDigests(None)
            pieces = own.feed(pieces, same_as_blob=False)
    try:
        # Three stages on two cores: inflating, parsing and writing (both in
        # C, on the feed thread), and the tree work on the caller's thread.
        # In a layer of large files the kernel's copy into the image is the
        # long part, in one of many small files the tree: on one thread they
        # could not share the second core.  Only the feed thread calls the C
        # writer until it has stopped; the caller's discards wait till then.
        with Prefetch(pieces) as ahead, writer.discards_deferred(), \
                Prefetch(_batches(ahead, tar, check, stats, started, budget, name),
                         FEED_DEPTH, "ociext4-feed") as batches:
            try:
                for batch in batches:
                    if batch[0]:
                        yield batch
            except BaseException:
                # Before the joins: a thread waiting for a download's next
                # bytes would hold them up until the download moved.
                if abandon is not None:
                    abandon()
                raise
        if digests is not None:
            assert diff_id is not None
            check_diff_id(name, diff_id, digests.tar_digest())
    finally:
        if own is not None:
            own.stop()


FEED_DEPTH = 8   # batches: a piece's entries each


def _batches(pieces: Iterable[bytes], tar: Any, check: Callable[[int], None],
             stats: LayerStats, started: float, budget: Budget,
             name: str) -> Iterator[tuple[bytes, bytes]]:
    """Each piece's entries as (records, strings), copied: the reader's
    buffers are reused by the next piece.  One a piece, empty when the
    piece held no header, so that whoever runs this can stop it there."""
    for piece in pieces:
        budget.spend(name, len(piece), 0)
        stats.bytes_out += len(piece)
        check(lib.oe_tar_feed(tar, ffi.from_buffer(piece), len(piece)))
        count = lib.oe_tar_count(tar)
        batch = (b"", b"")
        if count:
            budget.spend(name, 0, count)
            stats.entries += count
            batch = (ffi.buffer(lib.oe_tar_entries(tar), count * _ENTRY.size)[:],
                     ffi.buffer(lib.oe_tar_strings(tar), lib.oe_tar_strings_len(tar))[:])
            lib.oe_tar_clear(tar)
        stats.seconds = time.perf_counter() - started
        yield batch
    check(lib.oe_tar_finish(tar))
    stats.seconds = time.perf_counter() - started

"""The blob cache: an OCI image layout (blobs/sha256/…, index.json, oci-layout)
under the user's cache directory, so skopeo, umoci and `open_image` can read
it.

A blob is downloaded into ingest/HEX.partial under an flock on ingest/HEX.lock
(one download per blob, whichever process asks), hashed as it streams, and
renamed to its digest only once size and digest match.  A partial download
outlives its process: the next one to take the lock hashes the bytes it holds
and resumes after them.  A stored blob found not to match its digest is moved
to quarantine/ (kept for a look, out of the layout) so it is fetched again.
index.json is replaced whole under an flock.  Pulls hold a shared lock for
their whole run and prune an exclusive one, so a prune never removes what a
running pull has fetched but not yet tagged."""

from __future__ import annotations

import contextlib
import enum
import errno
import fcntl
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .digests import check_bytes, digest_of, hex_part
from .errors import CacheError, DigestMismatch, DocumentError, SourceError
from .hashing import Sha256, file_digest
from .model import Descriptor, Index, Platform, parse_document, parse_index
from .ocilayout import REF_NAME

LAYOUT = '{"imageLayoutVersion": "1.0.0"}\n'
EMPTY_INDEX = '{"schemaVersion": 2, "manifests": []}\n'
# On an index.json entry: the index (manifest list) the manifest was chosen
# from, kept so a digest reference to it resolves without the registry.
FROM_INDEX = "dev.ociext4.from-index"
_CHUNK = 1 << 20
_LOCK_POLL = 0.05


class PullPolicy(enum.Enum):
    """When a tag is looked up in the registry (docker's names): `always`
    asks it (the cached tag is used only if it cannot be reached), `missing`
    only when the tag is not cached, `never` not at all."""
    ALWAYS = "always"
    MISSING = "missing"
    NEVER = "never"

    def __str__(self) -> str:
        return self.value


def default_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--cache, else $OCIEXT4_CACHE, else $XDG_CACHE_HOME/ociext4, else ~/.cache/ociext4."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("OCIEXT4_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ociext4"


def write_error(path: Path, what: str, e: OSError) -> CacheError:
    """A failed write into the cache, naming the file and the blob."""
    why = "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))
    return CacheError(f"{path}: cannot write {what} into the cache ({why})", path=str(path))


@dataclass(frozen=True, slots=True)
class Entry:
    """One tagged image in index.json."""
    name: str
    digest: str
    media_type: str
    size: int
    platform: str
    from_index: str | None = None
    # The descriptor as index.json holds it (platform and annotations included).
    descriptor: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


@dataclass(frozen=True, slots=True)
class Damaged:
    """A stored blob whose bytes do not match its name."""
    digest: str
    path: Path          # where it was
    moved_to: Path      # where it is now (quarantine)
    why: str


class Ingest:
    """A blob being written: bytes are hashed as they arrive, and the file
    takes its digest's name only if everything matches.  `offset` is how many
    bytes are in already (`resumed` of them left by an earlier download), for
    a ranged resume.  Holds the blob's download lock until commit or discard."""

    def __init__(self, store: Store, digest: str, size: int | None, what: str,
                 lock: _BlobLock) -> None:
        self._store, self.digest, self.size, self.what = store, digest, size, what
        self._lock = lock
        self._hash = Sha256()
        self.path = store.ingest_path(digest)
        try:
            self._f = open(self.path, "a+b")  # noqa: SIM115 - closed in commit/discard
        except OSError as e:
            lock.release()
            raise write_error(self.path, what, e) from None
        self._open = True
        self.offset = self.resumed = 0
        self.offset = self.resumed = self._take_prefix()

    def _take_prefix(self) -> int:
        """Hashes what an earlier download left, so the next bytes carry on
        from there; a prefix longer than the blob is thrown away."""
        try:
            self._f.seek(0)
            n = 0
            while piece := self._f.read(_CHUNK):
                if self.size is not None and n + len(piece) > self.size:
                    self._f.seek(0)
                    self._f.truncate()
                    self._hash.reset()
                    return 0
                self._hash.update(piece)
                n += len(piece)
            return n
        except OSError as e:
            self.discard()
            raise write_error(self.path, self.what, e) from None

    def write(self, data: bytes | memoryview) -> None:
        if self.size is not None and self.offset + len(data) > self.size:
            raise DigestMismatch(f"{self.what}: more than the {self.size} bytes its "
                                 "descriptor gives")
        try:
            self._f.write(data)
            # In the file, not in a buffer: an unpack may be reading it as it
            # grows (ociext4.registry.follow).  Large pieces went straight
            # through anyway; this writes out the small ones.
            self._f.flush()
        except OSError as e:
            raise write_error(self.path, self.what, e) from None
        self._hash.update(data)
        self.offset += len(data)

    def restart(self) -> None:
        """Back to byte 0 (the server would not resume where we stopped)."""
        try:
            self._f.seek(0)
            self._f.truncate()
        except OSError as e:
            raise write_error(self.path, self.what, e) from None
        self._hash.reset()
        self.offset = self.resumed = 0

    def commit(self) -> Path:
        """Check size and digest, make the bytes durable, rename into place."""
        final = self._store.blob_path(self.digest)
        try:
            check_bytes(self.what, self.digest, self.size, self.offset,
                        "sha256:" + self._hash.hexdigest())
            try:
                self._f.flush()
                # A blob under its digest must hold those bytes even after a crash.
                os.fsync(self._f.fileno())
                self._f.close()
                os.replace(self.path, final)
            except OSError as e:
                raise write_error(final, self.what, e) from None
        except BaseException:
            self.discard()
            raise
        self._open = False
        self._lock.release()
        return final

    def discard(self, keep: bool = False) -> None:
        """Gives the download up; `keep` leaves the bytes (if any) for a later resume.
        The file goes even when closing it fails (a full disk fails the flush)."""
        if not self._open:
            return
        self._open = False
        with contextlib.suppress(OSError):
            self._f.close()
        if not (keep and self.offset):
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self._lock.release()


class _BlobLock:
    """The flock on ingest/HEX.lock: whoever holds it downloads the blob."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd < 0:
            return
        # Unlinked while still held: a waiter that gets the old file sees it
        # is gone and takes the lock again on a new one.
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._fd)
        self._fd = -1


def lock_is_free(path: Path) -> bool:
    """True if no process holds an flock on `path` (or it does not exist)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def tree_usage(path: Path, seen: set[tuple[int, int]] | None = None) -> int:
    """Bytes allocated on disk to `path` and everything under it, each inode
    counted once (as `du` counts)."""
    seen = set() if seen is None else seen
    total = 0
    stack = [path]
    while stack:
        p = stack.pop()
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen:
            continue
        seen.add(key)
        total += st.st_blocks * 512
        if os.path.isdir(p) and not os.path.islink(p):
            with contextlib.suppress(FileNotFoundError), os.scandir(p) as it:
                stack.extend(Path(de.path) for de in it)
    return total


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        # Blobs this process found damaged and moved aside: digest -> where.
        self.quarantined: dict[str, Path] = {}
        self._ensure_layout()

    def _ensure_layout(self) -> None:
        try:
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            (self.root / "ingest").mkdir(exist_ok=True)
        except OSError as e:
            raise CacheError(f"{self.root}: cannot create the cache ({e.strerror})",
                             path=str(self.root)) from None
        for name, text in (("oci-layout", LAYOUT), ("index.json", EMPTY_INDEX)):
            path = self.root / name
            if not path.exists():
                self._write_atomic(path, text, f"the cache's {name}")

    def _write_atomic(self, path: Path, text: str, what: str) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        try:
            with open(tmp, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise write_error(path, what, e) from None

    # -- blobs

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / hex_part(digest)

    def ingest_path(self, digest: str) -> Path:
        """Where the blob is written while it downloads."""
        return self.root / "ingest" / f"{hex_part(digest)}.partial"

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def ingest(self, digest: str, size: int | None, what: str,
               waiting: Callable[[], None] | None = None) -> Ingest | None:
        """Takes the blob's download lock (waiting while another process or
        thread downloads it; `waiting()` is called now and then and may raise
        to give up) and returns the Ingest, resumed from any partial download;
        None if the blob arrived while waiting."""
        lock = self._lock_blob(digest, waiting)
        if self.has(digest, size):
            lock.release()
            return None
        return Ingest(self, digest, size, what, lock)

    def _lock_blob(self, digest: str, waiting: Callable[[], None] | None) -> _BlobLock:
        path = self.root / "ingest" / f"{hex_part(digest)}.lock"
        while True:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            except OSError as e:
                raise write_error(path, f"the download lock of {digest}", e) from None
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if waiting is not None:
                            waiting()
                        time.sleep(_LOCK_POLL)
                # The holder before us may have unlinked the file it locked.
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            except BaseException:
                os.close(fd)
                raise
            if same:
                return _BlobLock(path, fd)
            os.close(fd)

    def put(self, digest: str, data: bytes, what: str) -> Path:
        """Store a small blob (manifest, config) held in memory."""
        if self.read(digest) is not None:
            return self.blob_path(digest)
        ing = self.ingest(digest, len(data), what)
        if ing is None:
            return self.blob_path(digest)
        try:
            ing.restart()
            ing.write(data)
        except BaseException:
            ing.discard()
            raise
        return ing.commit()

    def read(self, digest: str) -> bytes | None:
        """A stored blob's bytes, checked again; None if it is not there, or
        not right (then it is quarantined, so it will be fetched again)."""
        path = self.blob_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        got = digest_of(data)
        if got != digest:
            self.quarantine(digest, f"its bytes hash to {got}")
            return None
        return data

    def verify(self, digest: str, size: int | None = None) -> Damaged | None:
        """Rehashes a stored blob; a damaged one is quarantined and described.
        A missing blob is not damaged (it is simply not cached)."""
        path = self.blob_path(digest)
        try:
            with open(path, "rb", buffering=0) as f:
                h = file_digest(f)
        except FileNotFoundError:
            return None
        n, got = h.size, "sha256:" + h.hexdigest()
        if size is not None and n != size:
            why = f"it is {n} bytes, its descriptor gives {size}"
        elif got != digest:
            why = f"its bytes hash to {got}"
        else:
            return None
        return self.quarantine(digest, why)

    def quarantine(self, digest: str, why: str) -> Damaged:
        """Moves a damaged blob out of the layout into quarantine/, kept for a
        look rather than deleted."""
        path = self.blob_path(digest)
        qdir = self.root / "quarantine"
        dest = qdir / f"{hex_part(digest)}.{time.time_ns()}"
        try:
            qdir.mkdir(exist_ok=True)
            os.replace(path, dest)
        except FileNotFoundError:
            pass  # another process moved it first
        except OSError as e:
            raise CacheError(f"{path}: damaged ({why}) and cannot be moved aside "
                             f"({e.strerror})", path=str(path), digest=digest) from None
        self.quarantined[digest] = dest
        return Damaged(digest, path, dest, why)

    def quarantine_files(self) -> list[Path]:
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root / "quarantine") as it:
            return [Path(de.path) for de in it]
        return []

    # -- partial downloads

    def partials(self) -> list[tuple[Path, int, bool]]:
        """Every file in ingest/: (path, bytes, still being written)."""
        out = []
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root / "ingest") as it:
            for de in it:
                path = Path(de.path)
                try:
                    size = de.stat(follow_symlinks=False).st_size
                except FileNotFoundError:
                    continue
                out.append((path, size, self._alive(path)))
        return out

    def _alive(self, path: Path) -> bool:
        stem, _, suffix = path.name.partition(".")
        if suffix in ("partial", "lock"):
            return not lock_is_free(path.with_name(f"{stem}.lock"))
        # HEX.PID.RAND: a temporary name from an older ociext4.
        pid = suffix.split(".")[0]
        if pid.isdigit():
            try:
                os.kill(int(pid), 0)
                return True
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
        return False

    def sweep(self) -> int:
        """Removes what dead processes left that no download can resume:
        lock files nobody holds and temporary names of older versions.
        Partial downloads stay for the next pull of their blob."""
        removed = 0
        for path, _, alive in self.partials():
            if alive or path.name.endswith(".partial"):
                continue
            if path.name.endswith(".lock") and path.with_suffix(".partial").exists():
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed += 1
        return removed

    # -- locks

    @contextlib.contextmanager
    def _flock(self, name: str, mode: int) -> Iterator[None]:
        path = self.root / name
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            if e.errno not in (errno.EROFS, errno.EACCES):
                raise
            # A read-only cache still serves what it holds: flock needs no write access.
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                raise write_error(path, "a lock file", e) from None
        try:
            fcntl.flock(fd, mode)
            yield
        finally:
            os.close(fd)  # closing drops the lock

    def in_use(self) -> contextlib.AbstractContextManager[None]:
        """Held (shared) by a pull from its first blob until its image is tagged."""
        return self._flock(".pull.lock", fcntl.LOCK_SH)

    # -- index.json

    def entries(self) -> list[Entry]:
        return self._entries(self._read_index()[1])

    @staticmethod
    def _entries(index: list[tuple[dict[str, Any], Descriptor]]) -> list[Entry]:
        return [Entry(d.annotations.get(REF_NAME, ""), d.digest, d.media_type, d.size,
                      str(d.platform) if d.platform is not None else "",
                      d.annotations.get(FROM_INDEX), raw)
                for raw, d in index]

    def lookup(self, name: str, plat: Platform | None = None) -> Entry | None:
        """The cached image tagged `name` for the platform (default: the host's)."""
        want = plat or Platform.host()
        _, index = self._read_index()
        for raw, d in reversed(index):
            if (d.annotations.get(REF_NAME, "") == name and d.platform is not None
                    and want.matches(d.platform)):
                return self._entries([(raw, d)])[0]
        return None

    def _index(self) -> dict[str, Any]:
        return self._read_index()[0]

    def _read_index(self) -> tuple[dict[str, Any], list[tuple[dict[str, Any], Descriptor]]]:
        """index.json as it is (to be written back) and its entries checked
        by the one parser: a hand-edited or damaged file is one line naming
        the field, never a crash further on."""
        path = self.root / "index.json"
        try:
            data = path.read_bytes()
        except OSError as e:
            raise SourceError(f"{path}: unreadable ({e.strerror or e})") from None
        index = parse_index(data, str(path))
        doc = json.loads(data)  # valid JSON: parse_index read it
        return doc, list(zip(doc.get("manifests") or [], index.manifests, strict=True))

    def _write_index(self, index: dict[str, Any]) -> None:
        index["schemaVersion"] = 2
        self._write_atomic(self.root / "index.json", json.dumps(index, indent=1) + "\n",
                           "the cache's index.json")

    def tag(self, name: str, desc: dict[str, Any]) -> None:
        """Record `desc` (a manifest descriptor) under `name`, replacing the entry
        with the same name and platform."""
        desc = {**desc, "annotations": {**(desc.get("annotations") or {}), REF_NAME: name}}
        with self._flock(".index.lock", fcntl.LOCK_EX):
            index = self._index()
            if desc in (index.get("manifests") or []):
                return  # already so: a read-only cache serves it as it is
            keep = [d for d in index.get("manifests") or []
                    if not ((d.get("annotations") or {}).get(REF_NAME) == name
                            and d.get("platform") == desc.get("platform"))]
            index["manifests"] = [*keep, desc]
            self._write_index(index)

    # -- ls and prune

    def referenced(self, digest: str, from_index: str | None = None) -> set[str]:
        """The digests an image needs (manifest or index, config, layers),
        following what is stored, plus the index it was chosen from (the
        index alone: other platforms' manifests are not kept)."""
        out: set[str] = set()
        todo = [digest]
        while todo:
            d = todo.pop()
            if d in out:
                continue
            out.add(d)
            data = self._peek(d)
            if data is None:
                continue
            try:
                doc = parse_document(data, d)
            except DocumentError:
                continue  # not a manifest or index: a config, a damaged blob
            if isinstance(doc, Index):
                todo += [m.digest for m in doc.manifests]
            else:
                out.add(doc.config.digest)
                out.update(m.digest for m in doc.layers)
        return out | ({from_index} if from_index else set())

    def _peek(self, digest: str) -> bytes | None:
        """A small stored document as it is (listing must not move blobs)."""
        path = self.blob_path(digest)
        try:
            if path.stat().st_size >= 4 << 20:
                return None
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def blob_size(self, digest: str) -> int:
        try:
            return self.blob_path(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def all_blobs(self) -> dict[str, int]:
        out = {}
        with os.scandir(self.root / "blobs" / "sha256") as it:
            for de in it:
                if de.is_file(follow_symlinks=False):
                    out["sha256:" + de.name] = de.stat(follow_symlinks=False).st_size
        return out

    def prune(self, untag: list[str] | None = None, everything: bool = False, *,
              images: bool = False, unused: bool = True, partial: bool = True,
              quarantine: bool = False) -> tuple[int, int]:
        """Forgets the named entries (or with `images` all of them), then
        removes every blob no entry needs (`unused`), the partial downloads
        no process is writing (`partial`) and the quarantined blobs
        (`quarantine`); `everything` is all of it.  Returns (files removed,
        bytes freed)."""
        if everything:
            images = unused = partial = quarantine = True
        removed = freed = 0

        def drop(path: Path) -> None:
            nonlocal removed, freed
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return
            removed, freed = removed + 1, freed + size

        with self._flock(".pull.lock", fcntl.LOCK_EX), \
                self._flock(".index.lock", fcntl.LOCK_EX):
            index = self._index()
            manifests = index.get("manifests") or []
            if images:
                manifests = []
            elif untag:
                names = set(untag)
                missing = names - {(d.get("annotations") or {}).get(REF_NAME) for d in manifests}
                if missing:
                    raise SourceError(f"{self.root}: no cached image named "
                                      f"{', '.join(sorted(missing))}")
                manifests = [d for d in manifests
                             if (d.get("annotations") or {}).get(REF_NAME) not in names]
            if len(manifests) != len(index.get("manifests") or []):
                index["manifests"] = manifests
                self._write_index(index)
            if unused or images or untag:
                keep: set[str] = set()
                for d in manifests:
                    keep |= self.referenced(str(d["digest"]),
                                            (d.get("annotations") or {}).get(FROM_INDEX))
                for digest in self.all_blobs():
                    if digest not in keep:
                        drop(self.blob_path(digest))
            if partial:
                for path, _, alive in self.partials():
                    if not alive:
                        drop(path)
            if quarantine:
                for path in self.quarantine_files():
                    drop(path)
        return removed, freed

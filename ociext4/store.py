"""The blob cache: an OCI image layout (blobs/sha256/…, index.json, oci-layout)
under the user's cache directory, so skopeo, umoci and `open_image` can read
it.  A blob is written under a temporary name, hashed as it streams, and
renamed to its digest only once size and digest match; index.json is replaced
whole under an flock.  Pulls hold a shared lock for their whole run and prune
an exclusive one, so a prune never removes what a running pull has fetched but
not yet tagged."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tempfiles
from .errors import DigestMismatch, SourceError
from .ocilayout import INDEX_TYPES, MANIFEST_TYPES, REF_NAME

LAYOUT = '{"imageLayoutVersion": "1.0.0"}\n'
# On an index.json entry: the index (manifest list) the manifest was chosen
# from, kept so a digest reference to it resolves without the registry.
FROM_INDEX = "dev.ociext4.from-index"


def default_root(explicit: str | os.PathLike[str] | None = None) -> Path:
    """--cache, else $OCIEXT4_CACHE, else $XDG_CACHE_HOME/ociext4, else ~/.cache/ociext4."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get("OCIEXT4_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ociext4"


def hex_of(digest: str) -> str:
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or hexdigest.strip("0123456789abcdef"):
        raise SourceError(f"unsupported digest {digest!r}")
    return hexdigest


@dataclass(frozen=True, slots=True)
class Entry:
    """One tagged image in index.json."""
    name: str
    digest: str
    media_type: str
    size: int
    platform: str
    from_index: str | None = None


class Ingest:
    """A blob being written: bytes are hashed as they arrive, and the file
    takes its digest's name only if everything matches.  `offset` is how many
    bytes are in already, for a ranged resume."""

    def __init__(self, store: Store, digest: str, size: int | None, what: str) -> None:
        self._store, self.digest, self.size, self.what = store, digest, size, what
        self._hash = hashlib.sha256()
        self.offset = 0
        self.tmp = store.root / "ingest" / f"{hex_of(digest)}.{os.getpid()}.{secrets.token_hex(4)}"
        self._f = open(self.tmp, "wb")  # noqa: SIM115 - closed in commit/discard
        tempfiles.track(self.tmp)

    def write(self, data: bytes | memoryview) -> None:
        if self.size is not None and self.offset + len(data) > self.size:
            raise DigestMismatch(f"{self.what}: more than the {self.size} bytes its "
                                 "descriptor gives")
        self._f.write(data)
        self._hash.update(data)
        self.offset += len(data)

    def restart(self) -> None:
        """Back to byte 0 (the server would not resume where we stopped)."""
        self._f.seek(0)
        self._f.truncate()
        self._hash = hashlib.sha256()
        self.offset = 0

    def commit(self) -> Path:
        """Check size and digest, make the bytes durable, rename into place."""
        try:
            got = "sha256:" + self._hash.hexdigest()
            if self.size is not None and self.offset != self.size:
                raise DigestMismatch(f"{self.what}: got {self.offset} bytes, its descriptor "
                                     f"gives {self.size}")
            if got != self.digest:
                raise DigestMismatch(f"{self.what}: content does not match its digest "
                                     f"(got {got})")
            self._f.flush()
            # A blob under its digest must hold those bytes even after a crash.
            os.fsync(self._f.fileno())
            self._f.close()
            final = self._store.blob_path(self.digest)
            os.replace(self.tmp, final)
            tempfiles.untrack(self.tmp)
            return final
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        self._f.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
        tempfiles.untrack(self.tmp)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._ensure_layout()

    def _ensure_layout(self) -> None:
        try:
            (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
            (self.root / "ingest").mkdir(exist_ok=True)
        except OSError as e:
            raise SourceError(f"{self.root}: cannot create the cache ({e.strerror})") from None
        for name, text in (("oci-layout", LAYOUT),
                           ("index.json", '{"schemaVersion": 2, "manifests": []}\n')):
            path = self.root / name
            if not path.exists():
                self._write_atomic(path, text)

    def _write_atomic(self, path: Path, text: str) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    # -- blobs

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / hex_of(digest)

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError:
            return False
        return size is None or st.st_size == size

    def ingest(self, digest: str, size: int | None, what: str) -> Ingest:
        return Ingest(self, digest, size, what)

    def drop_own_ingest(self) -> None:
        """Removes this process's half-written blobs: for a pull that stops
        without waiting for its downloads (an interrupt, a failed layer)."""
        with contextlib.suppress(FileNotFoundError), os.scandir(self.root / "ingest") as it:
            for de in it:
                if de.name.split(".")[1:2] == [str(os.getpid())]:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(de.path)

    def put(self, digest: str, data: bytes, what: str) -> Path:
        """Store a small blob (manifest, config) held in memory."""
        ing = self.ingest(digest, len(data), what)
        ing.write(data)
        return ing.commit()

    def read(self, digest: str) -> bytes | None:
        """A stored blob's bytes, checked again; None if it is not there or not right."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            return None
        return data if "sha256:" + hashlib.sha256(data).hexdigest() == digest else None

    # -- locks

    @contextlib.contextmanager
    def _flock(self, name: str, mode: int) -> Iterator[None]:
        fd = os.open(self.root / name, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
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
        out = []
        for d in self._index().get("manifests") or []:
            p = d.get("platform") or {}
            plat = "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant"))
                            if x)
            ann = d.get("annotations") or {}
            out.append(Entry(ann.get(REF_NAME, ""), str(d["digest"]), str(d.get("mediaType", "")),
                             int(d.get("size", 0)), plat, ann.get(FROM_INDEX)))
        return out

    def _index(self) -> dict[str, Any]:
        try:
            doc = json.loads((self.root / "index.json").read_text())
        except (OSError, ValueError) as e:
            raise SourceError(f"{self.root}/index.json: unreadable ({e})") from None
        if not isinstance(doc, dict):
            raise SourceError(f"{self.root}/index.json: not a JSON object")
        return doc

    def tag(self, name: str, desc: dict[str, Any]) -> None:
        """Record `desc` (a manifest descriptor) under `name`, replacing the entry
        with the same name and platform."""
        desc = {**desc, "annotations": {**(desc.get("annotations") or {}), REF_NAME: name}}
        with self._flock(".index.lock", fcntl.LOCK_EX):
            index = self._index()
            keep = [d for d in index.get("manifests") or []
                    if not ((d.get("annotations") or {}).get(REF_NAME) == name
                            and d.get("platform") == desc.get("platform"))]
            index["schemaVersion"] = 2
            index["manifests"] = [*keep, desc]
            self._write_atomic(self.root / "index.json", json.dumps(index, indent=1) + "\n")

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
            data = self.read(d) if self.has(d) and self.blob_path(d).stat().st_size < 4 << 20 \
                else None
            if data is None:
                continue
            try:
                doc = json.loads(data)
            except ValueError:
                continue
            if not isinstance(doc, dict):
                continue
            if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
                todo += [str(m["digest"]) for m in doc.get("manifests") or []
                         if isinstance(m, dict) and "digest" in m]
            elif doc.get("mediaType") in MANIFEST_TYPES or "layers" in doc:
                cfg = doc.get("config") or {}
                if "digest" in cfg:
                    out.add(str(cfg["digest"]))
                out.update(str(m["digest"]) for m in doc.get("layers") or []
                           if isinstance(m, dict) and "digest" in m)
        return out | ({from_index} if from_index else set())

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

    def prune(self, untag: list[str] | None = None, everything: bool = False) -> tuple[int, int]:
        """Drop the named entries (or all of them), then every blob no entry
        needs and every half-written blob.  Returns (files removed, bytes freed)."""
        removed = freed = 0
        with self._flock(".pull.lock", fcntl.LOCK_EX), \
                self._flock(".index.lock", fcntl.LOCK_EX):
            index = self._index()
            manifests = index.get("manifests") or []
            if everything:
                manifests = []
            elif untag:
                names = set(untag)
                missing = names - {(d.get("annotations") or {}).get(REF_NAME) for d in manifests}
                if missing:
                    raise SourceError(f"{self.root}: no cached image named "
                                      f"{', '.join(sorted(missing))}")
                manifests = [d for d in manifests
                             if (d.get("annotations") or {}).get(REF_NAME) not in names]
            index["manifests"] = manifests
            self._write_atomic(self.root / "index.json", json.dumps(index, indent=1) + "\n")
            keep: set[str] = set()
            for d in manifests:
                keep |= self.referenced(str(d["digest"]),
                                        (d.get("annotations") or {}).get(FROM_INDEX))
            for digest, size in self.all_blobs().items():
                if digest not in keep:
                    self.blob_path(digest).unlink()
                    removed, freed = removed + 1, freed + size
            with os.scandir(self.root / "ingest") as it:
                for de in it:
                    size = de.stat(follow_symlinks=False).st_size
                    os.unlink(de.path)
                    removed, freed = removed + 1, freed + size
        return removed, freed

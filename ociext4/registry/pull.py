"""Pulling an image into the cache: resolve the reference (from the cache
when the pull policy allows and the tag is there), then fetch the layers a
few at a time on threads while the caller may already read the ones that are
in (`Pull.wait`), and tag the image in the cache's index.json once every blob
is there.  A layer already cached is rehashed before it is handed over; a
damaged one is quarantined and fetched again.  `fetch_image` is the whole
thing in one call."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from ..errors import CacheError, RegistryError, RegistryUnreachable
from ..model import Image, Layer, Platform
from ..reference import RegistryRef, parse_registry
from ..store import FROM_INDEX, Entry, PullPolicy, Store
from .blobs import Cancelled, fetch_blob
from .client import Options, RegistryClient
from .config import registry_options
from .manifests import ManifestSource, Resolved, resolve

JOBS = 3


class Progress(Protocol):
    """What a pull reports: the layers once known (and which are cached), then bytes."""

    def begin(self, image: Image, cached: set[str]) -> None: ...

    def advance(self, digest: str, nbytes: int) -> None: ...


@dataclass(frozen=True, slots=True)
class PulledImage:
    """An image in the cache: an OCI layout, and its name and digest in it;
    `index_digest` is the index (manifest list) the manifest was chosen from,
    when the name led to one."""
    layout: Path
    name: str
    manifest_digest: str
    platform: str
    image: Image

    @property
    def index_digest(self) -> str | None:
        """The index (manifest list) the manifest was chosen from, if any."""
        return self.image.index_digest

    @property
    def oci_reference(self) -> str:
        """The `oci:DIR@DIGEST` reference that reads it back (unpack, umoci, skopeo)."""
        return f"oci:{self.layout}@{self.manifest_digest}"


class Pull:
    """One pull; use as a context manager.  After `start()`, `image` is known
    and layers download in the background.  `policy` (default: the options')
    says whether a cached tag is looked up in the registry."""

    def __init__(self, ref: RegistryRef, store: Store, plat: Platform | None = None,
                 opts: Options | None = None, progress: Progress | None = None,
                 jobs: int = JOBS, policy: PullPolicy | None = None) -> None:
        self.ref, self.store, self.plat = ref, store, plat
        self.opts = opts if opts is not None else registry_options(store.root)
        self.policy = policy or self.opts.pull
        self.progress = progress
        self.warnings: list[str] = []
        self._jobs = jobs
        self._clients: dict[str, RegistryClient] = {}
        self._client_lock = threading.Lock()
        # Mirrors first, then the registry itself: see _from_registry.
        self._hosts = [*self.opts.mirrors.get(ref.registry, ()), ref.host]
        self._host = self._hosts[0]
        self._cancel = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future[Path]] = {}
        self._from_scratch: set[str] = set()   # downloads with no bytes left by a run before
        self.unchecked: set[str] = set()       # cached layers their reader hashes (start())
        self._lock_cm: contextlib.AbstractContextManager[None] | None = None
        self.resolved: Resolved | None = None

    def client(self) -> RegistryClient:
        if self.policy is PullPolicy.NEVER:
            raise RegistryError(f"{self.ref}: not all of it is in the cache "
                                f"({self.store.root}), and the pull policy `never` forbids "
                                "asking the registry")
        return self._client_for(self._host)

    def _client_for(self, host: str) -> RegistryClient:
        with self._client_lock:
            if host not in self._clients:
                self._clients[host] = RegistryClient(host, self.ref.repository, self.opts)
            return self._clients[host]

    @property
    def image(self) -> Image:
        assert self.resolved is not None, "Pull.start() first"
        return self.resolved.image

    def _warn(self, text: str) -> None:
        self.warnings.append(text)
        if self.opts.warn is not None:
            self.opts.warn(text)

    def __enter__(self) -> Pull:
        # Shared with other pulls, exclusive with prune: nothing fetched here
        # is swept before it is tagged.
        self._lock_cm = self.store.in_use()
        self._lock_cm.__enter__()
        self.store.sweep()
        return self

    def resolve(self) -> Resolved:
        """Manifest and config only (fetched into the cache if missing)."""
        if self.resolved is None:
            try:
                self.resolved = self._resolve()
            except RegistryError as e:
                raise self._damage_report(e, None) from None
        return self.resolved

    def _resolve(self) -> Resolved:
        ref = self.ref
        if ref.digest is not None:
            return self._from_registry()
        cached = self.store.lookup(ref.name, self.plat)
        if cached is not None and self.policy is not PullPolicy.ALWAYS:
            return self._from_cache(cached)
        if cached is None and self.policy is PullPolicy.NEVER:
            raise RegistryError(f"{ref.name}: not in the cache ({self.store.root}) for "
                                f"{self.plat or Platform.host()}, and the pull policy `never` "
                                "forbids asking the registry")
        try:
            return self._from_registry()
        except RegistryError as e:
            if cached is None or not (isinstance(e, RegistryUnreachable) or e.temporary):
                raise
            self._warn(f"{e}; using the cached {ref.name} ({cached.digest})")
            return self._from_cache(cached)

    def _from_registry(self) -> Resolved:
        """Resolves through each mirror in turn, then the registry itself;
        the first that answers serves the layers too."""
        for host in self._hosts:
            self._host = host
            try:
                return resolve(ManifestSource(self.client, self.store, self.ref), self.plat)
            except RegistryError as e:
                if host == self.ref.host or self.policy is PullPolicy.NEVER:
                    raise
                self._warn(f"mirror {host} failed ({e}); trying the next")
        raise AssertionError("the registry itself is always the last host")

    def _from_cache(self, entry: Entry) -> Resolved:
        """The tagged image as the cache holds it: by its manifest digest, so
        only what is missing (or damaged) is asked of the registry."""
        by_digest = dataclasses.replace(self.ref, digest=entry.digest)
        plat = Platform.parse(entry.platform)
        res = resolve(ManifestSource(self.client, self.store, by_digest), plat)
        # What the tag was resolved from when it was pulled: its index, its platform.
        image = dataclasses.replace(res.image, platform=plat,
                                    index_digest=entry.from_index or res.image.index_digest)
        desc = dataclasses.replace(res.descriptor, platform=plat,
                                   annotations={FROM_INDEX: image.index_digest}
                                   if image.index_digest else {})
        return dataclasses.replace(res, image=image, descriptor=desc)

    def _damage_report(self, e: RegistryError, digest: str | None) -> Exception:
        """A blob this pull found damaged and could not fetch again: say where
        it was, what it is and how to fix it, rather than why the registry
        could not help."""
        if digest is None:
            digest = next(iter(self.store.quarantined), None)
        moved = self.store.quarantined.get(digest or "")
        if digest is None or moved is None or isinstance(e, Cancelled):
            return e
        path = self.store.blob_path(digest)
        return CacheError(f"{path}: the cached blob {digest} was damaged (moved to {moved}) "
                          f"and could not be fetched again ({e}); fix it with "
                          f"`ociext4 pull {self.ref}` once {self.ref.host} is reachable",
                          path=str(path), digest=digest)

    def start(self, rehash_cached: bool = True) -> Image:
        """Resolves, then rehashes the layers that are cached and fetches the
        others, bottom layer first.  Without `rehash_cached`, the cached
        layers are left in `unchecked` instead, for whoever reads them to
        hash as it reads (an unpack); calling start() again after one of
        them was found damaged and quarantined fetches it."""
        image = self.resolve().image
        cached = {lay.digest for lay in image.layers
                  if self.store.has(lay.digest, lay.size or None)}
        if self.progress is not None:
            self.progress.begin(image, cached)
        self.unchecked = set() if rehash_cached else cached - self._futures.keys()
        todo = [lay for lay in image.layers
                if lay.digest not in self._futures and lay.digest not in self.unchecked]
        if todo:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=min(self._jobs, len(todo)),
                                                thread_name_prefix="ociext4-pull")
            # Bottom layer first: it is the one the unpack needs first.
            for lay in todo:
                if lay.digest not in self._futures:
                    job = self._check if lay.digest in cached else self._fetch
                    if lay.digest not in cached and \
                            not self.store.ingest_path(lay.digest).exists():
                        self._from_scratch.add(lay.digest)
                    self._futures[lay.digest] = self._pool.submit(job, lay)
        return image

    def _check(self, layer: Layer) -> Path:
        """A cached layer, rehashed; a damaged one is moved aside and fetched again."""
        if self._cancel.is_set():
            raise Cancelled(f"{self.ref}: layer {layer.digest}")
        if self.store.verify(layer.digest, layer.size or None) is None \
                and self.store.has(layer.digest):
            return self.store.blob_path(layer.digest)
        return self._fetch(layer)

    def _fetch(self, layer: Layer) -> Path:
        what = f"{self.ref}: layer {layer.digest}"
        progress = self.progress

        def on_bytes(n: int) -> None:
            if progress is not None:
                progress.advance(layer.digest, n)

        assert self.resolved is not None
        urls = self.resolved.layer_urls.get(layer.digest, [])
        try:
            try:
                return fetch_blob(self.client(), self.store, layer.digest, layer.size or None,
                                  urls, what, on_bytes, self._cancel)
            except RegistryError as e:
                if self._host == self.ref.host or isinstance(e, Cancelled):
                    raise
                # A mirror that served the manifest may still lack a blob.
                self._warn(f"mirror {self._host} failed ({e}); trying {self.ref.host}")
                return fetch_blob(self._client_for(self.ref.host), self.store, layer.digest,
                                  layer.size or None, urls, what, on_bytes, self._cancel)
        except RegistryError as e:
            self._cancel.set()  # the pull has failed: stop the other downloads
            raise self._damage_report(e, layer.digest) from None
        except BaseException:
            self._cancel.set()
            raise

    def wait(self, layer: Layer) -> None:
        """Returns once the layer's blob is in the cache and checked; raises
        the download's error."""
        self.settled(layer, None)

    def streams(self, layer: Layer) -> bool:
        """Whether the layer's blob is still downloading, from its first
        byte, so that it may be read as it arrives (registry.follow)."""
        fut = self._futures.get(layer.digest)
        return fut is not None and not fut.done() and layer.digest in self._from_scratch

    def settled(self, layer: Layer, timeout: float | None) -> bool:
        """Whether the layer's blob is in the cache, waiting up to `timeout`
        seconds (None: until it is); raises the download's error."""
        fut = self._futures.get(layer.digest)
        if fut is None:
            return True
        if timeout is not None:
            try:
                fut.result(timeout)
            except TimeoutError:
                return False
            except Exception:  # noqa: BLE001 - reported by _result, below
                pass
        self._result(fut)
        return True

    def _result(self, fut: Future[Path]) -> Path:
        try:
            return fut.result()
        except Cancelled:
            # Report the download that failed, not one that was stopped for it
            # (it may still be on its way out: wait for them all).
            wait_all(self._futures.values())
            for other in self._futures.values():
                err = None if other.cancelled() else other.exception()
                if err is not None and not isinstance(err, Cancelled):
                    raise err from None
            raise

    def finish(self) -> PulledImage:
        """Waits for every layer, then tags the image in the cache."""
        assert self.resolved is not None
        for fut in self._futures.values():
            self._result(fut)
        name = self.ref.name
        self.store.tag(name, self.resolved.descriptor.to_json())
        return PulledImage(self.store.root, name, self.resolved.image.manifest_digest,
                           self.resolved.platform, self.resolved.image)

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._cancel.set()
        if self._pool is not None:
            # On an error or an interrupt, a download stalled in a read must
            # not hold the exit up until its timeout: leave it (what it has
            # fetched stays in ingest/ for the next pull to resume).
            self._pool.shutdown(wait=typ is None, cancel_futures=True)
        if typ is None:
            for client in self._clients.values():
                client.close()
        if self._lock_cm is not None:
            self._lock_cm.__exit__(typ, exc, tb)


def repair(store: Store, entry: Entry, options: Options | None = None) -> None:
    """Fetches again whatever the cached image `entry` lacks (after `cache
    verify` moved damaged blobs aside), by its manifest digest."""
    ref = dataclasses.replace(parse_registry(entry.name.partition("@")[0]),
                              digest=entry.digest)
    plat = Platform.parse(entry.platform) if entry.platform else None
    with Pull(ref, store, plat, options, policy=PullPolicy.MISSING) as pull:
        pull.start()
        for lay in pull.image.layers:
            pull.wait(lay)

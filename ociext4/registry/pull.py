"""Pulling an image into the cache: resolve the reference, then fetch the
layers a few at a time on threads while the caller may already read the ones
that are in (`Pull.wait`), and tag the image in the cache's index.json once
every blob is there.  `fetch_image` is the whole thing in one call."""

from __future__ import annotations

import contextlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from ..model import Image, Layer, Platform
from ..reference import RegistryRef, parse_registry
from ..store import Store, default_root
from .blobs import Cancelled, fetch_blob
from .client import Options, RegistryClient
from .manifests import ManifestSource, Resolved, resolve

JOBS = 3


class Progress(Protocol):
    """What a pull reports: the layers once known (and which are cached), then bytes."""

    def begin(self, image: Image, cached: set[str]) -> None: ...

    def advance(self, digest: str, nbytes: int) -> None: ...


@dataclass(frozen=True, slots=True)
class PulledImage:
    """An image in the cache: an OCI layout, and its name and digest in it."""
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
    and layers download in the background."""

    def __init__(self, ref: RegistryRef, store: Store, plat: Platform | None = None,
                 opts: Options | None = None, progress: Progress | None = None,
                 jobs: int = JOBS) -> None:
        self.ref, self.store, self.plat = ref, store, plat
        self.opts = opts or Options()
        self.progress = progress
        self._jobs = jobs
        self._client: RegistryClient | None = None
        self._client_lock = threading.Lock()
        self._cancel = threading.Event()
        self._pool: ThreadPoolExecutor | None = None
        self._futures: dict[str, Future[Path]] = {}
        self._lock_cm: contextlib.AbstractContextManager[None] | None = None
        self.resolved: Resolved | None = None

    def client(self) -> RegistryClient:
        with self._client_lock:
            if self._client is None:
                self._client = RegistryClient(self.ref.host, self.ref.repository, self.opts)
            return self._client

    @property
    def image(self) -> Image:
        assert self.resolved is not None, "Pull.start() first"
        return self.resolved.image

    def __enter__(self) -> Pull:
        # Shared with other pulls, exclusive with prune: nothing fetched here
        # is swept before it is tagged.
        self._lock_cm = self.store.in_use()
        self._lock_cm.__enter__()
        return self

    def resolve(self) -> Resolved:
        """Manifest and config only (fetched into the cache if missing)."""
        if self.resolved is None:
            self.resolved = resolve(ManifestSource(self.client, self.store, self.ref), self.plat)
        return self.resolved

    def start(self) -> Image:
        """Resolves, then starts fetching the layers that are not cached."""
        image = self.resolve().image
        cached = {lay.digest for lay in image.layers if self.store.has(lay.digest, lay.size)}
        if self.progress is not None:
            self.progress.begin(image, cached)
        missing = [lay for lay in image.layers if lay.digest not in cached]
        if missing:
            self._pool = ThreadPoolExecutor(max_workers=min(self._jobs, len(missing)),
                                            thread_name_prefix="ociext4-pull")
            # Bottom layer first: it is the one the unpack needs first.
            for lay in missing:
                if lay.digest not in self._futures:
                    self._futures[lay.digest] = self._pool.submit(self._fetch, lay)
        return image

    def _fetch(self, layer: Layer) -> Path:
        what = f"{self.ref}: layer {layer.digest}"
        progress = self.progress

        def on_bytes(n: int) -> None:
            if progress is not None:
                progress.advance(layer.digest, n)

        try:
            assert self.resolved is not None
            return fetch_blob(self.client(), self.store, layer.digest, layer.size or None,
                              self.resolved.layer_urls.get(layer.digest, []), what, on_bytes,
                              self._cancel)
        except BaseException:
            self._cancel.set()  # the pull has failed: stop the other downloads
            raise

    def wait(self, layer: Layer) -> None:
        """Returns once the layer's blob is in the cache; raises the download's error."""
        fut = self._futures.get(layer.digest)
        if fut is not None:
            self._result(fut)

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
            # not hold the exit up until its timeout: leave it, drop its file.
            self._pool.shutdown(wait=typ is None, cancel_futures=True)
            if typ is not None:
                self.store.drop_own_ingest()
        if self._client is not None and typ is None:
            self._client.close()
        if self._lock_cm is not None:
            self._lock_cm.__exit__(typ, exc, tb)


def fetch_image(reference: str | RegistryRef, *, cache: str | Path | None = None,
                platform: Platform | None = None, options: Options | None = None,
                progress: Progress | None = None) -> PulledImage:
    """Pulls what is missing of a registry image into the cache (an OCI
    layout) and returns where it is: what `ociext4 pull` does, for callers
    such as the VM runner (read it with `read_image(LocalRef("oci",
    str(p.layout), digest=p.manifest_digest), ...)`)."""
    ref = parse_registry(reference) if isinstance(reference, str) else reference
    store = Store(default_root(cache))
    with Pull(ref, store, platform, options, progress) as pull:
        pull.start()
        return pull.finish()



"""A registry image as an image source: the manifest and config resolved
into the cache, the layers downloading on threads while the bottom ones are
already read, and the image tagged in the cache once every blob is in."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType

from ..blobs import LayerBlob
from ..errors import CachedBlobDamaged, DigestMismatch
from ..model import Image, Layer, Platform
from ..ocilayout import open_layer_blob
from ..reference import RegistryRef
from ..source import SourceBase
from ..store import PullPolicy, Store
from .client import Options
from .follow import FollowedBlob
from .pull import Progress, Pull, PulledImage


class RegistryImage(SourceBase):
    def __init__(self, ref: RegistryRef, store: Store, options: Options | None = None,
                 progress: Progress | None = None, policy: PullPolicy | None = None) -> None:
        """`policy` overrides the options' pull policy (by default `missing`)."""
        self.ref, self.store = ref, store
        self.name = str(ref)
        self._pull = Pull(ref, store, None, options, progress, policy=policy)
        self._entered = False
        self.pulled: PulledImage | None = None

    def _for(self, platform: Platform | None) -> Pull:
        if not self._entered:
            self._pull.__enter__()
            self._entered = True
        self._pull.plat = platform
        return self._pull

    def open(self, platform: Platform | None = None) -> Image:
        """For reading the layers (an unpack): cached layers are hashed as
        they are inflated, not before (see _checked_in_cache).  Opening
        again after one was found damaged fetches it."""
        return self._for(platform).start(rehash_cached=False)

    def pull(self, platform: Platform | None = None) -> PulledImage:
        """The image whole in the cache, with nothing read from it: cached
        layers are rehashed (a damaged one fetched again), then it is tagged."""
        self._for(platform).start()
        return self.finish()

    def resolve(self, platform: Platform | None = None) -> Image:
        """Manifest and config only: nothing but them is downloaded."""
        return self._for(platform).resolve().image

    @property
    def raw(self) -> bytes:
        """The document the reference names, as the registry served it."""
        assert self._pull.resolved is not None, "open() first"
        return self._pull.resolved.raw

    def finish(self) -> PulledImage:
        """Waits for every layer, then tags the image in the cache."""
        self.pulled = self._pull.finish()
        return self.pulled

    def layer_blobs(self, image: Image) -> Iterator[LayerBlob]:
        n = len(image.layers)
        if n == 0:
            self.finish()
        for i, layer in enumerate(image.layers):
            last = i == n - 1
            if self._pull.streams(layer):
                # Read as it downloads: its check is the download's verdict,
                # and the diff_id covers what was read (registry.follow).
                followed = FollowedBlob(self.store, layer, self.name,
                                        lambda timeout, layer=layer:
                                        self._pull.settled(layer, timeout))
                check = self._then_finish(followed) if last else followed.check
                yield LayerBlob(layer, followed, check, followed.close, followed.abandon)
                continue
            if layer.digest in self._pull.unchecked:
                # Cached before this pull: hashed as it is read.
                blob = open_layer_blob(self.store.root, layer)
                blob.check = self._checked_in_cache(layer, blob.check)
            else:
                # Fetched by this pull: the cache checked the blob's digest
                # before naming it, and the diff_id check still covers every
                # byte of content.
                self._pull.wait(layer)
                blob = open_layer_blob(self.store.root, layer, verify=False)
            if last:
                self.finish()   # every blob is in: tag the image
            yield blob

    def _checked_in_cache(self, layer: Layer,
                          check: Callable[[], None] | None) -> Callable[[], None]:
        """The check of a cached layer hashed as it was read: a blob that is
        not what its digest names goes to quarantine, and CachedBlobDamaged
        tells the unpack to start over (open() then fetches it again)."""
        assert check is not None

        def checked() -> None:
            try:
                check()
            except DigestMismatch as e:
                damaged = self.store.quarantine(layer.digest, str(e))
                raise CachedBlobDamaged(
                    f"{damaged.path}: the cached blob {layer.digest} was damaged (moved to "
                    f"{damaged.moved_to}); run again to fetch it",
                    path=str(damaged.path), digest=layer.digest,
                    moved=str(damaged.moved_to)) from None
        return checked

    def _then_finish(self, last: FollowedBlob) -> Callable[[], None]:
        """The last layer's check: every blob is in once its own is, so the
        image is tagged then (tagging before the layer is read would wait for
        its download), unless the unpack gave the layer up."""
        def check() -> None:
            last.check()
            if not last.abandoned:
                self.finish()
        return check

    def close(self) -> None:
        self.__exit__(None, None, None)

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._entered:
            self._entered = False
            self._pull.__exit__(typ, exc, tb)

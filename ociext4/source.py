"""What every image source (an OCI layout, a docker save archive, a
registry) offers: open the image for a platform, hand over its layer blobs
in order, close."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Protocol, TypeVar, runtime_checkable

from .blobs import LayerBlob
from .errors import CachedBlobDamaged
from .model import Image, Platform

T = TypeVar("T")


@runtime_checkable
class ImageSource(Protocol):
    """`name` is how messages name the source (a path or a reference)."""

    name: str

    def open(self, platform: Platform | None = None) -> Image:
        """The image for `platform` (None: the host's, or the only one there
        is).  An explicit platform the image does not have is an error
        (NoMatchingPlatform)."""
        ...

    def layer_blobs(self, image: Image) -> Iterator[LayerBlob]:
        """The image's layer blobs, bottom first, each checked against its
        digest when finished."""
        ...

    def close(self) -> None:
        ...

    def __enter__(self) -> ImageSource: ...

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None: ...


class SourceBase:
    """Context-manager plumbing shared by the sources."""

    name: str

    def close(self) -> None:
        pass

    def __enter__(self) -> SourceBase:
        return self

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def check_platform(have: Platform | None, wanted: Platform | None, name: str) -> None:
    """An image chosen without an index's word on its platform (a
    single-manifest layout, a docker save archive, an image file's sidecar)
    still has to be what an explicit --platform asks for, as docker refuses
    otherwise."""
    from .errors import NoMatchingPlatform

    if wanted is not None and have is not None and not wanted.matches(have):
        raise NoMatchingPlatform(name, wanted, [have])


def healing_cache(attempt: Callable[[], T]) -> T:
    """attempt() (open the source, read its layers into a new image), again
    each time it finds a cached layer damaged: that blob is in quarantine by
    then, so opening the source again fetches it.  A registry source hashes
    cached layers as it reads them, not before.  Each new attempt follows a
    blob not met before, so there are at most as many as cached layers."""
    seen: set[str] = set()
    while True:
        try:
            return attempt()
        except CachedBlobDamaged as e:
            if e.digest in seen:
                raise
            seen.add(e.digest)

"""The typed exceptions of the library; the CLI turns them into one-line
errors.  They carry data (what failed, with which status or errno), so
callers branch on attributes, never on message text."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Platform


class Ociext4Error(Exception):
    """Base of every error the library raises on purpose."""


class SourceError(Ociext4Error):
    """The input (directory, archive, image) is unreadable or malformed."""


class UnsafePathError(SourceError):
    """An entry would land outside the image root."""


class ImageError(Ociext4Error):
    """The ext4 image could not be laid out or written.  `errno` is the
    system error behind it (ENOSPC, EIO, ...), or None when there was none."""

    def __init__(self, message: str, errno: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno


class DigestMismatch(SourceError):
    """Bytes that do not hash to the digest (or have the size) they were fetched for."""


class DocumentError(SourceError):
    """A manifest, index or config with a field of the wrong type or range.
    `document` names it (`manifest sha256:…`), `field` is the path in it
    (`layers[2].size`), `problem` what is wrong.  Sources prefix where the
    document came from."""

    def __init__(self, document: str, field: str, problem: str) -> None:
        super().__init__(f"{document}: {field}: {problem}")
        self.document, self.field, self.problem = document, field, problem


class NoMatchingPlatform(SourceError):
    """The image has no manifest for the platform asked for; `available`
    lists the platforms it has."""

    def __init__(self, where: str, wanted: Platform, available: list[Platform]) -> None:
        names = sorted({str(p) for p in available})
        super().__init__(f"{where}: no manifest for {wanted} (has: {', '.join(names) or 'none'})")
        self.wanted, self.available = wanted, available


class RegistryError(Ociext4Error):
    """A registry refused, failed, or could not be reached.  Callers branch on
    the data, never on the message: `status` (the HTTP status, None when no
    answer came), `code` (the registry's own error code, e.g. MANIFEST_UNKNOWN)
    and `temporary` (trying again later may work: 429, 5xx, no answer)."""

    def __init__(self, message: str = "", *, status: int | None = None, code: str = "",
                 temporary: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.temporary = status, code, temporary


class RegistryUnreachable(RegistryError):
    """No HTTP answer at all: connection refused, no such host, a port that
    does not speak HTTP, silence past the timeout."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message, temporary=True)


class AuthError(RegistryError):
    """No credentials were accepted, or an auth challenge could not be met."""


class CacheError(Ociext4Error):
    """The blob cache could not be written or holds a damaged blob that cannot
    be fetched again; `path` is the file concerned, `digest` the blob's."""

    def __init__(self, message: str, *, path: str = "", digest: str = "") -> None:
        super().__init__(message)
        self.path, self.digest = path, digest


class CachedBlobDamaged(CacheError):
    """A cached layer blob, hashed as an unpack read it, was not the blob its
    digest names.  It has been moved to quarantine (`moved`), so the next
    attempt fetches it again: an unpack starts over by itself, once for
    each damaged blob (source.healing_cache)."""

    def __init__(self, message: str, *, path: str, digest: str, moved: str) -> None:
        super().__init__(message, path=path, digest=digest)
        self.moved = moved

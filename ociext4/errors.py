"""The typed exceptions of the library; the CLI turns them into one-line errors."""


class Ociext4Error(Exception):
    """Base of every error the library raises on purpose."""


class SourceError(Ociext4Error):
    """The input (directory, archive, image) is unreadable or malformed."""


class UnsafePathError(SourceError):
    """An entry would land outside the image root."""


class ImageError(Ociext4Error):
    """The ext4 image could not be laid out or written."""


class DigestMismatch(SourceError):
    """Bytes that do not hash to the digest (or have the size) they were fetched for."""


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

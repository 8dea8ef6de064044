"""The typed exceptions of the library; the CLI turns them into one-line errors."""


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


class RegistryError(Ociext4Error):
    """A registry refused, failed, or could not be reached."""


class AuthError(RegistryError):
    """No credentials were accepted, or an auth challenge could not be met."""

"""Content digests: the one place that says what a digest looks like and
whether bytes match one."""

from __future__ import annotations

import hashlib
import re

from .errors import DigestMismatch, SourceError

_SHA256 = re.compile(r"^sha256:[0-9a-f]{64}$")
# The image spec's grammar: algorithm[+algorithm…]:encoded.
_ANY = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")


def is_digest(text: object) -> bool:
    """A digest this project can check (sha256, lower-case hex)."""
    return isinstance(text, str) and _SHA256.match(text) is not None


def check_digest(text: str, what: str) -> str:
    """`text` if it is a sha256 digest; otherwise a SourceError that says
    whether it is a digest of another algorithm or no digest at all."""
    if is_digest(text):
        return text
    if _ANY.match(text):
        raise SourceError(f"{what}: digest {text!r} uses an algorithm other than sha256, "
                          "which is not supported")
    raise SourceError(f"{what}: {text!r} is not a digest")


def hex_part(digest: str) -> str:
    """The hex of a sha256 digest (its file name in blobs/sha256/)."""
    return check_digest(digest, "blob")[len("sha256:"):]


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def check_bytes(what: str, digest: str, size: int | None, got_size: int, got_digest: str) -> None:
    """Raises DigestMismatch unless bytes of `got_size` hashing to
    `got_digest` are what a descriptor (`digest`, `size` if known) names."""
    if size is not None and got_size != size:
        raise DigestMismatch(f"{what} is {got_size} bytes, its descriptor says {size}")
    if got_digest != digest:
        raise DigestMismatch(f"{what} does not match its digest (the bytes hash to {got_digest})")


def check_diff_id(name: str, diff_id: str, got_digest: str) -> None:
    """Raises SourceError unless a layer's uncompressed tar, hashing to
    `got_digest`, is the one its config's diff_id names."""
    if got_digest != diff_id:
        raise SourceError(f"{name}: uncompressed layer does not match diff_id {diff_id}")


def check_data(what: str, digest: str, size: int | None, data: bytes) -> None:
    check_bytes(what, digest, size, len(data), digest_of(data))

"""Image references that name local images: `oci:DIR[:TAG|@DIGEST]` and
`docker-archive:FILE`.  (Registry names come with the registry fetcher.)"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import SourceError

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class LocalRef:
    transport: str          # "oci" or "docker-archive"
    path: str
    tag: str | None = None
    digest: str | None = None


def parse_local(text: str) -> LocalRef | None:
    """The reference if it names a local image, None if it does not."""
    for transport in ("oci", "docker-archive"):
        prefix = transport + ":"
        if not text.startswith(prefix):
            continue
        rest = text[len(prefix):]
        if not rest:
            raise SourceError(f"{text}: no path given")
        if transport == "docker-archive":
            return LocalRef(transport, rest)
        if "@" in rest:
            path, _, digest = rest.rpartition("@")
            if not _DIGEST.match(digest):
                raise SourceError(f"{text}: {digest!r} is not a sha256 digest")
            return LocalRef(transport, path, digest=digest)
        path, sep, tag = rest.rpartition(":")
        if sep and "/" not in tag and tag:
            return LocalRef(transport, path, tag=tag)
        return LocalRef(transport, rest)
    return None

"""Image references: local images (`oci:DIR[:TAG|@DIGEST]`, `docker-archive:FILE`)
and registry names normalised as Docker does (`alpine` is
`docker.io/library/alpine:latest`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import SourceError

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_ANY_DIGEST = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_PATH_COMPONENT = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
_HOST_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"^(?:{_HOST_LABEL}(?:\.{_HOST_LABEL})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?$")
_MAX_NAME = 255

DOCKER_HUB = "docker.io"
# docker.io is a name, not a server: its API lives here.
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True, slots=True)
class LocalRef:
    transport: str          # "oci" or "docker-archive"
    path: str
    tag: str | None = None
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class RegistryRef:
    registry: str           # as named: "docker.io", "127.0.0.1:5000"
    repository: str         # "library/alpine"
    tag: str | None = None
    digest: str | None = None  # wins over the tag when both are given

    @property
    def host(self) -> str:
        """Where the registry's API answers (host[:port])."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def reference(self) -> str:
        """What to ask the manifests endpoint for: the digest if known, else the tag."""
        return self.digest or self.tag or "latest"

    @property
    def name(self) -> str:
        """The fully qualified name as written in the cache's index.json."""
        base = f"{self.registry}/{self.repository}"
        if self.digest:
            return f"{base}@{self.digest}"
        return f"{base}:{self.tag or 'latest'}"

    def __str__(self) -> str:
        base = f"{self.registry}/{self.repository}"
        return base + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest
                                                               else "")


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
            return _docker_archive(rest)
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


def _docker_archive(rest: str) -> LocalRef:
    """`FILE`, `FILE:NAME[:TAG]`, `FILE:@INDEX` (skopeo's spelling) or
    `FILE@INDEX`; the image choice is kept in `tag`.  A file whose own name
    holds `:` is taken whole when it exists."""
    if os.path.exists(rest):
        return LocalRef("docker-archive", rest)
    path, at, index = rest.rpartition("@")
    if at and index.isdigit() and not path.endswith(":"):
        return LocalRef("docker-archive", path, tag="@" + index)
    path, sep, select = rest.partition(":")
    if sep and path:
        if not select:
            raise SourceError(f"docker-archive:{rest}: no image named after the ':'")
        if not select.startswith("@") and ":" not in select.rpartition("/")[2]:
            select += ":latest"
        return LocalRef("docker-archive", path, tag=select)
    return LocalRef("docker-archive", rest)


def parse_registry(text: str) -> RegistryRef:
    """`[host[:port]/]path[:tag][@digest]`, normalised: a first component is a
    host only if it is `localhost` or holds a `.` or `:`; Docker Hub names get
    `library/` when they have one component; no tag and no digest means `latest`."""
    def bad(why: str) -> SourceError:
        return SourceError(f"{text!r} is not a valid image reference: {why}")

    if not text:
        raise bad("it is empty")
    if "://" in text:
        raise bad("give the name without a URL scheme")
    name, at, digest = text.partition("@")
    if at:
        if not _ANY_DIGEST.match(digest):
            raise bad(f"{digest!r} is not a digest")
        algo = digest.split(":")[0]
        if algo != "sha256":
            raise bad(f"only sha256 digests are supported, not {algo!r}")
        if not _DIGEST.match(digest):
            raise bad(f"{digest!r} is not a sha256 digest (64 lowercase hex digits)")
    tag = None
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG.match(tag):
            raise bad(f"{tag!r} is not a valid tag")
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
        if not _DOMAIN.match(registry):
            raise bad(f"{registry!r} is not a valid registry host")
    else:
        registry, path = DOCKER_HUB, name
    if registry == "index.docker.io":
        registry = DOCKER_HUB
    if not path:
        raise bad("no repository name")
    components = path.split("/")
    for c in components:
        if not _PATH_COMPONENT.match(c):
            if c.lower() != c and _PATH_COMPONENT.match(c.lower()):
                raise bad("repository names must be lowercase")
            raise bad(f"{c!r} is not a valid name component")
    if registry == DOCKER_HUB and len(components) == 1:
        path = "library/" + path
    if len(registry) + 1 + len(path) > _MAX_NAME:
        raise bad(f"the name is longer than {_MAX_NAME} characters")
    return RegistryRef(registry, path, tag if tag or at else "latest", digest or None)


def parse_reference(text: str) -> LocalRef | RegistryRef:
    """A local image if the text has a transport prefix, a registry name otherwise."""
    return parse_local(text) or parse_registry(text)

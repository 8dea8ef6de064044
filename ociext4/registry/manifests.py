"""Manifests from a registry: OCI and Docker schema 2 manifests and indexes
(nested ones too), the platform's manifest chosen as for OCI layouts, schema 1
refused, every document checked against its digest and kept in the cache."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ..digests import check_data, digest_of
from ..errors import DigestMismatch, DocumentError, RegistryError
from ..model import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_JSON,
    SCHEMA1_TYPES,
    Descriptor,
    Image,
    ImageConfig,
    Index,
    Manifest,
    Platform,
    image_from,
    parse_config,
    parse_document,
    select_manifest,
)
from ..reference import RegistryRef
from ..source import check_platform
from ..store import FROM_INDEX, Store
from .bodies import read_limited
from .client import RegistryClient, error_for

ACCEPT = ", ".join(sorted(MANIFEST_TYPES | INDEX_TYPES)) + ", " + ", ".join(
    f"{t};q=0.5" for t in sorted(SCHEMA1_TYPES))


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a reference names, once resolved for a platform."""
    image: Image
    descriptor: Descriptor   # the manifest's entry for the cache's index.json
    raw: bytes               # the document the reference names, as served

    @property
    def platform(self) -> str:
        return str(self.image.platform) if self.image.platform else ""

    @property
    def layer_urls(self) -> dict[str, list[str]]:
        """Foreign layers' download locations."""
        return {lay.digest: list(lay.urls) for lay in self.image.layers if lay.urls}


@dataclass(frozen=True, slots=True)
class Fetched:
    descriptor: Descriptor   # media type from the document, else the server's word
    document: Index | Manifest
    data: bytes


class ManifestSource:
    """Documents by digest, from the cache if there, else from the registry
    (then cached); tags always ask the registry."""

    def __init__(self, client: Callable[[], RegistryClient], store: Store,
                 ref: RegistryRef) -> None:
        # A factory: a fully cached digest reference never opens a connection.
        self.client, self.store, self.ref = client, store, ref

    def _what(self, reference: str) -> str:
        base = f"{self.ref.registry}/{self.ref.repository}"
        return f"{base}@{reference}" if reference.startswith("sha256:") else f"{base}:{reference}"

    def manifest(self, reference: str, hint: str = "") -> Fetched:
        """The manifest or index a tag or digest names."""
        what = self._what(reference)
        data = self.store.read(reference) if reference.startswith("sha256:") else None
        if data is None:
            data, content_type = self._download(reference, what)
            hint = hint or content_type
        digest = digest_of(data)
        try:
            doc = parse_document(data, f"manifest {digest}", hint)
        except DocumentError as e:
            raise DocumentError(f"{self.ref}: {e.document}", e.field, e.problem) from None
        self.store.put(digest, data, what)
        return Fetched(Descriptor(doc.media_type, digest, len(data)), doc, data)

    def _download(self, reference: str, what: str) -> tuple[bytes, str]:
        client = self.client()
        resp = client.open("GET", client.url(f"manifests/{reference}"), {"Accept": ACCEPT}, what)
        try:
            if resp.status_code != 200:
                raise error_for(resp, what)
            data = read_limited(resp, MAX_JSON, what)
            content_type = resp.headers.get("content-type", "")
            claimed = resp.headers.get("docker-content-digest", "")
        finally:
            resp.close()
        digest = digest_of(data)
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"{what}: the registry sent a manifest with digest {digest}")
        if claimed.startswith("sha256:") and claimed != digest:
            raise DigestMismatch(f"{what}: Docker-Content-Digest {claimed} does not match "
                                 f"the manifest's digest {digest}")
        return data, content_type

    def config(self, desc: Descriptor) -> ImageConfig:
        from .blobs import fetch_blob

        what = f"{self.ref}: config {desc.digest}"
        data = self.store.read(desc.digest)
        if data is None:
            fetch_blob(self.client(), self.store, desc.digest, desc.size, [], what)
            data = self.store.read(desc.digest)
        if data is None:
            raise DigestMismatch(f"{what}: cached config does not match its digest")
        check_data(what, desc.digest, desc.size, data)
        try:
            return parse_config(data, f"config {desc.digest}")
        except DocumentError as e:
            raise DocumentError(f"{self.ref}: {e.document}", e.field, e.problem) from None


def resolve(src: ManifestSource, plat: Platform | None) -> Resolved:
    """The manifest, config and layers `src.ref` names for the platform."""
    ref = src.ref
    top = src.manifest(ref.reference)
    desc, doc, index_digest = top.descriptor, top.document, None
    if isinstance(doc, Index):
        index_digest = desc.digest

        def load(d: Descriptor) -> Index | Manifest:
            return src.manifest(d.digest, d.media_type).document

        chosen, manifest, _ = select_manifest(doc, plat or Platform.host(), load, str(ref),
                                              frozenset({desc.digest}))
        # The entry's own media type, as the document says: never the index's.
        desc = replace(chosen, media_type=manifest.media_type, annotations={}, urls=())
        doc = manifest
    if not isinstance(doc, Manifest):
        raise RegistryError(f"{ref}: {desc.digest} is not an image manifest")
    config = src.config(doc.config)
    image = image_from(desc.digest, doc, config, f"{ref}: manifest {desc.digest}",
                       desc.platform, index_digest)
    check_platform(image.platform, plat, str(ref))
    entry = Descriptor(desc.media_type, desc.digest, desc.size, image.platform,
                       {FROM_INDEX: index_digest} if index_digest else {})
    return Resolved(image, entry, top.data)

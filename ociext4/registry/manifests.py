"""Manifests from a registry: OCI and Docker schema 2 manifests and indexes
(nested ones too), the platform's manifest chosen as for OCI layouts, schema 1
refused, every document checked against its digest and kept in the cache."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DigestMismatch, RegistryError, SourceError
from ..ocilayout import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_JSON,
    Image,
    Layer,
    Platform,
    json_object,
    pick_manifest,
)
from ..reference import RegistryRef
from ..store import FROM_INDEX, Store
from .bodies import read_limited
from .client import RegistryClient, error_for

SCHEMA1_TYPES = {"application/vnd.docker.distribution.manifest.v1+json",
                 "application/vnd.docker.distribution.manifest.v1+prettyjws"}
ACCEPT = ", ".join(sorted(MANIFEST_TYPES | INDEX_TYPES)) + ", " + ", ".join(
    f"{t};q=0.5" for t in sorted(SCHEMA1_TYPES))


@dataclass(frozen=True, slots=True)
class Resolved:
    """What a reference names, once resolved for a platform."""
    image: Image
    descriptor: dict[str, Any]     # the manifest's descriptor for the cache's index.json
    config_descriptor: dict[str, Any]
    layer_urls: dict[str, list[str]]  # foreign layers' download locations
    platform: str




def _kind(doc: dict[str, Any], content_type: str, what: str) -> str:
    media = str(doc.get("mediaType") or content_type.split(";")[0].strip())
    if media in SCHEMA1_TYPES or doc.get("schemaVersion") == 1:
        raise RegistryError(f"{what}: is a Docker schema 1 manifest, which is not supported "
                            "(push the image again with a current docker, podman or skopeo)")
    if media in INDEX_TYPES or ("manifests" in doc and media not in MANIFEST_TYPES):
        return "index"
    if media in MANIFEST_TYPES or "layers" in doc:
        return "manifest"
    raise RegistryError(f"{what}: unknown manifest media type {media!r}")


class ManifestSource:
    """Documents by digest, from the cache if there, else from the registry
    (then cached); tags always ask the registry."""

    def __init__(self, client: Callable[[], RegistryClient], store: Store,
                 ref: RegistryRef) -> None:
        # A factory: a fully cached digest reference never opens a connection.
        self.client, self.store, self.ref = client, store, ref

    def manifest(self, reference: str) -> tuple[str, str, dict[str, Any], int]:
        """(digest, media type, document, size) of the manifest or index."""
        what = f"{self.ref.registry}/{self.ref.repository}@{reference}" \
            if reference.startswith("sha256:") else f"{self.ref.registry}/" \
            f"{self.ref.repository}:{reference}"
        if reference.startswith("sha256:") and (data := self.store.read(reference)) is not None:
            doc = json_object(data, what)
            return reference, str(doc.get("mediaType") or ""), doc, len(data)
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
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if reference.startswith("sha256:") and digest != reference:
            raise DigestMismatch(f"{what}: the registry sent a manifest with digest {digest}")
        if claimed.startswith("sha256:") and claimed != digest:
            raise DigestMismatch(f"{what}: Docker-Content-Digest {claimed} does not match "
                                 f"the manifest's digest {digest}")
        doc = json_object(data, what)
        kind = _kind(doc, content_type, what)
        media = str(doc.get("mediaType") or content_type.split(";")[0].strip())
        if not media:
            media = sorted(INDEX_TYPES if kind == "index" else MANIFEST_TYPES)[-1]
        self.store.put(digest, data, what)
        return digest, media, doc, len(data)

    def config(self, digest: str, size: int | None, what: str) -> dict[str, Any]:
        from .blobs import fetch_blob

        if self.store.read(digest) is None:
            fetch_blob(self.client(), self.store, digest, size, [], what)
        data = self.store.read(digest)
        if data is None:
            raise DigestMismatch(f"{what}: cached config does not match its digest")
        return json_object(data, what)


def _plat_of(p: dict[str, Any]) -> str:
    return "/".join(str(x) for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def resolve(src: ManifestSource, plat: Platform | None) -> Resolved:
    """The manifest, config and layers `src.ref` names for the platform."""
    ref = src.ref
    want = plat or Platform.host()
    digest, media, doc, size = src.manifest(ref.reference)
    platform: dict[str, Any] | None = None
    from_index = None
    if _kind(doc, media, str(ref)) == "index":
        from_index = digest
        found: dict[str, dict[str, Any]] = {}

        def load(d: str) -> dict[str, Any]:
            sub = src.manifest(d)[2]
            for m in sub.get("manifests") or []:
                if isinstance(m, dict) and "digest" in m:
                    found[str(m["digest"])] = m
            return sub

        for m in doc.get("manifests") or []:
            if isinstance(m, dict) and "digest" in m:
                found[str(m["digest"])] = m
        digest = pick_manifest(doc, want, load, str(ref))
        platform = found.get(digest, {}).get("platform")
        digest, media, doc, size = src.manifest(digest)
        if _kind(doc, media, str(ref)) != "manifest":
            raise RegistryError(f"{ref}: {digest} is not an image manifest")
    cfg_desc = doc.get("config") or {}
    if "digest" not in cfg_desc:
        raise SourceError(f"{ref}: manifest {digest} has no config")
    config = src.config(str(cfg_desc["digest"]), int(cfg_desc.get("size") or 0) or None,
                        f"{ref}: config {cfg_desc['digest']}")
    if platform is None:
        platform = {k: config[k] for k in ("os", "architecture", "variant") if config.get(k)}
        if plat is not None and platform and not plat.matches(platform):
            raise SourceError(f"{ref}: the image is for {_plat_of(platform)}, not {plat}")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layers_desc = [d for d in doc.get("layers") or [] if isinstance(d, dict)]
    if len(diff_ids) != len(layers_desc):
        raise SourceError(f"{ref}: config lists {len(diff_ids)} diff_ids for "
                          f"{len(layers_desc)} layers")
    layers = [Layer(str(d["digest"]), int(d.get("size", 0)), str(d.get("mediaType", "")),
                    str(i)) for d, i in zip(layers_desc, diff_ids, strict=True)]
    urls = {str(d["digest"]): [str(u) for u in d.get("urls") or []] for d in layers_desc
            if d.get("urls")}
    desc: dict[str, Any] = {"mediaType": media, "digest": digest, "size": size}
    if from_index:
        desc["annotations"] = {FROM_INDEX: from_index}
    if platform:
        desc["platform"] = {k: v for k, v in platform.items()
                            if k in ("os", "architecture", "variant")}
    return Resolved(Image(digest, config, layers), desc, dict(cfg_desc), urls,
                    _plat_of(platform or {}))

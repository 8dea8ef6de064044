"""An OCI image layout directory as an image source: index.json, manifests,
config and layer blobs, each checked against its descriptor's size and digest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from .blobs import HashedBlob, LayerBlob, Window
from .digests import check_data, check_digest
from .errors import DocumentError, SourceError
from .model import (
    CONFIG_KEYS,
    INDEX_TYPES,
    MANIFEST_TYPES,
    MAX_JSON,
    REF_NAME,
    Descriptor,
    Image,
    Index,
    Layer,
    Manifest,
    Platform,
    image_from,
    parse_config,
    parse_document,
    parse_index,
    select_manifest,
)
from .source import SourceBase, check_platform

__all__ = ["CONFIG_KEYS", "INDEX_TYPES", "MANIFEST_TYPES", "REF_NAME", "OciLayout",
           "layer_blobs", "open_image"]


def blob_path(root: Path, digest: str) -> Path:
    return root / "blobs" / "sha256" / check_digest(digest, str(root))[len("sha256:"):]


def read_document(root: Path, digest: str, size: int | None, what: str) -> bytes:
    """A small blob (manifest, index, config), checked against its digest."""
    path = blob_path(root, digest)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON + 1)
    except FileNotFoundError:
        raise SourceError(f"{root}: {what} blob {digest} is missing") from None
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror or e}") from None
    if len(data) > MAX_JSON:
        raise SourceError(f"{root}: {what} {digest} is larger than {MAX_JSON} bytes")
    check_data(f"{root}: {what} {digest}", digest, size, data)
    return data


def _prefixed(root: Path, e: DocumentError) -> DocumentError:
    return DocumentError(f"{root}: {e.document}", e.field, e.problem)


class OciLayout(SourceBase):
    """`oci:DIR[:TAG|@DIGEST]`."""

    def __init__(self, root: str | Path, tag: str | None = None,
                 digest: str | None = None) -> None:
        self.root = Path(root)
        self.name = str(root)
        self.tag, self.digest = tag, digest

    def open(self, platform: Platform | None = None) -> Image:
        try:
            return self._open(platform)
        except DocumentError as e:
            raise _prefixed(self.root, e) from None

    def _load(self, desc: Descriptor, what: str) -> Index | Manifest:
        data = read_document(self.root, desc.digest, desc.size, what)
        return parse_document(data, f"{what} {desc.digest}", desc.media_type)

    def _index_json(self) -> Index:
        try:
            data = (self.root / "index.json").read_bytes()
        except FileNotFoundError:
            raise SourceError(f"{self.root}: not an OCI image layout (no index.json)") from None
        except (IsADirectoryError, NotADirectoryError):
            raise SourceError(f"{self.root}: not an OCI image layout") from None
        return parse_index(data, "index.json")

    def _open(self, platform: Platform | None) -> Image:
        want = platform or Platform.host()
        index_digest: str | None = None
        if self.digest is None:
            descs = self._index_json().manifests
            if self.tag is not None:
                descs = tuple(d for d in descs if d.annotations.get(REF_NAME) == self.tag)
                if not descs:
                    raise SourceError(f"{self.root}: no image tagged {self.tag!r}")
            top = Index("", descs)
        else:
            doc = parse_document(read_document(self.root, self.digest, None, "manifest"),
                                 f"manifest {self.digest}")
            if isinstance(doc, Manifest):
                return self._image(self.digest, doc, None, None, platform)
            index_digest, top = self.digest, doc
        desc, manifest, via = select_manifest(
            top, want, lambda d: self._load(d, "index" if d.media_type in INDEX_TYPES
                                            else "manifest"), str(self.root),
            frozenset({index_digest} if index_digest else ()))
        return self._image(desc.digest, manifest, desc.platform, index_digest or
                           (via[0] if via else None), platform)

    def _image(self, digest: str, manifest: Manifest, platform: Platform | None,
               index_digest: str | None, wanted: Platform | None) -> Image:
        cfg = manifest.config
        config = parse_config(read_document(self.root, cfg.digest, cfg.size, "config"),
                              f"config {cfg.digest}")
        image = image_from(digest, manifest, config, f"{self.root}: manifest {digest}",
                           platform, index_digest)
        check_platform(image.platform, wanted, str(self.root))
        return image

    def layer_blobs(self, image: Image) -> Iterator[LayerBlob]:
        return layer_blobs(self.root, image)


def open_image(root: Path, tag: str | None = None, digest: str | None = None,
               plat: Platform | None = None) -> Image:
    """The image an OCI layout holds for the platform."""
    return OciLayout(root, tag, digest).open(plat)


def layer_blobs(root: Path, image: Image) -> Iterator[LayerBlob]:
    """Each layer's blob, checked against its digest as it is read."""
    for layer in image.layers:
        yield open_layer_blob(root, layer)


def open_layer_blob(root: Path, layer: Layer, verify: bool = True) -> LayerBlob:
    """One layer's blob from the layout, checked against its digest as it
    is read unless `verify` is off (a blob the cache verified on the way
    in)."""
    path = blob_path(root, layer.digest)
    try:
        f = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the HashedBlob
    except FileNotFoundError:
        raise SourceError(f"{root}: layer blob {layer.digest} is missing") from None
    except OSError as e:
        raise SourceError(f"{path}: {e.strerror or e}") from None
    blob = HashedBlob(f, layer, str(root), (lambda: Window(f)) if verify else None)
    return LayerBlob(layer, blob, blob.check if verify else None, blob.close)

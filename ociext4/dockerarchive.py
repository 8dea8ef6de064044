"""`docker save` output as an image source: the legacy layout (manifest.json,
<id>/layer.tar, a repeated layer stored as a symlink to the first) and
Docker 25+'s (an OCI layout plus manifest.json, which is read).  An archive
of several images is read by `NAME:TAG` or by `@INDEX`, as skopeo does."""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from .blobs import HashedBlob, LayerBlob, Window
from .digests import digest_of
from .errors import DocumentError, SourceError
from .model import MAX_JSON, Image, Layer, Platform, fields, parse_config, parse_json
from .source import SourceBase, check_platform

MAX_LINK_HOPS = 40


def _normal_name(name: str) -> str:
    """`busybox:latest` and `docker.io/library/busybox:latest` are one name."""
    from .reference import parse_registry

    try:
        return parse_registry(name).name
    except SourceError:
        return name


class DockerArchive(SourceBase):
    """`docker-archive:FILE[:NAME:TAG|:@INDEX]`: `select` is a NAME:TAG or
    `@INDEX` (0-based) choosing one image of several."""

    def __init__(self, path: str | Path, select: str | None = None) -> None:
        self.path = Path(path)
        self.name = str(path)
        self.select = select
        try:
            self._f: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise SourceError(f"{path}: {e.strerror}") from None
        # name -> (offset, size) of regular members; name -> target of links
        self._members: dict[str, tuple[int, int]] = {}
        self._links: dict[str, str] = {}
        try:
            with tarfile.open(fileobj=self._f, mode="r:") as tf:
                for m in tf:
                    name = posixpath.normpath(m.name.removeprefix("./"))
                    if m.isfile():
                        self._members[name] = (m.offset_data, m.size)
                    elif m.issym():
                        self._links[name] = posixpath.normpath(
                            posixpath.join(posixpath.dirname(name), m.linkname))
                    elif m.islnk():
                        self._links[name] = posixpath.normpath(m.linkname.removeprefix("./"))
        except (tarfile.TarError, OSError) as e:
            self._f.close()
            raise SourceError(f"{path}: not a docker save archive ({e})") from None

    def close(self) -> None:
        self._f.close()

    def _resolve(self, name: str) -> str:
        name = posixpath.normpath(name.removeprefix("./"))
        for _ in range(MAX_LINK_HOPS):
            if name in self._members or name not in self._links:
                return name
            name = self._links[name]
        raise SourceError(f"{self.path}: too many levels of links at {name!r}")

    def _open(self, name: str) -> Window:
        # pread windows: layers of one archive may be read on different threads.
        try:
            offset, size = self._members[self._resolve(name)]
        except KeyError:
            raise SourceError(f"{self.path}: archive has no member {name!r}") from None
        return Window(self._f, offset, size)

    def _read(self, name: str) -> bytes:
        data = self._open(name).read(MAX_JSON + 1)
        if len(data) > MAX_JSON:
            raise SourceError(f"{self.path}: {name} is larger than {MAX_JSON} bytes")
        return data

    def _entries(self) -> list[tuple[str, tuple[str, ...], list[str]]]:
        """(Config, RepoTags, Layers) of each image manifest.json lists."""
        top = parse_json(self._read("manifest.json"), "manifest.json")
        if not isinstance(top, list):
            raise SourceError(f"{self.path}: manifest.json: expected an array of images")
        if not top:
            raise SourceError(f"{self.path}: manifest.json lists no image")
        out = []
        for i, item in enumerate(top):
            doc = fields(item, "manifest.json", f"[{i}]")
            layers = doc.strings("Layers")
            if layers is None:
                raise doc.error("Layers", "missing")
            out.append((doc.str("Config"), doc.strings("RepoTags") or (), list(layers)))
        return out

    def _choose(self, entries: list[tuple[str, tuple[str, ...], list[str]]]
                ) -> tuple[str, tuple[str, ...], list[str]]:
        def listing() -> str:
            return "; ".join(f"@{i}: {', '.join(e[1]) or '(untagged)'}"
                             for i, e in enumerate(entries))

        if self.select is None:
            if len(entries) > 1:
                raise SourceError(f"{self.path}: holds {len(entries)} images; choose one with "
                                  f"docker-archive:FILE:NAME:TAG or :@INDEX ({listing()})")
            return entries[0]
        if self.select.startswith("@"):
            text = self.select[1:]
            if not text.isdigit() or int(text) >= len(entries):
                raise SourceError(f"{self.path}: no image {self.select} ({listing()})")
            return entries[int(text)]
        want = _normal_name(self.select)
        for e in entries:
            if any(_normal_name(t) == want for t in e[1]):
                return e
        raise SourceError(f"{self.path}: no image tagged {self.select!r} ({listing()})")

    def open(self, platform: Platform | None = None) -> Image:
        try:
            config_name, _, paths = self._choose(self._entries())
            raw = self._read(config_name)
            config = parse_config(raw, config_name)
        except DocumentError as e:
            raise DocumentError(f"{self.path}: {e.document}", e.field, e.problem) from None
        if len(paths) != len(config.diff_ids):
            raise SourceError(f"{self.path}: config lists {len(config.diff_ids)} diff_ids for "
                              f"{len(paths)} layers")
        layers = []
        for p, diff_id in zip(paths, config.diff_ids, strict=True):
            # Docker 25+ names layers by their blob digest; legacy ones by id.
            digest = "sha256:" + p.rsplit("/", 1)[-1] if p.startswith("blobs/sha256/") else ""
            member = self._members.get(self._resolve(p))
            layers.append(Layer(digest, member[1] if member else None, "", diff_id, p))
        # The image's ID, as docker names it: the digest of its config.
        ident = digest_of(raw)
        image = Image(ident, "", ident, config, tuple(layers), config.platform, None, len(raw))
        check_platform(image.platform, platform, str(self.path))
        return image

    def layer_blobs(self, image: Image) -> Iterator[LayerBlob]:
        for layer in image.layers:
            stream = self._open(layer.member)
            if layer.digest:
                blob = HashedBlob(stream, layer, str(self.path),
                                  lambda member=layer.member: self._open(member))
                yield LayerBlob(layer, blob, blob.check, blob.close)
            else:
                yield LayerBlob(layer, stream, None, stream.close)

"""Reading an image from `docker save` output: the legacy layout
(manifest.json, <id>/layer.tar) and Docker 25+'s (an OCI layout plus
manifest.json, which is preferred)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from .errors import SourceError
from .ocilayout import Image, Layer, LayerBlob, VerifyingReader

MAX_JSON = 4 << 20


class _Slice(io.RawIOBase):
    """A window of a file, read with pread so many windows can share it."""

    def __init__(self, f: BinaryIO, offset: int, size: int) -> None:
        super().__init__()
        self._f, self._pos, self._end = f, offset, offset + size

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), self._end - self._pos)
        if n <= 0:
            return 0
        # pread: layers of one archive may be read on different threads.
        got = os.preadv(self._f.fileno(), [memoryview(b)[:n]], self._pos)
        self._pos += got
        return got


class DockerArchive:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._f: BinaryIO = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise SourceError(f"{path}: {e.strerror}") from None
        try:
            with tarfile.open(fileobj=self._f, mode="r:") as tf:
                self._members = {m.name.removeprefix("./"): (m.offset_data, m.size)
                                 for m in tf if m.isfile()}
        except tarfile.TarError as e:
            self._f.close()
            raise SourceError(f"{path}: not a docker save archive ({e})") from None

    def close(self) -> None:
        self._f.close()

    def _open(self, name: str) -> _Slice:
        try:
            offset, size = self._members[name.removeprefix("./")]
        except KeyError:
            raise SourceError(f"{self.path}: archive has no member {name!r}") from None
        return _Slice(self._f, offset, size)

    def _json(self, name: str) -> Any:
        data = self._open(name).read(MAX_JSON + 1)
        if len(data) > MAX_JSON:
            raise SourceError(f"{self.path}: {name} is larger than {MAX_JSON} bytes")
        try:
            return json.loads(data), data
        except ValueError as e:
            raise SourceError(f"{self.path}: {name} is not JSON ({e})") from None

    def image(self) -> Image:
        (manifests, _) = self._json("manifest.json")
        if not isinstance(manifests, list) or not manifests:
            raise SourceError(f"{self.path}: manifest.json lists no image")
        if len(manifests) > 1:
            raise SourceError(f"{self.path}: holds {len(manifests)} images; only one is supported")
        m = manifests[0]
        config, raw = self._json(str(m["Config"]))
        diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
        paths = [str(p) for p in m.get("Layers") or []]
        if len(paths) != len(diff_ids):
            raise SourceError(f"{self.path}: config lists {len(diff_ids)} diff_ids for "
                              f"{len(paths)} layers")
        layers = []
        for p, diff_id in zip(paths, diff_ids, strict=True):
            # Docker 25+ names layers by their blob digest; legacy ones by id.
            digest = "sha256:" + p.rsplit("/", 1)[-1] if p.startswith("blobs/sha256/") else ""
            layers.append(Layer(digest, self._members.get(p, (0, 0))[1], "", str(diff_id), p))
        return Image("sha256:" + hashlib.sha256(raw).hexdigest(), config, layers)

    def layer_blobs(self, image: Image) -> Iterator[LayerBlob]:
        for layer in image.layers:
            stream = self._open(layer.member)
            if layer.digest:
                reader = VerifyingReader(stream, layer, str(self.path))  # type: ignore[arg-type]
                yield LayerBlob(layer, reader, reader.check, reader.close)  # type: ignore[arg-type]
            else:
                yield LayerBlob(layer, stream, None, stream.close)  # type: ignore[arg-type]

"""Reading an image from an OCI image layout directory: index, manifests,
config and layer blobs, each checked against its digest."""

from __future__ import annotations

import hashlib
import io
import json
import platform as host_platform
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import SourceError
from .hashing import BackgroundHash

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"}
REF_NAME = "org.opencontainers.image.ref.name"
MAX_JSON = 4 << 20
MAX_NESTED_INDEXES = 8
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    arch: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = text.split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise SourceError(f"platform {text!r} is not os/arch[/variant]")
        arch = _ARCH.get(parts[1], parts[1])
        variant = parts[2] if len(parts) == 3 else None
        if arch == "arm64" and variant == "v8":
            variant = None  # arm64/v8 is plain arm64
        return cls(parts[0], arch, variant)

    @classmethod
    def host(cls) -> Platform:
        machine = host_platform.machine().lower()
        return cls("linux", _ARCH.get(machine, machine))

    def matches(self, p: dict[str, Any]) -> bool:
        arch = _ARCH.get(p.get("architecture", ""), p.get("architecture"))
        variant = p.get("variant")
        if arch == "arm64" and variant == "v8":
            variant = None
        return (p.get("os") == self.os and arch == self.arch
                and (self.variant is None or variant == self.variant))

    def __str__(self) -> str:
        return f"{self.os}/{self.arch}" + (f"/{self.variant}" if self.variant else "")


@dataclass(frozen=True, slots=True)
class Layer:
    digest: str
    size: int
    media_type: str
    diff_id: str
    member: str = ""   # where a docker save archive keeps it


# The fields of an image config's "config" that running it needs, kept
# beside an unpacked image and shown by inspect.
CONFIG_KEYS = ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "Labels")


@dataclass(frozen=True, slots=True)
class Image:
    manifest_digest: str
    config: dict[str, Any]
    layers: list[Layer]


def _blob(root: Path, digest: str) -> Path:
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or hexdigest.strip("0123456789abcdef"):
        raise SourceError(f"{root}: unsupported digest {digest!r}")
    return root / "blobs" / "sha256" / hexdigest


def _read_json(root: Path, digest: str, what: str) -> dict[str, Any]:
    path = _blob(root, digest)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON + 1)
    except FileNotFoundError:
        raise SourceError(f"{root}: {what} blob {digest} is missing") from None
    if len(data) > MAX_JSON:
        raise SourceError(f"{root}: {what} {digest} is larger than {MAX_JSON} bytes")
    if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
        raise SourceError(f"{root}: {what} {digest} does not match its digest")
    return json_object(data, f"{root}: {what} {digest}")


def json_object(data: bytes, what: str) -> dict[str, Any]:
    """A manifest, index or config document: a JSON object, or an error
    naming `what`."""
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise SourceError(f"{what}: not JSON ({e})") from None
    if not isinstance(doc, dict):
        raise SourceError(f"{what}: not a JSON object")
    return doc


def _is_attestation(desc: dict[str, Any]) -> bool:
    ann = desc.get("annotations") or {}
    return ann.get("vnd.docker.reference.type") == "attestation-manifest" or \
        (desc.get("platform") or {}).get("os") == "unknown"


def _pick(root: Path, index: dict[str, Any], plat: Platform, seen: set[str]) -> str:
    return pick_manifest(index, plat, lambda d: _read_json(root, d, "index"), str(root), seen)


def pick_manifest(index: dict[str, Any], plat: Platform, load: Callable[[str], dict[str, Any]],
                  where: str, seen: set[str] | None = None) -> str:
    """The manifest digest for the platform, through nested indexes (`load`
    fetches one by digest); attestations and unknown media types are skipped."""
    seen = set() if seen is None else seen
    candidates = [d for d in index.get("manifests") or []
                  if isinstance(d, dict) and not _is_attestation(d)
                  and d.get("mediaType") in MANIFEST_TYPES | INDEX_TYPES]
    for desc in candidates:
        p = desc.get("platform")
        if desc.get("mediaType") in MANIFEST_TYPES and (p is None or plat.matches(p)):
            if p is None and len(candidates) > 1:
                continue
            return str(desc["digest"])
    for desc in candidates:
        if desc.get("mediaType") in INDEX_TYPES:
            digest = str(desc["digest"])
            if digest in seen:
                raise SourceError(f"{where}: index {digest} includes itself")
            if len(seen) >= MAX_NESTED_INDEXES:
                raise SourceError(f"{where}: indexes nested more than {MAX_NESTED_INDEXES} deep")
            seen.add(digest)
            try:
                return pick_manifest(load(digest), plat, load, where, seen)
            except SourceError as e:
                if "no manifest for" not in str(e):
                    raise
    found = sorted({str(_plat_text(d.get("platform") or {})) for d in candidates})
    raise SourceError(f"{where}: no manifest for {plat} (has: {', '.join(found) or 'none'})")


def _plat_text(p: dict[str, Any]) -> str:
    return "/".join(x for x in (p.get("os"), p.get("architecture"), p.get("variant")) if x)


def open_image(root: Path, tag: str | None = None, digest: str | None = None,
               plat: Platform | None = None) -> Image:
    plat = plat or Platform.host()
    try:
        index = json.loads((root / "index.json").read_text())
    except FileNotFoundError:
        raise SourceError(f"{root}: not an OCI image layout (no index.json)") from None
    except ValueError as e:
        raise SourceError(f"{root}: index.json is not JSON ({e})") from None
    if digest is None:
        descs = [d for d in index.get("manifests") or [] if isinstance(d, dict)]
        if tag is not None:
            descs = [d for d in descs if (d.get("annotations") or {}).get(REF_NAME) == tag]
            if not descs:
                raise SourceError(f"{root}: no image tagged {tag!r}")
        digest = _pick(root, {"manifests": descs}, plat, set())
    doc = _read_json(root, digest, "manifest")
    if doc.get("mediaType") in INDEX_TYPES or "manifests" in doc:
        digest = _pick(root, doc, plat, {digest})
        doc = _read_json(root, digest, "manifest")
    if doc.get("schemaVersion") == 1:
        raise SourceError(f"{root}: schema 1 manifests are not supported")
    config = _read_json(root, str(doc["config"]["digest"]), "config")
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    layers_desc = doc.get("layers") or []
    if len(diff_ids) != len(layers_desc):
        raise SourceError(f"{root}: config lists {len(diff_ids)} diff_ids for "
                          f"{len(layers_desc)} layers")
    layers = [Layer(str(d["digest"]), int(d.get("size", 0)), str(d.get("mediaType", "")), str(i))
              for d, i in zip(layers_desc, diff_ids, strict=True)]
    return Image(digest, config, layers)


def check_blob(name: str, layer: Layer, size: int, digest: str) -> None:
    """Raises unless a layer blob read whole had the size and digest its
    descriptor gives."""
    if layer.size and size != layer.size:
        raise SourceError(f"{name}: layer {layer.digest} is {size} bytes, "
                          f"its descriptor says {layer.size}")
    if digest != layer.digest:
        raise SourceError(f"{name}: layer {layer.digest} does not match its digest "
                          f"(the bytes hash to {digest})")


class VerifyingReader(io.RawIOBase):
    """Reads a blob and checks its size and digest once it is read to the end."""

    def __init__(self, f: BinaryIO, layer: Layer, name: str) -> None:
        super().__init__()
        self._f, self._layer, self._name = f, layer, name
        # Hashed on another thread: the reading thread is the one inflating.
        self._hash = BackgroundHash()
        self._n = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self._f.readinto(b)  # type: ignore[attr-defined]
        if n:
            self._hash.update(bytes(memoryview(b)[:n]))
            self._n += n
        return n or 0

    def close(self) -> None:
        self._hash.close()
        super().close()

    def check(self) -> None:
        buf = bytearray(1 << 20)
        while self.readinto(buf):
            pass
        check_blob(self._name, self._layer, self._n, "sha256:" + self._hash.hexdigest())


class BlobCheck:
    """Checks a blob file's size and digest on a thread of its own, reading
    the file by itself.  The thread that inflates the layer then reads the
    file undisturbed: handing it every piece to hash would make it wait
    whenever the hashing falls behind, and it is the one the others wait for."""

    def __init__(self, path: Path, layer: Layer, name: str) -> None:
        self._path, self._layer, self._name = path, layer, name
        self._size = 0
        self._digest = ""
        self._error: OSError | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        h = hashlib.sha256()
        try:
            with open(self._path, "rb", buffering=0) as f:
                while not self._stop.is_set() and (piece := f.read(1 << 20)):
                    h.update(piece)
                    self._size += len(piece)
        except OSError as e:
            self._error = e
        self._digest = "sha256:" + h.hexdigest()

    def stop(self) -> None:
        """Gives up early: the layer was not read to its end."""
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise SourceError(f"{self._name}: layer {self._layer.digest}: "
                              f"{self._error.strerror or self._error}")
        check_blob(self._name, self._layer, self._size, self._digest)


@dataclass
class LayerBlob:
    """One layer's bytes, open for reading.  `finish()` checks what was read
    (digest, size) and closes; `close()` only closes.  A blob is not tied to
    the iterator that made it, so the next one can be opened while this one
    is still being read."""

    layer: Layer
    stream: BinaryIO
    check: Callable[[], None] | None = None
    on_close: Callable[[], None] | None = None

    def finish(self) -> None:
        try:
            if self.check is not None:
                self.check()
        finally:
            self.close()

    def close(self) -> None:
        if self.on_close is not None:
            closer, self.on_close = self.on_close, None
            closer()


def layer_blobs(root: Path, image: Image, wait: Callable[[Layer], None] | None = None,
                verify: bool = True) -> Iterator[LayerBlob]:
    """Each layer's blob, checked against its digest unless `verify` is off
    (blobs the cache verified on the way in); `wait(layer)`, if given,
    returns once the blob is in place (a pull still fetching the layers
    above)."""
    for layer in image.layers:
        if wait is not None:
            wait(layer)
        path = _blob(root, layer.digest)
        try:
            f = open(path, "rb", buffering=1 << 20)  # noqa: SIM115 - closed by LayerBlob.close
        except FileNotFoundError:
            raise SourceError(f"{root}: layer blob {layer.digest} is missing") from None
        if not verify:
            yield LayerBlob(layer, f, None, f.close)
            continue
        check = BlobCheck(path, layer, str(root))

        def close(f: BinaryIO = f, check: BlobCheck = check) -> None:
            check.stop()
            f.close()

        yield LayerBlob(layer, f, check.check, close)

"""The image model: OCI and Docker indexes, manifests, descriptors, platforms
and image configs, parsed once from bytes into validated records whatever
the source (an OCI layout, a docker save archive, a registry, the cache).

Every field the code reads is checked for type and range on the way in, and
a wrong one fails with one line naming the document and the field
(`manifest sha256:…: layers[2].size: expected an integer, got "big"`).
Unknown fields are ignored, as the image spec requires."""

from __future__ import annotations

import json
import platform as host_platform
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .digests import is_digest
from .errors import DocumentError, NoMatchingPlatform, SourceError

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
MANIFEST_TYPES = frozenset({OCI_MANIFEST, DOCKER_MANIFEST})
SCHEMA1_TYPES = frozenset({"application/vnd.docker.distribution.manifest.v1+json",
                           "application/vnd.docker.distribution.manifest.v1+prettyjws"})
REF_NAME = "org.opencontainers.image.ref.name"
MAX_JSON = 4 << 20
MAX_NESTED_INDEXES = 8
_MAX_SIZE = (1 << 63) - 1
_MAX_ITEMS = 100_000   # descriptors in one document; far above any real image


# ------------------------------------------------------------------ platform

_OSES = frozenset({"linux", "windows", "darwin", "freebsd", "netbsd", "openbsd", "solaris",
                   "illumos", "aix", "android", "ios", "plan9", "dragonfly", "js", "wasip1"})
_ARCHES = frozenset({"amd64", "386", "arm", "arm64", "ppc64", "ppc64le", "s390x", "mips",
                     "mipsle", "mips64", "mips64le", "riscv64", "loong64", "wasm"})
# Spellings of an architecture that name the same thing, as containerd reads them.
_ARCH_ALIASES = {"x86_64": ("amd64", ""), "x86-64": ("amd64", ""), "i386": ("386", ""),
                 "i686": ("386", ""), "aarch64": ("arm64", ""), "armhf": ("arm", "v7"),
                 "armel": ("arm", "v6")}


def _normal_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch in _ARCH_ALIASES:
        arch, implied = _ARCH_ALIASES[arch]
        variant = variant or implied
    if variant.isdigit():
        variant = "v" + variant  # "arm/7" is arm/v7
    if arch == "arm64" and variant == "v8":
        variant = ""  # arm64/v8 is plain arm64
    if arch == "arm" and not variant:
        variant = "v7"
    if arch == "amd64" and variant == "v1":
        variant = ""
    return arch, variant


@dataclass(frozen=True, slots=True)
class Platform:
    """An os/architecture[/variant], normalised so equal platforms compare equal."""
    os: str
    architecture: str
    variant: str = ""

    @classmethod
    def of(cls, os: str, architecture: str, variant: str = "") -> Platform:
        arch, var = _normal_arch(architecture, variant)
        return cls(os.lower(), arch, var)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """Docker's spellings: `linux/arm64`, `arm64` alone (os linux),
        `linux` alone (the host's architecture), `arm64/v8`, `amd64/v2`,
        `linux/arm/v7`; case does not matter."""
        parts = text.strip().lower().split("/")
        if not all(parts) or len(parts) > 3:
            raise PlatformSyntaxError(text)
        if len(parts) == 1:
            if parts[0] in _OSES:
                return cls.of(parts[0], cls.host().architecture)
            arch, var = _normal_arch(parts[0], "")
            if arch not in _ARCHES:
                raise PlatformSyntaxError(text, "unknown operating system or architecture")
            return cls("linux", arch, var)
        if len(parts) == 2:
            first = parts[0]
            if first not in _OSES and _normal_arch(first, "")[0] in _ARCHES:
                # arch/variant, as in arm64/v8 or amd64/v2
                arch, var = _normal_arch(first, parts[1])
                return cls("linux", arch, var)
            return cls.of(first, parts[1])
        return cls.of(parts[0], parts[1], parts[2])

    @classmethod
    def host(cls) -> Platform:
        return cls.of("linux", host_platform.machine() or "amd64")

    def matches(self, other: Platform) -> bool:
        """Whether an image for `other` is what a request for `self` wants:
        no variant asked for takes any variant."""
        return (self.os == other.os and self.architecture == other.architecture
                and (not self.variant or self.variant == other.variant))

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


class PlatformSyntaxError(SourceError, ValueError):
    """A platform string that is not os/arch[/variant] (ValueError so argparse
    reports it as an option error)."""

    def __init__(self, text: str, why: str = "not os/arch[/variant]") -> None:
        super().__init__(f"platform {text!r}: {why}")
        self.text = text


# ------------------------------------------------------------ field checking


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Fields:
    """Typed access to one JSON object of a document, naming the field's
    path in any error."""

    def __init__(self, value: object, doc: str, path: str) -> None:
        self.doc, self.path = doc, path
        if not isinstance(value, dict):
            raise self.error("", f"expected an object, got {_show(value)}")
        self.value: dict[str, Any] = value

    def error(self, key: str, problem: str) -> DocumentError:
        where = f"{self.path}.{key}" if self.path and key else self.path or key
        return DocumentError(self.doc, where or "(document)", problem)

    def has(self, key: str) -> bool:
        return self.value.get(key) is not None

    def str(self, key: str, default: str | None = None) -> str:
        v = self.value.get(key)
        if v is None:
            if default is None:
                raise self.error(key, "missing")
            return default
        if not isinstance(v, str):
            raise self.error(key, f"expected a string, got {_show(v)}")
        return v

    def int(self, key: str, default: int | None = None, low: int = 0, high: int = _MAX_SIZE
            ) -> int:
        v = self.value.get(key)
        if v is None:
            if default is None:
                raise self.error(key, "missing")
            return default
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(key, f"expected an integer, got {_show(v)}")
        if not low <= v <= high:
            raise self.error(key, f"{v} is out of range ({low} to {high})")
        return v

    def digest(self, key: str) -> str:
        v = self.str(key)
        if not is_digest(v):
            raise self.error(key, f"expected a sha256 digest, got {_show(v)}")
        return v

    def obj(self, key: str, required: bool = True) -> Fields | None:
        v = self.value.get(key)
        if v is None:
            if required:
                raise self.error(key, "missing")
            return None
        return Fields(v, self.doc, f"{self.path}.{key}" if self.path else key)

    def list(self, key: str, required: bool = True) -> list[Any]:
        v = self.value.get(key)
        if v is None:
            if required:
                raise self.error(key, "missing")
            return []
        if not isinstance(v, list):
            raise self.error(key, f"expected an array, got {_show(v)}")
        if len(v) > _MAX_ITEMS:
            raise self.error(key, f"{len(v)} items, over the limit of {_MAX_ITEMS}")
        return v

    def strings(self, key: str, shell: bool = False) -> tuple[str, ...] | None:
        """An array of strings, or None when absent or null; with `shell`, a
        lone string is docker's shell form (`/bin/sh -c STRING`), as some
        configs store Cmd and Entrypoint."""
        if self.value.get(key) is None:
            return None
        if shell and isinstance(self.value[key], str):
            return ("/bin/sh", "-c", self.value[key])
        items = self.list(key)
        for i, s in enumerate(items):
            if not isinstance(s, str):
                raise self.error(f"{key}[{i}]", f"expected a string, got {_show(s)}")
        return tuple(items)

    def string_map(self, key: str) -> dict[str, str]:
        o = self.obj(key, required=False)
        if o is None:
            return {}
        for k, v in o.value.items():
            if not isinstance(v, str):
                raise o.error(k, f"expected a string, got {_show(v)}")
        return dict(o.value)

    def item(self, key: str, i: int, value: object) -> Fields:
        return Fields(value, self.doc, f"{self.path + '.' if self.path else ''}{key}[{i}]")


def _schema_version(o: Fields) -> None:
    v = o.value.get("schemaVersion")
    if v == 1:
        raise o.error("schemaVersion", "a Docker schema 1 manifest, which is not supported "
                                       "(push the image again with a current docker, podman "
                                       "or skopeo)")
    if v is not None:
        o.int("schemaVersion", low=2, high=2)


# --------------------------------------------------------------- documents


@dataclass(frozen=True, slots=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: Platform | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    urls: tuple[str, ...] = ()

    @property
    def is_attestation(self) -> bool:
        return (self.annotations.get("vnd.docker.reference.type") == "attestation-manifest"
                or (self.platform is not None and self.platform.os == "unknown"))

    def to_json(self) -> dict[str, Any]:
        """The descriptor as an index.json entry holds it (never an empty media type)."""
        doc: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest,
                               "size": self.size}
        if self.platform is not None:
            doc["platform"] = {"os": self.platform.os,
                               "architecture": self.platform.architecture}
            if self.platform.variant:
                doc["platform"]["variant"] = self.platform.variant
        if self.annotations:
            doc["annotations"] = dict(self.annotations)
        if self.urls:
            doc["urls"] = list(self.urls)
        return doc


def _descriptor(o: Fields, default_type: str = "") -> Descriptor:
    media = o.str("mediaType", default_type)
    plat = None
    if (p := o.obj("platform", required=False)) is not None:
        plat = Platform.of(p.str("os"), p.str("architecture"), p.str("variant", ""))
    urls = o.strings("urls") or ()
    return Descriptor(media, o.digest("digest"), o.int("size"), plat,
                      o.string_map("annotations"), urls)


@dataclass(frozen=True, slots=True)
class Index:
    media_type: str
    manifests: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Manifest:
    media_type: str
    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Mapping[str, str] = field(default_factory=dict)


def parse_json(data: bytes, doc: str) -> object:
    """A JSON document of at most MAX_JSON bytes."""
    if len(data) > MAX_JSON:
        raise DocumentError(doc, "(document)", f"larger than {MAX_JSON} bytes")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as e:
        raise DocumentError(doc, "(document)", f"not JSON ({e})") from None


def fields(value: object, doc: str, path: str = "") -> Fields:
    """Typed access to a JSON object (`path` is where it is in `doc`)."""
    return Fields(value, doc, path)


def load_json(data: bytes, doc: str) -> Fields:
    """The document's top-level object."""
    return Fields(parse_json(data, doc), doc, "")


def _kind(o: Fields, hint: str) -> str:
    media = o.str("mediaType", "") or hint.split(";")[0].strip()
    if media in SCHEMA1_TYPES:
        raise o.error("mediaType", "a Docker schema 1 manifest, which is not supported "
                                   "(push the image again with a current docker, podman or "
                                   "skopeo)")
    if media in INDEX_TYPES:
        return OCI_INDEX if media == OCI_INDEX else DOCKER_LIST
    if media in MANIFEST_TYPES:
        return media
    # No (known) media type: the content decides, as the image spec allows.
    if "manifests" in o.value:
        return OCI_INDEX
    if "config" in o.value or "layers" in o.value or o.value.get("schemaVersion") == 1:
        return OCI_MANIFEST
    raise o.error("mediaType", f"unknown manifest media type {media!r}" if media
                  else "neither an image index nor an image manifest")


def parse_index(data: bytes, doc: str, hint: str = "") -> Index:
    o = load_json(data, doc)
    return _index(o, _kind(o, hint or OCI_INDEX))


def _index(o: Fields, media: str) -> Index:
    _schema_version(o)
    manifests = tuple(_descriptor(o.item("manifests", i, d))
                      for i, d in enumerate(o.list("manifests")))
    return Index(media, manifests, o.string_map("annotations"))


def parse_manifest(data: bytes, doc: str, hint: str = "") -> Manifest:
    o = load_json(data, doc)
    media = _kind(o, hint or OCI_MANIFEST)
    if media in INDEX_TYPES:
        raise o.error("mediaType", "an image index, not an image manifest")
    return _manifest(o, media)


def _manifest(o: Fields, media: str) -> Manifest:
    _schema_version(o)
    cfg = o.obj("config")
    assert cfg is not None
    config = _descriptor(cfg, OCI_CONFIG if media == OCI_MANIFEST else DOCKER_CONFIG)
    layers = tuple(_descriptor(o.item("layers", i, d))
                   for i, d in enumerate(o.list("layers")))
    return Manifest(media, config, layers, o.string_map("annotations"))


def parse_document(data: bytes, doc: str, hint: str = "") -> Index | Manifest:
    """A manifest or an index, as its media type (the document's own, else
    `hint`: the descriptor's or the Content-Type) or its content says."""
    o = load_json(data, doc)
    media = _kind(o, hint)
    return _index(o, media) if media in INDEX_TYPES else _manifest(o, media)


# The fields of an image config's "config" that running it needs, kept
# beside an unpacked image and shown by inspect.
CONFIG_KEYS = ("Env", "Entrypoint", "Cmd", "WorkingDir", "User", "ExposedPorts", "Labels",
               "StopSignal")


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """What running the image needs (the image config's `config`)."""
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    working_dir: str = ""
    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    stop_signal: str = ""

    def to_json(self) -> dict[str, Any]:
        """Docker's spelling, only the fields that are set."""
        doc: dict[str, Any] = {}
        if self.env:
            doc["Env"] = list(self.env)
        if self.entrypoint is not None:
            doc["Entrypoint"] = list(self.entrypoint)
        if self.cmd is not None:
            doc["Cmd"] = list(self.cmd)
        if self.working_dir:
            doc["WorkingDir"] = self.working_dir
        if self.user:
            doc["User"] = self.user
        if self.exposed_ports:
            doc["ExposedPorts"] = {p: {} for p in self.exposed_ports}
        if self.labels:
            doc["Labels"] = dict(self.labels)
        if self.stop_signal:
            doc["StopSignal"] = self.stop_signal
        return doc


def container_config(value: object, doc: str, path: str = "config") -> ContainerConfig:
    if value is None:
        return ContainerConfig()
    o = Fields(value, doc, path)
    ports = o.obj("ExposedPorts", required=False)
    return ContainerConfig(
        env=o.strings("Env") or (), entrypoint=o.strings("Entrypoint", shell=True),
        cmd=o.strings("Cmd", shell=True),
        working_dir=o.str("WorkingDir", ""), user=o.str("User", ""),
        exposed_ports=tuple(ports.value) if ports is not None else (),
        labels=o.string_map("Labels"), stop_signal=o.str("StopSignal", ""))


@dataclass(frozen=True, slots=True)
class ImageConfig:
    os: str
    architecture: str
    variant: str
    created: str | None
    config: ContainerConfig
    diff_ids: tuple[str, ...]

    @property
    def platform(self) -> Platform | None:
        if not (self.os and self.architecture):
            return None
        return Platform.of(self.os, self.architecture, self.variant)


def parse_config(data: bytes, doc: str) -> ImageConfig:
    o = load_json(data, doc)
    rootfs = o.obj("rootfs")
    assert rootfs is not None
    if rootfs.str("type") != "layers":
        raise rootfs.error("type", f"expected \"layers\", got {_show(rootfs.value['type'])}")
    diff_ids = rootfs.list("diff_ids")
    for i, d in enumerate(diff_ids):
        if not is_digest(d):
            raise rootfs.error(f"diff_ids[{i}]", f"expected a sha256 digest, got {_show(d)}")
    return ImageConfig(os=o.str("os", ""), architecture=o.str("architecture", ""),
                       variant=o.str("variant", ""), created=o.str("created", "") or None,
                       config=container_config(o.value.get("config"), doc),
                       diff_ids=tuple(diff_ids))


# ------------------------------------------------------------ the image


@dataclass(frozen=True, slots=True)
class Layer:
    digest: str            # "" for a legacy docker save layer, known only by its member
    size: int | None       # None where no descriptor gives it
    media_type: str
    diff_id: str
    member: str = ""       # where a docker save archive keeps it
    urls: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Image:
    """An image resolved for one platform: what every source hands over."""
    manifest_digest: str
    media_type: str
    config_digest: str
    config: ImageConfig
    layers: tuple[Layer, ...]
    platform: Platform | None = None     # the index's word for it, else the config's
    index_digest: str | None = None      # the index it was chosen from, if any
    config_size: int | None = None

    @property
    def size(self) -> int:
        return sum(lay.size or 0 for lay in self.layers)


def image_from(manifest_digest: str, manifest: Manifest, config: ImageConfig, doc: str,
               platform: Platform | None = None, index_digest: str | None = None) -> Image:
    """The image a manifest and its config describe; they must agree on the layers."""
    if len(config.diff_ids) != len(manifest.layers):
        raise SourceError(f"{doc}: config lists {len(config.diff_ids)} diff_ids for "
                          f"{len(manifest.layers)} layers")
    layers = tuple(Layer(d.digest, d.size, d.media_type, diff_id, urls=d.urls)
                   for d, diff_id in zip(manifest.layers, config.diff_ids, strict=True))
    return Image(manifest_digest, manifest.media_type, manifest.config.digest, config, layers,
                 platform or config.platform, index_digest, manifest.config.size)


def select_manifest(index: Index, want: Platform, load: Callable[[Descriptor], Index | Manifest],
                    where: str, seen: frozenset[str] = frozenset()
                    ) -> tuple[Descriptor, Manifest, tuple[str, ...]]:
    """The manifest for the platform, through nested indexes (`load` reads
    one by its descriptor), and the digests of the nested indexes it was
    found through; attestations and unknown media types are skipped.
    Raises NoMatchingPlatform listing what the index has."""
    candidates = [d for d in index.manifests if not d.is_attestation
                  and d.media_type in MANIFEST_TYPES | INDEX_TYPES]
    plain = [d for d in candidates if d.media_type in MANIFEST_TYPES]
    # An index of one manifest without a platform (what `skopeo copy` and
    # many layouts write) means that manifest, whatever the platform.
    for d in plain:
        if (d.platform is None and len(candidates) == 1) or (
                d.platform is not None and want.matches(d.platform)):
            doc = load(d)
            if not isinstance(doc, Manifest):
                raise SourceError(f"{where}: {d.digest} is an index, its descriptor says "
                                  f"{d.media_type}")
            return d, doc, ()
    available = [d.platform for d in plain if d.platform is not None]
    for d in candidates:
        if d.media_type not in INDEX_TYPES:
            continue
        if d.digest in seen:
            raise SourceError(f"{where}: index {d.digest} includes itself")
        if len(seen) >= MAX_NESTED_INDEXES:
            raise SourceError(f"{where}: indexes nested more than {MAX_NESTED_INDEXES} deep")
        sub = load(d)
        if not isinstance(sub, Index):
            raise SourceError(f"{where}: {d.digest} is a manifest, its descriptor says "
                              f"{d.media_type}")
        try:
            found, manifest, via = select_manifest(sub, want, load, where, seen | {d.digest})
            return found, manifest, (d.digest, *via)
        except NoMatchingPlatform as e:
            available.extend(e.available)
    raise NoMatchingPlatform(where, want, available)

"""The library's face: unpack, mkfs, pull, inspect and run, with typed
arguments and results.  The command line is a thin layer over these, with
the same defaults."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import os
import time
import uuid as uuidlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from .errors import NoMatchingPlatform
from .ext4.writer import Ext4Options, Ext4Writer, ImageInfo
from .layers import LayerStats, Limits
from .model import Image, ImageConfig, Platform
from .reference import LocalRef, RegistryRef, parse_reference
from .source import ImageSource, healing_cache

if TYPE_CHECKING:
    from .registry import Options as RegistryOptions
    from .registry import PulledImage
    from .store import PullPolicy

PathLike = str | os.PathLike[str]


class Progress:
    """What an unpack or pull reports as it goes; override what you need.
    `begin` and `advance` are downloads from a registry, `layer` the
    flattening of the layer at `index` of `count`."""

    def begin(self, image: Image, cached: set[str]) -> None:
        pass

    def advance(self, digest: str, nbytes: int) -> None:
        pass

    def layer(self, index: int, count: int, stats: LayerStats) -> None:
        pass


# ------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class UnpackStats:
    layers: tuple[LayerStats, ...]
    read_seconds: float      # layers streamed and flattened
    commit_seconds: float    # metadata laid out and written
    info: ImageInfo


@dataclass(frozen=True, slots=True)
class UnpackResult:
    image: Path
    manifest_digest: str
    index_digest: str | None
    platform: Platform | None
    config: ImageConfig
    uuid: uuidlib.UUID
    stats: UnpackStats


@dataclass(frozen=True, slots=True)
class MkfsResult:
    image: Path
    uuid: uuidlib.UUID
    read_seconds: float
    commit_seconds: float
    info: ImageInfo


@dataclass(frozen=True, slots=True)
class InspectResult:
    """`image` is None when no platform was asked for and the image has none
    for the host: `platforms` then lists the ones it has."""
    name: str
    image: Image | None
    platforms: tuple[Platform, ...] = ()
    raw: bytes = b""         # the document the reference names, as served or stored


@dataclass(frozen=True, slots=True)
class RunResult:
    exit_code: int
    error: str | None = None   # why, when ociext4 or the VM failed (exit code 125)


# ---------------------------------------------------------------- helpers


def source_date_epoch() -> int:
    """Reproducible-builds convention for "when was this made" (0 if unset)."""
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else 0


def derived_uuid(digest: str, purpose: str) -> uuidlib.UUID:
    """Same image, same UUID: the manifest digest decides it."""
    return uuidlib.UUID(bytes=hashlib.sha256(f"ociext4 {purpose} {digest}".encode()).digest()[:16],
                        version=5)


def as_platform(platform: str | Platform | None) -> Platform | None:
    return Platform.parse(platform) if isinstance(platform, str) else platform


def _salt(given: bytes | None, manifest_digest: str) -> bytes:
    from .ext4.verity import derived_salt

    return derived_salt(manifest_digest.encode()) if given is None else given


def open_image_source(source: str | LocalRef | RegistryRef | ImageSource, *,
                      cache: PathLike | None = None, registry: RegistryOptions | None = None,
                      progress: Progress | None = None) -> ImageSource:
    if isinstance(source, ImageSource):
        return source
    from .sources.select import open_source

    return open_source(source, cache=cache, registry=registry, progress=progress)


class _NoGC:
    """An unpack makes millions of acyclic objects; the collector's passes
    over them cost ~5% of its time.  Restores the caller's setting."""

    def __enter__(self) -> None:
        self._was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc: object) -> None:
        if self._was:
            gc.enable()


# --------------------------------------------------------------- operations


def unpack(source: str | ImageSource, output: PathLike, *,
           platform: str | Platform | None = None, size: int | None = None,
           free: int | None = None, journal: bool = True, limits: Limits | None = None,
           cache: PathLike | None = None, progress: Progress | None = None,
           uuid: uuidlib.UUID | None = None, label: str = "", fsync: bool = True,
           timestamp: int | None = None, registry: RegistryOptions | None = None,
           verity: bool = False, verity_salt: bytes | None = None) -> UnpackResult:
    """Flattens a container image (`oci:DIR[:TAG|@DIGEST]`,
    `docker-archive:FILE[:NAME:TAG|:@N]`, a registry name, or an
    ImageSource) into an ext4 image at `output`, with its config beside it
    as `output.json`.  The UUID and directory hash seed derive from the
    manifest digest unless `uuid` is given, so the same image gives the same
    bytes.  `verity` appends a dm-verity hash tree (salt from the manifest
    digest unless given) and leaves out the journal; the sidecar and
    `stats.info.verity` carry its root hash."""
    from . import sidecar
    from .sources.image import flatten_image

    started = time.perf_counter()
    out = Path(output)
    sidecar.check_writable(out)
    opts = Ext4Options(size=size, free=free, journal=journal and not verity, uuid=uuid,
                       label=label,
                       timestamp=source_date_epoch() if timestamp is None else timestamp,
                       fsync=fsync, verity=verity, verity_salt=verity_salt)
    stats: list[LayerStats] = []
    report = progress.layer if progress is not None else None

    def attempt(src: ImageSource) -> tuple[Image, ImageInfo, float]:
        stats.clear()
        image = src.open(as_platform(platform))
        image_opts = opts
        if verity:
            # Known before the first write, so the writer hashes as it writes.
            image_opts = dataclasses.replace(opts, verity_salt=_salt(verity_salt,
                                                                      image.manifest_digest))
        with Ext4Writer(out, image_opts) as writer:
            root = flatten_image(src, image, writer, limits, report, stats)
            read_done = time.perf_counter()
            writer.options = dataclasses.replace(
                writer.options,
                uuid=writer.options.uuid or derived_uuid(image.manifest_digest, "uuid"),
                hash_seed=derived_uuid(image.manifest_digest, "hash-seed"))
            pending = None
            # With verity the sidecar names the root hash, known only after
            # the commit (a crash between is caught by its UUID check).
            if not getattr(writer, "is_device", False) and not verity:
                pending = sidecar.PendingSidecar(out, sidecar.Sidecar(
                    image.manifest_digest, str(image.platform or ""), image.config.config,
                    writer.options.uuid))
            try:
                info = writer.commit(root)
            except BaseException:
                if pending is not None:
                    pending.discard()
                raise
            if pending is not None:
                pending.commit()
            if info.verity is not None:
                sidecar.PendingSidecar(out, sidecar.Sidecar(
                    image.manifest_digest, str(image.platform or ""), image.config.config,
                    info.uuid, info.verity)).commit()
        return image, info, read_done

    with open_image_source(source, cache=cache, registry=registry, progress=progress) as src, \
            _NoGC():
        image, info, read_done = healing_cache(lambda: attempt(src))
    done = time.perf_counter()
    return UnpackResult(out, image.manifest_digest, image.index_digest, image.platform,
                        image.config, info.uuid,
                        UnpackStats(tuple(stats), read_done - started, done - read_done, info))


def mkfs(source: PathLike, output: PathLike, *, size: int | None = None,
         free: int | None = None, journal: bool = True, limits: Limits | None = None,
         uuid: uuidlib.UUID | None = None, label: str = "", fsync: bool = True,
         timestamp: int | None = None, verity: bool = False,
         verity_salt: bytes | None = None) -> MkfsResult:
    """An ext4 image from a directory or a tar archive (plain, gzip or zstd;
    "-" reads standard input).  `verity` as for unpack, the salt derived
    from the content unless given; only then is a sidecar written (for the
    root hash)."""
    from . import sidecar
    from .sources.directory import read_directory
    from .sources.tarball import open_source, read_tar

    started = time.perf_counter()
    out = Path(output)
    opts = Ext4Options(size=size, free=free, journal=journal and not verity, uuid=uuid,
                       label=label,
                       timestamp=source_date_epoch() if timestamp is None else timestamp,
                       fsync=fsync, verity=verity, verity_salt=verity_salt)
    text = os.fspath(source)
    with Ext4Writer(out, opts) as writer, _NoGC():
        if text != "-" and os.path.isdir(text):
            root = read_directory(text, writer)
        else:
            with open_source(text) as stream:
                root = read_tar(stream, text, writer, limits)
        read_done = time.perf_counter()
        if not getattr(writer, "is_device", False):
            sidecar.remove_stale(out)
        info = writer.commit(root)
        if info.verity is not None:
            from .model import ContainerConfig

            sidecar.PendingSidecar(out, sidecar.Sidecar(
                "", "", ContainerConfig(), info.uuid, info.verity)).commit()
    return MkfsResult(out, info.uuid, read_done - started, time.perf_counter() - read_done, info)


def pull(reference: str, *, platform: str | Platform | None = None,
         cache: PathLike | None = None, registry: RegistryOptions | None = None,
         progress: Progress | None = None, policy: PullPolicy | str = "always"
         ) -> PulledImage:
    """Fetches what is missing of a registry image into the blob cache (an
    OCI layout) and returns where it is and its digests.  `policy` is
    docker's `--pull`: `always` asks the registry what the tag is now (the
    cached image if it cannot be reached, with a warning), `missing` uses a
    cached tag as it is, `never` never asks."""
    from .reference import parse_registry
    from .registry import RegistryImage
    from .store import PullPolicy, Store, default_root

    with RegistryImage(parse_registry(reference), Store(default_root(cache)), registry,
                       progress, PullPolicy(policy)) as src:
        return src.pull(as_platform(platform))


def inspect(reference: str, *, platform: str | Platform | None = None,
            cache: PathLike | None = None, registry: RegistryOptions | None = None,
            policy: PullPolicy | str = "always") -> InspectResult:
    """What a reference resolves to for a platform; no layer is read or
    downloaded (a registry's manifests and config are kept in the cache).
    As skopeo inspect, a tag is asked of the registry (`policy`, as pull's)."""
    from .sources.select import open_source
    from .store import PullPolicy

    want = as_platform(platform)
    ref = parse_reference(reference)
    name = ref.name if isinstance(ref, RegistryRef) else reference
    with open_source(ref, cache=cache, registry=registry, policy=PullPolicy(policy)) as src:
        resolve = getattr(src, "resolve", src.open)
        try:
            image = resolve(want)
        except NoMatchingPlatform as e:
            if want is not None:
                raise
            return InspectResult(name, None, tuple(e.available))
        raw = getattr(src, "raw", b"")
    return InspectResult(name, image, (image.platform,) if image.platform else (), raw)


def run(image: str | PathLike, command: Sequence[str] | None = None, *,
        env: Mapping[str, str] | Sequence[str] | None = None, workdir: str | None = None,
        user: str | None = None, entrypoint: str | None = None, rw: bool = False,
        read_only: bool = False, memory: int | str | None = None, cpus: int | None = None,
        timeout: float | None = None, hostname: str = "ociext4", network: str = "user",
        publish: Sequence[str] = (), volumes: Sequence[str] = (), tmpfs: Sequence[str] = (),
        interactive: bool = False, stop_timeout: float | None = None,
        platform: str | Platform | None = None, cache: PathLike | None = None,
        registry: RegistryOptions | None = None, kernel: PathLike | None = None,
        accel: str = "auto", console: bool = False, stdin: BinaryIO | int | None = None,
        stdout: BinaryIO | int | None = None, stderr: BinaryIO | int | None = None,
        verity_root_hash: str | None = None) -> RunResult:
    """Boots an image (an ext4 file from unpack, oci:…, docker-archive:… or a
    registry name) in a VM and runs its entrypoint, or `command`, in it, as
    `ociext4 run` does with the same defaults.  `memory` is MiB or a size
    ("1g"); `publish`, `volumes` and `tmpfs` take the strings of -p, -v and
    --tmpfs.  The root is writable and thrown away unless `rw` (kept in the
    image file) or `read_only`.  `stdin` is read only with `interactive`.  The
    exit code is the command's, docker's way: 125 when ociext4 or the VM
    failed, 126 cannot run, 127 not found, 128+N killed by signal N.  Output
    goes to `stdout`/`stderr` (default: this process's).  An image made with
    `verity` boots read-only under dm-verity, pinned to `verity_root_hash`
    or else to its sidecar's."""
    import sys

    from .ext4.verity import parse_root_hash
    from .runcache import image_for
    from .vm import options
    from .vm.runner import run_vm
    from .vm.spec import DEFAULT_STOP_TIMEOUT, RunSpec

    envs = [f"{k}={v}" for k, v in env.items()] if isinstance(env, Mapping) else list(env or ())
    spec = RunSpec(
        command=tuple(command or ()), entrypoint=entrypoint, env=tuple(envs), workdir=workdir,
        user=user, hostname=hostname, rw=rw, read_only=read_only, interactive=interactive,
        network=options.parse_network(network),
        publish=tuple(options.parse_publish(p) for p in publish),
        volumes=tuple(options.parse_volume(v) for v in volumes),
        tmpfs=tuple(options.parse_tmpfs(t) for t in tmpfs),
        memory_mib=options.parse_memory(str(memory if memory is not None else 512)),
        cpus=options.parse_cpus(str(cpus or 1))[0], timeout=timeout,
        stop_timeout=DEFAULT_STOP_TIMEOUT if stop_timeout is None else stop_timeout,
        kernel=Path(kernel) if kernel is not None else None, accel=accel, console=console,
        verity_root_hash=parse_root_hash(verity_root_hash) if verity_root_hash else None)
    img, config = image_for(os.fspath(image), as_platform(platform), cache=cache,
                            registry=registry, rw=rw)
    result = run_vm(img, config, spec, stdin,
                    sys.stdout.buffer if stdout is None else stdout,
                    sys.stderr.buffer if stderr is None else stderr)
    return RunResult(result.exit_code, result.error)


__all__ = ["InspectResult", "MkfsResult", "Progress", "RunResult", "UnpackResult",
           "UnpackStats", "derived_uuid", "inspect", "mkfs", "pull", "run",
           "source_date_epoch", "unpack"]

"""The images `run` boots: an ext4 file as it is, or a container image
unpacked once into the run cache (keyed by manifest digest and the
normalised platform), so later runs boot at once."""

from __future__ import annotations

import fcntl
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from . import sidecar
from .cachedir import cache_dir
from .errors import SourceError
from .ext4.writer import Ext4Options, Ext4Writer
from .model import ContainerConfig, Platform
from .reference import parse_local, parse_registry
from .source import ImageSource, check_platform, healing_cache

if TYPE_CHECKING:
    from .registry import Options as RegistryOptions

# Bump when what an unpack into the cache writes changes (the image format).
IMAGE_CACHE_FORMAT = 1


def image_for(text: str, platform: Platform | None, *,
              cache: str | os.PathLike[str] | None = None,
              registry: RegistryOptions | None = None, rw: bool = False
              ) -> tuple[Path, ContainerConfig]:
    """The ext4 image a reference names, and its config: a file as it is, a
    local image unpacked through the run cache, a registry image pulled into
    the blob cache first (what is cached costs no download)."""
    from .sources.select import open_source

    ref = parse_local(text)
    if ref is None:
        path = Path(text)
        if path.exists():
            if not path.is_file() and not path.is_block_device():
                raise SourceError(f"{text}: not an image file")
            side = sidecar.read(path)
            if side is None:
                return path, ContainerConfig()
            if side.platform:
                check_platform(Platform.parse(side.platform), platform, text)
            return path, side.config
        if text.endswith((".img", ".ext4")) or "/" in text and not text.split("/", 1)[0]:
            raise SourceError(f"{text}: no such image file")
        try:
            ref = parse_registry(text)
        except SourceError:
            raise SourceError(f"{text}: no such image file, and not an image name") from None
    if rw:
        raise SourceError(f"{text}: --rw keeps writes in an image file; make one with "
                          "`ociext4 unpack` and run that")
    with open_source(ref, cache=cache, registry=registry) as src:
        return cached_unpack(src, platform)


def cached_unpack(src: ImageSource, platform: Platform | None) -> tuple[Path, ContainerConfig]:
    """Unpacks the image once per manifest digest and platform; later runs
    boot the cached ext4 at once."""
    from .api import derived_uuid
    from .sources.image import flatten_image

    # Manifest and config only: a cached run image needs no layer.
    image = getattr(src, "resolve", src.open)(platform)
    plat = image.platform or platform or Platform.host()
    key = hashlib.sha256(f"{IMAGE_CACHE_FORMAT} {image.manifest_digest} {plat}".encode())
    dest = cache_dir("images") / f"{key.hexdigest()[:32]}.img"
    with open(f"{dest}.lock", "w") as lock:
        # Two runs of one new image: one unpacks, the other waits and reuses.
        fcntl.flock(lock, fcntl.LOCK_EX)
        side = None
        if dest.is_file():
            try:
                side = sidecar.read(dest)
            except SourceError:
                side = None
        if side is None:
            opts = Ext4Options(uuid=derived_uuid(image.manifest_digest, "uuid"),
                               hash_seed=derived_uuid(image.manifest_digest, "hash-seed"))

            def attempt() -> ContainerConfig:
                image = src.open(platform)
                with Ext4Writer(dest, opts) as writer:
                    root = flatten_image(src, image, writer)
                    pending = sidecar.PendingSidecar(dest, sidecar.Sidecar(
                        image.manifest_digest, str(plat), image.config.config, opts.uuid))
                    try:
                        writer.commit(root)
                    except BaseException:
                        pending.discard()
                        raise
                    pending.commit()
                return image.config.config

            return dest, healing_cache(attempt)
    return dest, side.config

"""From a reference to the image source that reads it: the one place that
tells an OCI layout, a docker save archive and a registry name apart."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..reference import LocalRef, RegistryRef, parse_reference
from ..source import ImageSource

if TYPE_CHECKING:
    from ..registry import Options
    from ..registry.pull import Progress as PullProgress
    from ..store import PullPolicy


def open_source(reference: str | LocalRef | RegistryRef, *,
                cache: str | Path | None = None, registry: Options | None = None,
                progress: PullProgress | None = None,
                policy: PullPolicy | None = None) -> ImageSource:
    """An image source for `oci:DIR[:TAG|@DIGEST]`, `docker-archive:FILE[:NAME:TAG|:@N]`
    or a registry name (pulled into the blob cache at `cache` as it is read)."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    if isinstance(ref, RegistryRef):
        # Only here: the registry client (httpx) is a third of the CLI's start-up.
        from ..registry import RegistryImage
        from ..store import Store, default_root

        return RegistryImage(ref, Store(default_root(cache)), registry, progress, policy)
    if ref.transport == "docker-archive":
        from ..dockerarchive import DockerArchive

        return DockerArchive(ref.path, ref.tag)
    from ..ocilayout import OciLayout

    return OciLayout(ref.path, ref.tag, ref.digest)

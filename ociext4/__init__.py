"""ociext4: OCI images, directories and tarballs to ext4 filesystem images,
and a thin VM to run them.

    import ociext4
    result = ociext4.unpack("oci:layout:latest", "rootfs.img")
    print(result.manifest_digest, result.uuid)

The operations (`unpack`, `mkfs`, `pull`, `inspect`, `run`) and their
result records live in `ociext4.api`; errors are the typed exceptions of
`ociext4.errors`.  They are loaded on first use, so `import ociext4` stays
cheap for the command line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .api import (
        InspectResult,
        MkfsResult,
        Progress,
        RunResult,
        UnpackResult,
        UnpackStats,
        inspect,
        mkfs,
        pull,
        run,
        unpack,
    )
    from .layers import Limits
    from .model import Platform
    from .registry import Options as RegistryOptions
    from .registry import PulledImage as PullResult
    from .registry.config import registry_options

_API = {"InspectResult", "MkfsResult", "Progress", "RunResult", "UnpackResult", "UnpackStats",
        "inspect", "mkfs", "pull", "run", "unpack"}

__all__ = ["InspectResult", "Limits", "MkfsResult", "Platform", "Progress", "PullResult",
           "RegistryOptions", "RunResult", "UnpackResult", "UnpackStats", "__version__",
           "inspect", "mkfs", "pull", "registry_options", "run", "unpack"]


def __getattr__(name: str) -> Any:
    if name in _API:
        from . import api

        return getattr(api, name)
    if name == "Limits":
        from .layers import Limits

        return Limits
    if name == "Platform":
        from .model import Platform

        return Platform
    if name == "PullResult":
        from .registry import PulledImage

        return PulledImage
    if name == "registry_options":
        from .registry.config import registry_options

        return registry_options
    if name == "RegistryOptions":
        from .registry import Options

        return Options
    raise AttributeError(f"module 'ociext4' has no attribute {name!r}")

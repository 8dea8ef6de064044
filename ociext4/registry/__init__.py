"""The distribution-spec client: auth, manifests, blobs, pulls into the cache."""

from .client import Options
from .pull import Pull, PulledImage
from .source import RegistryImage

__all__ = ["Options", "Pull", "PulledImage", "RegistryImage"]

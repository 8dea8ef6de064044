"""The distribution-spec client: auth, manifests, blobs, pulls into the cache."""

from .client import Options
from .pull import Pull, PulledImage, fetch_image

__all__ = ["Options", "Pull", "PulledImage", "fetch_image"]

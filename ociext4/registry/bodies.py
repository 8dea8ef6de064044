"""Reading response bodies that must be small (manifests, tokens, error
documents) without trusting the server to stop."""

from __future__ import annotations

import httpx

from ..errors import RegistryError


def read_limited(resp: httpx.Response, limit: int, what: str) -> bytes:
    """The streamed response's body, or an error once it passes `limit` bytes."""
    data = bytearray()
    for chunk in resp.iter_bytes():
        data += chunk
        if len(data) > limit:
            raise RegistryError(f"{what}: response larger than {limit} bytes")
    return bytes(data)

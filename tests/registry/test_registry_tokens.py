"""Tokens from the tests' token server, through the library: kept per scope,
fetched again once expired."""

from __future__ import annotations

import time

from ociext4.registry.client import Options, RegistryClient
from ociext4.registry.credentials import Credentials


def test_an_expired_token_is_fetched_again(token_registry, token_server, monkeypatch):
    monkeypatch.setattr(token_server, "lifetime", 2)  # the client keeps it for 1 s
    creds = Options(credentials=lambda host, repo: Credentials("bob", "bob-secret"))
    client = RegistryClient(token_registry.host, "private/img", creds)
    try:
        token_server.requests.clear()
        for _ in range(2):
            resp = client.open("GET", client.url("manifests/latest"),
                               {"Accept": "application/vnd.oci.image.manifest.v1+json"})
            assert resp.status_code == 200
            resp.close()
        assert len(token_server.requests) == 1  # still fresh: reused
        time.sleep(1.2)
        resp = client.open("GET", client.url("manifests/latest"),
                           {"Accept": "application/vnd.oci.image.manifest.v1+json"})
        assert resp.status_code == 200
        resp.close()
        assert len(token_server.requests) == 2
        assert token_server.requests[-1]["scope"] == ["repository:private/img:pull"]
    finally:
        client.close()

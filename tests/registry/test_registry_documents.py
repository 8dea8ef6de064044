"""Broken documents from a real registry (Debian's docker-registry behind the
fault proxy, which serves the broken manifest in place of the real one; a
broken config is pushed as a blob, since a registry stores any bytes there),
and what the cache writes of documents it is served: never an empty or
wrong media type."""

from __future__ import annotations

import base64
import hashlib
import json
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import assert_image_or_one_line, ociext4
from conftest import BASIC_CREDS, manifest_desc, put_manifest, write_auth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.faultproxy import FaultProxy
from support.mutations import dumps, mutations
from support.registry import Registry

import ociext4 as api

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def push_blob(reg: Registry, repo: str, data: bytes) -> str:
    """A blob pushed monolithically (POST then PUT ?digest=), as any client may."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    auth = "Basic " + base64.b64encode(":".join(BASIC_CREDS).encode()).decode()
    req = urllib.request.Request(f"http://{reg.host}/v2/{repo}/blobs/uploads/", data=b"",
                                 method="POST", headers={"Authorization": auth})
    with urllib.request.urlopen(req, timeout=30) as resp:
        location = resp.headers["Location"]
    if location.startswith("/"):
        location = f"http://{reg.host}{location}"
    sep = "&" if "?" in location else "?"
    req = urllib.request.Request(f"{location}{sep}digest={digest}", data=data, method="PUT",
                                 headers={"Authorization": auth,
                                          "Content-Type": "application/octet-stream"})
    urllib.request.urlopen(req, timeout=30).close()
    return digest


@pytest.fixture
def served(image_layout: Path) -> dict[str, Any]:
    """The real manifest and config of the registry's test/img."""
    blobs = image_layout / "blobs" / "sha256"
    manifest = json.loads((blobs / manifest_desc(image_layout)["digest"][7:]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    return {"manifest": manifest, "config": config}


@pytest.fixture
def auth(tmp_path: Path, proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REGISTRY_AUTH_FILE",
                       str(write_auth(tmp_path / "auth.json", proxy.host, *BASIC_CREDS)))


def _unpack_gives_image_or_one_line(ref: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        out.mkdir()
        proc = ociext4("unpack", ref, out / "o.img", "--no-fsync", "--cache",
                       Path(tmp) / "cache", check=False)
        assert_image_or_one_line(proc, out, "o.img")


@pytest.mark.parametrize("which", ["manifest", "config"])
@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_broken_document_from_a_registry_gives_an_image_or_one_line(
        which, data, proxy, basic_registry, served, auth):
    manifest = served["manifest"]
    mutation = data.draw(mutations(served[which]))
    if which == "config":
        raw = dumps(mutation.apply(served["config"]))
        digest = push_blob(basic_registry, "test/img", raw)
        manifest = {**manifest, "config": {**manifest["config"], "digest": digest,
                                           "size": len(raw)}}
        body = dumps(manifest)
    else:
        body = dumps(mutation.apply(manifest))
    proxy.set("manifest", manifest=(OCI_MANIFEST, body))
    _unpack_gives_image_or_one_line(f"{proxy.host}/test/img:latest")


def test_a_manifest_served_as_text_plain_without_media_type_is_cached_as_what_it_is(
        proxy, served, auth, tmp_path):
    body = dumps({k: v for k, v in served["manifest"].items() if k != "mediaType"})
    proxy.set("manifest", manifest=("text/plain", body))
    cache = tmp_path / "c"
    api.pull(f"{proxy.host}/test/img:latest", cache=cache)
    [entry] = json.loads((cache / "index.json").read_text())["manifests"]
    assert entry["mediaType"] == OCI_MANIFEST
    assert entry["digest"] == "sha256:" + hashlib.sha256(body).hexdigest()


def test_pulling_a_cached_manifest_by_digest_keeps_its_media_type(open_registry, tmp_path):
    cache = tmp_path / "c"
    first = api.pull(f"{open_registry.host}/test/multi:latest", cache=cache, platform="arm64")
    assert first.index_digest is not None
    api.pull(f"{open_registry.host}/test/multi@{first.index_digest}", cache=cache,
             platform="arm64")
    api.pull(f"{open_registry.host}/test/img@{first.manifest_digest}", cache=cache)
    entries = json.loads((cache / "index.json").read_text())["manifests"]
    assert len(entries) == 3
    assert all(e["mediaType"] for e in entries), entries
    assert {e["mediaType"] for e in entries} <= {
        OCI_MANIFEST, "application/vnd.docker.distribution.manifest.v2+json"}


def test_the_api_pulls_with_both_digests_and_the_platform(open_registry, tmp_path):
    result = api.pull(f"{open_registry.host}/test/multi:latest", cache=tmp_path / "c",
                      platform="linux/arm64")
    assert result.index_digest is not None and result.index_digest != result.manifest_digest
    assert result.platform == "linux/arm64"
    assert result.layout == tmp_path / "c"
    img = api.unpack(result.oci_reference, tmp_path / "arm.img", fsync=False)
    assert img.manifest_digest == result.manifest_digest


def test_inspect_of_an_image_without_the_hosts_platform_lists_its_platforms(
        open_registry, arm_layout, tmp_path):
    arm = manifest_desc(arm_layout)
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{k: arm[k] for k in arm if k != "annotations"}]}
    put_manifest(open_registry, "test/multi", "armonly", index["mediaType"], dumps(index))
    ref = f"{open_registry.host}/test/multi:armonly"
    info = api.inspect(ref, cache=tmp_path / "c")
    assert info.image is None
    assert [str(p) for p in info.platforms] == ["linux/arm64"]
    proc = ociext4("inspect", ref, "--cache", tmp_path / "c")
    assert proc.stdout.splitlines()[1].startswith("platforms: linux/arm64")
    explicit = api.inspect(ref, cache=tmp_path / "c", platform="arm64")
    assert explicit.image is not None and explicit.image.index_digest is not None

"""Pulls through a proxy that misbehaves: cut connections resume with Range,
429 and 500 are retried, bad bytes and lying lengths fail naming the layer and
leave nothing in the cache, redirects to another host carry no credentials."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cli_helpers import OCIEXT4, ociext4
from conftest import BASIC_CREDS, manifest_desc, write_auth
from support.faultproxy import FaultProxy
from support.fscheck import e2fsck_clean

SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"


@pytest.fixture
def ref(proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REGISTRY_AUTH_FILE",
                       str(write_auth(tmp_path / "auth.json", proxy.host, *BASIC_CREDS)))
    return f"{proxy.host}/test/img"


def biggest_layer(layout: Path) -> dict:
    manifest = json.loads((layout / "blobs" / "sha256" /
                           manifest_desc(layout)["digest"][7:]).read_text())
    return max(manifest["layers"], key=lambda d: d["size"])


def assert_cache_clean(cache: Path, digest: str) -> None:
    assert not (cache / "blobs" / "sha256" / digest[7:]).exists()
    # Downloads stopped for the failed one keep their bytes, by digest, for
    # the next pull to resume; nothing of the bad blob is kept.
    left = list((cache / "ingest").iterdir())
    assert all(p.suffix == ".partial" and not p.name.startswith(digest[7:]) for p in left)
    assert json.loads((cache / "index.json").read_text())["manifests"] == []


def test_a_connection_cut_mid_blob_resumes_with_range(proxy, ref, image_layout, cache):
    layer = biggest_layer(image_layout)
    proxy.set("cut", times=1, digest=layer["digest"])
    ociext4("pull", ref)
    tries = [s for s in proxy.blob_requests() if s.path.endswith(layer["digest"])]
    assert len(tries) == 2
    assert "Range" not in tries[0].headers
    assert tries[1].headers["Range"] == f"bytes={layer['size'] // 2}-"
    assert tries[1].status == 206
    data = (cache / "blobs" / "sha256" / layer["digest"][7:]).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]


@pytest.mark.parametrize("status", ["429", "500"])
def test_429_and_5xx_are_retried(proxy, ref, image_layout, cache, status):
    layer = biggest_layer(image_layout)
    proxy.set(status, times=2, digest=layer["digest"])
    ociext4("pull", ref)
    statuses = [s.status for s in proxy.blob_requests() if s.path.endswith(layer["digest"])]
    assert statuses == [int(status), int(status), 200]
    assert (cache / "blobs" / "sha256" / layer["digest"][7:]).exists()


def test_a_corrupted_byte_fails_naming_the_layer_and_stores_nothing(proxy, ref, image_layout,
                                                                    cache):
    layer = biggest_layer(image_layout)
    proxy.set("corrupt", digest=layer["digest"])
    proc = ociext4("pull", ref, check=False)
    assert proc.returncode == 1
    assert f"layer {layer['digest']}" in proc.stderr
    assert "does not match its digest" in proc.stderr
    assert_cache_clean(cache, layer["digest"])


def test_a_wrong_content_length_fails_and_stores_nothing(proxy, ref, image_layout, cache):
    layer = biggest_layer(image_layout)
    proxy.set("length", digest=layer["digest"])
    proc = ociext4("pull", ref, check=False)
    assert proc.returncode == 1
    assert f"layer {layer['digest']}" in proc.stderr and "Content-Length" in proc.stderr
    assert_cache_clean(cache, layer["digest"])


def test_a_redirect_to_another_host_gets_no_authorization(proxy, ref, image_layout, cache):
    layer = biggest_layer(image_layout)
    proxy.set("redirect", digest=layer["digest"])
    ociext4("pull", ref)
    [cdn] = proxy.cdn_seen
    assert cdn.path.endswith(layer["digest"])
    assert "Authorization" not in cdn.headers and "authorization" not in cdn.headers
    assert any("Authorization" in s.headers for s in proxy.blob_requests())
    assert (cache / "blobs" / "sha256" / layer["digest"][7:]).exists()


def test_schema1_manifests_are_refused_clearly(proxy, ref, cache):
    doc = json.dumps({"schemaVersion": 1, "name": "test/img", "tag": "latest",
                      "fsLayers": [], "history": []}).encode()
    proxy.set("manifest", manifest=(SCHEMA1, doc))
    proc = ociext4("pull", ref, check=False)
    assert proc.returncode == 1
    assert "schema 1 manifest, which is not supported" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_a_manifest_that_is_not_what_the_digest_names_is_refused(proxy, ref, image_layout):
    digest = manifest_desc(image_layout)["digest"]
    proxy.set("manifest", manifest=("application/vnd.oci.image.manifest.v1+json",
                                    b'{"schemaVersion": 2, "layers": []}'))
    proc = ociext4("pull", f"{ref}@{digest}", check=False)
    assert proc.returncode == 1
    assert "the registry sent a manifest with digest" in proc.stderr


@pytest.mark.parametrize("cdn_has_it", [True, False])
def test_foreign_layers_come_from_their_urls_and_are_verified(proxy, ref, image_layout, cache,
                                                               cdn_has_it):
    blobs = image_layout / "blobs" / "sha256"
    manifest = json.loads((blobs / manifest_desc(image_layout)["digest"][7:]).read_text())
    top = manifest["layers"][-1]
    top["mediaType"] = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
    top["urls"] = [f"http://localhost:{proxy.cdn_port}/cdn/{top['digest']}"]
    proxy.set("manifest", manifest=(manifest["mediaType"], json.dumps(manifest).encode()))
    if cdn_has_it:
        proxy._blobs[top["digest"]] = (blobs / top["digest"][7:]).read_bytes()
    ociext4("pull", ref)
    registry_fetches = [s for s in proxy.blob_requests() if s.path.endswith(top["digest"])]
    assert [s.path for s in proxy.cdn_seen] == [f"/cdn/{top['digest']}"]
    assert len(registry_fetches) == (0 if cdn_has_it else 1)
    assert (cache / "blobs" / "sha256" / top["digest"][7:]).read_bytes() == \
        (blobs / top["digest"][7:]).read_bytes()


def test_an_endless_blob_stops_at_its_descriptor_size(proxy, ref, image_layout, cache):
    layer = biggest_layer(image_layout)
    proxy.set("endless", digest=layer["digest"])
    proc = ociext4("pull", ref, check=False)
    assert proc.returncode == 1
    assert f"layer {layer['digest']}: more than the {layer['size']} bytes" in proc.stderr
    assert_cache_clean(cache, layer["digest"])


@pytest.mark.parametrize("kind", ["silent", "stall"])
def test_a_server_that_goes_quiet_fails_after_the_timeout(proxy, ref, image_layout, cache, kind):
    layer = biggest_layer(image_layout)
    proxy.set(kind, digest=layer["digest"])
    proc = ociext4("pull", ref, "--timeout", "1", check=False)
    assert proc.returncode == 1
    assert f"layer {layer['digest']}: no answer from 127.0.0.1 within 1 s (2 tries)" \
        in proc.stderr
    assert_cache_clean(cache, layer["digest"])


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_pull_leaves_no_image_only_verified_blobs_and_the_rerun_resumes(
        proxy, ref, image_layout, cache, tmp_path, sig, code):
    # One layer's download hangs, so the unpack is caught with the other
    # layers in or arriving and the image half written.
    layer = biggest_layer(image_layout)
    proxy.set("stall", digest=layer["digest"])
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = subprocess.Popen([*OCIEXT4, "unpack", ref, str(out_dir / "img"), "--no-fsync"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not any(s.path.endswith(layer["digest"]) for s in proxy.blob_requests()):
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.3)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert list(out_dir.iterdir()) == []
    for blob in (cache / "blobs" / "sha256").iterdir():
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name
    assert not (cache / "blobs" / "sha256" / layer["digest"][7:]).exists()
    # What was fetched is kept by digest for the next pull to resume.
    assert {p.suffix for p in (cache / "ingest").iterdir()} <= {".partial", ".lock"}
    proxy.set("none")
    ociext4("unpack", ref, out_dir / "img", "--no-fsync")
    e2fsck_clean(out_dir / "img")
    assert list((cache / "ingest").iterdir()) == []

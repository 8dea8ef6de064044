"""Registries for the registry tests, started once per session: open, htpasswd
Basic, and token auth (with the tests' own token server), each holding the
same small fixture image; plus a fault proxy in front of the Basic one."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import tarfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from ocilayouts import make_layout, member
from support.faultproxy import FaultProxy
from support.registry import Registry, TokenServer, htpasswd_auth, start_registry

D = tarfile.DIRTYPE
BASIC_CREDS = ("alice", "alice-secret")
TOKEN_CREDS = ("bob", "bob-secret")


def fixture_layers() -> list[list]:
    big = random.Random(4).randbytes(3 << 20)  # incompressible: a blob worth cutting in half
    return [
        [member("etc", kind=D, mode=0o755), member("etc/os-release", b"ID=test\n"),
         member("usr", kind=D, mode=0o755), member("usr/lib", kind=D, mode=0o755),
         member("lib", kind=tarfile.SYMTYPE, link="usr/lib", mode=0o777),
         member("data.bin", big), member("gone", b"x" * 5000)],
        [member("lib/libc.so", b"ELF"),
         member("alias", kind=tarfile.LNKTYPE, link="etc/os-release"), member(".wh.gone")],
        [member("etc/motd", b"hello from the registry\n")],
    ]


def retarget(layout: Path, arch: str) -> Path:
    """The layout's image rewritten for another architecture (config, manifest, index)."""
    index = json.loads((layout / "index.json").read_text())
    desc = index["manifests"][0]
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / desc["digest"][7:]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    config["architecture"] = arch
    cfg = json.dumps(config).encode()
    (blobs / hashlib.sha256(cfg).hexdigest()).write_bytes(cfg)
    manifest["config"].update(digest="sha256:" + hashlib.sha256(cfg).hexdigest(), size=len(cfg))
    man = json.dumps(manifest).encode()
    (blobs / hashlib.sha256(man).hexdigest()).write_bytes(man)
    desc.update(digest="sha256:" + hashlib.sha256(man).hexdigest(), size=len(man),
                platform={"os": "linux", "architecture": arch})
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def put_manifest(reg: Registry, repo: str, ref: str, media_type: str, body: bytes) -> str:
    req = urllib.request.Request(f"http://{reg.host}/v2/{repo}/manifests/{ref}", data=body,
                                 method="PUT", headers={"Content-Type": media_type})
    if reg.creds:
        token = base64.b64encode(":".join(reg.creds).encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    urllib.request.urlopen(req, timeout=30).close()
    return "sha256:" + hashlib.sha256(body).hexdigest()


def manifest_desc(layout: Path) -> dict:
    return json.loads((layout / "index.json").read_text())["manifests"][0]


@pytest.fixture(scope="session")
def image_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_layout(tmp_path_factory.mktemp("reg-image") / "layout", fixture_layers(), "gz",
                       config={"Env": ["PATH=/usr/bin"], "Cmd": ["sh"]})


@pytest.fixture(scope="session")
def arm_layout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layers = [[member("arch", b"arm64\n")]]
    return retarget(make_layout(tmp_path_factory.mktemp("reg-arm") / "layout", layers), "arm64")


@pytest.fixture(scope="session")
def open_registry(tmp_path_factory: pytest.TempPathFactory, image_layout: Path,
                  arm_layout: Path) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("reg-open"))
    try:
        reg.push(image_layout, "test/img")
        reg.push(arm_layout, "test/multi", tag="arm64")
        reg.push(image_layout, "test/multi", tag="amd64")
        amd, arm = manifest_desc(image_layout), manifest_desc(arm_layout)
        attestation = {**amd, "platform": {"os": "unknown", "architecture": "unknown"},
                       "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}
        odd = {**arm, "mediaType": "application/vnd.example.unknown+json",
               "platform": {"os": "linux", "architecture": "amd64"}}
        index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                 "manifests": [odd, attestation, {k: arm[k] for k in arm if k != "annotations"},
                               {k: amd[k] for k in amd if k != "annotations"}]}
        put_manifest(reg, "test/multi", "latest", index["mediaType"], json.dumps(index).encode())
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory: pytest.TempPathFactory, image_layout: Path
                   ) -> Iterator[Registry]:
    root = tmp_path_factory.mktemp("reg-basic")
    reg = start_registry(root, htpasswd_auth(root, *BASIC_CREDS), BASIC_CREDS)
    try:
        reg.push(image_layout, "test/img")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def token_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenServer]:
    ts = TokenServer(tmp_path_factory.mktemp("token"), dict([TOKEN_CREDS]),
                     public={"public/img"}).start()
    try:
        yield ts
    finally:
        ts.stop()


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory: pytest.TempPathFactory, image_layout: Path,
                   token_server: TokenServer) -> Iterator[Registry]:
    reg = start_registry(tmp_path_factory.mktemp("reg-token"), token_server.registry_auth(),
                         TOKEN_CREDS)
    try:
        reg.push(image_layout, "private/img")
        reg.push(image_layout, "public/img")
        yield reg
    finally:
        reg.stop()


@pytest.fixture(scope="session")
def fault_proxy(basic_registry: Registry) -> Iterator[FaultProxy]:
    proxy = FaultProxy(basic_registry.host).start()
    try:
        yield proxy
    finally:
        proxy.stop()


@pytest.fixture
def proxy(fault_proxy: FaultProxy) -> FaultProxy:
    fault_proxy.set("none")
    return fault_proxy


def write_auth(path: Path, host: str, user: str, password: str) -> Path:
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return path


@pytest.fixture(autouse=True)
def isolated_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads the machine's own docker or podman credentials or cache."""
    home = tmp_path / "home"
    home.mkdir()
    for var in ("REGISTRY_AUTH_FILE", "XDG_RUNTIME_DIR", "DOCKER_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("OCIEXT4_CACHE", str(tmp_path / "cache"))
    return home


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"

"""`ociext4 pull`, `inspect`, `cache` and `unpack REF` end to end, through the
CLI, against docker-registry on 127.0.0.1 (open, Basic and token auth)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from cli_helpers import OCIEXT4, ociext4
from conftest import BASIC_CREDS, TOKEN_CREDS, manifest_desc, write_auth
from support.faultproxy import FaultProxy
from support.fscheck import compare_snapshots, e2fsck_clean, mounted, snapshot
from support.registry import Registry


def cached_index(cache: Path) -> list[dict]:
    return json.loads((cache / "index.json").read_text())["manifests"]


def test_pull_fills_the_cache_as_an_oci_layout_umoci_reads(open_registry, image_layout, cache):
    out = ociext4("pull", f"{open_registry.host}/test/img").stdout.strip()
    digest = manifest_desc(image_layout)["digest"]
    assert out == f"oci:{cache}@{digest}"
    [entry] = cached_index(cache)
    assert entry["digest"] == digest
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == \
        f"{open_registry.host}/test/img:latest"
    assert entry["platform"] == {"os": "linux", "architecture": "amd64"}
    for blob in (image_layout / "blobs" / "sha256").iterdir():
        assert (cache / "blobs" / "sha256" / blob.name).read_bytes() == blob.read_bytes()
    assert not list((cache / "ingest").iterdir())
    listed = subprocess.run(["umoci", "ls", "--layout", str(cache)], capture_output=True,
                            text=True, check=True).stdout.split()
    assert listed == [f"{open_registry.host}/test/img:latest"]
    raw = subprocess.run(["skopeo", "inspect", "--raw",
                          f"oci:{cache}:{open_registry.host}/test/img:latest"],
                         capture_output=True, check=True).stdout
    assert raw == (cache / "blobs" / "sha256" / digest[7:]).read_bytes()


def test_two_pulls_at_once_share_the_cache(open_registry, cache):
    refs = [f"{open_registry.host}/test/img", f"{open_registry.host}/test/multi"]
    procs = [subprocess.Popen([*OCIEXT4, "pull", ref], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for ref in refs * 2]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    names = sorted(e["annotations"]["org.opencontainers.image.ref.name"]
                   for e in cached_index(cache))
    assert names == sorted(f"{r}:latest" for r in refs)
    assert not list((cache / "ingest").iterdir())
    ls = json.loads(ociext4("cache", "ls", "--json").stdout)
    assert all(i["complete"] for i in ls["images"]) and ls["unused_bytes"] == 0


def test_inspect_prints_digest_platform_layers_and_config(open_registry, image_layout):
    info = json.loads(ociext4("inspect", "--json", f"{open_registry.host}/test/img").stdout)
    layout_manifest = json.loads((image_layout / "blobs" / "sha256" /
                                  manifest_desc(image_layout)["digest"][7:]).read_text())
    assert info["digest"] == manifest_desc(image_layout)["digest"]
    assert info["platform"] == "linux/amd64"
    assert [(x["digest"], x["mediaType"], x["size"]) for x in info["layers"]] == \
        [(x["digest"], x["mediaType"], x["size"]) for x in layout_manifest["layers"]]
    assert info["config"]["digest"] == layout_manifest["config"]["digest"]
    assert info["config"]["Cmd"] == ["sh"]
    text = ociext4("inspect", f"{open_registry.host}/test/img").stdout
    assert info["digest"] in text and "linux/amd64" in text and "tar+gzip" in text


def test_platform_is_chosen_from_an_index_skipping_unknown_types_and_attestations(
        open_registry, image_layout, arm_layout):
    ref = f"{open_registry.host}/test/multi"
    amd = json.loads(ociext4("inspect", "--json", ref, "--platform", "linux/amd64").stdout)
    arm = json.loads(ociext4("inspect", "--json", ref, "--platform", "linux/arm64/v8").stdout)
    assert amd["digest"] == manifest_desc(image_layout)["digest"]
    assert arm["digest"] == manifest_desc(arm_layout)["digest"]
    bad = ociext4("inspect", ref, "--platform", "linux/s390x", check=False)
    assert bad.returncode == 1
    assert "no manifest for linux/s390x" in bad.stderr and "linux/arm64" in bad.stderr


@pytest.mark.needs_root_loop
def test_unpack_from_the_registry_matches_unpack_of_the_layout(open_registry, image_layout,
                                                               tmp_path, cache):
    from_reg, from_layout = tmp_path / "reg.img", tmp_path / "layout.img"
    ociext4("unpack", f"{open_registry.host}/test/img:latest", from_reg)
    ociext4("unpack", f"oci:{image_layout}:latest", from_layout)
    e2fsck_clean(from_reg)
    with mounted(from_reg) as a:
        got = snapshot(a)
        assert (a / "etc/motd").read_bytes() == b"hello from the registry\n"
    with mounted(from_layout) as b:
        want = snapshot(b)
    assert compare_snapshots(want, got) == []
    assert "gone" not in got and "usr/lib/libc.so" in got
    assert from_reg.read_bytes() == from_layout.read_bytes()  # same digest, same bytes
    meta = json.loads(Path(f"{from_reg}.json").read_text())
    assert meta["manifest"] == manifest_desc(image_layout)["digest"]
    assert cached_index(cache)[0]["digest"] == meta["manifest"]


def test_cached_blobs_cost_no_download(proxy: FaultProxy, tmp_path, cache, monkeypatch):
    auth = write_auth(tmp_path / "auth.json", proxy.host, *BASIC_CREDS)
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(auth))
    env_ref = f"{proxy.host}/test/img"
    ociext4("pull", env_ref)
    assert len(proxy.blob_requests()) == 4  # config and three layers
    digest = cached_index(cache)[0]["digest"]
    proxy.set("none")
    ociext4("pull", env_ref)
    assert proxy.blob_requests() == []
    proxy.set("none")
    ociext4("pull", f"{env_ref}@{digest}")
    assert proxy.seen == []  # a cached digest reference needs no registry at all


def test_basic_auth_with_credentials_from_the_auth_file(basic_registry: Registry, tmp_path,
                                                         monkeypatch):
    ref = f"{basic_registry.host}/test/img"
    denied = ociext4("pull", ref, check=False)
    assert denied.returncode == 1
    assert "asks for a username and password" in denied.stderr
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(write_auth(
        tmp_path / "wrong.json", basic_registry.host, BASIC_CREDS[0], "wrong")))
    wrong = ociext4("pull", ref, check=False)
    assert wrong.returncode == 1 and "denied" in wrong.stderr
    monkeypatch.setenv("REGISTRY_AUTH_FILE", str(write_auth(
        tmp_path / "auth.json", basic_registry.host, *BASIC_CREDS)))
    ociext4("pull", ref)


def test_token_auth_with_credentials_anonymous_and_identity_tokens(
        token_registry: Registry, token_server, tmp_path, monkeypatch, isolated_credentials):
    private, public = f"{token_registry.host}/private/img", f"{token_registry.host}/public/img"
    ociext4("pull", public)  # anonymous token, pull allowed
    denied = ociext4("pull", private, check=False)
    assert denied.returncode == 1 and "denied" in denied.stderr
    docker = isolated_credentials / ".docker"
    docker.mkdir()
    write_auth(docker / "config.json", token_registry.host, *TOKEN_CREDS)
    token_server.requests.clear()
    ociext4("pull", private, "--cache", tmp_path / "c2")
    assert token_server.requests[0]["user"] == TOKEN_CREDS[0]
    assert token_server.requests[0]["scope"] == ["repository:private/img:pull"]
    (docker / "config.json").write_text(json.dumps(
        {"auths": {token_registry.host: {"identitytoken": f"idtok-{TOKEN_CREDS[0]}"}}}))
    token_server.requests.clear()
    ociext4("pull", private, "--cache", tmp_path / "c3")
    assert [r["grant"] for r in token_server.requests] == ["refresh_token"]


def test_cache_ls_and_prune(open_registry, cache):
    ociext4("pull", f"{open_registry.host}/test/img")
    ociext4("pull", f"{open_registry.host}/test/multi", "--platform", "linux/arm64")
    ls = json.loads(ociext4("cache", "ls", "--json").stdout)
    names = sorted(i["name"] for i in ls["images"])
    assert names == [f"{open_registry.host}/test/img:latest",
                     f"{open_registry.host}/test/multi:latest"]
    assert all(i["complete"] for i in ls["images"])
    assert f"{open_registry.host}/test/img:latest" in ociext4("cache", "ls").stdout
    ociext4("cache", "prune", f"{open_registry.host}/test/img")  # :latest, as pull reads it
    left = json.loads(ociext4("cache", "ls", "--json").stdout)
    assert [i["name"] for i in left["images"]] == [f"{open_registry.host}/test/multi:latest"]
    assert left["unused_bytes"] == 0
    missing = ociext4("cache", "prune", "no/such:image", check=False)
    assert missing.returncode == 1
    assert "no cached image named docker.io/no/such:image" in missing.stderr
    ociext4("cache", "prune", "--all")
    assert json.loads(ociext4("cache", "ls", "--json").stdout)["blobs"] == 0


def test_bad_references_and_missing_images_give_one_line_errors(open_registry):
    for args, why in ((("pull", "Bad/Name"), "must be lowercase"),
                      (("pull", f"{open_registry.host}/test/nothing"), "not found"),
                      (("unpack", "a@sha256:12", "x.img"), "not a sha256 digest")):
        proc = ociext4(*args, check=False)
        assert proc.returncode == 1
        assert proc.stderr.startswith("ociext4: error: ") and proc.stderr.count("\n") == 1, \
            proc.stderr
        assert why in proc.stderr


def test_a_cached_blob_of_the_wrong_size_is_fetched_again(open_registry, image_layout,
                                                            tmp_path, cache):
    ref = f"{open_registry.host}/test/img"
    ociext4("pull", ref)
    manifest = json.loads((image_layout / "blobs" / "sha256" /
                           manifest_desc(image_layout)["digest"][7:]).read_text())
    top = cache / "blobs" / "sha256" / manifest["layers"][-1]["digest"][7:]
    good = top.read_bytes()
    top.write_bytes(b"short")
    ociext4("unpack", ref, tmp_path / "out.img")
    assert top.read_bytes() == good


def test_a_single_manifest_for_another_platform_is_refused(open_registry):
    proc = ociext4("inspect", f"{open_registry.host}/test/img", "--platform", "linux/arm64",
                   check=False)
    assert proc.returncode == 1
    assert "no manifest for linux/arm64 (has: linux/amd64)" in proc.stderr


def test_inspect_reads_local_layouts_too(image_layout):
    info = json.loads(ociext4("inspect", "--json", f"oci:{image_layout}:latest").stdout)
    assert info["digest"] == manifest_desc(image_layout)["digest"]
    assert info["platform"] == "linux/amd64" and len(info["layers"]) == 3


def test_progress_bars_when_asked_and_none_with_quiet(open_registry, tmp_path):
    ref = f"{open_registry.host}/test/img"
    shown = ociext4("pull", ref, "--progress", "--cache", tmp_path / "c1")
    assert "total (3 layers)" in shown.stderr and "B/s" in shown.stderr
    unpacked = ociext4("unpack", ref, tmp_path / "out.img", "--progress", "--cache",
                       tmp_path / "c2")
    assert "total (3 layers)" in unpacked.stderr
    quiet = ociext4("pull", ref, "--progress", "--quiet", "--cache", tmp_path / "c3")
    assert quiet.stderr == ""


def test_creds_and_authfile_on_the_command_line(basic_registry: Registry, tmp_path):
    ref = f"{basic_registry.host}/test/img"
    wrong = ociext4("pull", ref, "--creds", f"{BASIC_CREDS[0]}:nope", check=False)
    assert wrong.returncode == 1 and "denied" in wrong.stderr
    ociext4("pull", ref, "--creds", ":".join(BASIC_CREDS), "--cache", tmp_path / "c1")
    auth = write_auth(tmp_path / "elsewhere.json", basic_registry.host, *BASIC_CREDS)
    ociext4("pull", ref, "--authfile", auth, "--cache", tmp_path / "c2")
    missing = ociext4("pull", ref, "--authfile", tmp_path / "none.json", check=False)
    assert missing.returncode == 1 and "no such auth file" in missing.stderr


def test_pull_prints_the_index_digest_and_writes_the_digestfile(open_registry, image_layout,
                                                                tmp_path):
    ref = f"{open_registry.host}/test/multi"
    index = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false",
                            f"docker://{ref}"], capture_output=True, check=True).stdout
    proc = ociext4("pull", ref, "--platform", "linux/amd64", "--digestfile", tmp_path / "d")
    want = manifest_desc(image_layout)["digest"]
    assert f"{ref}:latest: index sha256:{hashlib.sha256(index).hexdigest()}" in proc.stderr
    assert f"{ref}:latest: {want} (linux/amd64" in proc.stderr
    assert (tmp_path / "d").read_text() == want
    # The same from the cache, without the registry.
    again = ociext4("pull", ref, "--platform", "linux/amd64", "--pull", "never")
    assert again.stderr == proc.stderr


def test_login_checks_and_stores_credentials_and_logout_forgets_them(
        basic_registry: Registry, isolated_credentials):
    host, ref = basic_registry.host, f"{basic_registry.host}/test/img"
    config = isolated_credentials / ".docker" / "config.json"
    bad = ociext4("login", host, "-u", BASIC_CREDS[0], "--password-stdin", stdin=b"nope\n",
                  check=False)
    assert bad.returncode == 1 and "denied" in bad.stderr and bad.stderr.count("\n") == 1
    assert not config.exists()
    ociext4("login", host, "-u", BASIC_CREDS[0], "--password-stdin",
            stdin=f"{BASIC_CREDS[1]}\n".encode())
    assert oct(config.stat().st_mode & 0o777) == "0o600"
    assert json.loads(config.read_text())["auths"][host]["auth"] == \
        base64.b64encode(":".join(BASIC_CREDS).encode()).decode()
    ociext4("pull", ref)
    ociext4("logout", host)
    assert json.loads(config.read_text())["auths"] == {}
    denied = ociext4("pull", ref, "--pull", "always", check=False)
    assert denied.returncode == 1 and "asks for a username and password" in denied.stderr
    again = ociext4("logout", host, check=False)
    assert again.returncode == 1 and f"no credentials stored for {host}" in again.stderr

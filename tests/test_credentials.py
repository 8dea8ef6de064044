"""Credentials found as docker and podman find them, with a real credential
helper program run through the helper protocol."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.mutations import dumps, mutations

from ociext4.errors import AuthError
from ociext4.registry.credentials import Credentials, auth_files, lookup

HELPER = """#!/bin/sh
# docker-credential-{name}: answers `get` for {server} only, logs what it was asked.
[ "$1" = get ] || exit 2
read -r server
echo "$server" >> "{log}"
if [ "$server" = "{server}" ]; then
  printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{secret}"}}' "$server"
else
  echo "credentials not found in native keychain"; exit 1
fi
"""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".docker").mkdir(parents=True)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    return {"HOME": str(home), "PATH": f"{bindir}:{os.environ['PATH']}"}


def helper(env: dict[str, str], name: str, server: str, user: str, secret: str) -> Path:
    bindir = Path(env["PATH"].split(":")[0])
    log = bindir / f"{name}.log"
    prog = bindir / f"docker-credential-{name}"
    prog.write_text(HELPER.format(name=name, server=server, user=user, secret=secret, log=log))
    prog.chmod(0o755)
    return log


def docker_config(env: dict[str, str], doc: dict) -> None:
    Path(env["HOME"], ".docker", "config.json").write_text(json.dumps(doc))


def test_auths_base64(env):
    docker_config(env, {"auths": {"reg.example:5000": {"auth": b64("u:p:with:colons")}}})
    assert lookup("reg.example:5000", "a/b", env) == Credentials("u", "p:with:colons")
    assert lookup("other.example", "a/b", env) is None


def test_docker_hub_key_and_url_keys(env):
    docker_config(env, {"auths": {"https://index.docker.io/v1/": {"auth": b64("hub:pw")},
                                  "http://reg.example/": {"username": "x", "password": "y"}}})
    assert lookup("docker.io", "library/alpine", env) == Credentials("hub", "pw")
    assert lookup("reg.example", "a", env) == Credentials("x", "y")


def test_identity_tokens(env):
    docker_config(env, {"auths": {"reg.example": {"auth": b64("u:"), "identitytoken": "tok"}}})
    assert lookup("reg.example", "a", env) == Credentials("u", "", "tok")


def test_cred_helpers_win_over_auths(env):
    log = helper(env, "unit", "reg.example", "helper-user", "helper-secret")
    docker_config(env, {"credHelpers": {"reg.example": "unit"},
                        "auths": {"reg.example": {"auth": b64("file:pw")}}})
    assert lookup("reg.example", "a", env) == Credentials("helper-user", "helper-secret")
    assert log.read_text() == "reg.example\n"


def test_creds_store_for_every_registry_and_the_hub_url(env):
    log = helper(env, "store", "https://index.docker.io/v1/", "<token>", "refresh-me")
    docker_config(env, {"credsStore": "store", "auths": {"https://index.docker.io/v1/": {}}})
    assert lookup("docker.io", "ocaml/opam", env) == Credentials(identity_token="refresh-me")
    assert lookup("quay.io", "x", env) is None  # the helper says "not found"
    assert log.read_text().splitlines() == ["https://index.docker.io/v1/", "quay.io"]


def test_a_missing_helper_is_a_clear_error(env):
    docker_config(env, {"credHelpers": {"reg.example": "nosuch"}})
    with pytest.raises(AuthError, match="docker-credential-nosuch is not on PATH"):
        lookup("reg.example", "a", env)


def test_registry_auth_file_and_podman_auth_come_first(env, tmp_path):
    docker_config(env, {"auths": {"reg.example": {"auth": b64("docker:1")}}})
    run = tmp_path / "run"
    (run / "containers").mkdir(parents=True)
    (run / "containers" / "auth.json").write_text(json.dumps(
        {"auths": {"reg.example": {"auth": b64("podman:2")}}}))
    explicit = tmp_path / "explicit.json"
    explicit.write_text(json.dumps({"auths": {"reg.example": {"auth": b64("explicit:3")}}}))
    assert lookup("reg.example", "a", env).username == "docker"
    assert lookup("reg.example", "a", {**env, "XDG_RUNTIME_DIR": str(run)}).username == "podman"
    both = {**env, "XDG_RUNTIME_DIR": str(run), "REGISTRY_AUTH_FILE": str(explicit)}
    assert lookup("reg.example", "a", both).username == "explicit"
    assert auth_files(both)[0] == explicit


def test_repository_scoped_keys_prefer_the_longest(env):
    docker_config(env, {"auths": {"reg.example": {"auth": b64("wide:1")},
                                  "reg.example/team": {"auth": b64("team:2")}}})
    assert lookup("reg.example", "team/app", env).username == "team"
    assert lookup("reg.example", "teamx/app", env).username == "wide"


def test_malformed_auth_is_a_clear_error(env):
    docker_config(env, {"auths": {"reg.example": {"auth": "!!!"}}})
    with pytest.raises(AuthError, match="base64"):
        lookup("reg.example", "a", env)


def test_secrets_stay_out_of_repr():
    assert "hunter2" not in repr(Credentials("u", "hunter2", "tok"))


def test_save_keeps_the_rest_of_the_config_and_lookup_reads_it_back(tmp_path):
    from ociext4.registry.credentials import Credentials, lookup, remove, save

    path = tmp_path / "config.json"
    path.write_text(json.dumps({"credHelpers": {"other.example": "none"}, "auths": {}}))
    save("docker.io", Credentials("u", "p:w"), path)
    save("reg.example:5000", Credentials("v", "q"), path)
    doc = json.loads(path.read_text())
    assert set(doc["auths"]) == {"https://index.docker.io/v1/", "reg.example:5000"}
    assert doc["credHelpers"] == {"other.example": "none"}
    assert lookup("docker.io", "library/alpine", files=[path]) == Credentials("u", "p:w")
    assert remove("docker.io", path) and not remove("docker.io", path)
    assert lookup("docker.io", "library/alpine", files=[path]) is None
    assert lookup("reg.example:5000", "a", files=[path]) == Credentials("v", "q")


AUTH_FILE = {"auths": {"r.example": {"auth": base64.b64encode(b"me:pw").decode()},
                       "https://index.docker.io/v1/": {"username": "hub", "password": "x"}},
             "credHelpers": {"other.example": "none-such"}, "credsStore": ""}


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_damaged_auth_file_gives_credentials_none_or_one_auth_error(tmp_path, data):
    path = tmp_path / "auth.json"
    path.write_bytes(dumps(data.draw(mutations(AUTH_FILE)).apply(AUTH_FILE)))
    for registry in ("r.example", "docker.io", "other.example"):
        try:
            creds = lookup(registry, "a/b", env={"PATH": ""}, files=[path])
        except AuthError as e:
            assert str(e)
        else:
            assert creds is None or isinstance(creds, Credentials)

"""The registry options builder: flags as the command line spells them,
merged with the mirror config file, for the CLI and Python callers alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import ociext4
from ociext4.errors import AuthError, RegistryError
from ociext4.registry.config import config_path, parse_mirror, registry_options
from ociext4.store import PullPolicy


@pytest.fixture(autouse=True)
def no_config_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OCIEXT4_CONFIG", raising=False)


def test_the_config_file_lives_in_the_cache_unless_the_environment_names_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_path(tmp_path) == tmp_path / "config.json"
    monkeypatch.setenv("OCIEXT4_CONFIG", str(tmp_path / "elsewhere.json"))
    assert config_path(tmp_path) == tmp_path / "elsewhere.json"


def test_mirrors_given_come_before_the_files_and_http_urls_allow_plain_http(
        tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "registry-mirrors": ["https://hub-mirror.example"],
        "mirrors": {"quay.io": ["http://q1.example:5000/path", "q2.example"]}}))
    opts = registry_options(tmp_path, mirrors=["quay.io=q0.example", "q2.example",
                                               "q1.example:5000"])
    assert opts.mirrors["quay.io"] == ("q0.example", "q1.example:5000", "q2.example")
    assert opts.mirrors["docker.io"] == ("q2.example", "q1.example:5000",
                                         "hub-mirror.example")
    assert opts.insecure == frozenset({"q1.example:5000"})


def test_no_config_file_is_no_mirrors_and_the_flags_pass_through(tmp_path: Path) -> None:
    opts = registry_options(tmp_path, insecure=["h:1"], ca_cert="/ca.pem", timeout=5,
                            pull="never")
    assert (opts.mirrors, opts.insecure, opts.ca_cert, opts.timeout, opts.pull) == \
        ({}, frozenset({"h:1"}), "/ca.pem", 5, PullPolicy.NEVER)
    assert ociext4.registry_options is registry_options


def test_creds_are_used_for_every_registry(tmp_path: Path) -> None:
    creds = registry_options(tmp_path, creds="me:secret").credentials("r.example", "a/b")
    assert creds is not None and (creds.username, creds.password) == ("me", "secret")


@pytest.mark.parametrize("doc", ["[1, 2]", "{\"mirrors\": [\"x\"]}", "not json",
                                 "{\"registry-mirrors\": \"x\"}"])
def test_a_broken_config_file_is_one_registry_error_naming_it(tmp_path: Path, doc: str) -> None:
    (tmp_path / "config.json").write_text(doc)
    with pytest.raises(RegistryError, match=str(tmp_path / "config.json")):
        registry_options(tmp_path)


def test_a_missing_authfile_and_an_empty_mirror_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AuthError):
        registry_options(tmp_path, authfile=str(tmp_path / "nope.json"))
    with pytest.raises(RegistryError, match="not a registry mirror"):
        registry_options(tmp_path, mirrors=["quay.io=https://"])


def test_a_mirror_without_a_registry_is_for_docker_hub() -> None:
    assert parse_mirror("m.example") == ("docker.io", "m.example")
    assert parse_mirror("ghcr.io=m.example:5000") == ("ghcr.io", "m.example:5000")

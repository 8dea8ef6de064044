"""Registry names normalised as Docker does; local references kept as they were."""

from __future__ import annotations

import pytest

from ociext4.errors import SourceError
from ociext4.reference import LocalRef, RegistryRef, parse_local, parse_reference, parse_registry

D1 = "sha256:" + "a" * 64


@pytest.mark.parametrize(("text", "registry", "repo", "tag", "digest"), [
    ("alpine", "docker.io", "library/alpine", "latest", None),
    ("ocaml/opam", "docker.io", "ocaml/opam", "latest", None),
    ("ocaml/opam:debian-12", "docker.io", "ocaml/opam", "debian-12", None),
    ("docker.io/alpine:3.19", "docker.io", "library/alpine", "3.19", None),
    ("index.docker.io/x/y", "docker.io", "x/y", "latest", None),
    ("localhost/foo", "localhost", "foo", "latest", None),
    ("localhost:5000/foo/bar", "localhost:5000", "foo/bar", "latest", None),
    ("127.0.0.1:5000/a/b:t@" + D1, "127.0.0.1:5000", "a/b", "t", D1),
    ("quay.io/a/b@" + D1, "quay.io", "a/b", None, D1),
    ("Example.COM/a_b/c-d/e__f", "Example.COM", "a_b/c-d/e__f", "latest", None),
    ("[::1]:5000/img", "[::1]:5000", "img", "latest", None),
])
def test_registry_names_normalise_as_docker_does(text, registry, repo, tag, digest):
    assert parse_registry(text) == RegistryRef(registry, repo, tag, digest)


def test_first_component_is_a_host_only_with_a_dot_a_colon_or_localhost():
    assert parse_registry("myhost/img").registry == "docker.io"
    assert parse_registry("myhost/img").repository == "myhost/img"
    assert parse_registry("my.host/img").registry == "my.host"


def test_docker_hub_is_served_from_registry_1():
    assert parse_registry("alpine").host == "registry-1.docker.io"
    assert parse_registry("quay.io/a").host == "quay.io"


def test_digest_wins_over_tag():
    ref = parse_registry("a/b:old@" + D1)
    assert ref.reference == D1
    assert ref.name == "docker.io/a/b@" + D1
    assert str(ref) == "docker.io/a/b:old@" + D1


@pytest.mark.parametrize(("text", "why"), [
    ("", "empty"),
    ("Alpine", "lowercase"),
    ("a:", "not a valid tag"),
    ("a:-x", "not a valid tag"),
    ("a@sha256:abc", "not a sha256 digest"),
    ("a@md5:abcd", "only sha256"),
    ("a b", "not a valid name component"),
    ("a//b", "not a valid name component"),
    ("host.io/", "no repository name"),
    ("bad_host.io/x", "not a valid registry host"),
    ("https://quay.io/a", "URL scheme"),
    ("a/" + "b" * 300, "longer than"),
])
def test_malformed_names_give_a_clear_error(text, why):
    with pytest.raises(SourceError, match=why) as info:
        parse_registry(text)
    assert repr(text) in str(info.value)


def test_local_references_still_parse():
    assert parse_local("oci:./dir:tag") == LocalRef("oci", "./dir", tag="tag")
    assert parse_reference("oci:./dir@" + D1) == LocalRef("oci", "./dir", digest=D1)
    assert parse_reference("docker-archive:x.tar") == LocalRef("docker-archive", "x.tar")
    assert isinstance(parse_reference("alpine"), RegistryRef)

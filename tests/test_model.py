"""The image model: documents parsed once into validated records, platforms
read as docker reads them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.mutations import dumps, mutations

from ociext4.errors import DocumentError, NoMatchingPlatform, SourceError
from ociext4.model import (
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    Platform,
    PlatformSyntaxError,
    parse_config,
    parse_document,
    parse_index,
    parse_manifest,
    select_manifest,
)

D1, D2, D3 = ("sha256:" + c * 64 for c in "123")
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"

MANIFEST = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": D1,
                       "size": 10},
            "layers": [{"mediaType": LAYER, "digest": D2, "size": 20},
                       {"mediaType": LAYER, "digest": D3, "size": 30}]}
INDEX = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
    {"mediaType": OCI_MANIFEST, "digest": D1, "size": 5,
     "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
    {"mediaType": OCI_MANIFEST, "digest": D2, "size": 6,
     "platform": {"os": "linux", "architecture": "amd64"}}]}
CONFIG = {"architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
          "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/w", "User": "1:2",
                     "ExposedPorts": {"80/tcp": {}}, "Labels": {"a": "b"}},
          "rootfs": {"type": "layers", "diff_ids": [D1, D2]}}


@pytest.mark.parametrize(("text", "want"), [
    ("linux/arm64", "linux/arm64"),
    ("arm64", "linux/arm64"),
    ("ARM64", "linux/arm64"),
    ("Linux/AMD64", "linux/amd64"),
    ("arm64/v8", "linux/arm64"),
    ("linux/arm64/v8", "linux/arm64"),
    ("amd64/v2", "linux/amd64/v2"),
    ("linux/x86_64", "linux/amd64"),
    ("aarch64", "linux/arm64"),
    ("linux/arm", "linux/arm/v7"),
    ("linux/arm/6", "linux/arm/v6"),
    ("windows/amd64", "windows/amd64"),
])
def test_platforms_are_read_as_docker_reads_them(text, want):
    assert str(Platform.parse(text)) == want


def test_an_os_alone_means_the_hosts_architecture():
    assert Platform.parse("linux") == Platform.of("linux", Platform.host().architecture)


@pytest.mark.parametrize("text", ["", "/", "linux/", "a/b/c/d", "frobnicate", "linux//v7"])
def test_bad_platforms_are_one_line_errors(text):
    with pytest.raises(PlatformSyntaxError) as e:
        Platform.parse(text)
    assert "\n" not in str(e.value) and repr(text) in str(e.value)


def test_a_platform_without_variant_takes_any_variant():
    assert Platform.parse("linux/amd64").matches(Platform.parse("amd64/v3"))
    assert not Platform.parse("amd64/v3").matches(Platform.parse("linux/amd64"))


def test_manifest_fields_become_typed_records():
    m = parse_manifest(dumps(MANIFEST), "manifest x")
    assert m.media_type == OCI_MANIFEST
    assert m.config.digest == D1 and m.config.size == 10
    assert [(d.digest, d.size) for d in m.layers] == [(D2, 20), (D3, 30)]


def test_unknown_fields_are_ignored():
    doc = {**MANIFEST, "x-future": {"anything": [1, 2]},
           "config": {**MANIFEST["config"], "extra": 5}}
    assert parse_manifest(dumps(doc), "m").config.digest == D1


@pytest.mark.parametrize(("change", "field", "problem"), [
    (lambda d: d["layers"][1].update(size="big"), "layers[1].size",
     'expected an integer, got "big"'),
    (lambda d: d.pop("config"), "config", "missing"),
    (lambda d: d.update(layers={"a": 1}), "layers", "expected an array, got an object"),
    (lambda d: d["layers"][0].update(size=-1), "layers[0].size", "-1 is out of range"),
    (lambda d: d["layers"][0].update(size=True), "layers[0].size",
     "expected an integer, got true"),
    (lambda d: d["config"].update(digest="sha256:abc"), "config.digest",
     'expected a sha256 digest, got "sha256:abc"'),
    (lambda d: d["layers"][0].pop("digest"), "layers[0].digest", "missing"),
    (lambda d: d["config"].update(platform="linux"), "config.platform",
     'expected an object, got "linux"'),
])
def test_a_wrong_field_is_named_with_its_path(change, field, problem):
    doc = json.loads(json.dumps(MANIFEST))
    change(doc)
    with pytest.raises(DocumentError) as e:
        parse_manifest(dumps(doc), "manifest sha256:abc")
    assert e.value.document == "manifest sha256:abc"
    assert e.value.field == field
    assert e.value.problem.startswith(problem)
    assert str(e.value) == f"manifest sha256:abc: {field}: {e.value.problem}"


def test_index_entry_with_a_string_platform_is_refused():
    doc = json.loads(json.dumps(INDEX))
    doc["manifests"][0]["platform"] = "linux/arm64"
    with pytest.raises(DocumentError, match=r"manifests\[0\].platform: expected an object"):
        parse_index(dumps(doc), "index")


def test_config_with_a_string_rootfs_or_numeric_architecture_is_refused():
    with pytest.raises(DocumentError, match="rootfs: expected an object"):
        parse_config(dumps({**CONFIG, "rootfs": "layers"}), "config")
    with pytest.raises(DocumentError, match="architecture: expected a string, got 5"):
        parse_config(dumps({**CONFIG, "architecture": 5}), "config")


def test_config_becomes_the_container_config():
    cfg = parse_config(dumps(CONFIG), "config")
    assert cfg.platform == Platform.parse("linux/amd64")
    assert cfg.config.env == ("PATH=/bin",) and cfg.config.cmd == ("sh",)
    assert cfg.config.entrypoint is None and cfg.config.exposed_ports == ("80/tcp",)
    assert cfg.config.to_json() == CONFIG["config"]
    assert cfg.diff_ids == (D1, D2)


def test_a_document_without_media_type_takes_it_from_the_hint_or_its_content():
    bare = {k: v for k, v in MANIFEST.items() if k != "mediaType"}
    assert parse_document(dumps(bare), "m", DOCKER_MANIFEST).media_type == DOCKER_MANIFEST
    # A server's text/plain is no media type: the content decides.
    assert parse_document(dumps(bare), "m", "text/plain").media_type == OCI_MANIFEST
    bare_index = {k: v for k, v in INDEX.items() if k != "mediaType"}
    doc = parse_document(dumps(bare_index), "i", "")
    assert isinstance(doc, Index) and doc.media_type == OCI_INDEX


def test_schema1_manifests_are_refused_with_the_fix():
    with pytest.raises(DocumentError, match="schema 1 manifest, which is not supported"):
        parse_document(dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}), "m")


def test_not_json_and_not_an_object_are_one_line_errors():
    with pytest.raises(DocumentError, match=r"m: \(document\): not JSON"):
        parse_document(b"{", "m")
    with pytest.raises(DocumentError, match=r"m: \(document\): expected an object, got an array"):
        parse_document(b"[1]", "m")


def _manifest_for(d: Descriptor) -> Manifest:
    return parse_manifest(dumps(MANIFEST), d.digest)


def test_the_platforms_manifest_is_selected_and_arm64_v8_is_arm64():
    index = parse_index(dumps(INDEX), "index")
    desc, _, via = select_manifest(index, Platform.parse("linux/arm64"), _manifest_for, "x")
    assert desc.digest == D1 and via == ()
    desc, _, _ = select_manifest(index, Platform.parse("linux/amd64"), _manifest_for, "x")
    assert desc.digest == D2


def test_a_missing_platform_lists_what_the_index_has():
    index = parse_index(dumps(INDEX), "index")
    with pytest.raises(NoMatchingPlatform) as e:
        select_manifest(index, Platform.parse("linux/s390x"), _manifest_for, "img")
    assert sorted(map(str, e.value.available)) == ["linux/amd64", "linux/arm64"]
    assert str(e.value) == "img: no manifest for linux/s390x (has: linux/amd64, linux/arm64)"


def test_nested_indexes_are_followed_and_named():
    inner = parse_index(dumps(INDEX), "inner")
    outer = Index(OCI_INDEX, (Descriptor(OCI_INDEX, D3, 1),))

    def load(d: Descriptor) -> Index | Manifest:
        return inner if d.digest == D3 else _manifest_for(d)

    desc, _, via = select_manifest(outer, Platform.parse("arm64"), load, "x")
    assert desc.digest == D1 and via == (D3,)


# ------------------------------------------------------------ properties

DOCUMENTS = {"manifest": (MANIFEST, parse_manifest), "index": (INDEX, parse_index),
             "config": (CONFIG, parse_config)}


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_mutated_document_parses_or_fails_with_a_document_error(name, data):
    doc, parse = DOCUMENTS[name]
    mutation = data.draw(mutations(doc))
    raw = dumps(mutation.apply(doc))
    try:
        parse(raw, name)
    except DocumentError as e:
        assert "\n" not in str(e) and e.document == name
    except SourceError as e:  # noqa: B014 - anything else the library raises on purpose
        assert "\n" not in str(e)


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_bytes_parse_or_fail_with_a_document_error(raw):
    try:
        parse_document(raw, "doc")
    except SourceError:
        pass

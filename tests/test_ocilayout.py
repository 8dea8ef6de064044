"""OCI layouts: tags, digests, nested indexes, platform choice, attestations,
and digests checked on everything read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from ocilayouts import make_layout, member

from ociext4.errors import SourceError
from ociext4.ocilayout import Platform, open_image
from ociext4.reference import LocalRef, parse_local

INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def _put(root: Path, doc: dict) -> dict:
    data = json.dumps(doc).encode()
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    (root / "blobs/sha256" / digest[7:]).write_bytes(data)
    return {"digest": digest, "size": len(data)}


def multi(tmp_path: Path, nested: bool = False) -> tuple[Path, dict[str, str]]:
    """One layout holding an amd64, an arm64/v8 and an attestation manifest."""
    root = make_layout(tmp_path / "layout", [[member("amd64-file")]])
    amd64 = json.loads((root / "index.json").read_text())["manifests"][0]
    arm = make_layout(tmp_path / "arm", [[member("arm64-file")]])
    arm_desc = json.loads((arm / "index.json").read_text())["manifests"][0]
    for blob in (arm / "blobs/sha256").iterdir():
        (root / "blobs/sha256" / blob.name).write_bytes(blob.read_bytes())
    entries = [
        {"mediaType": MANIFEST, "digest": amd64["digest"], "size": amd64["size"],
         "platform": {"os": "linux", "architecture": "amd64"}},
        {"mediaType": MANIFEST, "digest": arm_desc["digest"], "size": arm_desc["size"],
         "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        {"mediaType": MANIFEST, "digest": amd64["digest"], "size": amd64["size"],
         "platform": {"os": "unknown", "architecture": "unknown"},
         "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        {"mediaType": "application/vnd.example.unknown+json", "digest": amd64["digest"],
         "size": 1},
    ]
    index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": entries}
    desc = {"mediaType": INDEX, **_put(root, index),
            "annotations": {"org.opencontainers.image.ref.name": "latest"}}
    if nested:
        outer = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [desc]}
        desc = {"mediaType": INDEX, **_put(root, outer),
                "annotations": {"org.opencontainers.image.ref.name": "latest"}}
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [desc]}))
    return root, {"amd64": amd64["digest"], "arm64": arm_desc["digest"]}


@pytest.mark.parametrize("nested", [False, True])
@pytest.mark.parametrize(("plat", "want"), [
    ("linux/amd64", "amd64"), ("linux/x86_64", "amd64"), ("linux/arm64", "arm64"),
    ("linux/aarch64", "arm64"), ("linux/arm64/v8", "arm64")])
def test_platform_picks_the_matching_manifest(tmp_path, nested, plat, want):
    root, digests = multi(tmp_path, nested)
    image = open_image(root, "latest", None, Platform.parse(plat))
    assert image.manifest_digest == digests[want]


def test_missing_platform_names_what_there_is(tmp_path):
    root, _ = multi(tmp_path)
    with pytest.raises(SourceError, match=r"no manifest for linux/s390x \(has: "):
        open_image(root, "latest", None, Platform.parse("linux/s390x"))


def test_digest_reference_skips_the_tag_lookup(tmp_path):
    root, digests = multi(tmp_path)
    image = open_image(root, None, digests["arm64"], Platform.parse("linux/amd64"))
    assert image.manifest_digest == digests["arm64"]


def test_index_cycle_is_refused(tmp_path):
    # Content addressing makes a real cycle impossible, so a cycle means a
    # blob rewritten under its old digest: A -> B -> A.
    root = make_layout(tmp_path / "layout", [[member("a")]])
    blobs = root / "blobs/sha256"
    a_desc = _put(root, {"schemaVersion": 2, "mediaType": INDEX, "manifests": []})
    b_desc = _put(root, {"schemaVersion": 2, "mediaType": INDEX,
                         "manifests": [{"mediaType": INDEX, **a_desc}]})
    a_doc = {"schemaVersion": 2, "mediaType": INDEX,
             "manifests": [{"mediaType": INDEX, **b_desc}]}
    (blobs / a_desc["digest"][7:]).write_text(json.dumps(a_doc))
    (root / "index.json").write_text(json.dumps(
        {"schemaVersion": 2, "manifests": [{"mediaType": INDEX, **b_desc}]}))
    with pytest.raises(SourceError,
                       match="does not match its digest|includes itself|its descriptor says"):
        open_image(root, None, None, Platform.parse("linux/amd64"))


def test_tampered_manifest_is_refused(tmp_path):
    root = make_layout(tmp_path / "layout", [[member("a")]])
    desc = json.loads((root / "index.json").read_text())["manifests"][0]
    blob = root / "blobs/sha256" / desc["digest"][7:]
    blob.write_bytes(blob.read_bytes().replace(b"schemaVersion", b"schemaversion"))
    with pytest.raises(SourceError, match="does not match its digest"):
        open_image(root)


def test_config_with_wrong_diff_id_count_is_refused(tmp_path):
    root = make_layout(tmp_path / "layout", [[member("a")], [member("b")]])
    index = json.loads((root / "index.json").read_text())
    manifest = json.loads((root / "blobs/sha256" / index["manifests"][0]["digest"][7:])
                          .read_text())
    manifest["layers"] = manifest["layers"][:1]
    index["manifests"][0].update(_put(root, manifest))
    (root / "index.json").write_text(json.dumps(index))
    with pytest.raises(SourceError, match="2 diff_ids for 1 layers"):
        open_image(root)


def test_schema1_is_refused(tmp_path):
    root = make_layout(tmp_path / "layout", [[member("a")]])
    desc = _put(root, {"schemaVersion": 1, "name": "x", "fsLayers": []})
    (root / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": MANIFEST, **desc}]}))
    with pytest.raises(SourceError, match="schema 1"):
        open_image(root)


@pytest.mark.parametrize(("text", "ref"), [
    ("oci:/x/lay", LocalRef("oci", "/x/lay")),
    ("oci:/x/lay:v1", LocalRef("oci", "/x/lay", tag="v1")),
    ("oci:lay@sha256:" + "a" * 64, LocalRef("oci", "lay", digest="sha256:" + "a" * 64)),
    ("docker-archive:/tmp/s.tar", LocalRef("docker-archive", "/tmp/s.tar")),
    ("alpine", None),
])
def test_local_references_parse(text, ref):
    assert parse_local(text) == ref


def test_bad_digest_in_reference_is_refused():
    with pytest.raises(SourceError, match="not a sha256 digest"):
        parse_local("oci:lay@sha256:xyz")


@pytest.mark.parametrize("compression", ["gz", "zst", None])
def test_a_tampered_layer_blob_is_reported_by_its_digest_not_its_content(tmp_path, compression):
    import ociext4
    from ociext4.errors import DigestMismatch

    root = make_layout(tmp_path / "layout", [[member("f", bytes(range(256)) * 64)]],
                       compression)
    desc = json.loads((root / "index.json").read_text())["manifests"][0]
    manifest = json.loads((root / "blobs/sha256" / desc["digest"][7:]).read_bytes())
    blob = root / "blobs/sha256" / manifest["layers"][0]["digest"][7:]
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match="does not match its digest"):
        ociext4.unpack(f"oci:{root}", tmp_path / "o.img", fsync=False)
    assert not list(tmp_path.glob("o.img*"))

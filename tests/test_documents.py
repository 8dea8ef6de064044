"""Broken documents through every local source, end to end through the
command line: an OCI layout and a docker save archive whose index,
manifest or config has one field dropped, retyped, nested or enlarged.  Each
run ends in an image or in one `ociext4: error:` line with exit 1, never a
traceback, and nothing half-written is left behind.  (The registry source
gets the same in tests/registry/test_registry_documents.py.)"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import assert_image_or_one_line, ociext4
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocilayouts import layer_tar, member, write_tar_file
from support.mutations import Mutation, dumps, mutations

LAYER = layer_tar([member("etc/hello", b"hi\n"), member("bin/sh", b"#!x\n", mode=0o755)])
DIFF_ID = "sha256:" + hashlib.sha256(LAYER).hexdigest()
CONFIG = {"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"], "Env": ["A=1"]},
          "rootfs": {"type": "layers", "diff_ids": [DIFF_ID]}}


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def manifest_for(config: bytes) -> dict[str, Any]:
    return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": _digest(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": DIFF_ID, "size": len(LAYER)}]}


def index_for(manifest: bytes) -> dict[str, Any]:
    return {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _digest(manifest),
        "size": len(manifest), "annotations": {"org.opencontainers.image.ref.name": "latest"},
        "platform": {"os": "linux", "architecture": "amd64"}}]}


def oci_layout(root: Path, which: str, mutation: Mutation) -> Path:
    """A layout whose `which` document carries the mutation; the documents
    above it point at the mutated one."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def put(data: bytes) -> bytes:
        (blobs / _digest(data)[7:]).write_bytes(data)
        return data

    put(LAYER)
    config = put(dumps(mutation.apply(CONFIG) if which == "config" else CONFIG))
    manifest_doc = manifest_for(config)
    manifest = put(dumps(mutation.apply(manifest_doc) if which == "manifest" else manifest_doc))
    index_doc = index_for(manifest)
    (root / "index.json").write_bytes(dumps(mutation.apply(index_doc) if which == "index"
                                            else index_doc))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root


def docker_archive(path: Path, which: str, mutation: Mutation) -> Path:
    config = dumps(mutation.apply(CONFIG) if which == "config" else CONFIG)
    top = [{"Config": "cfg.json", "RepoTags": ["t:latest"], "Layers": ["l/layer.tar"]}]
    top_raw = dumps(mutation.apply(top) if which == "manifest.json" else top)
    return write_tar_file(path, {"l/layer.tar": LAYER, "cfg.json": config,
                                 "manifest.json": top_raw})


def assert_one_line_or_image(out_dir: Path, source: str) -> None:
    proc = ociext4("unpack", source, out_dir / "out.img", "--no-fsync", check=False)
    assert_image_or_one_line(proc, out_dir, "out.img")


def test_the_unbroken_documents_unpack(tmp_path):
    """The baseline the mutations start from is a valid image."""
    (tmp_path / "a").mkdir()
    src = oci_layout(tmp_path / "layout", "none", Mutation(("x",), "drop"))
    ociext4("unpack", f"oci:{src}", tmp_path / "a" / "out.img")
    arc = docker_archive(tmp_path / "save.tar", "none", Mutation(("x",), "drop"))
    ociext4("unpack", f"docker-archive:{arc}", tmp_path / "a" / "out2.img")


DOCS = {"index": lambda: index_for(b"m"), "manifest": lambda: manifest_for(b"c"),
        "config": lambda: CONFIG}


@pytest.mark.parametrize("which", ["index", "manifest", "config"])
@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_broken_document_in_an_oci_layout_gives_an_image_or_one_line(which, data):
    mutation = data.draw(mutations(DOCS[which]()))
    with tempfile.TemporaryDirectory() as tmp:
        src = oci_layout(Path(tmp) / "layout", which, mutation)
        (Path(tmp) / "out").mkdir()
        assert_one_line_or_image(Path(tmp) / "out", f"oci:{src}")


@pytest.mark.parametrize("which", ["manifest.json", "config"])
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_a_broken_document_in_a_docker_archive_gives_an_image_or_one_line(which, data):
    doc: Any = CONFIG if which == "config" else \
        [{"Config": "cfg.json", "RepoTags": ["t:latest"], "Layers": ["l/layer.tar"]}]
    mutation = data.draw(mutations(doc))
    with tempfile.TemporaryDirectory() as tmp:
        src = docker_archive(Path(tmp) / "save.tar", which, mutation)
        (Path(tmp) / "out").mkdir()
        assert_one_line_or_image(Path(tmp) / "out", f"docker-archive:{src}")


@pytest.mark.parametrize(("which", "mutation", "message"), [
    ("manifest", Mutation(("config",), "drop"), r"manifest sha256:[0-9a-f]{64}: config: missing"),
    ("manifest", Mutation(("layers", 0, "size"), "retype", "big"),
     r'manifest sha256:[0-9a-f]{64}: layers\[0\]\.size: expected an integer, got "big"'),
    ("manifest", Mutation(("layers",), "nest", False),
     r"manifest sha256:[0-9a-f]{64}: layers: expected an array, got an object"),
    ("index", Mutation(("manifests", 0, "digest"), "drop"),
     r"index.json: manifests\[0\]\.digest: missing"),
    ("index", Mutation(("manifests", 0, "platform"), "retype", "linux/amd64"),
     r'index.json: manifests\[0\]\.platform: expected an object, got "linux/amd64"'),
    ("config", Mutation(("rootfs",), "retype", "layers"),
     r'config sha256:[0-9a-f]{64}: rootfs: expected an object, got "layers"'),
    ("config", Mutation(("architecture",), "retype", 5),
     r"config sha256:[0-9a-f]{64}: architecture: expected a string, got 5"),
])
def test_the_issues_broken_documents_name_the_field(tmp_path, which, mutation, message):
    src = oci_layout(tmp_path / "layout", which, mutation)
    proc = ociext4("unpack", f"oci:{src}", tmp_path / "out.img", check=False)
    assert proc.returncode == 1
    assert re.fullmatch(f"ociext4: error: {re.escape(str(src))}: {message}",
                        proc.stderr.strip()), proc.stderr


def test_a_bad_platform_option_is_one_line_not_a_traceback(tmp_path):
    src = oci_layout(tmp_path / "layout", "none", Mutation(("x",), "drop"))
    for value in ("arm64/x/y/z", "frob", "linux/"):
        proc = ociext4("unpack", f"oci:{src}", tmp_path / "o.img", "--platform", value,
                       check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert proc.stderr.startswith("ociext4: error: unpack: argument --platform: ")


def test_a_platform_the_image_lacks_is_refused_listing_what_it_has(tmp_path):
    src = oci_layout(tmp_path / "layout", "none", Mutation(("x",), "drop"))
    proc = ociext4("unpack", f"oci:{src}", tmp_path / "o.img", "--platform", "arm64",
                   check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip() == (f"ociext4: error: {src}: no manifest for linux/arm64 "
                                   "(has: linux/amd64)")
    ociext4("unpack", f"oci:{src}", tmp_path / "o.img", "--platform", "AMD64")


def test_unpack_writes_the_manifest_digest_to_the_digestfile(tmp_path):
    src = oci_layout(tmp_path / "layout", "none", Mutation(("x",), "drop"))
    ociext4("unpack", f"oci:{src}", tmp_path / "o.img", "--digestfile", tmp_path / "d")
    desc = json.loads((src / "index.json").read_text())["manifests"][0]
    assert (tmp_path / "d").read_text() == desc["digest"]

"""Building OCI image layouts for tests with tarfile (never with the code
under test): layers from (TarInfo, bytes) members, gzip/zstd/plain."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

import zstandard

Member = tuple[tarfile.TarInfo, bytes]
LAYER_TYPES = {None: "application/vnd.oci.image.layer.v1.tar",
               "gz": "application/vnd.oci.image.layer.v1.tar+gzip",
               "zst": "application/vnd.oci.image.layer.v1.tar+zstd"}


def member(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE, mode: int = 0o644,
           link: str = "", mtime: int = 1_700_000_000) -> Member:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.linkname, info.mtime = kind, mode, link, mtime
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def _put(root: Path, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    path = root / "blobs" / "sha256" / digest[7:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return digest, len(data)


def make_layout(root: Path, layers: list[list[Member]], compression: str | None = "gz",
                tag: str = "latest", config: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    descs, diff_ids = [], []
    for layer in layers:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for info, data in layer:
                tf.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        blob = {None: raw, "gz": gzip.compress(raw, mtime=0),
                "zst": zstandard.ZstdCompressor().compress(raw)}[compression]
        digest, size = _put(root, blob)
        descs.append({"mediaType": LAYER_TYPES[compression], "digest": digest, "size": size})
    cfg = {"architecture": "amd64", "os": "linux", "config": config or {},
           "rootfs": {"type": "layers", "diff_ids": diff_ids}}
    cdigest, csize = _put(root, json.dumps(cfg).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                           "digest": cdigest, "size": csize}, "layers": descs}
    mdigest, msize = _put(root, json.dumps(manifest).encode())
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest,
        "size": msize, "annotations": {"org.opencontainers.image.ref.name": tag},
        "platform": {"os": "linux", "architecture": "amd64"}}]}
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return root


def make_docker_archive(path: Path, layers: list[list[Member]], modern: bool = False,
                        config: dict | None = None) -> Path:
    """`docker save` output: legacy (<id>/layer.tar) or Docker 25+ (an OCI
    layout inside, plus manifest.json pointing into blobs/)."""
    diff_ids, layer_paths = [], []
    blobs: dict[str, bytes] = {}
    for i, layer in enumerate(layers):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for info, data in layer:
                tf.addfile(info, io.BytesIO(data))
        raw = buf.getvalue()
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        if modern:
            name = "blobs/sha256/" + hashlib.sha256(raw).hexdigest()
        else:
            name = f"{i:064x}/layer.tar"
        blobs[name] = raw
        layer_paths.append(name)
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": config or {},
                      "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    cfg_name = ("blobs/sha256/" if modern else "") + hashlib.sha256(cfg).hexdigest() + \
        ("" if modern else ".json")
    blobs[cfg_name] = cfg
    blobs["manifest.json"] = json.dumps([{"Config": cfg_name, "RepoTags": ["test:latest"],
                                          "Layers": layer_paths}]).encode()
    if modern:
        blobs["oci-layout"] = b'{"imageLayoutVersion": "1.0.0"}'
        blobs["index.json"] = b'{"schemaVersion": 2, "manifests": []}'
    with tarfile.open(path, "w") as tf:
        for name, data in blobs.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path

"""`docker save` archives as Docker writes them: a layer that repeats an
earlier one stored as a symlink member, and several images in one archive,
chosen as skopeo chooses them (`:NAME:TAG`, `:@INDEX`)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from cli_helpers import ociext4
from ocilayouts import layer_tar, make_layout, member
from support.fscheck import compare_snapshots, mounted, snapshot

D = tarfile.DIRTYPE
SAME = [member("etc", kind=D, mode=0o755), member("etc/same", b"same\n")]
LAYERS = [SAME, [member("etc/other", b"other\n"), member("etc/.wh.same")], SAME]


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def legacy_archive(path: Path, images: dict[str, list[list]]) -> Path:
    """Legacy docker save output holding `images` (tag -> layers); a layer
    equal to one written before is a symlink to it, as Docker writes it."""
    written: dict[str, str] = {}
    entries = []
    with tarfile.open(path, "w") as tf:
        for n, (tag, layers) in enumerate(images.items()):
            paths, diff_ids = [], []
            for i, layer in enumerate(layers):
                raw = layer_tar(layer)
                diff = hashlib.sha256(raw).hexdigest()
                diff_ids.append("sha256:" + diff)
                name = f"{n:02d}{i:062x}/layer.tar"
                if diff in written:
                    link = tarfile.TarInfo(name)
                    link.type = tarfile.SYMTYPE
                    link.linkname = f"../{written[diff]}"
                    tf.addfile(link)
                else:
                    _add(tf, name, raw)
                    written[diff] = name
                paths.append(name)
            cfg = json.dumps({"architecture": "amd64", "os": "linux",
                              "config": {"Cmd": [tag]},
                              "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
            cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
            _add(tf, cfg_name, cfg)
            entries.append({"Config": cfg_name, "RepoTags": [tag], "Layers": paths})
        _add(tf, "manifest.json", json.dumps(entries).encode())
    return path


def _tree(img: Path) -> list:
    with mounted(img) as m:
        return snapshot(m)


@pytest.mark.needs_root_loop
def test_a_repeated_layer_stored_as_a_symlink_unpacks_like_the_oci_layout(tmp_path):
    archive = legacy_archive(tmp_path / "saved.tar", {"app:1": LAYERS})
    with tarfile.open(archive) as tf:
        assert any(m.issym() for m in tf)   # the fixture is what Docker writes
    layout = make_layout(tmp_path / "layout", LAYERS, None)
    ociext4("unpack", f"docker-archive:{archive}", tmp_path / "a.img")
    ociext4("unpack", f"oci:{layout}", tmp_path / "b.img")
    assert compare_snapshots(_tree(tmp_path / "b.img"), _tree(tmp_path / "a.img")) == []


def _cmd(img: Path) -> list[str]:
    return json.loads(Path(f"{img}.json").read_text())["config"]["Cmd"]


def test_an_archive_of_several_images_is_read_by_name_or_index(tmp_path):
    archive = legacy_archive(tmp_path / "two.tar", {"docker.io/library/one:latest": [SAME],
                                                    "two:v2": LAYERS})
    for choice, want in ((":one", "docker.io/library/one:latest"),
                         (":docker.io/library/one:latest", "docker.io/library/one:latest"),
                         (":two:v2", "two:v2"), (":@1", "two:v2"), ("@0",
                                                                    "docker.io/library/one:latest")):
        out = tmp_path / f"{choice.strip(':@').replace('/', '_').replace(':', '_')}.img"
        ociext4("unpack", f"docker-archive:{archive}{choice}", out, "--no-fsync")
        assert _cmd(out) == [want], choice


def test_an_ambiguous_or_unknown_choice_lists_the_images(tmp_path):
    archive = legacy_archive(tmp_path / "two.tar", {"one:latest": [SAME], "two:v2": [SAME]})
    listing = "@0: one:latest; @1: two:v2"
    for suffix, message in (("", f"holds 2 images; choose one with docker-archive:FILE:NAME:TAG "
                                 f"or :@INDEX ({listing})"),
                            (":three", f"no image tagged 'three:latest' ({listing})"),
                            (":@2", f"no image @2 ({listing})")):
        proc = ociext4("unpack", f"docker-archive:{archive}{suffix}", tmp_path / "o.img",
                       check=False)
        assert proc.returncode == 1
        assert proc.stderr == f"ociext4: error: {archive}: {message}\n"
        assert not list(tmp_path.glob("o.img*"))


def test_a_symlink_loop_in_the_archive_is_an_error(tmp_path):
    path = tmp_path / "loop.tar"
    with tarfile.open(path, "w") as tf:
        for a, b in (("a/layer.tar", "../b/layer.tar"), ("b/layer.tar", "../a/layer.tar")):
            link = tarfile.TarInfo(a)
            link.type = tarfile.SYMTYPE
            link.linkname = b
            tf.addfile(link)
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
            "type": "layers", "diff_ids": ["sha256:" + "0" * 64]}}).encode()
        _add(tf, "c.json", cfg)
        _add(tf, "manifest.json", json.dumps([{"Config": "c.json", "RepoTags": [],
                                               "Layers": ["a/layer.tar"]}]).encode())
    proc = ociext4("unpack", f"docker-archive:{path}", tmp_path / "o.img", check=False)
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"ociext4: error: {path}: too many levels of links at ")

"""`ociext4 unpack oci:DIR out.img` end to end, on layouts built with tarfile."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from cli_helpers import dumpe2fs, ociext4
from ocilayouts import cases, make_docker_archive, make_layout, member
from support.fscheck import Entry, assert_same_tree, compare_snapshots, mounted, snapshot

pytestmark = pytest.mark.needs_root_loop

D = tarfile.DIRTYPE


def layers() -> list[list]:
    return [
        [member("etc", kind=D, mode=0o755), member("etc/passwd", b"root:x:0:0\n"),
         member("usr", kind=D, mode=0o755), member("usr/lib", kind=D, mode=0o755),
         member("lib", kind=tarfile.SYMTYPE, link="usr/lib", mode=0o777),
         member("opq", kind=D, mode=0o755), member("opq/old", b"old"),
         member("orig", b"shared"), member("gone", b"x" * 100_000)],
        [member("lib/libc.so", b"ELF"),                      # through the symlinked parent
         member("alias", kind=tarfile.LNKTYPE, link="orig"),  # hard link to a lower file
         member("opq/new", b"new"), member("opq/.wh..wh..opq"),  # opaque after new files
         member(".wh.gone")],
        [member(".wh.orig"), member("etc/passwd", b"root:x:0:0:root\n")],
    ]


@pytest.mark.parametrize("compression", [None, "gz", "zst"])
def test_layers_flatten_under_the_oci_rules(tmp_path, compression):
    layout = make_layout(tmp_path / "layout", layers(), compression,
                         config={"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"})
    img = tmp_path / "out.img"
    ociext4("unpack", f"oci:{layout}:latest", img)
    with mounted(img) as mnt:
        snap = snapshot(mnt)
        assert (mnt / "usr/lib/libc.so").read_bytes() == b"ELF"
        assert (mnt / "alias").read_bytes() == b"shared"
        assert (mnt / "etc/passwd").read_bytes() == b"root:x:0:0:root\n"
    assert sorted(snap) == [".", "alias", "etc", "etc/passwd", "lib", "opq", "opq/new", "usr",
                            "usr/lib", "usr/lib/libc.so"]
    assert isinstance(snap["opq/new"], Entry)
    meta = json.loads(Path(f"{img}.json").read_text())
    assert meta["config"] == {"Env": ["PATH=/bin"], "Cmd": ["sh"], "WorkingDir": "/"}


def test_deleted_data_is_not_left_allocated(tmp_path):
    big = b"z" * (8 << 20)
    layout = make_layout(tmp_path / "layout", [[member("big", big)], [member(".wh.big")]])
    img = tmp_path / "out.img"
    ociext4("unpack", f"oci:{layout}", img, "--free", "0")
    assert img.stat().st_blocks * 512 < 4 << 20


def test_corrupted_layer_is_an_error_naming_the_layer(tmp_path):
    layout = make_layout(tmp_path / "layout", [[member("a", b"hello" * 1000)]], None)
    blob = max((layout / "blobs/sha256").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(blob.read_bytes())
    data[600] ^= 1
    blob.write_bytes(bytes(data))
    img = tmp_path / "out.img"
    proc = ociext4("unpack", f"oci:{layout}", img, check=False)
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1
    assert "does not match" in proc.stderr and blob.name in proc.stderr
    assert not img.exists()


def test_unknown_tag_is_a_one_line_error(tmp_path):
    layout = make_layout(tmp_path / "layout", [[member("a")]])
    proc = ociext4("unpack", f"oci:{layout}:nope", tmp_path / "out.img", check=False)
    assert proc.returncode == 1
    assert proc.stderr == f"ociext4: error: {layout}: no image tagged 'nope'\n"


@pytest.mark.parametrize("modern", [False, True])
def test_docker_save_archive_unpacks_like_the_oci_layout(tmp_path, modern):
    archive = make_docker_archive(tmp_path / "saved.tar", layers(), modern=modern,
                                  config={"Cmd": ["sh"]})
    layout = make_layout(tmp_path / "layout", layers(), None)
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    ociext4("unpack", f"docker-archive:{archive}", a)
    ociext4("unpack", f"oci:{layout}", b)
    with mounted(a) as ma:
        sa = snapshot(ma)
    with mounted(b) as mb:
        sb = snapshot(mb)
    assert compare_snapshots(sb, sa) == []
    assert json.loads(Path(f"{a}.json").read_text())["config"] == {"Cmd": ["sh"]}


def test_docker_save_archive_with_a_missing_layer_is_an_error(tmp_path):
    archive = make_docker_archive(tmp_path / "saved.tar", layers())
    with tarfile.open(archive) as tf:
        keep = [(m, tf.extractfile(m).read()) for m in tf if not m.name.startswith(f"{1:064x}")]
    cut = tmp_path / "cut.tar"
    with tarfile.open(cut, "w") as tf:
        for m, data in keep:
            tf.addfile(m, io.BytesIO(data))
    proc = ociext4("unpack", f"docker-archive:{cut}", tmp_path / "out.img", check=False)
    assert proc.returncode == 1
    assert proc.stderr == (f"ociext4: error: {cut}: archive has no member "
                           f"'{1:064x}/layer.tar'\n")


def _umoci_rootfs(layout: Path, bundle: Path) -> Path:
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)], check=True,
                   capture_output=True)
    return bundle / "rootfs"


needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")


@needs_umoci
@pytest.mark.parametrize("compression", [None, "gz", "zst"])
@pytest.mark.parametrize("case", sorted(cases()))
def test_each_rule_case_unpacks_like_umoci(tmp_path, case, compression):
    stack = cases()[case]
    layout = make_layout(tmp_path / "layout", stack, compression)
    # umoci reads gzip and plain layers only: a zstd image is compared with
    # its gzip twin.
    twin = layout if compression != "zst" else make_layout(tmp_path / "twin", stack, "gz")
    rootfs = _umoci_rootfs(twin, tmp_path / "bundle")
    img = tmp_path / "out.img"
    ociext4("unpack", f"oci:{layout}:latest", img)
    expected = snapshot(rootfs)
    # umoci stamps the root directory with its own time and mode.
    expected["."].mtime_ns = expected["."].mode = None
    assert_same_tree(expected, img)


def test_stats_json_reports_every_layer_and_the_totals(tmp_path):
    stack = cases()["file_dir_file"]
    layout = make_layout(tmp_path / "layout", stack, "gz")
    proc = ociext4("unpack", f"oci:{layout}", tmp_path / "out.img", "--stats=json",
                   "--progress")
    doc = json.loads(proc.stdout)
    names = [s["stage"] for s in doc["stages"]]
    assert names == ["layer 1", "layer 2", "layer 3", "metadata", "total"]
    layer_stats = doc["stages"][:3]
    assert all(s["compression"] == "gzip" and s["bytes_out"] >= 10240 for s in layer_stats)
    assert [s["entries"] for s in layer_stats] == [len(layer) for layer in stack]


def test_same_image_gives_the_same_bytes_and_a_uuid_from_its_digest(tmp_path):
    layout = make_layout(tmp_path / "layout", cases()["symlinked_parent"], "gz")
    a, b = tmp_path / "a.img", tmp_path / "b.img"
    ociext4("unpack", f"oci:{layout}", a)
    ociext4("unpack", f"oci:{layout}", b)
    assert a.read_bytes() == b.read_bytes()
    other = make_layout(tmp_path / "other", cases()["file_dir_file"], "gz")
    c = tmp_path / "c.img"
    ociext4("unpack", f"oci:{other}", c)
    uuids = {dumpe2fs(p)["Filesystem UUID"] for p in (a, c)}
    assert len(uuids) == 2


def test_layer_whose_media_type_says_gzip_but_holds_zstd_is_read_by_its_bytes(tmp_path):
    layout = make_layout(tmp_path / "layout", cases()["file_dir_file"], "zst")
    index = json.loads((layout / "index.json").read_text())
    mpath = layout / "blobs/sha256" / index["manifests"][0]["digest"][7:]
    manifest = json.loads(mpath.read_text())
    for layer in manifest["layers"]:
        layer["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    data = json.dumps(manifest).encode()
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs/sha256" / digest).write_bytes(data)
    index["manifests"][0].update({"digest": "sha256:" + digest, "size": len(data)})
    (layout / "index.json").write_text(json.dumps(index))
    img = tmp_path / "out.img"
    ociext4("unpack", f"oci:{layout}", img)
    with mounted(img) as mnt:
        assert (mnt / "p").read_bytes() == b"file again"

"""The public Python API, used as a build script would: `import ociext4`
and nothing else of the package, asserting on the returned records."""

from __future__ import annotations

import io
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from ocilayouts import make_docker_archive, make_layout, member
from runimages import busybox_layout
from support.fscheck import e2fsck_clean, file_sha256

import ociext4
from ociext4.errors import DocumentError, NoMatchingPlatform, SourceError

LAYERS = [[member("etc/hello", b"hi\n"), member("gone", b"x")], [member(".wh.gone")]]


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    return make_layout(tmp_path / "layout", LAYERS, config={"Cmd": ["sh"], "Env": ["A=1"]})


def test_import_loads_only_the_version_until_an_operation_is_used():
    code = ("import sys, ociext4; assert 'ociext4.api' not in sys.modules; "
            "ociext4.unpack; assert 'ociext4.api' in sys.modules; "
            "assert 'httpx' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.needs_root_loop
def test_unpack_returns_the_image_its_digests_config_and_stats(layout, tmp_path):
    out = tmp_path / "rootfs.img"
    result = ociext4.unpack(f"oci:{layout}", out)
    assert result.image == out and out.is_file()
    assert result.manifest_digest.startswith("sha256:")
    assert result.index_digest is None   # the layout's index.json is no index blob
    assert result.platform == ociext4.Platform.parse("linux/amd64")
    assert result.config.config.cmd == ("sh",) and result.config.config.env == ("A=1",)
    assert isinstance(result.uuid, uuid.UUID)
    assert [s.entries for s in result.stats.layers] == [2, 1]
    assert result.stats.info.path == out
    e2fsck_clean(out)
    # The sidecar names the image it describes.
    side = (Path(f"{out}.json")).read_text()
    assert str(result.uuid) in side and result.manifest_digest in side
    # Same image, same bytes, same UUID.
    again = ociext4.unpack(f"oci:{layout}", tmp_path / "again.img")
    assert again.uuid == result.uuid
    assert file_sha256(tmp_path / "again.img") == file_sha256(out)


def test_unpack_takes_options_as_the_command_line_does(layout, tmp_path):
    want = uuid.UUID("0b3c0a3e-5c43-4d2c-9d3f-3f4b8b4a9c11")
    result = ociext4.unpack(f"oci:{layout}", tmp_path / "o.img", size=64 << 20, journal=False,
                            uuid=want, label="root", platform="amd64", fsync=False)
    assert result.uuid == want and result.stats.info.size == 64 << 20


def test_unpack_reports_layers_through_progress(layout, tmp_path):
    seen: list[tuple[int, int]] = []

    class Watch(ociext4.Progress):
        def layer(self, index: int, count: int, stats: object) -> None:
            seen.append((index, count))

    ociext4.unpack(f"oci:{layout}", tmp_path / "o.img", progress=Watch(), fsync=False)
    assert seen and seen[-1] == (1, 2) and {c for _, c in seen} == {2}


def test_unpack_of_a_docker_archive_chooses_by_name(tmp_path):
    arc = make_docker_archive(tmp_path / "save.tar", LAYERS)
    result = ociext4.unpack(f"docker-archive:{arc}:test:latest", tmp_path / "o.img", fsync=False)
    assert result.manifest_digest.startswith("sha256:")
    with pytest.raises(SourceError, match=r"no image tagged 'other:latest' \(@0: test:latest\)"):
        ociext4.unpack(f"docker-archive:{arc}:other", tmp_path / "p.img", fsync=False)
    assert not (tmp_path / "p.img").exists()


def test_errors_are_typed_and_carry_data(layout, tmp_path):
    with pytest.raises(NoMatchingPlatform) as e:
        ociext4.unpack(f"oci:{layout}", tmp_path / "o.img", platform="linux/s390x")
    assert e.value.wanted == ociext4.Platform.parse("s390x")
    assert e.value.available == [ociext4.Platform.parse("linux/amd64")]
    (layout / "index.json").write_text('{"schemaVersion": 2, "manifests": {}}')
    with pytest.raises(DocumentError) as d:
        ociext4.unpack(f"oci:{layout}", tmp_path / "o.img")
    assert (d.value.field, d.value.problem) == ("manifests", "expected an array, got an object")
    assert list(tmp_path.glob("o.img*")) == []


def test_inspect_resolves_without_writing(layout):
    result = ociext4.inspect(f"oci:{layout}")
    assert result.image is not None
    assert [lay.diff_id for lay in result.image.layers][0].startswith("sha256:")
    assert result.image.config.config.cmd == ("sh",)


def test_inspect_without_the_hosts_platform_lists_the_platforms(tmp_path):
    root = make_layout(tmp_path / "l", LAYERS)
    index = (root / "index.json").read_text().replace('"amd64"', '"riscv64"')
    (root / "index.json").write_text(index)
    result = ociext4.inspect(f"oci:{root}")
    assert result.image is None
    assert result.platforms == (ociext4.Platform.parse("linux/riscv64"),)


@pytest.mark.needs_root_loop
def test_mkfs_from_a_directory_returns_the_image(tmp_path):
    src = tmp_path / "tree"
    (src / "d").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"data")
    out = tmp_path / "t.img"
    (tmp_path / "t.img.json").write_text("{}")   # an old unpack's sidecar
    result = ociext4.mkfs(src, out, label="t", fsync=False)
    assert result.image == out and result.info.inodes > 0
    e2fsck_clean(out)
    assert not (tmp_path / "t.img.json").exists()


@pytest.fixture
def run_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("OCIEXT4_CACHE", str(tmp_path / "cache"))
    yield tmp_path / "cache"


def test_run_boots_and_returns_the_exit_code(tmp_path, run_cache):
    bb = busybox_layout(tmp_path / "bb")
    img = ociext4.unpack(f"oci:{bb}", tmp_path / "bb.img").image
    out, err = io.BytesIO(), io.BytesIO()
    result = ociext4.run(img, ["sh", "-c", "echo $A:$(pwd); echo e >&2; exit 7"],
                         env={"A": "x"}, workdir="/tmp", accel="tcg", stdout=out, stderr=err)
    assert result.exit_code == 7 and result.error is None
    assert out.getvalue() == b"x:/tmp\n" and err.getvalue() == b"e\n"


def test_api_defaults_match_the_command_line():
    """The CLI passes its defaults through; they must be the API's own."""
    import inspect as pyinspect

    from ociext4_cli.imageopts import image_kwargs
    from ociext4_cli.main import build_parser

    for command, func in (("unpack", ociext4.unpack), ("mkfs", ociext4.mkfs)):
        args = build_parser().parse_args([command, "src", "out.img"])
        params = pyinspect.signature(func).parameters
        for key, value in image_kwargs(args).items():
            assert params[key].default == value, (command, key)

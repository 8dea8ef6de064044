"""An unpack from a registry reads a layer while it downloads (ociext4/
registry/follow.py), through a proxy that sends blobs slowly: it starts on
the bottom layer before its last byte is in, keeps to what the blob holds
when the download is cut and resumed or starts over, and fails on a bad
byte naming the layer, leaving neither an image nor the blob behind."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import pytest
from conftest import BASIC_CREDS, manifest_desc, write_auth
from ocilayouts import make_layout, member
from support.faultproxy import FaultProxy
from support.fscheck import e2fsck_clean, file_sha256
from support.registry import Registry

from ociext4 import api
from ociext4.errors import DigestMismatch, SourceError
from ociext4.layers import LayerStats
from ociext4.model import Image
from ociext4.registry.config import registry_options


class Events(api.Progress):
    """The bytes each layer had downloaded when the unpack first read it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.downloaded: dict[str, int] = {}
        self.layers: list[str] = []
        self.at_first_read: dict[int, int] = {}

    def begin(self, image: Image, cached: set[str]) -> None:
        self.layers = [layer.digest for layer in image.layers]

    def advance(self, digest: str, nbytes: int) -> None:
        with self.lock:
            self.downloaded[digest] = self.downloaded.get(digest, 0) + nbytes

    def layer(self, index: int, count: int, stats: LayerStats) -> None:
        with self.lock:
            if stats.bytes_in and index not in self.at_first_read:
                self.at_first_read[index] = self.downloaded.get(self.layers[index], 0)


@pytest.fixture
def ref(proxy: FaultProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("REGISTRY_AUTH_FILE",
                       str(write_auth(tmp_path / "auth.json", proxy.host, *BASIC_CREDS)))
    return f"{proxy.host}/test/img"


@pytest.fixture
def local_image(image_layout: Path, tmp_path: Path) -> bytes:
    out = tmp_path / "layout.img"
    api.unpack(f"oci:{image_layout}", out)
    return file_sha256(out)


def bottom(image_layout: Path) -> dict:
    blobs = image_layout / "blobs" / "sha256"
    manifest = json.loads((blobs / manifest_desc(image_layout)["digest"][7:]).read_bytes())
    return manifest["layers"][0]


def test_the_bottom_layer_is_read_before_its_download_ends(proxy, ref, image_layout, cache,
                                                           tmp_path, local_image):
    layer = bottom(image_layout)
    proxy.set("slow", digest=layer["digest"])
    events = Events()
    out = tmp_path / "reg.img"
    api.unpack(ref, out, cache=cache, progress=events)
    assert 0 < events.at_first_read[0] < layer["size"], events.at_first_read
    e2fsck_clean(out)
    assert file_sha256(out) == local_image
    assert (cache / "blobs" / "sha256" / layer["digest"][7:]).exists()


@pytest.mark.parametrize("fault", ["slow-cut", "slow-restart"])
def test_a_layer_read_while_its_download_is_cut_and_resumed_or_restarted_is_whole(
        proxy, ref, image_layout, cache, tmp_path, local_image, fault):
    layer = bottom(image_layout)
    proxy.set(fault, times=2, digest=layer["digest"])
    events = Events()
    out = tmp_path / "reg.img"
    api.unpack(ref, out, cache=cache, progress=events)
    tries = [s for s in proxy.blob_requests() if s.path.endswith(layer["digest"])]
    assert [t.status for t in tries] == [200, 206 if fault == "slow-cut" else 200]
    assert tries[1].headers["Range"] == f"bytes={layer['size'] // 2}-"
    assert 0 < events.at_first_read[0] < layer["size"]
    assert file_sha256(out) == local_image


def test_a_bad_byte_in_a_layer_read_while_it_downloads_fails_naming_it(
        proxy, ref, image_layout, cache, tmp_path):
    layer = bottom(image_layout)
    proxy.set("slow-corrupt", digest=layer["digest"])
    out = tmp_path / "reg.img"
    with pytest.raises(DigestMismatch, match=f"layer {layer['digest']}.*does not match"):
        api.unpack(ref, out, cache=cache)
    assert not out.exists() and list(tmp_path.glob("reg.img*")) == []
    assert not (cache / "blobs" / "sha256" / layer["digest"][7:]).exists()


def test_the_cli_reports_a_bad_byte_read_while_downloading_in_one_line(
        proxy, ref, image_layout, cache, tmp_path):
    from cli_helpers import ociext4
    layer = bottom(image_layout)
    proxy.set("slow-corrupt", digest=layer["digest"])
    proc = ociext4("unpack", ref, tmp_path / "reg.img", check=False)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ociext4: error: "), proc.stderr
    assert f"layer {layer['digest']}" in lines[0] and "does not match its digest" in lines[0]
    assert list(tmp_path.glob("reg.img*")) == []


@pytest.fixture(scope="module")
def climbing_layout(tmp_path_factory: pytest.TempPathFactory, basic_registry: Registry) -> Path:
    """An image whose one layer opens with a path out of the root, then holds
    3 MiB more: the unpack fails on its first entry, long before the blob
    is in."""
    layout = make_layout(tmp_path_factory.mktemp("climb") / "layout",
                         [[member("../escape", b"x"),
                           member("big.bin", random.Random(5).randbytes(3 << 20))]])
    basic_registry.push(layout, "test/climb")
    return layout


def test_an_error_in_a_layer_read_while_it_downloads_ends_the_unpack_without_waiting(
        proxy, climbing_layout, cache, tmp_path, monkeypatch):
    monkeypatch.setenv("REGISTRY_AUTH_FILE",
                       str(write_auth(tmp_path / "auth.json", proxy.host, *BASIC_CREDS)))
    layer = bottom(climbing_layout)
    # Half the blob, then nothing for a minute: only a reader that stops
    # waiting when the unpack gives up ends before that.
    proxy.set("half-stall", times=1, digest=layer["digest"])
    # Should the unpack wait for the download after all, the read timeout
    # (20 s) and the second try (served whole) bound this test.
    opts = registry_options(cache, timeout=20)
    started = time.monotonic()
    with pytest.raises(SourceError, match="../escape. climbs out of the root"):
        api.unpack(f"{proxy.host}/test/climb", tmp_path / "out.img", cache=cache,
                   registry=opts)
    assert time.monotonic() - started < 15
    assert list(tmp_path.glob("out.img*")) == []

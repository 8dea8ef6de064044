"""The cache a build pipeline leans on, against docker-registry on 127.0.0.1
behind a fault proxy: the pull policy (cached tags need no registry), blobs
damaged in the cache healed, killed downloads resumed, two pulls sharing one
download, every part of the cache accounted for and pruned."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import OCIEXT4, ociext4
from conftest import manifest_desc
from support.faultproxy import FaultProxy
from support.fscheck import file_sha256
from support.registry import Registry


@pytest.fixture
def own_proxy(open_registry: Registry) -> Iterator[FaultProxy]:
    """A proxy of this test's own in front of the open registry: stopping it
    is the registry going away (connections refused)."""
    p = FaultProxy(open_registry.host).start()
    try:
        yield p
    finally:
        if not p.stopping.is_set():
            p.stop()


def blobs_of(layout: Path) -> dict[str, str]:
    """kind -> digest for the fixture image: manifest, config, layer (the biggest)."""
    manifest = manifest_desc(layout)["digest"]
    doc = json.loads((layout / "blobs" / "sha256" / manifest[7:]).read_text())
    big = max(doc["layers"], key=lambda d: d["size"])
    return {"manifest": manifest, "config": doc["config"]["digest"], "layer": big["digest"]}


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("ociext4: error: ") and proc.stderr.count("\n") == 1, \
        proc.stderr
    return proc.stderr


# ------------------------------------------------------------- pull policy


def test_a_cached_tag_is_unpacked_without_connecting_to_the_registry(own_proxy, tmp_path):
    ref = f"{own_proxy.host}/test/img"
    ociext4("pull", ref)
    own_proxy.set("none")
    ociext4("unpack", ref, tmp_path / "a.img")
    ociext4("unpack", ref, tmp_path / "b.img", "--pull", "never")
    assert own_proxy.connections == 0 and own_proxy.seen == []
    ociext4("unpack", ref, tmp_path / "c.img", "--pull", "always")
    assert [s.path for s in own_proxy.seen if "/manifests/" in s.path] == \
        ["/v2/test/img/manifests/latest"]
    assert own_proxy.blob_requests() == []
    assert file_sha256(tmp_path / "a.img") == file_sha256(tmp_path / "c.img")


def test_pull_always_falls_back_to_the_cached_tag_with_a_warning_when_the_registry_is_gone(
        own_proxy, tmp_path, image_layout):
    ref = f"{own_proxy.host}/test/img"
    ociext4("pull", ref)
    own_proxy.stop()
    proc = ociext4("unpack", ref, tmp_path / "out.img", "--pull", "always")
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("ociext4: warning:")]
    assert len(warnings) == 1 and "cannot reach" in warnings[0] and \
        f"using the cached {ref}:latest" in warnings[0], proc.stderr
    again = ociext4("pull", ref)
    assert f"{ref}:latest: {manifest_desc(image_layout)['digest']}" in again.stderr
    assert ociext4("unpack", ref, tmp_path / "out2.img").stderr == ""


def test_an_uncached_tag_fails_in_one_line_when_the_registry_is_gone_or_forbidden(
        own_proxy, tmp_path):
    ref = f"{own_proxy.host}/test/img"
    never = one_line_error(ociext4("unpack", ref, tmp_path / "x.img", "--pull", "never",
                                   check=False))
    assert "pull policy `never`" in never and own_proxy.connections == 0
    own_proxy.stop()
    for policy in ("missing", "always"):
        err = one_line_error(ociext4("unpack", ref, tmp_path / "x.img", "--pull", policy,
                                     check=False))
        assert "cannot reach 127.0.0.1" in err and "Connection refused" in err
    assert not any(p.name.startswith("x.img") for p in tmp_path.iterdir())


def test_a_port_that_does_not_speak_http_gets_one_quick_retry(tmp_path):
    """Not HTTP is not something to wait out: one retry, no backoff."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    accepted: list[int] = []

    def answer() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            accepted.append(1)
            conn.recv(65536)  # the request (or TLS hello), so closing sends no reset
            conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")
            conn.shutdown(socket.SHUT_WR)
            conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        host = f"127.0.0.1:{srv.getsockname()[1]}"
        err = one_line_error(ociext4("pull", f"{host}/test/img", check=False))
    finally:
        srv.close()
    assert "cannot reach" in err
    # https first (refused by a TLS handshake that fails), then http twice.
    assert len(accepted) == 3


# ---------------------------------------------------------------- healing


def damage(cache: Path, kind: str, digests: dict[str, str]) -> Path:
    blob = cache / "blobs" / "sha256" / digests["layer" if kind.startswith("layer") or
                                             kind == "gzip-header" else kind][7:]
    # gzip's MTIME field (bytes 4-7) is not covered by the CRC: only the
    # blob digest sees it.
    flip(blob, 4 if kind == "gzip-header" else blob.stat().st_size // 2)
    return blob


KINDS = ["layer-data", "gzip-header", "config", "manifest"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_cached_blob_is_quarantined_fetched_again_and_the_unpack_goes_on(
        open_registry, image_layout, tmp_path, cache, kind):
    ref = f"{open_registry.host}/test/img"
    clean = tmp_path / "clean.img"
    ociext4("unpack", f"oci:{image_layout}:latest", clean)
    ociext4("pull", ref)
    blob = damage(cache, kind, blobs_of(image_layout))
    healed = tmp_path / "healed.img"
    ociext4("unpack", ref, healed)
    assert healed.read_bytes() == clean.read_bytes()
    assert subprocess.run(["sha256sum", blob], capture_output=True, text=True,
                          check=True).stdout.split()[0] == blob.name
    [moved] = (cache / "quarantine").iterdir()
    assert moved.name.startswith(blob.name + ".")
    assert ociext4("cache", "verify").returncode == 0


@pytest.mark.parametrize("kind", ["layer-data", "gzip-header"])
def test_a_cached_layer_is_hashed_as_it_is_read_and_a_damaged_one_starts_the_unpack_over(
        open_registry, image_layout, tmp_path, cache, monkeypatch, kind):
    """No rehash of cached layers before the unpack reads them (the local
    layout's cost, not more): the reader's own hash finds the damage, the
    blob goes to quarantine and the unpack starts over once, fetching it."""
    from ociext4 import api
    from ociext4.store import Store

    ref = f"{open_registry.host}/test/img"
    clean = tmp_path / "clean.img"
    api.unpack(f"oci:{image_layout}:latest", clean)
    ociext4("pull", ref)
    blob = damage(cache, kind, blobs_of(image_layout))

    def no_rehash(self: Store, digest: str, size: int | None = None) -> None:
        raise AssertionError(f"{digest} rehashed before it was read")

    monkeypatch.setattr(Store, "verify", no_rehash)
    healed = tmp_path / "healed.img"
    api.unpack(ref, healed, cache=cache)
    assert healed.read_bytes() == clean.read_bytes()
    [moved] = (cache / "quarantine").iterdir()
    assert moved.name.startswith(blob.name + ".")
    api.unpack(ref, tmp_path / "again.img", cache=cache)   # whole now: no quarantine
    assert len(list((cache / "quarantine").iterdir())) == 1


@pytest.mark.parametrize("kind", ["layer-data", "gzip-header"])
def test_pull_of_a_cached_image_rehashes_its_layers_and_fetches_a_damaged_one(
        open_registry, image_layout, cache, kind):
    ref = f"{open_registry.host}/test/img"
    ociext4("pull", ref)
    digests = blobs_of(image_layout)
    good = (cache / "blobs" / "sha256" / digests["layer"][7:]).read_bytes()
    blob = damage(cache, kind, digests)
    ociext4("pull", ref)
    assert blob.read_bytes() == good
    [moved] = (cache / "quarantine").iterdir()
    assert moved.name.startswith(blob.name + ".")


def test_every_cached_layer_damaged_is_fetched_again_in_one_unpack(open_registry, image_layout,
                                                                    tmp_path, cache):
    from ociext4 import api

    ref = f"{open_registry.host}/test/img"
    clean = tmp_path / "clean.img"
    api.unpack(f"oci:{image_layout}:latest", clean)
    ociext4("pull", ref)
    doc = json.loads((image_layout / "blobs" / "sha256" /
                      manifest_desc(image_layout)["digest"][7:]).read_text())
    layers = {lay["digest"] for lay in doc["layers"]}
    assert len(layers) > 1
    for digest in layers:
        flip(cache / "blobs" / "sha256" / digest[7:], 4)   # gzip MTIME: only the digest sees it
    healed = tmp_path / "healed.img"
    api.unpack(ref, healed, cache=cache)
    assert healed.read_bytes() == clean.read_bytes()
    moved = {q.name.partition(".")[0] for q in (cache / "quarantine").iterdir()}
    assert moved == {d[7:] for d in layers}


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_blob_offline_fails_in_one_line_naming_the_path_digest_and_fix(
        own_proxy, image_layout, tmp_path, cache, kind):
    ref = f"{own_proxy.host}/test/img"
    ociext4("pull", ref)
    blob = damage(cache, kind, blobs_of(image_layout))
    own_proxy.stop()
    err = one_line_error(ociext4("unpack", ref, tmp_path / "out.img", check=False))
    assert f"{blob}: the cached blob sha256:{blob.name} was damaged" in err
    assert f"`ociext4 pull {ref}" in err
    assert not any(p.name.startswith("out.img") for p in tmp_path.iterdir())


def test_cache_verify_finds_damage_and_repair_fetches_it_again(open_registry, image_layout,
                                                                cache):
    ref = f"{open_registry.host}/test/img"
    ociext4("pull", ref)
    digests = blobs_of(image_layout)
    good = {k: (cache / "blobs" / "sha256" / d[7:]).read_bytes() for k, d in digests.items()}
    for kind in ("layer-data", "config", "manifest"):
        damage(cache, kind, digests)
    found = ociext4("cache", "verify", check=False)
    assert found.returncode == 1
    assert "3 of 5 blobs damaged" in found.stderr
    ociext4("cache", "verify", "--repair")
    for k, d in digests.items():
        assert (cache / "blobs" / "sha256" / d[7:]).read_bytes() == good[k]
    assert ociext4("cache", "verify").stdout.strip() == "5 blobs verified"
    assert len(list((cache / "quarantine").iterdir())) == 3


# ------------------------------------------------- resume, one download


def wait_for(cond, what: str, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + 60
    while not cond():
        assert time.monotonic() < deadline, what
        assert proc is None or proc.poll() is None, proc.communicate()
        time.sleep(0.02)


def test_a_pull_killed_mid_layer_is_resumed_with_range_by_the_next(own_proxy, image_layout,
                                                                    cache):
    ref = f"{own_proxy.host}/test/img"
    layer = blobs_of(image_layout)["layer"]
    partial = cache / "ingest" / f"{layer[7:]}.partial"
    own_proxy.set("half-stall", digest=layer)
    proc = subprocess.Popen([*OCIEXT4, "pull", ref], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    size = json.loads((image_layout / "blobs" / "sha256" / manifest_desc(image_layout)
                       ["digest"][7:]).read_text())
    # The proxy sends half the blob, then nothing; the client's write buffer
    # may still hold its last few KiB when it is killed.
    half = max(d["size"] for d in size["layers"]) // 2 - (64 << 10)
    wait_for(lambda: partial.exists() and partial.stat().st_size >= half, "half a layer", proc)
    proc.kill()
    proc.communicate()
    kept = partial.stat().st_size
    own_proxy.set("none")
    ociext4("pull", ref)
    [again] = [s for s in own_proxy.blob_requests() if s.path.endswith(layer)]
    assert again.headers["Range"] == f"bytes={kept}-" and again.status == 206
    assert list((cache / "ingest").iterdir()) == []
    assert ociext4("cache", "verify").returncode == 0


def test_a_partial_download_that_is_not_a_prefix_of_the_blob_is_fetched_whole(
        own_proxy, image_layout, cache):
    ref = f"{own_proxy.host}/test/img"
    layer = blobs_of(image_layout)["layer"]
    (cache / "ingest").mkdir(parents=True)
    (cache / "ingest" / f"{layer[7:]}.partial").write_bytes(b"not the blob" * 100)
    ociext4("pull", ref)
    tries = [s for s in own_proxy.blob_requests() if s.path.endswith(layer)]
    assert [s.headers.get("Range") for s in tries] == ["bytes=1200-", None]
    assert ociext4("cache", "verify").returncode == 0
    assert list((cache / "ingest").iterdir()) == []


def test_two_pulls_started_together_download_each_blob_once(own_proxy, image_layout, cache):
    ref = f"{own_proxy.host}/test/img"
    layer = blobs_of(image_layout)["layer"]
    # The first download goes slowly enough (half, a pause) for the second
    # pull to arrive while it runs.
    own_proxy.set("half-stall", digest=layer, times=1)
    first = subprocess.Popen([*OCIEXT4, "pull", ref, "--timeout", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = cache / "ingest" / f"{layer[7:]}.partial"
    wait_for(partial.exists, "the first download", first)
    second = subprocess.Popen([*OCIEXT4, "pull", ref], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    for p in (first, second):
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    gets = [s for s in own_proxy.blob_requests() if s.path.endswith(layer)]
    # One fetch, resumed once after its stall: the second pull never asked.
    assert [s.headers.get("Range") is not None for s in gets] == [False, True]
    assert gets[1].headers["Range"] != "bytes=0-"
    assert list((cache / "ingest").iterdir()) == []


# ------------------------------------------------- accounting, full disks


def test_cache_ls_accounts_for_every_byte_as_du_does_and_prune_all_empties_it(
        own_proxy, image_layout, cache):
    ref = f"{own_proxy.host}/test/img"
    ociext4("pull", ref)
    run_images = cache / "run" / "images"
    run_images.mkdir(parents=True)
    (run_images / "0123.img").write_bytes(b"i" * 50_000)
    (cache / "run" / "kernels").mkdir()
    (cache / "run" / "kernels" / "vmlinux-x").write_bytes(b"k" * 20_000)
    layer = blobs_of(image_layout)["layer"]
    (cache / "ingest" / f"{'ab' * 32}.partial").write_bytes(b"p" * 30_000)
    flip(cache / "blobs" / "sha256" / layer[7:], 100)
    assert ociext4("cache", "verify", check=False).returncode == 1  # one blob quarantined
    info = json.loads(ociext4("cache", "ls", "--json").stdout)
    disk = info["disk"]
    du = int(subprocess.run(["du", "-sB1", cache], capture_output=True, text=True,
                            check=True).stdout.split()[0])
    assert disk["total"] == du
    assert disk["images"] + disk["unused"] + disk["partial"] + disk["quarantine"] + \
        sum(disk["run"].values()) + disk["other"] == du
    assert disk["partial"] >= 30_000 and disk["quarantine"] > 0
    assert disk["run"]["images"] >= 50_000 and disk["run"]["kernels"] >= 20_000
    assert [p["bytes"] for p in info["partial_downloads"]] == [30_000]
    assert "run/images" in ociext4("cache", "ls").stdout
    ociext4("cache", "prune", "--run")
    assert not (run_images / "0123.img").exists() and (cache / "blobs" / "sha256").is_dir()
    ociext4("cache", "prune", "--all")
    assert list((cache / "blobs" / "sha256").iterdir()) == []
    assert list((cache / "ingest").iterdir()) == []
    assert not (cache / "quarantine").exists() or list((cache / "quarantine").iterdir()) == []
    assert json.loads((cache / "index.json").read_text()) == {"schemaVersion": 2,
                                                             "manifests": []}
    assert subprocess.run(["umoci", "ls", "--layout", str(cache)], capture_output=True,
                          text=True, check=True).stdout == ""


PAGE = 4096


def pages(n: int) -> int:
    return -(-n // PAGE)


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def leave_free(mnt: Path, nbytes: int) -> None:
    """Fills the file system but for `nbytes`."""
    st = os.statvfs(mnt)
    free = st.f_bavail * st.f_frsize
    with open(mnt / "filler", "wb") as f:
        f.write(b"\0" * (free - nbytes))
    st = os.statvfs(mnt)
    assert st.f_bavail * st.f_frsize == nbytes


@pytest.mark.parametrize("stage", ["layout", "manifest", "config", "layer", "index.json"])
def test_a_full_disk_at_each_stage_fails_in_one_line_leaving_no_temporary_file(
        own_proxy, image_layout, small_tmpfs, stage):
    ref = f"{own_proxy.host}/test/img"
    blobs = [p.stat().st_size for p in (image_layout / "blobs" / "sha256").iterdir()]
    layout_files = 2  # oci-layout, index.json
    free = {"layout": 0, "manifest": layout_files, "config": layout_files + 1,
            "layer": layout_files + 2, "index.json": layout_files + sum(map(pages, blobs))}
    leave_free(small_tmpfs, free[stage] * PAGE)
    cache = small_tmpfs / "cache"
    err = one_line_error(ociext4("pull", ref, "--cache", cache, check=False))
    assert f"{cache}/" in err and "the disk is full" in err
    what = {"layout": "oci-layout", "manifest": blobs_of(image_layout)["manifest"][7:],
            "config": "config", "layer": "layer sha256:", "index.json": "index.json"}[stage]
    assert what in err
    left = [p for p in cache.rglob("*") if p.is_file()]
    assert not [p for p in left if p.name.startswith(".") and not p.name.endswith(".lock")]
    assert not [p for p in left if p.suffix == ".lock" and p.parent.name == "ingest"]
    assert all(p.stat().st_size for p in left if p.suffix == ".partial")


def test_a_hundred_layers_get_a_total_and_a_few_bars_not_a_hundred():
    from ociext4_cli.pullprogress import MAX_BARS, DownloadBars

    from ociext4.model import ContainerConfig, Image, ImageConfig, Layer

    layers = tuple(Layer(f"sha256:{i:064x}", 1000, "application/vnd.oci.image.layer.v1.tar", "")
                   for i in range(100))
    config = ImageConfig("linux", "amd64", "", None, ContainerConfig(), ())
    most = 0
    with DownloadBars(True) as bars:
        bars.begin(Image("sha256:" + "0" * 64, "", "sha256:" + "1" * 64, config, layers), set())
        # Three downloads at a time, each in two halves, interleaved.
        for start in range(0, 100, 3):
            group = layers[start:start + 3]
            for _half in range(2):
                for lay in group:
                    bars.advance(lay.digest, 500)
                    most = max(most, bars.open_bars)
        assert bars.open_bars == 1  # every layer done: only the total is left
    assert most == 1 + 3 <= 1 + MAX_BARS


# ---------------------------------------------------------------- mirrors


def test_a_registry_mirror_is_tried_first_and_the_origin_after_it(
        own_proxy, open_registry, image_layout, cache, tmp_path, monkeypatch):
    mirror = FaultProxy(open_registry.host).start()
    try:
        origin = own_proxy.host
        ref = f"{origin}/test/img"
        ociext4("pull", ref, "--registry-mirror", f"{origin}={mirror.host}")
        assert own_proxy.connections == 0 and len(mirror.blob_requests()) == 4
        assert [e["annotations"]["org.opencontainers.image.ref.name"]
                for e in json.loads((cache / "index.json").read_text())["manifests"]] == \
            [f"{ref}:latest"]
        # The same from a config file; a mirror that lacks a blob sends
        # that blob's request on to the origin.
        ociext4("cache", "prune", "--all")
        config = tmp_path / "ociext4.json"
        config.write_text(json.dumps({"mirrors": {origin: [f"http://{mirror.host}"]}}))
        monkeypatch.setenv("OCIEXT4_CONFIG", str(config))
        layer = blobs_of(image_layout)["layer"]
        mirror.set("404", digest=layer)
        own_proxy.set("none")
        proc = ociext4("pull", ref)
        assert [s.path for s in own_proxy.seen] == [f"/v2/test/img/blobs/{layer}"]
        assert len(mirror.blob_requests()) == 4
        assert f"ociext4: warning: mirror {mirror.host} failed" in proc.stderr
        # A mirror that is gone: the origin serves it all.
        ociext4("cache", "prune", "--all")
        mirror.stop()
        own_proxy.set("none")
        proc = ociext4("pull", ref)
        assert f"mirror {mirror.host} failed" in proc.stderr
        assert len(own_proxy.blob_requests()) == 4
    finally:
        if not mirror.stopping.is_set():
            mirror.stop()


def test_the_api_reads_the_mirror_config_of_its_cache_as_the_command_line_does(
        own_proxy, open_registry, cache, monkeypatch):
    import ociext4

    mirror = FaultProxy(open_registry.host).start()
    try:
        monkeypatch.delenv("OCIEXT4_CONFIG", raising=False)
        origin = own_proxy.host
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "config.json").write_text(json.dumps({"mirrors": {origin: [mirror.host]}}))
        pulled = ociext4.pull(f"{origin}/test/img", cache=cache)
        assert own_proxy.connections == 0 and len(mirror.blob_requests()) == 4
        assert pulled.manifest_digest.startswith("sha256:")
        # Options built for the caller merge the same file, mirrors given first.
        opts = ociext4.registry_options(cache, mirrors=[f"{origin}=other.example:5000"])
        assert opts.mirrors[origin] == ("other.example:5000", mirror.host)
    finally:
        mirror.stop()


def test_a_read_only_cache_fails_in_one_line_naming_the_cache(open_registry, small_tmpfs):
    cache = small_tmpfs / "cache"
    ociext4("pull", f"{open_registry.host}/test/img", "--cache", cache)
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    err = one_line_error(ociext4("pull", f"{open_registry.host}/test/multi", "--cache", cache,
                                 check=False))
    assert f"{cache}/" in err and "Read-only file system" in err
    # What is cached still unpacks.
    ociext4("unpack", f"{open_registry.host}/test/img", small_tmpfs.parent / "out.img",
            "--cache", cache)

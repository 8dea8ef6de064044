"""What the guest gets from `ociext4 run`: a throwaway writable root with
the API file systems and docker's /etc files even in an image of nothing
but /bin, the network (user-mode or none, published ports), volumes through
virtiofs and tmpfs mounts. Real boots under TCG; the host side of every
network test is 127.0.0.1."""
# ruff: noqa: F811  (fixtures imported from test_vm_run are parameters here)

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import OCIEXT4, ociext4
from runimages import bin_only_layout
from support.fscheck import file_sha256

# The boot tests' fixtures (images built once per session) live with them.
from test_vm_run import TCG, bb_img, bb_layout, private_cache, run  # noqa: F401


@pytest.fixture(scope="module")
def bin_only_img(tmp_path_factory: pytest.TempPathFactory) -> Path:
    layout = bin_only_layout(tmp_path_factory.mktemp("layouts") / "binonly")
    img = tmp_path_factory.mktemp("images") / "binonly.img"
    ociext4("unpack", f"oci:{layout}", img)
    return img


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------ the root


def test_an_image_of_only_bin_gets_dev_proc_tmp_and_etc_files_in_the_throwaway_layer(
        bin_only_img):
    before = file_sha256(bin_only_img)
    p = run(*TCG, "-h", "box", "-w", "/srv/app", bin_only_img, "--", "sh", "-c",
            "echo x > /dev/null && test -c /dev/null && ls /proc/self/fd >/dev/null && "
            "echo t > /tmp/t && cat /tmp/t && test -d /dev/pts && test -d /dev/shm && "
            "test -d /sys/kernel && test -d /run && pwd && cat /etc/hostname && "
            "grep -c localhost /etc/hosts && grep box /etc/hosts && cat /etc/resolv.conf")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[:5] == ["t", "/srv/app", "box", "2", "10.0.2.15\tbox"]
    assert lines[5] == "nameserver 10.0.2.3"
    assert file_sha256(bin_only_img) == before


# ------------------------------------------------------------ network


@pytest.fixture
def host_server(tmp_path: Path) -> Iterator[int]:
    """An HTTP server on the host's 127.0.0.1 serving one file."""
    (tmp_path / "hello.txt").write_text("hello from the host\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a: object, **kw: object) -> None:
            super().__init__(*a, directory=str(tmp_path), **kw)  # type: ignore[arg-type]

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield int(server.server_address[1])
    server.shutdown()
    server.server_close()


def test_the_guest_reaches_a_server_on_the_hosts_loopback_through_the_gateway(
        bb_img, host_server):
    p = run(*TCG, bb_img, "--", "wget", "-q", "-O", "-",
            f"http://10.0.2.2:{host_server}/hello.txt")
    assert (p.returncode, p.stdout) == (0, "hello from the host\n"), p.stderr


def test_a_published_port_reaches_a_server_in_the_guest(bb_img):
    port = free_port()
    # The guest serves /data until its stdin ends; the host fetches meanwhile.
    proc = subprocess.Popen(
        [*OCIEXT4, "run", *TCG, "-i", "-p", f"127.0.0.1:{port}:8080", str(bb_img), "--",
         "sh", "-c", "httpd -p 8080 -h /data && echo serving && cat >/dev/null"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline() == b"serving\n"
        body = b""
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/script", timeout=10) as r:
                    body = r.read()
                break
            except OSError:
                time.sleep(0.1)   # slirp's listener may lag the guest's
        assert body == b'#!/bin/sh\necho script ran "$@"\n'
    finally:
        proc.stdin.close()
    assert proc.wait() == 0


def test_without_a_network_loopback_still_works_and_there_is_no_eth0(bb_img):
    p = run(*TCG, "--network", "none", bb_img, "--", "sh", "-c",
            "httpd -p 127.0.0.1:8080 -h /data && wget -q -O - http://127.0.0.1:8080/script "
            "&& ls /sys/class/net")
    assert p.returncode == 0, p.stderr
    assert p.stdout == '#!/bin/sh\necho script ran "$@"\nlo\n'


# ------------------------------------------------------------ volumes


def test_volumes_read_and_write_host_directories_ro_refuses_writes_and_tmpfs_is_empty(
        bb_img, tmp_path):
    rw, ro = tmp_path / "rw", tmp_path / "ro"
    rw.mkdir()
    ro.mkdir()
    (rw / "in.txt").write_text("from the host\n")
    (ro / "keep.txt").write_text("read only\n")
    p = run(*TCG, "-v", f"{rw}:/data/rw", "--mount", f"type=bind,source={ro},target=/ro,readonly",
            "--tmpfs", "/scratch", bb_img, "--", "sh", "-c",
            "cat /data/rw/in.txt /ro/keep.txt && echo from the guest > /data/rw/out.txt && "
            "ls -A /scratch && grep -c ' /scratch tmpfs ' /proc/mounts && "
            "! echo no > /ro/new")
    assert p.returncode == 0, p.stderr
    assert p.stdout == "from the host\nread only\n1\n"
    assert "Read-only file system" in p.stderr
    assert (rw / "out.txt").read_text() == "from the guest\n"
    assert sorted(x.name for x in ro.iterdir()) == ["keep.txt"]

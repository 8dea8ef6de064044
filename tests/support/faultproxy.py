"""An HTTP proxy on 127.0.0.1 in front of a registry that misbehaves on
purpose, on blob downloads (and manifests) only: cut the connection mid-blob,
answer 429 with Retry-After or 500 a few times, flip a byte, lie in
Content-Length, redirect to another host (a "CDN" that records what headers
it got), or replace a manifest.  Every request is recorded."""

from __future__ import annotations

import http.client
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

HOP_HEADERS = {"host", "connection", "keep-alive", "transfer-encoding", "proxy-connection"}


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0


@dataclass
class Fault:
    # cut, 429, 500, corrupt, length, redirect, manifest, endless (a chunked body
    # that never ends), silent (no answer at all), stall (headers, then nothing),
    # half-stall (half the blob, then nothing), 404 (a blob this server lacks);
    # and slowly, a piece at a time: slow (the blob), slow-cut (half, then the
    # connection is cut), slow-corrupt (a flipped byte), slow-restart (half,
    # cut, then the whole blob again with 200 to the ranged request)
    kind: str = "none"
    times: int = 1_000_000      # how many blob requests misbehave (then all is well)
    digest: str | None = None   # only this blob (default: any blob)
    manifest: tuple[str, bytes] | None = None  # (content type, body) for kind="manifest"
    done: int = 0


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: FaultProxy

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.proxy.lock:
            self.proxy.connections += 1
        super().process_request(request, client_address)


@dataclass
class FaultProxy:
    upstream: str                                  # host:port of the registry
    fault: Fault = field(default_factory=Fault)
    seen: list[Seen] = field(default_factory=list)
    cdn_seen: list[Seen] = field(default_factory=list)
    _blobs: dict[str, bytes] = field(default_factory=dict)
    _servers: list[_Server] = field(default_factory=list)
    port: int = 0
    cdn_port: int = 0
    connections: int = 0                           # accepted, on either port
    lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set(self, kind: str = "none", **kw: Any) -> None:
        with self.lock:
            self.fault = Fault(kind, **kw)
            self.connections = 0
            self.seen.clear()
            self.cdn_seen.clear()
            self._blobs.clear()

    def blob_requests(self) -> list[Seen]:
        return [s for s in self.seen if "/blobs/" in s.path]

    def start(self) -> FaultProxy:
        for handler, attr in ((_ProxyHandler, "port"), (_CdnHandler, "cdn_port")):
            srv = _Server(("127.0.0.1", 0), handler)
            srv.proxy = self
            setattr(self, attr, srv.server_address[1])
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            self._servers.append(srv)
        return self

    def stop(self) -> None:
        self.stopping.set()
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()

    def forward(self, method: str, path: str, headers: dict[str, str]
                ) -> tuple[int, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream, timeout=60)
        try:
            conn.request(method, path, headers={k: v for k, v in headers.items()
                                                if k.lower() not in HOP_HEADERS})
            resp = conn.getresponse()
            body = resp.read()
            return resp.status, [(k, v) for k, v in resp.getheaders()
                                 if k.lower() not in HOP_HEADERS], body
        finally:
            conn.close()


class _Base(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    def _head(self, status: int, headers: list[tuple[str, str]], length: int) -> None:
        """The status line and headers, with our own Content-Length."""
        self.send_response(status)
        for k, v in headers:
            if k.lower() != "content-length":
                self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes,
              length: int | None = None) -> None:
        self._head(status, headers, len(body) if length is None else length)
        if self.command != "HEAD":
            self.wfile.write(body)


class _ProxyHandler(_Base):
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        p = self.server.proxy
        headers = dict(self.headers.items())
        seen = Seen(self.command, self.path, headers)
        with p.lock:
            p.seen.append(seen)
            fault = p.fault
            is_blob = "/blobs/sha256:" in self.path and self.command == "GET"
            digest = self.path.rsplit("/", 1)[-1]
            hit = is_blob and fault.kind not in ("none", "manifest") and \
                fault.done < fault.times and \
                (fault.digest is None or fault.digest == digest)
            if fault.kind == "manifest":
                hit = "/manifests/" in self.path
            if hit:
                fault.done += 1
            nth = fault.done   # this request's place among those the fault hit
        kind = fault.kind if hit else "none"
        if kind == "silent":
            p.stopping.wait(60)
            self.close_connection = True
            return
        if kind == "endless":
            seen.status = 200
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"%x\r\n%s\r\n" % (1 << 16, bytes(1 << 16))
            try:
                while not p.stopping.is_set():
                    self.wfile.write(chunk)
            except OSError:
                pass  # the client hung up, as it should
            self.close_connection = True
            return
        if kind in ("429", "500", "404"):
            seen.status = int(kind)
            extra = [("Retry-After", "1")] if kind == "429" else []
            self._send(int(kind), [("Content-Type", "text/plain"), *extra], b"try later\n")
            return
        if kind == "manifest":
            assert fault.manifest is not None
            ctype, body = fault.manifest
            seen.status = 200
            self._send(200, [("Content-Type", ctype)], body)
            return
        if kind == "slow-restart" and nth > 1:
            headers = {k: v for k, v in headers.items() if k.lower() != "range"}
        status, rheaders, body = p.forward(self.command, self.path, headers)
        seen.status = status
        if kind == "none" or status not in (200, 206):
            self._send(status, rheaders, body)
            return
        if kind == "redirect":
            with p.lock:
                p._blobs[digest] = body
            self._send(307, [("Location", f"http://localhost:{p.cdn_port}/cdn/{digest}")], b"")
            seen.status = 307
            return
        if kind == "corrupt":
            mid = len(body) // 2
            body = body[:mid] + bytes([body[mid] ^ 0x20]) + body[mid + 1:]
            self._send(status, rheaders, body)
            return
        if kind == "length":
            self._send(status, rheaders, body, length=len(body) + 100)
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind == "stall":
            self._head(status, rheaders, len(body))
            self.wfile.flush()
            p.stopping.wait(60)
            self.close_connection = True
            return
        if kind == "half-stall":
            self._head(status, rheaders, len(body))
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            p.stopping.wait(60)
            self.close_connection = True
            return
        if kind == "cut":
            self._head(status, rheaders, len(body))
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        if kind.startswith("slow"):
            if kind == "slow-corrupt":
                mid = len(body) // 2
                body = body[:mid] + bytes([body[mid] ^ 0x20]) + body[mid + 1:]
            cut = kind in ("slow-cut", "slow-restart") and nth == 1
            self._head(status, rheaders, len(body))
            self._trickle(body[:len(body) // 2] if cut else body)
            if cut:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        raise AssertionError(f"unknown fault {kind}")

    def _trickle(self, body: bytes) -> None:
        """`body` a piece at a time (64 KiB each 10 ms, ~6 MB/s), so that a
        download lasts long enough to be read while it is written."""
        step = 1 << 16
        try:
            for at in range(0, len(body), step):
                self.wfile.write(body[at:at + step])
                self.wfile.flush()
                time.sleep(0.01)
        except OSError:
            self.close_connection = True   # the client gave up


class _CdnHandler(_Base):
    def do_GET(self) -> None:
        p = self.server.proxy
        digest = self.path.rsplit("/", 1)[-1]
        with p.lock:
            p.cdn_seen.append(Seen("GET", self.path, dict(self.headers.items()), 200))
            body = p._blobs.get(digest)
        if body is None:
            self._send(404, [("Content-Type", "text/plain")], b"not here\n")
            return
        self._send(200, [("Content-Type", "application/octet-stream")], body)

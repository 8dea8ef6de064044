"""A real registry for tests: Debian's docker-registry (the CNCF distribution
registry) started on 127.0.0.1 with its storage in a temp dir, open, behind
htpasswd Basic auth, or behind token auth with `TokenServer` (below) signing
the JWTs; images pushed into it with skopeo."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import secrets
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REGISTRY_BIN = "/usr/bin/docker-registry"
SERVICE = "ociext4-test-registry"
ISSUER = "ociext4-test-issuer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Registry:
    host: str                      # 127.0.0.1:PORT
    root: Path
    proc: subprocess.Popen[bytes]
    creds: tuple[str, str] | None = None

    def push(self, layout: Path, repo: str, tag: str = "latest", src_tag: str = "latest") -> str:
        """Copies oci:LAYOUT:SRC_TAG to HOST/REPO:TAG with skopeo; returns HOST/REPO:TAG."""
        dest = f"{self.host}/{repo}:{tag}"
        argv = ["skopeo", "copy", "-q", "--dest-tls-verify=false"]
        if self.creds:
            argv += ["--dest-creds", f"{self.creds[0]}:{self.creds[1]}"]
        argv += [f"oci:{layout}:{src_tag}", f"docker://{dest}"]
        subprocess.run(argv, check=True, capture_output=True, timeout=600,
                       env={**os.environ, "REGISTRY_AUTH_FILE": str(self.root / "none.json")})
        return dest

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _wait_ready(host: str, proc: subprocess.Popen[bytes], log: Path, tls: bool) -> None:
    deadline = time.monotonic() + 30
    ctx = ssl._create_unverified_context() if tls else None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited {proc.returncode}: "
                               f"{log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(f"{'https' if tls else 'http'}://{host}/v2/", timeout=2,
                                   context=ctx).close()
            return
        except urllib.error.HTTPError as e:
            if e.code == 401:  # up, and asking for credentials
                return
        except OSError:
            pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"docker-registry did not answer on {host}: {log.read_text()[-2000:]}")


def self_signed(root: Path, name: str, san: str = "") -> tuple[Path, Path]:
    """(certificate, key) made with the openssl CLI."""
    root.mkdir(parents=True, exist_ok=True)
    cert, key = root / f"{name}.crt", root / f"{name}.key"
    argv = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
            "-out", str(cert), "-days", "2", "-subj", f"/CN={name}"]
    if san:
        argv += ["-addext", f"subjectAltName={san}"]
    subprocess.run(argv, check=True, capture_output=True)
    return cert, key


def start_registry(root: Path, auth: dict[str, Any] | None = None,
                   creds: tuple[str, str] | None = None,
                   tls: tuple[Path, Path] | None = None) -> Registry:
    """docker-registry serving from ROOT/storage on a free loopback port
    (over https with `tls` = (certificate, key))."""
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "storage")},
                    "maintenance": {"uploadpurging": {"enabled": False}}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": secrets.token_hex(16)},
    }
    if auth:
        config["auth"] = auth
    if tls:
        config["http"]["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
    cfg = root / "config.yml"
    cfg.write_text(json.dumps(config))  # JSON is YAML
    log = root / "registry.log"
    with open(log, "wb") as out:
        # The registry reads REGISTRY_* variables as configuration
        # (REGISTRY_AUTH_FILE would become auth.file).
        env = {k: v for k, v in os.environ.items() if not k.startswith("REGISTRY_")}
        proc = subprocess.Popen([REGISTRY_BIN, "serve", str(cfg)], stdout=out, env=env,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    host = f"127.0.0.1:{port}"
    _wait_ready(host, proc, log, tls is not None)
    return Registry(host, root, proc, creds)


def htpasswd_auth(root: Path, user: str, password: str) -> dict[str, Any]:
    root.mkdir(parents=True, exist_ok=True)
    line = subprocess.run(["htpasswd", "-Bbn", user, password], check=True,
                          capture_output=True, text=True).stdout.strip()
    (root / "htpasswd").write_text(line + "\n")
    return {"htpasswd": {"realm": "ociext4-test", "path": str(root / "htpasswd")}}


# --------------------------------------------------------------------------
# a token server


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class TokenServer:
    """Issues RS256 JWTs the registry checks against the certificate in its
    `rootcertbundle` (the x5c header carries the same certificate).  Users get
    pull and push; anonymous callers get pull on `public` repositories only.
    Identity tokens (`refresh_token` grants) are `idtok-USER`."""
    root: Path
    users: dict[str, str]
    public: set[str] = field(default_factory=set)
    lifetime: int = 300
    requests: list[dict[str, Any]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None
    port: int = 0

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = self.root / "key.pem", self.root / "cert.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                        str(self.key), "-out", str(self.cert), "-days", "2", "-subj",
                        "/CN=ociext4-test-token-issuer"], check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"],
                             check=True, capture_output=True).stdout
        self._x5c = base64.b64encode(der).decode()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> dict[str, Any]:
        return {"token": {"realm": self.realm, "service": SERVICE, "issuer": ISSUER,
                          "rootcertbundle": str(self.cert)}}

    def sign(self, claims: dict[str, Any]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = (_b64url(json.dumps(header).encode()) + "." +
                         _b64url(json.dumps(claims).encode()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                             input=signing_input.encode(), check=True,
                             capture_output=True).stdout
        return signing_input + "." + _b64url(sig)

    def grant(self, user: str | None, scopes: list[str]) -> list[dict[str, Any]]:
        access = []
        for scope in scopes:
            for one in scope.split(" "):
                kind, _, rest = one.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind != "repository" or not name:
                    continue
                allowed = {"pull", "push"} if user else ({"pull"} if name in self.public
                                                         else set())
                got = [a for a in actions.split(",") if a in allowed]
                if got:
                    access.append({"type": "repository", "name": name, "actions": got})
        return access

    def token(self, user: str | None, scopes: list[str]) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": user or "", "aud": SERVICE, "iat": now, "nbf": now - 5,
                  "exp": now + self.lifetime, "jti": secrets.token_hex(8),
                  "access": self.grant(user, scopes)}
        return {"token": self.sign(claims), "expires_in": self.lifetime,
                "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))}

    def start(self) -> TokenServer:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                pass

            def _reply(self, code: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _user(self) -> tuple[bool, str | None]:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return True, None
                user, _, pw = base64.b64decode(header[6:]).decode().partition(":")
                return outer.users.get(user) == pw, user

            def do_GET(self) -> None:
                q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                ok, user = self._user()
                outer.requests.append({"method": "GET", "user": user, "scope": q.get("scope"),
                                       "service": q.get("service")})
                if not ok:
                    self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]})
                    return
                self._reply(200, outer.token(user, q.get("scope") or []))

            def do_POST(self) -> None:
                n = int(self.headers.get("Content-Length") or 0)
                form = urllib.parse.parse_qs(self.rfile.read(n).decode())
                grant = (form.get("grant_type") or [""])[0]
                user = None
                if grant == "refresh_token":
                    tok = (form.get("refresh_token") or [""])[0]
                    user = tok[len("idtok-"):] if tok.startswith("idtok-") else None
                    ok = user in outer.users
                elif grant == "password":
                    user = (form.get("username") or [""])[0]
                    ok = outer.users.get(user) == (form.get("password") or [""])[0]
                else:
                    ok = False
                outer.requests.append({"method": "POST", "user": user, "grant": grant,
                                       "scope": form.get("scope")})
                if not ok:
                    self._reply(401, {"error": "invalid_grant"})
                    return
                doc = outer.token(user, form.get("scope") or [])
                doc["access_token"] = doc.pop("token")
                self._reply(200, doc)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@contextlib.contextmanager
def running(reg: Registry) -> Iterator[Registry]:
    try:
        yield reg
    finally:
        reg.stop()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

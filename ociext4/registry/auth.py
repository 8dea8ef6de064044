"""Answering a registry's 401 challenges: `Basic` with the credentials, or
`Bearer realm=…,service=…,scope=…` by asking the realm for a token (anonymous,
with a username and password, or with an identity token), kept per scope
until shortly before it expires."""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from ..errors import AuthError
from .bodies import read_limited
from .credentials import Credentials

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
# A token is used until this long before its stated expiry.
_EXPIRY_MARGIN = 10.0
_DEFAULT_LIFETIME = 60.0
_MAX_TOKEN_RESPONSE = 1 << 20


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str              # lower case: "bearer" or "basic"
    params: dict[str, str]


def parse_challenges(header: str) -> list[Challenge]:
    """`WWW-Authenticate` values, e.g. `Bearer realm="https://a/token",service="r"`."""
    out: list[Challenge] = []
    pos = 0
    while pos < len(header):
        m = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)").match(header, pos)
        if not m:
            break
        scheme, pos = m.group(1).lower(), m.end()
        params: dict[str, str] = {}
        while True:
            p = _PARAM.match(header, pos)
            if not p or not p.group(0).strip():
                break
            value = p.group(2) if p.group(2) is not None else p.group(3)
            params[p.group(1).lower()] = re.sub(r"\\(.)", r"\1", value or "")
            pos = p.end()
        out.append(Challenge(scheme, params))
    return out


def basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


@dataclass
class _Token:
    value: str
    expires: float


class Authenticator:
    """Authorization headers for one registry; thread-safe, tokens shared by
    the threads of one pull."""

    def __init__(self, registry: str, creds: Callable[[], Credentials | None],
                 client: httpx.Client) -> None:
        self.registry = registry
        self._creds_fn = creds
        self._creds_loaded = False
        self._creds: Credentials | None = None
        self._client = client
        self._lock = threading.Lock()
        self._tokens: dict[str, _Token] = {}
        self._basic: str | None = None
        self._scheme: str | None = None     # what the registry last asked for
        self._bearer_params: dict[str, str] = {}

    def _credentials(self) -> Credentials | None:
        if not self._creds_loaded:
            self._creds, self._creds_loaded = self._creds_fn(), True
        return self._creds

    def has_credentials(self) -> bool:
        return self._credentials() is not None

    def header(self, scope: str) -> str | None:
        """The Authorization value to send for `scope`, if one is known and fresh."""
        with self._lock:
            if self._scheme == "basic":
                return self._basic
            if self._scheme == "bearer":
                tok = self._tokens.get(scope)
                if tok is not None and tok.expires > time.monotonic():
                    return f"Bearer {tok.value}"
                if tok is not None or scope not in self._tokens:
                    # Expired or never fetched: get one now rather than wait for a 401.
                    return self._fetch_token(scope, self._bearer_params)
            return None

    def challenge(self, header: str, scope: str, rejected: str | None) -> str:
        """A new Authorization value after a 401 with `header`; `rejected` is
        what the registry just refused, so the same answer is not given twice."""
        challenges = parse_challenges(header)
        by_scheme = {c.scheme: c for c in challenges}
        with self._lock:
            if "bearer" in by_scheme:
                params = by_scheme["bearer"].params
                self._scheme, self._bearer_params = "bearer", params
                # A challenge may name a scope wider than the one asked for (new actions).
                wanted = params.get("scope") or scope
                self._tokens.pop(scope, None)
                value = self._fetch_token(wanted, params, store_as=scope)
            elif "basic" in by_scheme:
                creds = self._credentials()
                if creds is None or not creds.username:
                    raise AuthError(f"{self.registry} asks for a username and password and "
                                    "none are configured (docker login, or REGISTRY_AUTH_FILE)")
                self._scheme = "basic"
                self._basic = value = basic_header(creds)
            else:
                raise AuthError(f"{self.registry} answered 401 with no challenge this client "
                                f"can meet ({header!r})")
            if value == rejected:
                raise AuthError(f"{self.registry}: access denied with the configured "
                                "credentials" if self._credentials() else
                                f"{self.registry}: access denied (anonymous access refused; "
                                "are credentials needed?)")
            return value

    def _fetch_token(self, scope: str, params: dict[str, str], store_as: str | None = None
                     ) -> str:
        realm = params.get("realm")
        if not realm:
            raise AuthError(f"{self.registry}: Bearer challenge without a realm")
        url = httpx.URL(realm)
        if url.scheme != "https" and not (url.scheme == "http" and is_loopback(url.host)):
            raise AuthError(f"{self.registry}: token realm {realm} is not https")
        creds = self._credentials()
        query: list[tuple[str, str]] = []
        if params.get("service"):
            query.append(("service", params["service"]))
        for s in scope.split(" "):
            if s:
                query.append(("scope", s))
        try:
            if creds is not None and creds.identity_token:
                form = dict(query, grant_type="refresh_token", client_id="ociext4",
                            refresh_token=creds.identity_token)
                form["scope"] = scope
                req = self._client.build_request("POST", url, data=form)
            else:
                if creds and creds.username:
                    query.append(("account", creds.username))
                req = self._client.build_request("GET", url, params=query)
                if creds and creds.username:
                    req.headers["Authorization"] = basic_header(creds)
            resp = self._client.send(req, stream=True)
            try:
                body = read_limited(resp, _MAX_TOKEN_RESPONSE, f"{self.registry}: token server "
                                    f"{realm}")
            finally:
                resp.close()
        except httpx.HTTPError as e:
            raise AuthError(f"{self.registry}: token request to {realm} failed ({e})") from None
        if resp.status_code in (401, 403):
            raise AuthError(f"{self.registry}: the token server {realm} refused the "
                            f"{'credentials' if creds else 'anonymous request'} "
                            f"({resp.status_code})")
        if resp.status_code != 200:
            raise AuthError(f"{self.registry}: token server {realm} answered "
                            f"{resp.status_code}")
        try:
            doc: dict[str, Any] = json.loads(body)
            value = str(doc.get("token") or doc.get("access_token") or "")
        except (ValueError, AttributeError):
            raise AuthError(f"{self.registry}: token server {realm} sent no JSON") from None
        if not value:
            raise AuthError(f"{self.registry}: token server {realm} sent no token")
        try:
            lifetime = float(doc.get("expires_in") or _DEFAULT_LIFETIME)
        except (TypeError, ValueError):
            lifetime = _DEFAULT_LIFETIME
        lifetime = max(lifetime - _EXPIRY_MARGIN, lifetime / 2)
        self._tokens[store_as or scope] = _Token(value, time.monotonic() + lifetime)
        return f"Bearer {value}"

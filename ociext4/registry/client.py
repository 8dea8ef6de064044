"""One registry's HTTP side: scheme and TLS choice, Authorization on the
registry's own host only, redirects followed by hand (so credentials never go
to a CDN), and retries with capped backoff on 429 (honouring Retry-After),
5xx and dropped connections."""

from __future__ import annotations

import email.utils
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from ..errors import AuthError, RegistryError, RegistryUnreachable
from ..store import PullPolicy
from ..tuning import apply_http_reads
from .auth import Authenticator, is_loopback
from .bodies import read_limited
from .credentials import Credentials, lookup

RETRY_STATUS = {429, 500, 502, 503, 504}
TRANSIENT = (httpx.TransportError,)
MAX_REDIRECTS = 5


@dataclass(frozen=True)
class Options:
    """How to reach registries: hosts allowed plain http (loopback always is),
    a CA bundle to trust, the retry policy, and when to ask at all."""
    insecure: frozenset[str] = frozenset()
    ca_cert: str | None = None
    attempts: int = 6              # for 429 and 5xx answers and connections reset mid-body
    connect_attempts: int = 2      # no HTTP answer at all: refused, no such host, not HTTP
    connect_retry: float = 0.2     # the pause before that one quick retry
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    timeout: float = 60.0          # seconds without a byte before a read gives up
    timeout_attempts: int = 2      # tries that time out in a row before the pull fails
    credentials: Callable[[str, str], Credentials | None] = field(default=lookup)
    pull: PullPolicy = PullPolicy.MISSING  # when a cached tag is checked against the registry
    # Registry name -> mirrors to try first, in order (the origin is tried last).
    mirrors: dict[str, tuple[str, ...]] = field(default_factory=dict)
    warn: Callable[[str], None] | None = None  # told when a pull goes on despite a problem


def tls_problem(e: Exception, host: str) -> RegistryError | None:
    """A certificate failure is not transient: say so at once, with the way out."""
    text = str(e)
    if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
        return RegistryError(f"{host}: TLS certificate not trusted ({text.split('(_ssl')[0]}); "
                             f"give its CA with --ca-cert FILE, or --insecure {host}")
    return None


def no_answer(what: str, host: str, opts: Options, tries: int) -> RegistryError:
    return RegistryUnreachable(f"{what}: no answer from {host} within {opts.timeout:g} s "
                               f"({tries} tries)")


def unreachable(what: str, host: str, e: Exception) -> RegistryUnreachable:
    """Refused, unknown host, or something that does not speak HTTP: waiting
    would not change it, so it is not retried with backoff."""
    reason = str(e) or type(e).__name__
    if isinstance(e, httpx.RemoteProtocolError):
        reason = f"no HTTP answer: {reason}"
    return RegistryUnreachable(f"{what}: cannot reach {host} ({reason})")


def retry_delay(resp: httpx.Response | None, attempt: int, opts: Options) -> float:
    """Retry-After (seconds or an HTTP date) when given, else exponential backoff, capped."""
    if resp is not None and (value := resp.headers.get("retry-after")):
        try:
            delay = float(value)
        except ValueError:
            try:
                delay = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                return min(opts.backoff * (2 ** attempt), opts.max_backoff)
        return max(0.0, min(delay, opts.max_retry_after))
    return min(opts.backoff * (2 ** attempt), opts.max_backoff)


class RegistryClient:
    """Talks to the registry at `host` for `repository`; safe to share between threads."""

    def __init__(self, host: str, repository: str, opts: Options | None = None) -> None:
        self.host, self.repository = host, repository
        self.opts = opts or Options()
        self._insecure = host in self.opts.insecure
        verify: ssl.SSLContext | bool = True
        if self._insecure:
            verify = False
        elif self.opts.ca_cert:
            ctx = ssl.create_default_context()
            try:
                ctx.load_verify_locations(self.opts.ca_cert)
            except (OSError, ssl.SSLError) as e:
                raise RegistryError(f"{self.opts.ca_cert}: not a usable CA bundle ({e})") from None
            verify = ctx
        apply_http_reads()
        self.http = httpx.Client(verify=verify, follow_redirects=False,
                                 timeout=httpx.Timeout(self.opts.timeout, connect=15.0),
                                 limits=httpx.Limits(max_connections=16),
                                 headers={"User-Agent": "ociext4"})
        self.auth = Authenticator(host, lambda: self.opts.credentials(host, repository),
                                  self.http)
        self._base: str | None = None
        self._base_lock = threading.Lock()
        # No repository: a login check, which asks for a token of no scope.
        self.scope = f"repository:{repository}:pull" if repository else ""

    def close(self) -> None:
        self.http.close()

    def base(self) -> str:
        """https://host, or http://host for loopback and --insecure hosts that
        do not speak TLS (as docker does: https first)."""
        with self._base_lock:
            if self._base is None:
                self._base = self._probe()
            return self._base

    def _probe(self) -> str:
        https = f"https://{self.host}"
        if not (self._insecure or is_loopback(httpx.URL(https).host)):
            return https
        try:
            self.http.get(f"{https}/v2/", timeout=5.0)
            return https
        except httpx.TransportError as e:
            if err := tls_problem(e, self.host):
                raise err from None
            return f"http://{self.host}"

    def url(self, path: str) -> str:
        return f"{self.base()}/v2/{self.repository}/{path}"

    def open(self, method: str, url: str, headers: dict[str, str] | None = None,
             what: str = "") -> httpx.Response:
        """Sends the request and returns the streamed response once it is a
        success (2xx) or a final failure; the caller closes it."""
        what = what or url
        attempt = 0
        timeouts = 0
        refusals = 0
        challenges = 0
        hops = 0
        target = httpx.URL(url)
        if target.scheme != "https" and not self._plain_ok(target):
            raise RegistryError(f"{what}: {target.scheme} to {target.host} refused (https only, "
                                "except loopback and --insecure hosts)")
        while True:
            send = dict(headers or {})
            own_host = target.netloc.decode("ascii") == self.host
            if own_host and (value := self.auth.header(self.scope)):
                send["Authorization"] = value
            try:
                resp = self.http.send(self.http.build_request(method, target, headers=send),
                                      stream=True)
            except TRANSIENT as e:
                if err := tls_problem(e, target.host):
                    raise err from None
                if isinstance(e, httpx.TimeoutException):
                    timeouts += 1
                    if timeouts >= self.opts.timeout_attempts:
                        raise no_answer(what, target.host, self.opts, timeouts) from None
                    continue
                # No answer yet: a connection that failed before any response.
                refusals += 1
                if refusals >= self.opts.connect_attempts:
                    raise unreachable(what, target.netloc.decode("ascii"), e) from None
                time.sleep(self.opts.connect_retry)
                continue
            status = resp.status_code
            if status == 401 and own_host:
                resp.close()
                challenges += 1
                if challenges > 2:
                    how = "with the configured credentials" if self.auth.has_credentials() \
                        else "to anonymous requests (no credentials configured for it)"
                    raise AuthError(f"{what}: access denied by {self.host} {how}")
                self.auth.challenge(resp.headers.get("www-authenticate", ""), self.scope,
                                    send.get("Authorization"))
                continue
            if status in (301, 302, 303, 307, 308) and "location" in resp.headers:
                resp.close()
                hops += 1
                if hops > MAX_REDIRECTS:
                    raise RegistryError(f"{what}: more than {MAX_REDIRECTS} redirects")
                nxt = target.join(resp.headers["location"])
                if nxt.scheme not in ("https", "http"):
                    raise RegistryError(f"{what}: redirect to {nxt.scheme}: refused")
                if nxt.scheme == "http" and not self._plain_ok(nxt):
                    raise RegistryError(f"{what}: redirect to plain http ({nxt.host}) refused")
                target = nxt
                if status == 303:
                    method = "GET"
                continue
            if status in RETRY_STATUS and attempt + 1 < self.opts.attempts:
                delay = retry_delay(resp, attempt, self.opts)
                resp.close()
                time.sleep(delay)
                attempt += 1
                continue
            return resp

    def _plain_ok(self, url: httpx.URL) -> bool:
        return is_loopback(url.host) or url.netloc.decode("ascii") in self.opts.insecure


def error_for(resp: httpx.Response, what: str) -> RegistryError:
    """A one-line error for a failed response, with the registry's own message
    if any; status, the registry's first error code and whether it is worth
    trying again later go with it as data."""
    detail = code = ""
    try:
        doc = json.loads(read_limited(resp, 64 << 10, what))
        errs = [e for e in doc.get("errors") or [] if isinstance(e, dict)]
        if errs:
            code = str(errs[0].get("code") or "")
            detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errs[:3])
    except (ValueError, AttributeError, TypeError, RegistryError, httpx.HTTPError):
        pass
    status = resp.status_code
    data = {"status": status, "code": code, "temporary": status in RETRY_STATUS}
    if status == 404:
        return RegistryError(f"{what}: not found" + (f" ({detail})" if detail else ""), **data)
    if status in (401, 403):
        return AuthError(f"{what}: access denied ({status})"
                         + (f": {detail}" if detail else ""), **data)
    return RegistryError(f"{what}: HTTP {status}" + (f" ({detail})" if detail else ""), **data)


def check_login(host: str, opts: Options) -> None:
    """Raises AuthError unless the registry accepts the options' credentials
    (a GET of /v2/, answering its challenge, as `docker login` checks)."""
    client = RegistryClient(host, "", opts)
    try:
        resp = client.open("GET", f"{client.base()}/v2/", what=host)
        try:
            if resp.status_code != 200:
                raise error_for(resp, host)
        finally:
            resp.close()
    finally:
        client.close()

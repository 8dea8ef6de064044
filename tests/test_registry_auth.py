"""Pieces of the registry client that need no server: challenge parsing,
realm and scheme rules, retry delays."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest

from ociext4.errors import AuthError
from ociext4.registry.auth import Authenticator, Challenge, is_loopback, parse_challenges
from ociext4.registry.client import Options, RegistryClient, retry_delay
from ociext4.registry.credentials import Credentials


def test_bearer_and_basic_challenges_parse():
    header = ('Bearer realm="https://auth.example/token",service="registry.example",'
              'scope="repository:a/b:pull,push repository:c:pull", Basic realm="x, y"')
    assert parse_challenges(header) == [
        Challenge("bearer", {"realm": "https://auth.example/token",
                             "service": "registry.example",
                             "scope": "repository:a/b:pull,push repository:c:pull"}),
        Challenge("basic", {"realm": "x, y"})]
    assert parse_challenges('Basic realm=plain') == [Challenge("basic", {"realm": "plain"})]
    assert parse_challenges('Bearer realm="a\\"b"')[0].params["realm"] == 'a"b'


def test_loopback_names():
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "localhost", "[::1]"]))
    assert not any(map(is_loopback, ["10.0.0.1", "example.com", "localhost.example.com"]))


def test_token_realms_must_be_https_except_on_loopback():
    client = httpx.Client()
    auth = Authenticator("reg.example", lambda: None, client)
    with pytest.raises(AuthError, match="token realm http://auth.example/token is not https"):
        auth.challenge('Bearer realm="http://auth.example/token",service="s"',
                       "repository:a:pull", None)


def test_basic_challenge_without_credentials_says_what_to_do():
    auth = Authenticator("reg.example", lambda: None, httpx.Client())
    with pytest.raises(AuthError, match="none are configured"):
        auth.challenge('Basic realm="r"', "repository:a:pull", None)
    auth = Authenticator("reg.example", lambda: Credentials("u", "p"), httpx.Client())
    value = auth.challenge('Basic realm="r"', "repository:a:pull", None)
    assert value == "Basic dTpw"
    with pytest.raises(AuthError, match="denied with the configured credentials"):
        auth.challenge('Basic realm="r"', "repository:a:pull", value)


def test_only_loopback_and_insecure_hosts_may_use_plain_http():
    # No connection is made for a non-loopback host: https is the only choice.
    assert RegistryClient("reg.invalid:5000", "a").base() == "https://reg.invalid:5000"
    assert RegistryClient("reg.invalid", "a", Options(insecure=frozenset({"reg.invalid"})))\
        ._insecure


def test_retry_delay_honours_retry_after_and_caps_backoff():
    opts = Options(backoff=0.5, max_backoff=8.0, max_retry_after=60.0)
    resp = httpx.Response(429, headers={"Retry-After": "3"})
    assert retry_delay(resp, 0, opts) == 3.0
    assert retry_delay(httpx.Response(429, headers={"Retry-After": "86400"}), 0, opts) == 60.0
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_delay(httpx.Response(503, headers={"Retry-After": when}), 0, opts) <= 31
    assert [retry_delay(None, a, opts) for a in range(6)] == [0.5, 1, 2, 4, 8, 8]


def test_garbage_retry_after_falls_back_to_backoff():
    opts = Options(backoff=0.5, max_backoff=8.0)
    assert retry_delay(httpx.Response(429, headers={"Retry-After": "soon"}), 2, opts) == 2.0


def test_plain_http_urls_to_other_hosts_are_refused_before_connecting():
    client = RegistryClient("reg.invalid", "a")
    with pytest.raises(Exception, match="http to cdn.invalid refused"):
        client.open("GET", "http://cdn.invalid/blob", what="layer X")

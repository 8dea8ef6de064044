"""TLS: a registry with a private CA is refused until its CA is given with
--ca-cert; certificate failures are reported at once, not retried."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cli_helpers import ociext4
from support.registry import Registry, self_signed, start_registry


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, image_layout
                 ) -> Iterator[tuple[Registry, str]]:
    root = tmp_path_factory.mktemp("reg-tls")
    cert, key = self_signed(root, "127.0.0.1", "IP:127.0.0.1")
    reg = start_registry(root, tls=(cert, key))
    try:
        reg.push(image_layout, "test/img")
        yield reg, str(cert)
    finally:
        reg.stop()


def test_an_untrusted_certificate_is_refused_with_the_way_out(tls_registry):
    reg, _ = tls_registry
    proc = ociext4("pull", f"{reg.host}/test/img", check=False)
    assert proc.returncode == 1
    assert "TLS certificate not trusted" in proc.stderr and "--ca-cert" in proc.stderr


def test_ca_cert_makes_a_private_ca_trusted(tls_registry, tmp_path):
    reg, cert = tls_registry
    out = ociext4("pull", f"{reg.host}/test/img", "--ca-cert", cert).stdout
    assert out.startswith(f"oci:{tmp_path / 'cache'}@sha256:")


def test_insecure_skips_verification(tls_registry):
    reg, _ = tls_registry
    ociext4("pull", f"{reg.host}/test/img", "--insecure", reg.host)

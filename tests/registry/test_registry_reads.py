"""How layer downloads read from the connection: the command line asks for
reads of up to 1 MiB (ociext4.tuning), a library caller keeps httpcore's
own size unless it asks too; either way every byte is checked the same."""

from __future__ import annotations

from pathlib import Path

import pytest
from httpcore._sync import http11
from support.registry import Registry

import ociext4
from ociext4 import tuning
from ociext4.store import Ingest


def _pull_chunk_sizes(host: str, cache: Path, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    sizes: list[int] = []
    write = Ingest.write

    def recording(self: Ingest, data: bytes | memoryview) -> None:
        sizes.append(len(data))
        write(self, data)

    monkeypatch.setattr(Ingest, "write", recording)
    pulled = ociext4.pull(f"{host}/test/img", cache=cache)
    assert pulled.manifest_digest.startswith("sha256:")
    monkeypatch.setattr(Ingest, "write", write)
    return sizes


def test_a_tuned_process_reads_downloads_a_mebibyte_at_a_time(open_registry: Registry,
                                                              tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch):
    # Both the flag and httpcore's class attribute are process-wide: restored after.
    monkeypatch.setattr(tuning, "_http_reads", False)
    monkeypatch.setattr(http11.HTTP11Connection, "READ_NUM_BYTES", 64 << 10)
    untuned = _pull_chunk_sizes(open_registry.host, tmp_path / "a", monkeypatch)
    assert max(untuned) <= 64 << 10
    tuning.tune_http_reads()
    tuned = _pull_chunk_sizes(open_registry.host, tmp_path / "b", monkeypatch)
    # The fixture's 3 MiB incompressible layer arrives in reads above 64 KiB.
    assert 64 << 10 < max(tuned) <= tuning.HTTP_READ
    assert sum(tuned) == sum(untuned)

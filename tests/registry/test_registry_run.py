"""`ociext4 run` of a registry image: pulled into the blob cache, unpacked
once into the run cache, booted under TCG; the second run reuses both."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import ociext4
from runimages import busybox_layout
from support.registry import Registry


@pytest.fixture(scope="session")
def busybox_ref(open_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> str:
    layout = busybox_layout(tmp_path_factory.mktemp("bb") / "layout")
    return open_registry.push(layout, "test/busybox")


def test_run_pulls_a_registry_image_once_and_boots_the_cached_ext4(busybox_ref, cache: Path):
    first = ociext4("run", "--accel", "tcg", busybox_ref, "--", "sh", "-c", "echo hi; exit 3",
                    check=False)
    assert (first.returncode, first.stdout) == (3, "hi\n"), first.stderr
    [img] = (cache / "run" / "images").glob("*.img")
    stamp = img.stat().st_mtime_ns
    second = ociext4("run", "--accel", "tcg", busybox_ref, "--", "cat", "/etc/hostname",
                     check=False)
    assert second.returncode == 0, second.stderr
    assert img.stat().st_mtime_ns == stamp   # the same ext4, not unpacked again
    assert list((cache / "run" / "images").glob("*.img")) == [img]

"""Shared fixtures and markers.

Markers:
  needs_root       -- building source trees (chown, mknod, trusted.* xattrs)
  needs_root_loop  -- also mounts images through loop devices and runs e2fsck

Both skip with the reason when the machine cannot do it. Large source trees
are session fixtures, built once and only when a test asks for one.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

# Make `support` importable whatever --import-mode the project picks.
_TESTS_DIR = str(Path(__file__).resolve().parent)
if _TESTS_DIR not in sys.path:
    sys.path.insert(0, _TESTS_DIR)
# The fixture builders (fixtures/*.py) are importable too.
_FIXTURES_DIR = str(Path(__file__).resolve().parent.parent / "fixtures")
if _FIXTURES_DIR not in sys.path:
    sys.path.append(_FIXTURES_DIR)

from support import trees  # noqa: E402

try:
    from hypothesis import settings
except ImportError:  # pragma: no cover - hypothesis is a test dependency
    pass
else:
    settings.register_profile("ci", max_examples=25, deadline=None)
    settings.register_profile("dev", max_examples=200, deadline=None)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "needs_root: needs root (chown, mknod, trusted.* xattrs)")
    config.addinivalue_line("markers", "needs_root_loop: needs root, loop mounting and e2fsprogs")


@functools.cache
def root_missing_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (chown, mknod, trusted.* xattrs)"
    return None


@functools.cache
def root_loop_missing_reason() -> str | None:
    """Why loop-mounting ext4 images cannot work here, or None if it can.

    Probed for real once per session: being root is not enough inside many
    containers (no /dev/loop*, no CAP_SYS_ADMIN in the user namespace).
    """
    if reason := root_missing_reason():
        return reason
    for tool in ("e2fsck", "mkfs.ext4", "debugfs", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} not found (install e2fsprogs / mount)"
    with tempfile.TemporaryDirectory(prefix="ociext4-probe-") as tmp:
        img, mnt = Path(tmp, "probe.img"), Path(tmp, "mnt")
        mnt.mkdir()
        steps = [
            ["mkfs.ext4", "-q", "-F", str(img), "4M"],
            ["mount", "-o", "loop,ro", str(img), str(mnt)],
            ["umount", str(mnt)],
        ]
        for argv in steps:
            proc = subprocess.run(
                argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False
            )
            if proc.returncode != 0:
                out = proc.stdout.decode("utf-8", "replace").strip()
                return f"loop mounting unavailable: {' '.join(argv[:2])} failed: {out}"
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("needs_root_loop") and (reason := root_loop_missing_reason()):
        pytest.skip(reason)
    if item.get_closest_marker("needs_root") and (reason := root_missing_reason()):
        pytest.skip(reason)


@pytest.fixture
def needs_root_loop() -> None:
    """Fixture form of the marker, for use in other fixtures."""
    if reason := root_loop_missing_reason():
        pytest.skip(reason)


@pytest.fixture
def needs_root() -> None:
    if reason := root_missing_reason():
        pytest.skip(reason)


# --------------------------------------------------------------------------
# source trees built once per session


def _session_tree(factory: pytest.TempPathFactory, name: str, spec: list[trees.Item]) -> Path:
    if reason := root_missing_reason():
        pytest.skip(reason)
    return trees.make_tree(factory.mktemp(name) / "root", spec)


@pytest.fixture(scope="session")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every small ready-made spec in one tree (about 160 entries)."""
    return _session_tree(tmp_path_factory, "small", trees.combine(*trees.small_specs().values()))


@pytest.fixture(scope="session")
def many_files_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """50,000 empty files in one directory."""
    return _session_tree(tmp_path_factory, "many-files", trees.dir_with_many_files())


@pytest.fixture(scope="session")
def many_subdirs_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """70,000 subdirectories in one directory."""
    return _session_tree(tmp_path_factory, "many-subdirs", trees.dir_with_many_subdirs())


@pytest.fixture(scope="session")
def sparse_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sparse files up to 1 GiB apparent size (a few KiB on disk)."""
    return _session_tree(tmp_path_factory, "sparse", trees.sparse_files())


@pytest.fixture
def mkfs_image(tmp_path: Path, needs_root_loop: None) -> Iterator[Path]:
    """A fresh, empty 16 MiB ext4 image made by mkfs.ext4."""
    img = tmp_path / "fresh.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img), "16M"], check=True)
    yield img

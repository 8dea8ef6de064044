"""The layer rules other tools read differently from a naive reading, each
unpacked by ociext4 and by `umoci unpack` and compared entry by entry."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from cli_helpers import ociext4
from ocilayouts import edge_cases, layout_from_tars, old_style_dir_tar
from support.fscheck import assert_same_tree, snapshot

from ociext4.ext4 import Ext4Writer
from ociext4.sources.tarball import read_tar

pytestmark = pytest.mark.needs_root_loop

needs_umoci = pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci not installed")


@needs_umoci
@pytest.mark.parametrize("compression", [None, "gz", "zst"])
@pytest.mark.parametrize("case", sorted(edge_cases()))
def test_each_edge_case_unpacks_like_umoci(tmp_path, case, compression):
    tars, clocked = edge_cases()[case]
    layout = layout_from_tars(tmp_path / "layout", tars, compression)
    # umoci reads gzip and plain layers only: a zstd image is compared with
    # its gzip twin.
    twin = layout if compression != "zst" else layout_from_tars(tmp_path / "twin", tars, "gz")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{twin}:latest", str(bundle)], check=True,
                   capture_output=True)
    img = tmp_path / "out.img"
    ociext4("unpack", f"oci:{layout}:latest", img)
    expected = snapshot(bundle / "rootfs")
    # umoci stamps the root, and the directories it made or changed without
    # a header saying when, with its own clock.
    for path in {".", *clocked}:
        expected[path].mtime_ns = None
    expected["."].mode = None
    assert_same_tree(expected, img)


def test_v7_entry_named_with_a_trailing_slash_is_a_directory_as_gnu_tar_reads_it(tmp_path):
    archive = tmp_path / "v7.tar"
    archive.write_bytes(old_style_dir_tar(magic=b"", kind=b"0"))
    extracted = tmp_path / "gnu"
    extracted.mkdir()
    subprocess.run(["tar", "-xf", str(archive), "-C", str(extracted)], check=True)
    img = tmp_path / "out.img"
    with Ext4Writer(img) as w, open(archive, "rb") as f:
        w.commit(read_tar(f, str(archive), w))
    expected = snapshot(extracted)
    expected["."].mtime_ns = expected["."].mode = None
    assert (extracted / "old").is_dir()
    assert_same_tree(expected, img)

"""The README's first command in pieces: the quickstart's image unpacks to a
clean ext4 image that holds the top layer's changes, and boots to the image's
own greeting."""

from __future__ import annotations

import subprocess
from pathlib import Path

import build_smalldeb
import pytest
from cli_helpers import ociext4
from support.fscheck import e2fsck_clean


@pytest.mark.needs_root
def test_the_quickstart_image_unpacks_and_boots_to_its_greeting(tmp_path_factory):
    info = build_smalldeb.build()
    layout = build_smalldeb.write_layout(Path(str(info["tar_gz"])),
                                         tmp_path_factory.mktemp("qs") / "layout")
    img = layout.parent / "smalldeb.img"
    ociext4("unpack", f"oci:{layout}:latest", img, "--no-fsync")
    e2fsck_clean(img)
    listing = subprocess.run(["debugfs", "-R", "ls -p /usr/share", str(img)],
                             capture_output=True, text=True, check=True).stdout
    assert "/zoneinfo/" in listing and "/doc/" not in listing   # the whiteout applied
    p = ociext4("run", "--accel", "tcg", img, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout == ("hello from an image ociext4 unpacked\n"
                        "user in /home/user on Linux " + p.stdout.rsplit(" ", 1)[-1])
    assert p.stdout.endswith("-amd64\n")

"""The writer's checks on the tree it is given, apart from the property tests."""

from __future__ import annotations

import subprocess

import pytest

from ociext4.errors import ImageError
from ociext4.ext4 import Ext4Writer
from ociext4.tree import new_dir


def test_a_directory_under_two_names_is_refused_and_nothing_is_left(tmp_path):
    root, shared = new_dir(), new_dir()
    root.children = {b"a": shared, b"b": shared}
    shared.names = 2
    out = tmp_path / "out.img"
    with Ext4Writer(out) as writer, pytest.raises(ImageError, match="has two parents"):
        writer.commit(root)
    assert list(tmp_path.iterdir()) == []


def test_lost_found_made_by_the_caller_is_kept_as_the_first_inode(tmp_path):
    root = new_dir()
    lost = new_dir(0o700)
    root.children = {b"lost+found": lost, b"z": new_dir()}
    lost.names = root.children[b"z"].names = 1
    img = tmp_path / "out.img"
    with Ext4Writer(img) as writer:
        writer.commit(root)
    listing = subprocess.run(["debugfs", "-R", "ls -l /", str(img)], capture_output=True,
                             text=True, check=True).stdout
    rows = [line.split() for line in listing.splitlines() if line.strip()]
    inodes = {row[-1]: int(row[0]) for row in rows}
    assert inodes["lost+found"] == 11 and inodes["z"] == 12   # as mke2fs numbers them

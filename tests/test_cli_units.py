"""Sizes on the command line."""

from __future__ import annotations

import argparse

import pytest
from ociext4_cli.units import parse_size


@pytest.mark.parametrize(("text", "value"), [
    ("4096", 4096), ("512M", 512 << 20), ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("64k", 65536),
])
def test_sizes_accept_binary_suffixes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1G", "2Q"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)

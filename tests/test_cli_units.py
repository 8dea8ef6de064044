"""Sizes and durations on the command line."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from ociext4_cli.units import parse_seconds, parse_size


@pytest.mark.parametrize(("text", "value"), [
    ("4096", 4096), ("512M", 512 << 20), ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("64k", 65536),
])
def test_sizes_accept_binary_suffixes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1G", "2Q"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


def test_local_commands_start_without_loading_the_registry_client():
    # httpx and the registry client are a third of the CLI's start-up; a
    # local unpack or mkfs must not pay for them.
    code = ("import sys, ociext4_cli.main; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'httpx' "
            "or m.startswith('ociext4.registry')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("text", ["0", "-1", "nan", "inf", "-inf", "soon", ""])
def test_durations_must_be_positive_and_finite(text):
    with pytest.raises(argparse.ArgumentTypeError, match="a positive number of seconds"):
        parse_seconds(text)
    assert parse_seconds("0.5") == 0.5


@pytest.mark.parametrize(("argv", "code"), [
    (["pull", "r.example/a", "--timeout", "nan"], 2),
    (["run", "--registry-timeout", "inf", "x.img"], 125),
    (["run", "--timeout", "-1", "x.img"], 125),
])
def test_a_bad_duration_is_one_option_error(argv, code):
    proc = subprocess.run([sys.executable, "-m", "ociext4_cli.main", *argv],
                          capture_output=True, text=True)
    assert proc.returncode == code
    assert proc.stderr.startswith("ociext4: error: ") and proc.stderr.count("\n") == 1

"""Sizes and durations on the command line."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from ociext4_cli.units import parse_seconds, parse_size


@pytest.mark.parametrize(("text", "value"), [
    ("4096", 4096), ("512M", 512 << 20), ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("64k", 65536),
    ("9" * 400, int("9" * 400)), ("0.5T", 1 << 39),
])
def test_sizes_accept_binary_suffixes(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1G", "2Q"])
def test_bad_sizes_are_refused(text):
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)


def _loaded_after_parsing(argv: list[str]) -> set[str]:
    code = ("import sys, ociext4_cli.main as m; m.build_parser(sys.argv[1:]); "
            "print(' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True,
                         check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("command", ["unpack", "mkfs"])
def test_local_commands_start_without_loading_the_registry_client_or_the_runner(command):
    # httpx and the registry client are a third of the CLI's start-up; a
    # local unpack or mkfs must not pay for them, nor for the VM runner.
    loaded = _loaded_after_parsing([command, "oci:dir", "out.img"])
    assert f"ociext4_cli.{command}" in loaded
    assert not {m for m in loaded if m.split(".")[0] == "httpx" or
                m.startswith(("ociext4.registry", "ociext4.vm"))}


def test_version_and_help_load_no_command_and_no_image_code():
    for argv in (["--version"], ["--help"], []):
        loaded = _loaded_after_parsing(argv)
        assert not {m for m in loaded if m.startswith(("ociext4_cli.", "ociext4.ext4",
                                                       "ociext4.api", "ociext4.model"))
                    and m not in ("ociext4_cli.main", "ociext4_cli.units")}


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

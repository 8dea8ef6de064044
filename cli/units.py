"""Sizes and durations as people write them on command lines: 512M, 2G,
1.5GiB, 4096; 30, 0.5."""

from __future__ import annotations

import argparse
import math
import re
from fractions import Fraction

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    m = _SIZE.match(text)
    if not m:
        raise argparse.ArgumentTypeError(f"invalid size {text!r} (examples: 4096, 512M, 2G)")
    # Exact, not a float: any number of digits is that number (a float of
    # 400 digits is infinity, which int() refuses with an OverflowError).
    return int(Fraction(m.group(1)) * _UNITS[m.group(2).lower()])


def parse_seconds(text: str) -> float:
    """A positive, finite number of seconds (nan and inf are not)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: a positive number of seconds")
    return value

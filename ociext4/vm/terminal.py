"""The host's terminal for `run -t`: raw while the guest's terminal does
the line editing and echo, restored on every way out."""

from __future__ import annotations

import contextlib
import os
import termios
import tty
from collections.abc import Iterator


def window_size(fd: int) -> tuple[int, int] | None:
    try:
        size = os.get_terminal_size(fd)
    except OSError:
        return None
    return size.lines, size.columns


@contextlib.contextmanager
def raw(fd: int | None) -> Iterator[None]:
    """Raw mode on `fd` if it is a terminal; nothing otherwise."""
    if fd is None or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)

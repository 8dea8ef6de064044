"""Starting QEMU and relaying what the guest sends: the command's stdout and
stderr to the caller's streams as they arrive, the kernel's console to
stderr (--console) or to a short buffer kept for error messages, and the
init's status line."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .qemu import Channels, VmSpec, command_line, find_qemu

TAIL = 4096  # bytes of console and QEMU output kept for error messages
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, slots=True)
class Status:
    kind: str    # "exit", "signal" or "error" (the init's own failure)
    value: int


@dataclass(frozen=True, slots=True)
class Outcome:
    status: Status | None   # None: the guest never reported one
    timed_out: bool
    qemu_returncode: int | None
    console_tail: bytes
    qemu_stderr: bytes


def parse_status(control: bytes) -> Status | None:
    """The last well-formed "status KIND N" line the init sent."""
    found = None
    for line in control.decode("ascii", "replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "status" and parts[1] in ("exit", "signal", "error") \
                and parts[2].isdigit():
            found = Status(parts[1], int(parts[2]))
    return found


def _die_with_parent() -> None:
    """Runs in the child before exec: QEMU gets SIGKILL if ociext4 dies, so a
    killed `ociext4 run` never leaves a VM running on its own."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _pump(fd: int, sink: Callable[[bytes], None]) -> None:
    try:
        while chunk := os.read(fd, 65536):
            sink(chunk)
    finally:
        os.close(fd)


def _to_stream(stream: BinaryIO) -> Callable[[bytes], None]:
    def write(chunk: bytes) -> None:
        with contextlib.suppress(BrokenPipeError):
            stream.write(chunk)
            stream.flush()
    return write


class _Tail:
    def __init__(self) -> None:
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        del self.data[:-TAIL]


@contextlib.contextmanager
def _pipes(n: int) -> Iterator[list[tuple[int, int]]]:
    made: list[tuple[int, int]] = []
    try:
        for _ in range(n):
            made.append(os.pipe())
        yield made
    finally:
        for r, w in made:
            for fd in (r, w):
                with contextlib.suppress(OSError):
                    os.close(fd)


def boot(spec: VmSpec, stdout: BinaryIO, stderr: BinaryIO, timeout: float | None = None,
         show_console: bool = False) -> Outcome:
    """Runs the VM to the end (or the timeout) and returns what happened;
    the serial ports reach this process through pipes."""
    qemu = find_qemu()
    control, console, qemu_err = bytearray(), _Tail(), _Tail()
    with _pipes(4) as pipes:
        (con_r, con_w), (out_r, out_w), (err_r, err_w), (ctl_r, ctl_w) = pipes
        chans = Channels(f"/dev/fd/{con_w}", f"/dev/fd/{out_w}", f"/dev/fd/{err_w}",
                         f"/dev/fd/{ctl_w}")
        argv = command_line(spec, chans, qemu)
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, pass_fds=(con_w, out_w, err_w, ctl_w),
                                preexec_fn=_die_with_parent)
        # From here the pumps own the read ends and QEMU the write ends:
        # nothing is left for _pipes to close (twice).
        pipes.clear()
        for w in (con_w, out_w, err_w, ctl_w):
            os.close(w)
        readers = [(out_r, _to_stream(stdout)), (err_r, _to_stream(stderr)),
                   (con_r, _to_stream(stderr) if show_console else console.add),
                   (ctl_r, control.extend)]
        threads = [threading.Thread(target=_pump, args=r, daemon=True) for r in readers]
        assert proc.stderr is not None
        threads.append(threading.Thread(target=_pump, args=(os.dup(proc.stderr.fileno()),
                                                            qemu_err.add), daemon=True))
        proc.stderr.close()
        for t in threads:
            t.start()
        timed_out = False
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            proc.kill()
            proc.wait()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        for t in threads:
            t.join()
    return Outcome(parse_status(bytes(control)), timed_out, proc.returncode,
                   bytes(console.data), bytes(qemu_err.data))

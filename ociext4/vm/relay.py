"""Starting QEMU and relaying between it and this process on one thread:
the command's output frames to the caller's stdout and stderr, the caller's
stdin to the guest, signals and window sizes to the init, the kernel's
console to stderr (--console) or to a short buffer kept for error messages,
and the init's final status."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import select
import selectors
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .errors import VmError
from .qemu import Channels, VmSpec, command_line, find_qemu

TAIL = 4096          # bytes of console and QEMU output kept for error messages
CHUNK = 1 << 20      # bytes read at once from the output port and stdin
_HEAD = 5            # a frame's kind and little-endian length
FRAME_MAX = 1 << 20  # the init's frames hold at most 256 KiB
_PR_SET_PDEATHSIG = 1
# What docker run passes on (its sig-proxy): everything a user sends to
# stop or poke a process. SIGWINCH is turned into a window size instead.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2)
STOPPING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


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
    killed: bool = False             # still running --stop-timeout after a signal
    output_error: str | None = None  # the host could not write the output


def parse_status(payload: bytes) -> Status | None:
    """The init's "KIND N" (also accepted with a leading "status")."""
    parts = payload.decode("ascii", "replace").split()
    if parts[:1] == ["status"]:
        parts = parts[1:]
    if len(parts) == 2 and parts[0] in ("exit", "signal", "error") and parts[1].isdigit():
        return Status(parts[0], int(parts[1]))
    return None


def frame(kind: bytes, payload: bytes) -> bytes:
    return kind + len(payload).to_bytes(4, "little") + payload


@dataclass(slots=True)
class Streams:
    """The caller's side: descriptors, or file objects without one (BytesIO)."""

    stdin: int | BinaryIO | None = None     # None: the guest's stdin is empty
    stdout: int | BinaryIO | None = None    # None: dropped
    stderr: int | BinaryIO | None = None
    winsize: Callable[[], tuple[int, int] | None] | None = None   # rows, cols for -t


def die_with_parent() -> None:
    """Runs in the child before exec: QEMU gets SIGKILL if ociext4 dies, so a
    killed `ociext4 run` never leaves a VM running on its own."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _fd_of(stream: int | BinaryIO | None) -> int | None:
    if stream is None or isinstance(stream, int):
        return stream
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    stream.flush()
    return fd


class _Sink:
    """Writes whole payloads to a descriptor (or a file object), waiting
    when it is non-blocking and full."""

    def __init__(self, stream: int | BinaryIO | None) -> None:
        self.stream = stream
        self.fd = _fd_of(stream)
        self.closed = stream is None

    def write(self, data: memoryview) -> None:
        if self.closed:
            return
        if self.fd is None:
            assert not isinstance(self.stream, int) and self.stream is not None
            self.stream.write(data)
            return
        while data:
            try:
                n = os.write(self.fd, data)
            except BlockingIOError:
                select.select([], [self.fd], [])
                continue
            data = data[n:]


class _Tail:
    def __init__(self) -> None:
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        del self.data[:-TAIL]


@contextlib.contextmanager
def _forwarding(signals: tuple[int, ...], wake: socket.socket,
                pending: list[int]) -> Iterator[None]:
    """Signal handlers that only note the signal and wake the loop (Python
    runs them on the main thread; elsewhere nothing is forwarded)."""
    if not signals or threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, _frame: object) -> None:
        pending.append(signum)
        with contextlib.suppress(OSError):
            wake.send(b"\0")

    old = {s: signal.signal(s, note) for s in signals}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


class _Run:
    """The state of one relay loop."""

    def __init__(self, proc: subprocess.Popen[bytes], out: socket.socket, ctl: socket.socket,
                 stdin_sock: socket.socket, console_r: int, qemu_err_r: int, io: Streams,
                 show_console: bool, interactive: bool) -> None:
        self.proc, self.out, self.ctl, self.stdin_sock = proc, out, ctl, stdin_sock
        self.sel = selectors.PollSelector()   # poll: stdin may be a regular file
        self.stdout, self.stderr = _Sink(io.stdout), _Sink(io.stderr)
        self.io = io
        self.console, self.qemu_err = _Tail(), _Tail()
        self.show_console = show_console
        self.view = memoryview(bytearray(FRAME_MAX + _HEAD + CHUNK))
        self.fill = 0
        self.status: Status | None = None
        self.output_error: str | None = None
        self.open_fds = {out.fileno(), console_r, qemu_err_r}
        self.in_pending = bytearray()
        self.in_sent = 0
        self.in_eof = not interactive
        self.eof_sent = not interactive
        self.stdin_fd: int | None = None
        self.sel.register(out, selectors.EVENT_READ, self._on_out)
        self.sel.register(console_r, selectors.EVENT_READ,
                          functools.partial(self._on_console, console_r))
        self.sel.register(qemu_err_r, selectors.EVENT_READ,
                          functools.partial(self._on_qemu_err, qemu_err_r))
        if interactive:
            fd = _fd_of(io.stdin)
            if fd is not None:
                self.stdin_fd = fd
            elif io.stdin is not None and not isinstance(io.stdin, int):
                self.in_pending += io.stdin.read()
                self.in_eof = True
            else:
                self.in_eof = True
        self.stdin_sock.setblocking(False)
        self._want_stdin()

    # -------------------------------------------------------- host -> guest

    def send_ctl(self, kind: bytes, payload: bytes) -> None:
        with contextlib.suppress(OSError):
            self.ctl.sendall(frame(kind, payload))

    def _want_stdin(self) -> None:
        """Reads stdin only when what was read has gone to the guest."""
        if self.stdin_fd is not None and not self.in_eof and not self.in_pending:
            if self.stdin_fd not in self.sel.get_map():
                self.sel.register(self.stdin_fd, selectors.EVENT_READ, self._on_stdin)
        elif self.stdin_fd is not None and self.stdin_fd in self.sel.get_map():
            self.sel.unregister(self.stdin_fd)
        if self.in_pending and self.stdin_sock not in self.sel.get_map():
            self.sel.register(self.stdin_sock, selectors.EVENT_WRITE, self._on_stdin_sock)
        elif not self.in_pending and self.stdin_sock in self.sel.get_map():
            self.sel.unregister(self.stdin_sock)
        if self.in_eof and not self.in_pending and not self.eof_sent:
            self.eof_sent = True
            self.send_ctl(b"z", str(self.in_sent).encode())

    def _on_stdin(self) -> None:
        assert self.stdin_fd is not None
        try:
            chunk = os.read(self.stdin_fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.in_pending += chunk
        else:
            self.in_eof = True
        self._want_stdin()

    def _on_stdin_sock(self) -> None:
        try:
            n = self.stdin_sock.send(self.in_pending)
        except BlockingIOError:
            return
        except OSError:
            n = len(self.in_pending)   # the VM is gone; its end of stdin too
        del self.in_pending[:n]
        self.in_sent += n
        self._want_stdin()

    # -------------------------------------------------------- guest -> host

    def _write(self, sink: _Sink, which: int, data: memoryview) -> None:
        try:
            sink.write(data)
        except BrokenPipeError:
            # As on a host: the reader is gone, so the writer gets SIGPIPE.
            sink.closed = True
            self.send_ctl(b"c", str(which).encode())
        except OSError as e:
            sink.closed = True
            name = "stdout" if which == 1 else "stderr"
            if self.output_error is None:
                self.output_error = f"{name}: {e.strerror or e}"
            self.send_ctl(b"c", str(which).encode())

    def _on_out(self) -> None:
        # recv_into a fixed buffer, frames written straight out of it: the
        # output's bytes are copied once on their way through.
        view = self.view
        n = self.out.recv_into(view[self.fill:])
        if not n:
            self._close(self.out.fileno())
            return
        end = self.fill + n
        pos = 0
        while end - pos >= _HEAD:
            size = int.from_bytes(view[pos + 1:pos + _HEAD], "little")
            if size > FRAME_MAX:
                raise VmError(f"the guest sent a frame of {size} bytes")
            if end - pos - _HEAD < size:
                break
            kind = view[pos]
            payload = view[pos + _HEAD:pos + _HEAD + size]
            if kind == ord("o"):
                self._write(self.stdout, 1, payload)
            elif kind == ord("e"):
                self._write(self.stderr, 2, payload)
            elif kind == ord("s"):
                self.status = parse_status(bytes(payload))
            payload.release()
            pos += _HEAD + size
        view[:end - pos] = view[pos:end]
        self.fill = end - pos

    def _on_console(self, fd: int) -> None:
        chunk = os.read(fd, 65536)
        if not chunk:
            self._close(fd)
        elif self.show_console:
            self._write(self.stderr, 2, memoryview(chunk))
        else:
            self.console.add(chunk)

    def _on_qemu_err(self, fd: int) -> None:
        chunk = os.read(fd, 65536)
        if not chunk:
            self._close(fd)
        else:
            self.qemu_err.add(chunk)

    def _close(self, fd: int) -> None:
        self.sel.unregister(fd)
        self.open_fds.discard(fd)

    # ----------------------------------------------------------- the loop

    def loop(self, deadline: float | None, stop_timeout: float, wake: socket.socket,
             pending: list[int]) -> tuple[bool, bool]:
        """Runs until QEMU has closed everything; returns (timed out, killed)."""
        self.sel.register(wake, selectors.EVENT_READ, None)
        stop_at: float | None = None
        timed_out = killed = False
        while self.open_fds:
            now = time.monotonic()
            ends = [t for t in (deadline, stop_at) if t is not None]
            wait = max(0.0, min(ends) - now) if ends else None
            for key, _ in self.sel.select(wait):
                if key.data is None:
                    with contextlib.suppress(OSError):
                        wake.recv(4096)
                else:
                    key.data()
            while pending:
                sig = pending.pop(0)
                if sig == signal.SIGWINCH:
                    size = self.io.winsize() if self.io.winsize else None
                    if size:
                        self.send_ctl(b"w", f"{size[0]} {size[1]}".encode())
                    continue
                self.send_ctl(b"k", str(int(sig)).encode())
                if sig in STOPPING and stop_at is None:
                    stop_at = time.monotonic() + stop_timeout
            now = time.monotonic()
            if self.proc.poll() is None:
                if deadline is not None and now >= deadline and not timed_out:
                    timed_out = True
                    self.proc.kill()
                elif stop_at is not None and now >= stop_at and not killed:
                    killed = True
                    self.proc.kill()
        return timed_out, killed


def boot(spec: VmSpec, io: Streams, timeout: float | None = None, show_console: bool = False,
         interactive: bool = False, tty: bool = False, forward_signals: bool = False,
         stop_timeout: float = 10.0) -> Outcome:
    """Runs the VM to the end (or the timeout) and returns what happened."""
    qemu = find_qemu()
    pending: list[int] = []
    con_r, con_w = os.pipe()
    wake_r, wake_w = socket.socketpair()
    pairs = [socket.socketpair() for _ in range(3)]
    ours = [a for a, _ in pairs]
    theirs = [b for _, b in pairs]
    try:
        chans = Channels(f"/dev/fd/{con_w}", theirs[0].fileno(), theirs[1].fileno(),
                         theirs[2].fileno())
        argv = command_line(spec, chans, qemu)
        signals = (*FORWARDED, signal.SIGWINCH) if forward_signals else ()
        if tty and not forward_signals:
            signals = (signal.SIGWINCH,)
        with _forwarding(signals, wake_w, pending):
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE,
                                    pass_fds=(con_w, *(s.fileno() for s in theirs)),
                                    preexec_fn=die_with_parent)
            # QEMU holds its ends now: ours would keep the sockets open after it exits.
            os.close(con_w)
            con_w = -1
            for s in theirs:
                s.close()
            assert proc.stderr is not None
            err_fd = os.dup(proc.stderr.fileno())
            proc.stderr.close()
            try:
                run = _Run(proc, ours[0], ours[1], ours[2], con_r, err_fd, io, show_console,
                           interactive)
                deadline = time.monotonic() + timeout if timeout is not None else None
                try:
                    timed_out, killed = run.loop(deadline, stop_timeout, wake_r, pending)
                finally:
                    run.sel.close()
            except BaseException:
                proc.kill()
                raise
            finally:
                proc.wait()
                os.close(err_fd)
    finally:
        if con_w >= 0:
            os.close(con_w)
        os.close(con_r)
        for s in (*ours, *theirs, wake_r, wake_w):
            s.close()
    return Outcome(run.status, timed_out, proc.returncode, bytes(run.console.data),
                   bytes(run.qemu_err.data), killed, run.output_error)


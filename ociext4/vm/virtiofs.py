"""Host directories shared with the guest through virtiofs: one virtiofsd
per volume, serving QEMU's vhost-user socket."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from .errors import VmError
from .qemu import Share
from .relay import die_with_parent
from .spec import Volume

VIRTIOFSD = ("/usr/libexec/virtiofsd", "/usr/lib/qemu/virtiofsd")
HINT = "install virtiofsd (Debian 12: qemu-system-common)"
START_TIMEOUT = 10.0


def find_virtiofsd() -> str:
    for path in VIRTIOFSD:
        if os.access(path, os.X_OK):
            return path
    raise VmError(f"volumes need virtiofsd, which is not installed; {HINT}")


def _wait_for_socket(proc: subprocess.Popen[bytes], sock: Path, source: Path) -> None:
    end = time.monotonic() + START_TIMEOUT
    while not sock.exists():
        if proc.poll() is not None:
            err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
            raise VmError(f"{source}: virtiofsd failed: {err.splitlines()[-1] if err else ''}"
                          .rstrip(": "))
        if time.monotonic() > end:
            raise VmError(f"{source}: virtiofsd did not start within {START_TIMEOUT:.0f} s")
        time.sleep(0.005)


@contextlib.contextmanager
def serving(volumes: Sequence[Volume], rundir: Path) -> Iterator[tuple[Share, ...]]:
    """virtiofsd for each volume, stopped when the run ends."""
    procs: list[subprocess.Popen[bytes]] = []
    shares = []
    try:
        binary = find_virtiofsd() if volumes else ""
        for i, vol in enumerate(volumes):
            sock = rundir / f"vfs{i}.sock"
            # cache=auto: the guest sees the host's later changes; the
            # default sandbox (namespaces) needs root, chroot too.
            argv = [binary, f"--socket-path={sock}", "-o", f"source={vol.source}",
                    "-o", "cache=auto"]
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, preexec_fn=die_with_parent)
            procs.append(proc)
            _wait_for_socket(proc, sock, vol.source)
            shares.append(Share(f"vol{i}", sock))
        yield tuple(shares)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stderr:
                proc.stderr.close()

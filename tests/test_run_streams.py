"""`ociext4 run` streams over virtio-serial: stdin with -i, a terminal with
-t, stdout and stderr kept apart and whole, a closed pipe or a failing
descriptor on the host. Real boots under TCG of the fixtures' busybox image."""
# ruff: noqa: F811  (fixtures imported from test_vm_run are parameters here)

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

from cli_helpers import OCIEXT4

# The boot tests' fixtures (images built once per session) live with them.
from test_vm_run import TCG, bb_img, bb_layout, private_cache, run  # noqa: F401

MB = 1 << 20


def ociext4_run(*args: str | Path, **kw: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*OCIEXT4, "run", *TCG, *map(str, args)], capture_output=True,
                          check=False, **kw)  # type: ignore[call-overload]


def test_stdin_reaches_the_command_with_i_and_is_empty_without(bb_img):
    with_i = ociext4_run("-i", bb_img, "--", "cat", input=b"a\nb\n")
    assert (with_i.returncode, with_i.stdout, with_i.stderr) == (0, b"a\nb\n", b"")
    # Without -i the command reads /dev/null: cat ends at once, nothing is read.
    without = ociext4_run(bb_img, "--", "sh", "-c", "cat; echo end; ls -l /proc/self/fd/0",
                          input=b"not for the guest\n")
    assert without.returncode == 0
    lines = without.stdout.decode().splitlines()
    assert lines[0] == "end" and lines[1].endswith("-> /dev/null")


def test_fifty_megabytes_go_in_through_stdin_and_back_out_unchanged(bb_img, tmp_path):
    data = os.urandom(50 * MB)
    p = ociext4_run("-i", bb_img, "--", "sh", "-c", "cat; echo done >&2", input=data)
    assert p.returncode == 0 and p.stderr == b"done\n"
    assert hashlib.sha256(p.stdout).hexdigest() == hashlib.sha256(data).hexdigest()


def test_interleaved_writes_to_stdout_and_stderr_never_tear_a_line(bb_img):
    # Two writers at once, one line per write() each, merged by 2>&1 on the host.
    script = ("w() { i=0; while [ $i -lt 3000 ]; do echo \"$1-$i-abcdefghijklmnopqrstuvwxyz\";"
              " i=$((i+1)); done; }; w out & w err >&2 & wait")
    p = subprocess.run([*OCIEXT4, "run", *TCG, str(bb_img), "--", "sh", "-c", script],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
    assert p.returncode == 0
    lines = p.stdout.decode().splitlines()
    good = re.compile(r"^(out|err)-\d+-abcdefghijklmnopqrstuvwxyz$")
    assert [line for line in lines if not good.match(line)] == []
    assert len(lines) == 6000
    for name in ("out", "err"):   # each stream's own order is kept
        mine = [int(line.split("-")[1]) for line in lines if line.startswith(name)]
        assert mine == list(range(3000))


def test_a_closed_stdout_pipe_ends_the_run_and_the_command_gets_sigpipe(bb_img):
    proc = subprocess.Popen([*OCIEXT4, "run", *TCG, str(bb_img), "--", "yes"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert [proc.stdout.readline() for _ in range(3)] == [b"y\n"] * 3
    proc.stdout.close()   # as `| head -3` does
    err = proc.stderr.read()
    assert proc.wait() == 128 + 13, err   # yes died of SIGPIPE in the guest
    assert err == b""


def test_output_to_a_full_device_or_a_closed_descriptor_ends_with_125_and_one_line(bb_img):
    cmd = shlex.join([*OCIEXT4, "run", *TCG, str(bb_img), "--", "sh", "-c",
                      "while :; do echo x; done"])
    for redirect, message in ((">/dev/full", "stdout: No space left on device"),
                              (">&-", "stdout: Bad file descriptor")):
        p = subprocess.run(["bash", "-c", f"{cmd} {redirect}"], capture_output=True,
                           check=False)
        err = p.stderr.decode()
        assert p.returncode == 125, (redirect, err)
        assert err == f"ociext4: error: {message}\n", redirect


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True,
                          check=True).stdout


def _wait_for_screen(session: str, text: str, proc_done: Path | None = None) -> str:
    # Polls the pane, as a user would look at it; the VM boots under TCG.
    screen = ""
    for _ in range(600):
        screen = _tmux("capture-pane", "-p", "-t", session)
        if text in screen or (proc_done is not None and proc_done.exists()):
            return screen
        time.sleep(0.1)
    return screen


def test_an_interactive_terminal_runs_a_shell_with_the_window_size_and_its_exit_code(
        bb_img, tmp_path):
    session = f"ociext4-test-{os.getpid()}"
    status = tmp_path / "status"
    cmd = shlex.join([sys.executable, "-m", "ociext4_cli.main", "run", *TCG, "-it",
                      str(bb_img), "--", "sh"])
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH", "OCIEXT4_CACHE",
                                                       "HOME", "TMPDIR")}
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    _tmux("new-session", "-d", "-s", session, "-x", "100", "-y", "30",
          f"env {exports} {cmd}; echo $? > {shlex.quote(str(status))}; sleep 60")
    try:
        _wait_for_screen(session, "#")   # root's prompt
        _tmux("send-keys", "-t", session, "echo $((6*7)) $(stty size)", "Enter")
        screen = _wait_for_screen(session, "42 ")
        assert "42 30 100" in screen
        _tmux("resize-window", "-t", session, "-x", "90", "-y", "25")
        _tmux("send-keys", "-t", session, "stty size", "Enter")
        assert "25 90" in _wait_for_screen(session, "25 90")
        _tmux("send-keys", "-t", session, "exit 3", "Enter")
        _wait_for_screen(session, "\0", proc_done=status)
        for _ in range(50):
            if status.exists() and status.read_text():
                break
            time.sleep(0.1)
        assert status.read_text() == "3\n"
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True,
                       check=False)


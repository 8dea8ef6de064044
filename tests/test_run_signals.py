"""Signals to `ociext4 run` reach the guest's process, docker's way; a
process that ignores them is killed after --stop-timeout; the directories
of runs that were killed are swept by the next run."""
# ruff: noqa: F811  (fixtures imported from test_vm_run are parameters here)

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from cli_helpers import OCIEXT4
from support.fscheck import e2fsck_clean

# The boot tests' fixtures (images built once per session) live with them.
from test_vm_run import TCG, bb_img, bb_layout, private_cache, run  # noqa: F401

from ociext4.vm import rundir


def start(*args: str | Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([*OCIEXT4, "run", *TCG, *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_sigterm_reaches_the_guests_trap_and_its_exit_code_is_the_runs(bb_img):
    proc = start(bb_img, "--", "sh", "-c",
                 'trap "echo bye; exit 3" TERM; echo ready; sleep 100 & wait')
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate()
    assert (proc.returncode, out, err) == (3, b"bye\n", b"")


def test_a_process_that_ignores_sigint_is_killed_after_the_stop_timeout(bb_img):
    proc = start("--stop-timeout", "1", bb_img, "--", "sh", "-c",
                 'trap "" INT; echo ready; while :; do sleep 1; done')
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGINT)
    proc.communicate()
    assert proc.returncode == 137


def test_the_next_run_sweeps_the_directories_of_killed_runs(bb_img, tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen([*OCIEXT4, "run", *TCG, str(bb_img), "--", "sh", "-c",
                             "echo ready; sleep 100"], stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    left = list(tmp_path.glob(f"{rundir.PREFIX}*"))
    assert len(left) == 1
    proc.kill()
    proc.wait()
    assert left[0].exists()   # SIGKILL leaves no chance to clean up
    old = time.time() - 2 * rundir.GRACE_SECONDS
    os.utime(left[0], (old, old))
    p = subprocess.run([*OCIEXT4, "run", *TCG, str(bb_img), "--", "true"], env=env,
                       capture_output=True, check=False)
    assert p.returncode == 0, p.stderr
    assert list(tmp_path.glob(f"{rundir.PREFIX}*")) == []


def test_sweep_removes_only_unlocked_directories_old_enough(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    now = time.time()
    dead, young = tmp_path / f"{rundir.PREFIX}dead", tmp_path / f"{rundir.PREFIX}young"
    for d in (dead, young):
        d.mkdir()
        (d / rundir.LOCK).touch()
    with rundir.run_directory() as live:
        assert live.parent == tmp_path
        os.utime(dead, (now - 100, now - 100))
        os.utime(live, (now - 100, now - 100))   # old, but its run holds the lock
        assert rundir.sweep(tmp_path, now) == [dead]
        assert live.exists() and young.exists()
    assert not live.exists()


def test_sigterm_to_a_rw_run_lets_the_guest_unmount_and_leaves_a_clean_image(bb_img, tmp_path):
    img = tmp_path / "rw.img"
    subprocess.run(["cp", "--sparse=always", str(bb_img), str(img)], check=True)
    proc = start("--rw", img, "--", "sh", "-c",
                 'echo kept > /data/kept; echo ready; sleep 100 & wait')
    assert proc.stdout is not None
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM   # sh has no trap: TERM killed it
    e2fsck_clean(img)   # the journal was not left needing recovery

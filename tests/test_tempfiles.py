"""What an interrupt removes: the files still being written, and only those."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ociext4 import tempfiles


def test_remove_all_removes_tracked_files_and_leaves_finished_ones(tmp_path):
    writing, done = tmp_path / "a.partial", tmp_path / "b.partial"
    for p in (writing, done):
        p.write_bytes(b"x")
        tempfiles.track(p)
    tempfiles.untrack(done)            # renamed into place, say
    tempfiles.remove_all()
    assert not writing.exists() and done.exists()
    tempfiles.remove_all()             # nothing left to do, no error


def test_a_tracked_directory_is_removed_whole_and_forgotten_when_left(tmp_path):
    with tempfiles.directory("t-") as kept:
        (kept / "inner").write_bytes(b"x")
        assert kept.is_dir()
    assert not kept.exists()
    with tempfiles.directory("t-") as d:
        (d / "inner").write_bytes(b"x")
        tempfiles.remove_all()     # what an interrupt does mid-run
        assert not d.exists()


def _boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip().replace("-", "")[:8]


def _start(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_bytes()
    return stat[stat.rindex(b")") + 2:].split()[19].decode()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_partial_image_names_its_owner_so_a_later_run_can_find_it(tmp_path):
    out = tmp_path / "out.img"
    fd, tmp = tempfiles.create_beside(out)
    os.close(fd)
    assert tmp.parent == tmp_path and tmp.name.endswith(".partial")
    assert tmp.name.startswith(f".out.img.{_boot()}-{os.getpid()}-{_start(os.getpid())}.")
    assert tempfiles.owner_is_alive(tmp.name, ".out.img.") is True
    tempfiles.remove_all()


def test_sweeping_removes_only_the_partials_of_dead_owners(tmp_path):
    me, dead = os.getpid(), _dead_pid()
    names = {
        "live": f".out.img.{_boot()}-{me}-{_start(me)}.abc123.partial",
        "dead": f".out.img.{_boot()}-{dead}-12345.abc123.partial",
        "reused pid": f".out.img.{_boot()}-{me}-{int(_start(me)) + 1}.abc123.partial",
        "other boot": f".out.img.{'f' * 8 if _boot() != 'f' * 8 else '0' * 8}-{me}-"
                      f"{_start(me)}.abc123.partial",
        "unknown form": ".out.img.xyz.partial",
        "other output": f".other.img.{_boot()}-{dead}-12345.abc123.partial",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half")
    removed = tempfiles.sweep_beside(tmp_path / "out.img")
    gone = {k for k, name in names.items() if not (tmp_path / name).exists()}
    assert gone == {"dead", "reused pid", "other boot"}
    assert sorted(p.name for p in removed) == sorted(names[k] for k in gone)

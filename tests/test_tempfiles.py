"""What an interrupt removes: the files still being written, and only those."""

from __future__ import annotations

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

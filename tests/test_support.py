"""Tests of the test harness itself: every check must be able to fail.

mke2fs -d (e2fsprogs 1.47.0) is the reference writer here. What it does not
preserve, found by running it on trees.small_specs():
  * a 64M image gets the "small" fs type, i.e. 1 KiB blocks, and then any
    ~2 KB xattr value fails with "Insufficient space to store extended
    attribute data": pass -b 4096;
  * timestamps lose their nanoseconds and are stored as 32-bit seconds
    without epoch bits, so 2040 reads back as 1904 and 2400 as 1991;
  * the root directory's mtime is the time of mkfs (lost+found is made last);
  * hard links between symlinks become separate symlink inodes.
Sockets, FIFOs, devices up to (4095, 1048575), uid 4294967294, xattrs on
symlinks and directories, empty and binary xattr values, 255-byte and
non-UTF-8 names, 4095-byte symlink targets and setuid/sticky bits all survive.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import shutil
import stat
import subprocess
import tarfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import dumpe2fs, ociext4
from hypothesis import given
from hypothesis import strategies as st
from support import fscheck, trees
from support.fscheck import Entry, compare_snapshots, snapshot, snapshot_from_tar
from support.trees import (
    DEFAULT_MTIME_NS,
    Device,
    Dir,
    Fifo,
    File,
    Hardlink,
    Many,
    Socket,
    Symlink,
    make_tar,
    make_tree,
)

needs_e2fsprogs = pytest.mark.skipif(
    shutil.which("e2fsck") is None or shutil.which("debugfs") is None,
    reason="e2fsprogs not installed",
)

try:
    import zstandard  # noqa: F401

    HAVE_ZSTD = True
except ImportError:
    HAVE_ZSTD = False


# --------------------------------------------------------------------------
# compare_snapshots can see every kind of difference

BASE_SPEC: list[trees.Item] = [
    Dir("d", mode=0o750, uid=3, gid=4, xattrs={"user.d": b"dir"}),
    File("d/f", data=b"hello world", uid=5, gid=6, xattrs={"user.a": b"1"}),
    File("g", data=b"other"),
    Hardlink("g2", "g"),
    File("p", data=b"pp"),
    File("q", data=b"pp"),
    Hardlink("p2", "p"),
    Hardlink("q2", "q"),
    Symlink("l", "d/f"),
    Device("c", "chr", 1, 3),
    Fifo("fifo"),
]


def _keep_times(paths: list[Path]) -> Callable[[], None]:
    """Snapshot mtimes so a mutation can be made to change one field only."""
    saved = {p: os.lstat(p).st_mtime_ns for p in paths}

    def restore() -> None:
        for p, ns in saved.items():
            if os.path.lexists(p):
                os.utime(p, ns=(ns, ns), follow_symlinks=False)

    return restore


def _rewrite(path: Path, data: bytes) -> None:
    restore = _keep_times([path])
    path.write_bytes(data)
    restore()


def _replace_symlink(root: Path, name: str, target: str) -> None:
    restore = _keep_times([root, root / name])
    os.unlink(root / name)
    os.symlink(target, root / name)
    restore()


def _unlink(root: Path, name: str) -> None:
    restore = _keep_times([root])
    os.unlink(root / name)
    restore()


def _add_file(root: Path, name: str) -> None:
    restore = _keep_times([root])
    (root / name).write_bytes(b"new")
    restore()


def _break_hard_link(root: Path) -> None:
    # Same content, owner, mode and times: only the link structure differs.
    restore = _keep_times([root, root / "g2"])
    os.unlink(root / "g2")
    shutil.copy2(root / "g", root / "g2")
    restore()


def _swap_link_partners(root: Path) -> None:
    # {p,p2} {q,q2} becomes {p,q2} {q,p2}: every nlink and content stays equal.
    restore = _keep_times([root])
    os.unlink(root / "p2")
    os.unlink(root / "q2")
    os.link(root / "q", root / "p2")
    os.link(root / "p", root / "q2")
    restore()


def _fifo_to_file(root: Path) -> None:
    restore = _keep_times([root, root / "fifo"])
    os.unlink(root / "fifo")
    (root / "fifo").write_bytes(b"")
    os.chmod(root / "fifo", 0o644)
    restore()


def _change_rdev(root: Path) -> None:
    restore = _keep_times([root, root / "c"])
    os.unlink(root / "c")
    os.mknod(root / "c", stat.S_IFCHR | 0o600, os.makedev(1, 5))
    restore()


MUTATIONS: dict[str, tuple[Callable[[Path], None], str]] = {
    "mode": (lambda r: os.chmod(r / "d/f", 0o600), "'d/f': mode expected 0o644 got 0o600"),
    "setuid bit": (lambda r: os.chmod(r / "g", 0o4644), "'g': mode expected 0o644 got 0o4644"),
    "uid": (lambda r: os.lchown(r / "d/f", 99, -1), "'d/f': uid expected 5 got 99"),
    "gid": (lambda r: os.lchown(r / "l", -1, 77), "'l': gid expected 0 got 77"),
    "content, same size": (lambda r: _rewrite(r / "d/f", b"hello_world"), "'d/f': sha256"),
    "size": (lambda r: _rewrite(r / "d/f", b"hello world!"), "'d/f': size expected 11 got 12"),
    "xattr value": (
        lambda r: os.setxattr(r / "d/f", "user.a", b"2"),
        "'d/f': xattrs differ: user.a expected b'1' got b'2'",
    ),
    "xattr added": (
        lambda r: os.setxattr(r / "d", "user.new", b"x"),
        "'d': xattrs differ: extra user.new=b'x'",
    ),
    "xattr removed": (
        lambda r: os.removexattr(r / "d/f", "user.a"),
        "'d/f': xattrs differ: missing user.a",
    ),
    "mtime by 1 ns": (
        lambda r: os.utime(r / "g", ns=(0, DEFAULT_MTIME_NS + 1)),
        f"'g': mtime_ns expected {DEFAULT_MTIME_NS}",
    ),
    "directory mtime": (
        lambda r: os.utime(r / "d", ns=(0, 5)),
        f"'d': mtime_ns expected {DEFAULT_MTIME_NS}",
    ),
    "root mtime": (lambda r: os.utime(r, ns=(0, 5)), f"'.': mtime_ns expected {DEFAULT_MTIME_NS}"),
    "symlink target": (
        lambda r: _replace_symlink(r, "l", "d/g"),
        "'l': target expected b'd/f' got b'd/g'",
    ),
    "hard link broken": (_break_hard_link, "'g': hard-link group expected ['g', 'g2'] got ['g']"),
    "hard link partners swapped": (_swap_link_partners, "hard-link group expected ['p', 'p2']"),
    "missing file": (lambda r: _unlink(r, "g2"), "missing: 'g2' (reg)"),
    "extra file": (lambda r: _add_file(r, "zzz"), "extra: 'zzz' (reg)"),
    "type": (_fifo_to_file, "'fifo': type expected fifo got reg"),
    "device numbers": (_change_rdev, "'c': rdev expected (1, 3) got (1, 5)"),
}


@pytest.fixture
def twin_trees(tmp_path: Path, needs_root: None) -> tuple[Path, Path]:
    return make_tree(tmp_path / "a", BASE_SPEC), make_tree(tmp_path / "b", BASE_SPEC)


def test_identical_specs_give_equal_snapshots_despite_different_inodes(
    twin_trees: tuple[Path, Path],
) -> None:
    a, b = twin_trees
    sa, sb = snapshot(a), snapshot(b)
    assert sa["g"].link is not None and sa["g"].link != sb["g"].link
    assert compare_snapshots(sa, sb) == []


@pytest.mark.parametrize("name", MUTATIONS)
def test_compare_reports_the_one_field_that_was_changed(
    twin_trees: tuple[Path, Path], name: str
) -> None:
    a, b = twin_trees
    mutate, expected = MUTATIONS[name]
    mutate(b)
    diffs = compare_snapshots(snapshot(a), snapshot(b))
    assert diffs, f"{name}: no difference reported"
    assert any(expected in d for d in diffs), diffs


def test_compare_reports_regrouped_hard_links_even_without_nlink(
    twin_trees: tuple[Path, Path],
) -> None:
    a, b = twin_trees
    _swap_link_partners(b)
    diffs = compare_snapshots(snapshot(a), snapshot(b), check_nlink=False)
    assert diffs and all("hard-link group" in d for d in diffs), diffs


def test_compare_reports_nlink_when_a_link_points_outside_the_tree(
    twin_trees: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = twin_trees
    os.link(b / "d/f", tmp_path / "outside")
    diffs = compare_snapshots(snapshot(a), snapshot(b))
    assert diffs == ["'d/f': nlink expected 1 got 2"]
    assert compare_snapshots(snapshot(a), snapshot(b), check_nlink=False) == []


def test_compare_ignores_directory_size(twin_trees: tuple[Path, Path]) -> None:
    a, b = twin_trees
    restore = _keep_times([b / "d"])
    for i in range(300):  # grows the directory past one block, then empties it
        (b / "d" / f"tmp-{i:04d}-{'x' * 40}").touch()
    for i in range(300):
        (b / "d" / f"tmp-{i:04d}-{'x' * 40}").unlink()
    restore()
    assert os.lstat(b / "d").st_size > os.lstat(a / "d").st_size
    assert compare_snapshots(snapshot(a), snapshot(b)) == []


def test_compare_skips_fields_that_are_none_on_the_expected_side() -> None:
    actual = {".": Entry("dir", mode=0o700, uid=1, gid=2, mtime_ns=3, xattrs={"user.x": b"y"})}
    assert compare_snapshots({".": Entry("dir")}, actual) == []
    assert compare_snapshots(actual, {".": Entry("dir")}) != []


# --------------------------------------------------------------------------
# snapshot


def test_snapshot_records_every_field(tmp_path: Path, needs_root: None) -> None:
    spec: list[trees.Item] = [
        File(
            "f",
            data=b"abc",
            mode=0o4750,
            uid=100000,
            gid=4_000_000_000,
            xattrs={"user.k": b"v"},
            mtime_ns=-1,
        ),
        Hardlink("f2", "f"),
        Symlink("l", b"\xff-target", xattrs={"trusted.t": b"1"}),
        Device("b", "blk", 259, 70000),
        Fifo("p"),
        Socket("s"),
        Dir("d", mode=0o1777),
    ]
    snap = snapshot(make_tree(tmp_path / "t", spec))
    f = snap["f"]
    assert (f.type, f.mode, f.uid, f.gid, f.size, f.nlink) == (
        "reg",
        0o4750,
        100000,
        4_000_000_000,
        3,
        2,
    )
    assert f.sha256 == hashlib.sha256(b"abc").hexdigest()
    assert f.mtime_ns == -1 and f.xattrs == {"user.k": b"v"}
    assert f.link == snap["f2"].link is not None
    assert snap["l"].target == b"\xff-target" and snap["l"].xattrs == {"trusted.t": b"1"}
    assert snap["b"].rdev == (259, 70000) and snap["b"].type == "blk"
    assert snap["p"].type == "fifo" and snap["s"].type == "sock"
    assert snap["d"].mode == 0o1777 and snap["d"].size is None and snap["d"].link is None
    assert snap["."].type == "dir"


def test_snapshot_skips_lost_and_found_only_at_the_top(tmp_path: Path) -> None:
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "lost+found" / "x").touch()
    (tmp_path / "sub" / "lost+found").mkdir(parents=True)
    assert sorted(snapshot(tmp_path)) == [".", "sub", "sub/lost+found"]
    assert "lost+found/x" in snapshot(tmp_path, skip=())


def test_snapshot_survives_trees_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    chain = []
    p = tmp_path
    try:
        for _ in range(1100):  # os.makedirs itself recurses, so build by hand
            p = p / "d"
            p.mkdir()
            chain.append(p)
        (p / "leaf").write_bytes(b"x")
        snap = snapshot(tmp_path)
        assert len(snap) == 1102
        assert "/".join(["d"] * 1100) + "/leaf" in snap
    finally:
        # shutil.rmtree recurses too: left behind, this tree would crash
        # pytest's cleanup of old tmp dirs in a later session.
        (p / "leaf").unlink(missing_ok=True)
        for d in reversed(chain):
            d.rmdir()


def test_snapshot_keeps_non_utf8_names_distinct(tmp_path: Path) -> None:
    os.mknod(os.fsencode(tmp_path) + b"/a\xff", stat.S_IFREG | 0o644)
    os.mknod(os.fsencode(tmp_path) + b"/a\xfe", stat.S_IFREG | 0o644)
    names = sorted(os.fsencode(p) for p in snapshot(tmp_path) if p != ".")
    assert names == [b"a\xfe", b"a\xff"]


@given(
    chunks=st.lists(
        st.tuples(st.integers(0, 3 << 20), st.binary(min_size=1, max_size=9000)), max_size=6
    ),
    tail=st.integers(0, 1 << 20),
)
def test_sparse_hashing_equals_hashing_every_byte(
    tmp_path_factory: pytest.TempPathFactory, chunks: list[tuple[int, bytes]], tail: int
) -> None:
    path = tmp_path_factory.mktemp("sparse") / "f"
    end = max((off + len(c) for off, c in chunks), default=0) + tail
    with open(path, "wb") as f:
        f.truncate(end)
        for off, c in chunks:
            f.seek(off)
            f.write(c)
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert snapshot(path.parent)["f"].sha256 == expected
    assert fscheck.file_sha256(path) == expected


def test_snapshot_of_20k_entries_takes_seconds_not_minutes(
    tmp_path: Path, needs_root: None
) -> None:
    make_tree(tmp_path, [Many("big", 20_000)])
    start = time.perf_counter()
    snap = snapshot(tmp_path)
    elapsed = time.perf_counter() - start
    assert len(snap) == 20_002
    assert elapsed < 5.0, f"snapshot took {elapsed:.1f}s for 20k entries"


# --------------------------------------------------------------------------
# make_tree


def test_make_tree_directory_mtimes_survive_their_children(
    tmp_path: Path, needs_root: None
) -> None:
    t = make_tree(tmp_path / "t", [Dir("d", mtime_ns=123), File("d/e/f"), Dir(".", mtime_ns=7)])
    assert os.lstat(t / "d").st_mtime_ns == 123
    assert os.lstat(t / "d/e").st_mtime_ns == DEFAULT_MTIME_NS
    assert os.lstat(t).st_mtime_ns == 7


def test_make_tree_keeps_setuid_and_capability_despite_chown(
    tmp_path: Path, needs_root: None
) -> None:
    cap = trees.capability_v2(10)
    t = make_tree(
        tmp_path / "t",
        [
            File("f", mode=0o6755, uid=1000, gid=1000, xattrs={"security.capability": cap}),
        ],
    )
    st_ = os.lstat(t / "f")
    assert stat.S_IMODE(st_.st_mode) == 0o6755
    assert os.getxattr(t / "f", "security.capability") == cap
    assert len(cap) == 20


def test_make_tree_sparse_file_allocates_only_its_data(tmp_path: Path, needs_root: None) -> None:
    t = make_tree(tmp_path / "t", [File("s", sparse=[(0, b"a"), (1 << 30, b"z")])])
    st_ = os.lstat(t / "s")
    assert st_.st_size == (1 << 30) + 1
    assert st_.st_blocks * 512 <= 64 * 1024


def test_make_tree_rejects_a_path_given_twice(tmp_path: Path, needs_root: None) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        make_tree(tmp_path / "t", [File("x"), File("x")])


def test_host_tmp_stores_far_future_and_pre_1970_nanoseconds(
    tmp_path: Path, needs_root: None
) -> None:
    spec = trees.extreme_mtimes()
    t = make_tree(tmp_path / "t", spec)
    for item in spec:
        assert isinstance(item, (File, Dir, Symlink, Fifo))
        assert os.lstat(t / item.path).st_mtime_ns == item.mtime_ns, item.path


def test_every_small_spec_builds(small_tree: Path) -> None:
    snap = snapshot(small_tree)
    assert snap["deep/" + "/".join(f"d{i:02d}" for i in range(60)) + "/leaf"].size == 7
    assert snap["sizes/03145728"].size == 3 << 20
    assert snap["symlinks/len-4095"].target is not None
    assert len(snap["symlinks/len-4095"].target) == 4095
    assert snap["special/max"].rdev == (4095, 1048575)
    assert len(snap["xattrs/large"].xattrs or {}) == 2


# --------------------------------------------------------------------------
# tar


def _without_sockets(snap: fscheck.Snapshot) -> fscheck.Snapshot:
    return {p: e for p, e in snap.items() if e.type != "sock"}


@pytest.mark.parametrize(
    "compression",
    [None, "gz", pytest.param("zst", marks=pytest.mark.skipif(not HAVE_ZSTD, reason="no zstd"))],
)
def test_tar_and_tree_of_one_spec_are_the_same_tree(
    small_tree: Path, tmp_path: Path, compression: str | None
) -> None:
    spec = trees.combine(*trees.small_specs().values())
    tar = make_tar(tmp_path / "t.tar", spec, compression)  # type: ignore[arg-type]
    from_tar = snapshot_from_tar(tar)
    assert from_tar["times/2400"].mtime_ns == 13_569_465_600_000_000_001
    assert compare_snapshots(from_tar, _without_sockets(snapshot(small_tree))) == []


def test_make_tar_is_deterministic(tmp_path: Path) -> None:
    spec = trees.combine(trees.symlinks(), trees.xattrs_inline_block_capability_trusted())
    for comp in (None, "gz"):
        a = make_tar(tmp_path / "a", spec, comp)
        b = make_tar(tmp_path / "b", spec, comp)
        assert a.read_bytes() == b.read_bytes()


def _tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            if data is not None:
                ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _ti(name: str, kind: bytes = tarfile.REGTYPE, **kw: object) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = 0o644
    ti.mtime = 1000
    for k, v in kw.items():
        setattr(ti, k, v)
    return ti


def test_tar_snapshot_normalises_names_and_implies_parents() -> None:
    snap = snapshot_from_tar(
        io.BytesIO(
            _tar_bytes(
                [
                    (_ti("./a/b/c"), b"x"),
                    (_ti("/abs/file"), b"y"),
                ]
            )
        )
    )
    assert sorted(snap) == [".", "a", "a/b", "a/b/c", "abs", "abs/file"]
    implied = snap["a/b"]
    assert (implied.type, implied.mode, implied.uid, implied.gid, implied.mtime_ns) == (
        "dir",
        0o755,
        0,
        0,
        None,
    )
    assert snap["a/b/c"].mtime_ns == 1000 * 10**9


def test_tar_snapshot_lets_later_members_win() -> None:
    snap = snapshot_from_tar(
        io.BytesIO(
            _tar_bytes(
                [
                    (_ti("x"), b"first"),
                    (_ti("d", tarfile.DIRTYPE), None),
                    (_ti("d/child"), b"c"),
                    (_ti("x", mode=0o600), b"second"),
                    (_ti("d"), b"now a file"),
                ]
            )
        )
    )
    assert snap["x"].sha256 == hashlib.sha256(b"second").hexdigest()
    assert snap["x"].mode == 0o600
    assert snap["d"].type == "reg" and "d/child" not in snap


def test_tar_snapshot_hard_links_share_content_and_group() -> None:
    snap = snapshot_from_tar(
        io.BytesIO(
            _tar_bytes(
                [
                    (_ti("a", uid=7), b"shared"),
                    (_ti("sub/b", tarfile.LNKTYPE, linkname="a"), None),
                    (_ti("./c", tarfile.LNKTYPE, linkname="./a"), None),
                    (_ti("lonely"), b"z"),
                ]
            )
        )
    )
    a, b, c = snap["a"], snap["sub/b"], snap["c"]
    assert a.link is not None and a.link == b.link == c.link
    assert a.sha256 == b.sha256 == c.sha256 and b.uid == 7
    assert a.nlink == b.nlink == 3
    assert snap["lonely"].link is None and snap["lonely"].nlink == 1


def test_tar_snapshot_replacing_one_link_name_leaves_the_others() -> None:
    snap = snapshot_from_tar(
        io.BytesIO(
            _tar_bytes(
                [
                    (_ti("a"), b"old"),
                    (_ti("b", tarfile.LNKTYPE, linkname="a"), None),
                    (_ti("a"), b"new"),
                ]
            )
        )
    )
    assert snap["b"].sha256 == hashlib.sha256(b"old").hexdigest()
    assert snap["a"].link is None and snap["b"].link is None and snap["b"].nlink == 1


def test_tar_snapshot_reads_exact_nanoseconds_and_binary_xattrs() -> None:
    ti = _ti("f")
    ti.pax_headers = {
        "mtime": "-616850703.876543211",
        "SCHILY.xattr.user.bin": bytes(range(256)).decode("utf-8", "surrogateescape"),
    }
    snap = snapshot_from_tar(io.BytesIO(_tar_bytes([(ti, b"")])))
    assert snap["f"].mtime_ns == -616_850_703_876_543_211
    assert snap["f"].xattrs == {"user.bin": bytes(range(256))}


def test_tar_snapshot_reads_from_a_pipe(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "t.tgz", trees.hard_links(), "gz")
    r, w = os.pipe()

    def feed() -> None:
        with os.fdopen(w, "wb") as out:
            out.write(tar.read_bytes())

    t = threading.Thread(target=feed)
    t.start()
    with os.fdopen(r, "rb", buffering=0) as src:
        snap = snapshot_from_tar(src)
    t.join()
    assert snap["hardlinks/y/two"].link == snap["hardlinks/x/one"].link


# --------------------------------------------------------------------------
# e2fsck


@needs_e2fsprogs
def test_e2fsck_clean_accepts_a_fresh_mkfs_image(tmp_path: Path) -> None:
    img = tmp_path / "fresh.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img), "16M"], check=True)
    fscheck.e2fsck_clean(img)


@needs_e2fsprogs
@pytest.mark.parametrize(
    ("debugfs_cmd", "symptom"),
    [
        ("sif / mode 0", "Root inode is not a directory"),
        ("set_bg 0 free_blocks_count 17", "Free blocks count wrong"),
        ("sif <11> links_count 5", "Inode 11 ref count is 5, should be 2"),
    ],
)
def test_e2fsck_clean_rejects_a_corrupted_image(
    tmp_path: Path, debugfs_cmd: str, symptom: str
) -> None:
    img = tmp_path / "bad.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", str(img), "16M"], check=True)
    subprocess.run(["debugfs", "-w", "-R", debugfs_cmd, str(img)], check=True, capture_output=True)
    with pytest.raises(AssertionError, match="e2fsck -fn") as exc:
        fscheck.e2fsck_clean(img)
    assert symptom in str(exc.value)
    assert "Pass 1" in str(exc.value) or "Group descriptor" in str(exc.value)


def _fake_e2fsck(monkeypatch: pytest.MonkeyPatch, rc: int, output: str) -> None:
    def run(argv: list[str], **_: object) -> subprocess.CompletedProcess[bytes]:
        return subprocess.CompletedProcess(argv, rc, output.encode(), None)

    monkeypatch.setattr(subprocess, "run", run)


@pytest.mark.parametrize(
    "line",
    [
        "Inode 12 extent tree (at level 1) could be narrower.  Optimize? no",
        "Block bitmap differences:  -(1234--1240)",
        "Warning: skipping journal recovery because doing a read-only filesystem check.",
        "Padding at end of inode bitmap is not set. Fix? no",
        "Clear? no",
    ],
)
def test_e2fsck_clean_rejects_problem_lines_even_with_exit_0(
    monkeypatch: pytest.MonkeyPatch, line: str
) -> None:
    _fake_e2fsck(monkeypatch, 0, f"Pass 1: Checking inodes\n{line}\nimg: 11/2048 files\n")
    with pytest.raises(AssertionError, match="exited 0"):
        fscheck.e2fsck_clean(Path("img"))


def test_e2fsck_clean_ignores_marker_words_in_the_image_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    img = Path("/tmp/test_differences_WARNING0/could be.img")
    _fake_e2fsck(
        monkeypatch,
        0,
        f"Pass 5: Checking group summary information\n{img}: 11/2048 files (0.0% non-contiguous)\n",
    )
    fscheck.e2fsck_clean(img)


def test_e2fsck_failure_message_is_trimmed(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_e2fsck(monkeypatch, 4, "Fix? no\n" * 20_000)
    with pytest.raises(AssertionError) as exc:
        fscheck.e2fsck_clean(Path("img"))
    assert 4000 < len(str(exc.value)) < 6000


# --------------------------------------------------------------------------
# mounting


def _is_mounted(path: Path) -> bool:
    with open("/proc/self/mounts", encoding="utf-8") as f:
        return any(line.split()[1] == str(path) for line in f)


@pytest.mark.needs_root_loop
def test_mounted_yields_a_read_only_tree_and_cleans_up(mkfs_image: Path) -> None:
    with fscheck.mounted(mkfs_image) as mnt:
        assert (mnt / "lost+found").is_dir()
        assert _is_mounted(mnt)
        with pytest.raises(OSError):
            (mnt / "new").touch()
    assert not _is_mounted(mnt) and not mnt.exists()


@pytest.mark.needs_root_loop
def test_mounted_unmounts_when_the_body_raises(mkfs_image: Path) -> None:
    with pytest.raises(KeyError), fscheck.mounted(mkfs_image) as mnt:
        raise KeyError("boom")
    assert not _is_mounted(mnt) and not mnt.exists()


@pytest.mark.needs_root_loop
def test_mounted_falls_back_to_lazy_unmount_when_busy(mkfs_image: Path) -> None:
    with fscheck.mounted(mkfs_image) as mnt:
        busy = os.open(mnt / "lost+found", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert not _is_mounted(mnt)
    finally:
        os.close(busy)


@pytest.mark.needs_root_loop
def test_snapshot_records_user_xattrs_the_kernel_lists_but_will_not_read(
    mkfs_image: Path, tmp_path: Path
) -> None:
    # debugfs can put user.* on a FIFO or symlink, which Linux never allows.
    cmds = tmp_path / "cmds"
    cmds.write_text(
        "mknod fifo p\nsymlink lnk target\n"
        "ea_set /fifo user.x val\nea_set /lnk user.y v\nea_set /lnk trusted.z v3\n"
    )
    subprocess.run(
        ["debugfs", "-w", "-f", str(cmds), str(mkfs_image)], check=True, capture_output=True
    )
    with fscheck.mounted(mkfs_image) as mnt:
        snap = snapshot(mnt)
    assert snap["fifo"].xattrs == {"user.x": fscheck.UNREADABLE_XATTR}
    assert snap["lnk"].xattrs == {"user.y": fscheck.UNREADABLE_XATTR, "trusted.z": b"v3"}


# --------------------------------------------------------------------------
# assert_same_tree against the reference writer, mke2fs -d


def _for_mke2fs(spec: list[trees.Item]) -> list[trees.Item]:
    """The spec minus what mke2fs -d 1.47.0 cannot store (module docstring)."""
    linked_symlinks = {i.path for i in spec if isinstance(i, Symlink)}
    out: list[trees.Item] = []
    for item in spec:
        if isinstance(item, Hardlink):
            if item.to in linked_symlinks:
                continue
        elif item.mtime_ns is not None:
            item = dataclasses.replace(item, mtime_ns=item.mtime_ns // 10**9 * 10**9)
        out.append(item)
    return out


MKE2FS_MTIME_NS = DEFAULT_MTIME_NS // 10**9 * 10**9
MKE2FS_SPEC = _for_mke2fs(
    trees.combine(
        *(spec for name, spec in trees.small_specs().items() if name != "extreme_mtimes"),
        [
            File("times/1950", mtime_ns=-616_850_704 * 10**9),
            File("times/epoch", mtime_ns=0),
            Dir("times/1969", mtime_ns=-(10**9)),
        ],
    )
)


def _mke2fs(src: Path, img: Path) -> None:
    subprocess.run(
        ["mke2fs", "-q", "-F", "-t", "ext4", "-b", "4096", "-d", str(src), str(img), "64M"],
        check=True,
        capture_output=True,
    )


def _expected_for_mke2fs(src: Path) -> fscheck.Snapshot:
    exp = snapshot(src)
    exp["."] = dataclasses.replace(exp["."], mtime_ns=None)  # mke2fs sets it to now
    return exp


@pytest.mark.needs_root_loop
def test_assert_same_tree_passes_on_a_mke2fs_image_of_the_same_tree(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", MKE2FS_SPEC, implied_mtime_ns=MKE2FS_MTIME_NS)
    img = tmp_path / "ref.img"
    _mke2fs(src, img)
    fscheck.assert_same_tree(_expected_for_mke2fs(src), img)


@pytest.mark.needs_root_loop
def test_assert_same_tree_names_what_differs(tmp_path: Path) -> None:
    spec = _for_mke2fs([File("a/b", data=b"1"), File("c", data=b"2")])
    src = make_tree(tmp_path / "src", spec, implied_mtime_ns=MKE2FS_MTIME_NS)
    img = tmp_path / "ref.img"
    _mke2fs(src, img)
    os.chmod(src / "a/b", 0o600)
    os.setxattr(src / "c", "user.late", b"x")
    with pytest.raises(AssertionError) as exc:
        fscheck.assert_same_tree(_expected_for_mke2fs(src), img)
    msg = str(exc.value)
    assert "2 difference(s)" in msg
    assert "'a/b': mode expected 0o600 got 0o644" in msg
    assert "'c': xattrs differ: missing user.late" in msg


@pytest.mark.needs_root_loop
def test_assert_same_tree_runs_e2fsck_before_mounting(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", [File("f")], implied_mtime_ns=MKE2FS_MTIME_NS)
    img = tmp_path / "ref.img"
    _mke2fs(src, img)
    subprocess.run(
        ["debugfs", "-w", "-R", "set_bg 0 free_blocks_count 17", str(img)],
        check=True,
        capture_output=True,
    )
    with pytest.raises(AssertionError, match="e2fsck"):
        fscheck.assert_same_tree(_expected_for_mke2fs(src), img)


def test_the_inodes_an_image_uses_are_read_from_its_superblock_as_dumpe2fs_reads_them(
    tmp_path: Path,
) -> None:
    src = make_tree(tmp_path / "src", [File(f"f{i}") for i in range(7)])
    ociext4("mkfs", src, tmp_path / "out.img")
    head = dumpe2fs(tmp_path / "out.img")
    expected = int(head["Inode count"]) - int(head["Free inodes"])
    with open(tmp_path / "out.img", "rb") as f:
        assert fscheck._inodes_used(f.fileno()) == expected

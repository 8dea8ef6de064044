"""The writer's checks on the tree it is given, apart from the property tests."""

from __future__ import annotations

import errno
import os
import re
import stat
import subprocess

import pytest
from ociext4.ext4._writer import ffi, lib
from support.fscheck import e2fsck_clean, tmpfs

from ociext4.errors import ImageError
from ociext4.ext4 import Ext4Writer
from ociext4.tree import S_IFREG, Inode, new_dir


def test_a_directory_under_two_names_is_refused_and_nothing_is_left(tmp_path):
    root, shared = new_dir(), new_dir()
    root.children = {b"a": shared, b"b": shared}
    shared.names = 2
    out = tmp_path / "out.img"
    with Ext4Writer(out) as writer, pytest.raises(ImageError, match="has two parents"):
        writer.commit(root)
    assert list(tmp_path.iterdir()) == []


def test_lost_found_made_by_the_caller_is_kept_as_the_first_inode(tmp_path):
    root = new_dir()
    lost = new_dir(0o700)
    root.children = {b"lost+found": lost, b"z": new_dir()}
    lost.names = root.children[b"z"].names = 1
    img = tmp_path / "out.img"
    with Ext4Writer(img) as writer:
        writer.commit(root)
    listing = subprocess.run(["debugfs", "-R", "ls -l /", str(img)], capture_output=True,
                             text=True, check=True).stdout
    rows = [line.split() for line in listing.splitlines() if line.strip()]
    inodes = {row[-1]: int(row[0]) for row in rows}
    assert inodes["lost+found"] == 11 and inodes["z"] == 12   # as mke2fs numbers them


@pytest.fixture
def full_device(tmp_path, needs_root):
    """A private node of the "always full" device (1,7, as /dev/full): every
    write to it fails with ENOSPC.  Made here, never the host's /dev/full."""
    node = tmp_path / "full"
    os.mknod(node, 0o600 | stat.S_IFCHR, os.makedev(1, 7))
    fd = os.open(node, os.O_RDWR)
    yield fd
    os.close(fd)


def _c_writer(fd: int) -> object:
    err = ffi.new("char[]", 256)
    w = lib.oe_open(fd, ffi.new("oe_open_params *", {"max_blocks": 1 << 16}), err, 256)
    assert w != ffi.NULL
    return ffi.gc(w, lib.oe_close)


def test_a_failed_write_sticks_and_later_calls_report_it_with_its_errno(full_device):
    w = _c_writer(full_device)
    handle = ffi.new("int64_t *")
    assert lib.oe_file_begin(w, handle) == 0
    data = bytes(4 << 20)  # long enough to go straight to the file, not the buffer
    assert lib.oe_file_write(w, 0, data, len(data)) == -1
    first = ffi.string(lib.oe_error(w)).decode()
    assert first == "writing the image: No space left on device"
    assert lib.oe_errno(w) == errno.ENOSPC and lib.oe_failed(w) == 1
    # The file is still "open": without the sticky error, the next call
    # would report that instead of the full disk.
    for call in (lambda: lib.oe_file_begin(w, handle), lambda: lib.oe_file_end(w),
                 lambda: lib.oe_file_write(w, 0, b"x", 1), lambda: lib.oe_file_discard(w, 0)):
        assert call() == -1
        assert ffi.string(lib.oe_error(w)).decode() == first
        assert lib.oe_errno(w) == errno.ENOSPC


def test_an_error_that_is_no_system_call_carries_no_errno(tmp_path):
    with open(tmp_path / "x", "w+b") as f:
        w = _c_writer(f.fileno())
        assert lib.oe_file_end(w) == -1
        assert ffi.string(lib.oe_error(w)).decode() == "no file is open"
        assert lib.oe_errno(w) == 0


def test_a_full_disk_reaches_python_as_an_image_error_with_errno(tmp_path, needs_root):
    with tmpfs(tmp_path / "mnt", 1 << 20) as mnt:
        with Ext4Writer(mnt / "out.img") as writer:
            with pytest.raises(ImageError) as err:
                writer.add_bytes(bytes(8 << 20))
            assert err.value.errno == errno.ENOSPC and writer.failed
            assert str(err.value) == (f"{mnt / 'out.img'}: writing the image: "
                                      "No space left on device")
            with pytest.raises(ImageError) as again:
                writer.add_bytes(b"more")
            assert str(again.value) == str(err.value) and again.value.errno == errno.ENOSPC
            with pytest.raises(ImageError, match="No space left on device"):
                writer.commit(new_dir())
        assert list(mnt.iterdir()) == []


def test_commit_consumes_the_tree_so_it_and_the_records_are_not_held_at_once(tmp_path):
    root, sub = new_dir(), new_dir()
    root.children = {b"sub": sub}
    sub.children = {b"empty": new_dir()}
    sub.names = sub.children[b"empty"].names = 1
    with Ext4Writer(tmp_path / "out.img") as writer:
        writer.commit(root)
    assert root.children == {} and sub.children == {}
    listing = subprocess.run(["debugfs", "-R", "ls -p /sub", str(tmp_path / "out.img")],
                             capture_output=True, text=True, check=True).stdout
    assert "/empty/" in listing


def _file_root(handle: int) -> Inode:
    root = new_dir()
    f = Inode(S_IFREG, size=3, data=handle)
    f.names = 1
    root.children = {b"f": f}
    return root


def test_a_discard_held_back_while_data_streams_takes_effect_when_the_stream_ends(tmp_path):
    with Ext4Writer(tmp_path / "held.img") as writer:
        handle = writer.add_bytes(b"abc")
        with writer.discards_deferred():
            writer.discard(handle)
            with writer.discards_deferred():   # nested: still held
                pass
            assert not writer.failed
        # Now discarded: a tree that still names the data is refused.
        with pytest.raises(ImageError, match="discarded"):
            writer.commit(_file_root(handle))
    with Ext4Writer(tmp_path / "kept.img") as writer:
        handle = writer.add_bytes(b"abc")
        with writer.discards_deferred():
            writer.discard(handle)
            writer.commit(_file_root(handle))   # the data is not gone yet


def _extents(img: os.PathLike[str], name: str) -> list[tuple[int, int]]:
    """(first, last) logical block of each leaf extent, as debugfs lists them."""
    out = subprocess.run(["debugfs", "-R", f"ex /{name}", os.fspath(img)], capture_output=True,
                         text=True, check=True).stdout
    return [(int(m[1]), int(m[2])) for m in
            re.finditer(r"(\d+) - +(\d+) +\d+ - +\d+ +\d+", out)]


def test_files_of_one_extent_and_of_several_keep_their_blocks_and_bytes(tmp_path):
    # The writer keeps a file's extent in its own record while it has one
    # from block 0, and moves it to the shared array when a second comes
    # (after a hole, or past an extent's 32768 blocks): every way in and out.
    long = bytes(range(256)) * (16 * (32768 + 3))        # 32771 blocks of data
    files = {
        b"one": [(0, b"x" * 10000)],
        b"hole-first": [(8192, b"y" * 5000)],
        b"hole-between": [(0, b"a" * 4096), (3 * 4096, b"b" * 100)],
        b"long": [(0, long)],
        b"empty": [],
    }
    root = new_dir()
    img = tmp_path / "out.img"
    with Ext4Writer(img) as writer:
        assert root.children is not None
        for name, chunks in files.items():
            size = max((off + len(data) for off, data in chunks), default=0)
            node = Inode(S_IFREG, size=size, data=writer.add_chunks(chunks))
            node.names = 1
            root.children[name] = node
        writer.commit(root)
    e2fsck_clean(img)
    assert _extents(img, "one") == [(0, 2)]
    assert _extents(img, "hole-first") == [(2, 3)]
    assert _extents(img, "hole-between") == [(0, 0), (3, 3)]
    assert _extents(img, "empty") == []
    long_extents = _extents(img, "long")
    assert len(long_extents) >= 2 and long_extents[0][0] == 0
    assert all(b[0] == a[1] + 1 for a, b in zip(long_extents, long_extents[1:], strict=False))
    assert long_extents[-1][1] == 32770
    for name, chunks in files.items():
        got = subprocess.run(["debugfs", "-R", f"cat /{name.decode()}", os.fspath(img)],
                             capture_output=True, check=True).stdout
        expected = bytearray(max((off + len(data) for off, data in chunks), default=0))
        for off, data in chunks:
            expected[off:off + len(data)] = data
        assert got == expected, name

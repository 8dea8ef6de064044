"""A tar's members into a tree: the records of plain files and directories
become nodes straight from the reader's batch (apply_batch: plain files as
plain records, ociext4.tree.PLAIN, when the writer stores their mtime as it
is), every other member through TarEntry and entry_node.  Both ways must
make the same tree."""

from __future__ import annotations

import errno
import io
import tarfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from ociext4.ext4._writer import ffi, lib
from support.fscheck import file_sha256
from test_layers import _archive, members

from ociext4.errors import SourceError
from ociext4.ext4 import Ext4Options, Ext4Writer
from ociext4.ext4.records import TAR_ENTRY
from ociext4.flatten import WHITEOUT, LayerApplier
from ociext4.layers import PLAIN_NAME, read_batches, read_entries, records, runs
from ociext4.sources.tarball import (
    _PLAIN_SECONDS,
    apply_batch,
    entry_node,
    link_target,
    read_tar,
)
from ociext4.tree import PLAIN, Inode, Tree, as_inode, new_dir, plain_record, split_path, walk


def _general(archive: bytes, writer: Ext4Writer) -> Inode:
    """The tree made member by member through TarEntry, as before apply_batch."""
    tree = Tree(new_dir(), on_release=writer.release)
    for e in read_entries(io.BytesIO(archive), "t", writer):
        parts = split_path(e.name)
        if e.type == "1":
            target = link_target(tree, e)
            if parts:
                tree.put(parts, target, new_dir)
        else:
            tree.put(parts, entry_node(e, writer, {}), new_dir)
        tree.collect()
    return tree.root


def _shape(root: Inode) -> list[tuple[object, ...]]:
    return [(path, n.kind, n.attrs, n.size, n.data is None, n.target, n.rdev, dict(n.xattrs),
             n.atime_ns, n.ctime_ns, n.names) for path, n in walk(root)]


@st.composite
def varied(draw: st.DrawFn) -> list[tuple[tarfile.TarInfo, bytes]]:
    """members(), some of them under a ./ name, with an atime, an xattr or
    an mtime the writer clamps or does not store as it is, and a hard link
    to the first file."""
    items = draw(members())
    for info, _ in items:
        how = draw(st.sampled_from(["", "", "dot", "atime", "xattr", "before-1970", "far"]))
        if how == "before-1970":
            info.pax_headers = {"mtime": "-100.25"}
        elif how == "far":   # in the range ext4 cannot tell from older times (plan.py)
            info.pax_headers = {"mtime": str(3 * 2**32 - 2**31 + 5)}
        elif how == "dot":
            info.name = "./" + info.name
        elif how == "atime":
            info.pax_headers = {"atime": "1700000000.5"}
        elif how == "xattr":
            info.pax_headers = {"SCHILY.xattr.user.k": "v"}
    files = [info for info, _ in items if info.isreg()]
    if files:
        link = tarfile.TarInfo("hard-link")
        link.type, link.linkname = tarfile.LNKTYPE, files[0].name
        items.append((link, b""))
    return items


def _made(path: Path, archive: bytes, fast: bool) -> tuple[object, ...]:
    """The tree's shape and the committed image, or the error both ways
    must give (a hard link to what a later member replaced, say)."""
    with Ext4Writer(path, Ext4Options(fsync=False, timestamp=1_700_000_000)) as w:
        try:
            root = read_tar(io.BytesIO(archive), "t", w) if fast else _general(archive, w)
        except SourceError as e:
            return ("error", str(e).removeprefix("t: "))
        shape = _shape(root)
        w.commit(root)
    return ("image", shape, file_sha256(path))


@settings(deadline=None, max_examples=60)
@given(items=varied())
def test_members_made_from_records_give_the_tree_and_image_entry_node_gives(
        tmp_path_factory, items):
    archive = _archive(items, tarfile.PAX_FORMAT)
    out = tmp_path_factory.mktemp("tarball")
    # The image too, byte for byte: a plain record packs as its Inode would.
    assert _made(out / "a.img", archive, True) == _made(out / "b.img", archive, False)


@st.composite
def layers(draw: st.DrawFn) -> list[bytes]:
    """One to three layers of files (most of them in runs in one directory),
    directories, symlinks, whiteouts and opaque markers over a few names, so
    that later members and layers replace, hide and write through earlier
    ones."""
    out = []
    for _ in range(draw(st.integers(1, 3))):
        items = []
        for step in range(draw(st.integers(0, 8))):
            where = draw(st.sampled_from(["", "d/", "d/", "d/e/", "s/"]))
            kind = draw(st.sampled_from(["files"] * 4 + ["dir", "sym", "wh", "opq"]))
            base = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), min_size=1,
                                 max_size=5 if kind == "files" else 1))
            for i, name in enumerate(base):
                data = b""
                if kind == "wh":
                    info = tarfile.TarInfo(where + ".wh." + name)
                elif kind == "opq":
                    info = tarfile.TarInfo(where + ".wh..wh..opq")
                else:
                    info = tarfile.TarInfo(where + name)
                    if kind == "dir":
                        info.type = tarfile.DIRTYPE
                    elif kind == "sym":
                        info.type = tarfile.SYMTYPE
                        info.linkname = draw(st.sampled_from(["d", "/d/e"]))
                    else:
                        data = b"%d.%d" % (step, i)
                info.size, info.mtime = len(data), 1_600_000_000 + step
                items.append((info, data))
        out.append(_archive(items, tarfile.PAX_FORMAT))
    return out


def _layered(path: Path, archives: list[bytes], fast: bool) -> tuple[object, ...]:
    """The layers applied under the OCI rules: the tree, the data released
    on the way, or the error."""
    released: list[int | None] = []
    with Ext4Writer(path, Ext4Options(fsync=False)) as w:
        tree = Tree(new_dir(), on_release=lambda n: released.append(as_inode(n).data))
        try:
            for archive in archives:
                applier = LayerApplier(tree)
                if fast:
                    for raw, strings in read_batches(io.BytesIO(archive), "t", w):
                        apply_batch(raw, strings, applier, tree, w, {})
                else:
                    for e in read_entries(io.BytesIO(archive), "t", w):
                        parts = split_path(e.name)
                        if e.type == "1":
                            applier.link(parts, link_target(tree, e))
                        else:
                            applier.put(parts, entry_node(e, w, {}))
                        tree.collect()
                applier.finish()
        except SourceError as e:
            return ("error", str(e))
        return ("tree", _shape(tree.root), sorted(released, key=str))


@settings(deadline=None, max_examples=150)
@given(archives=layers())
def test_layers_applied_from_records_and_runs_give_the_tree_entry_by_entry_gives(
        tmp_path_factory, archives):
    out = tmp_path_factory.mktemp("layered")
    assert _layered(out / "a.img", archives, True) == _layered(out / "b.img", archives, False)


def _tar(members: list[tuple[str, bytes]]) -> bytes:
    items = []
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.size, info.mtime = len(data), 1_600_000_000
        items.append((info, data))
    return _archive(items, tarfile.PAX_FORMAT)


def test_files_put_as_a_run_are_their_layers_own_for_its_opaque_marker(tmp_path):
    archives = [_tar([("d/x", b"1")]),
                _tar([("d/a", b"2"), ("d/b", b"3"), ("d/.wh..wh..opq", b"")])]
    got = _layered(tmp_path / "a.img", archives, True)
    assert got == _layered(tmp_path / "b.img", archives, False)
    assert [path for path, *_ in got[1]] == [b"", b"d", b"d/a", b"d/b"]   # d/x hidden


def _runs_by_the_rules(raw: bytes, strings: bytes) -> list[tuple[object, ...]]:
    """layers.runs() as its contract reads, one member at a time: a run is
    consecutive plain files of one directory; each segment as
    ("run", first, directory, names, records) or ("members", first, count)."""
    out: list[list[object]] = []
    for i, rec in enumerate(records(raw)):
        (typ, mode, uid, gid, msec, _, mnsec, _, flags, _, _, name_len, name_off, _, _,
         xattr_len, _, size, data, _) = rec
        name = strings[name_off:name_off + name_len].strip(b"/")
        d, _, base = name.rpartition(b"/")
        if (typ == ord("0") and flags == PLAIN_NAME and not xattr_len
                and 0 <= msec < _PLAIN_SECONDS and d and not base.startswith(WHITEOUT)):
            r = plain_record(mode, uid, gid, msec, mnsec, size, data if data >= 0 else None)
            if out and out[-1][0] == "run" and out[-1][2] == d:
                out[-1][3].append(base)   # type: ignore[attr-defined]
                out[-1][4].append(r)      # type: ignore[attr-defined]
            else:
                out.append(["run", i, d, [base], [r]])
        elif out and out[-1][0] == "members":
            out[-1][2] += 1   # type: ignore[operator]
        else:
            out.append(["members", i, 1])
    return [tuple(seg) for seg in out]


def _runs_from_c(raw: bytes, strings: bytes) -> list[tuple[object, ...]]:
    segments, names, recs = runs(raw, strings, _PLAIN_SECONDS, WHITEOUT)
    out: list[tuple[object, ...]] = []
    for run, first, count, dir_len, dir_off, names_off, names_len, recs_off in segments:
        if run:
            rs = [recs[recs_off + k * PLAIN.size:recs_off + (k + 1) * PLAIN.size]
                  for k in range(count)]
            out.append(("run", first, strings[dir_off:dir_off + dir_len],
                        names[names_off:names_off + names_len].split(b"\0"), rs))
        else:
            out.append(("members", first, count))
    return out


@st.composite
def run_members(draw: st.DrawFn) -> list[tuple[tarfile.TarInfo, bytes]]:
    """varied() members, and files in a row in a few directories, at the
    root, as whiteouts or under names that are not plain."""
    items = draw(varied())
    for _ in range(draw(st.integers(0, 12))):
        where = draw(st.sampled_from(["", "d/", "d/", "/d/", "d/e/", "d//e/", "./d/", "d/../"]))
        name = draw(st.sampled_from(["a", "b", "c", ".wh.a", ".wh..wh..opq", "a/"]))
        info = tarfile.TarInfo(where + name)
        info.mtime = draw(st.sampled_from([0, 1_600_000_000, _PLAIN_SECONDS - 1, _PLAIN_SECONDS]))
        if draw(st.booleans()):
            info.pax_headers = {"mtime": f"{info.mtime}.{draw(st.integers(1, 999_999_999)):09d}"}
        data = b"x" * draw(st.integers(0, 3))
        info.size = len(data)
        items.insert(draw(st.integers(0, len(items))), (info, data))
    return items


@settings(deadline=None, max_examples=150)
@given(items=run_members())
def test_runs_are_the_plain_files_of_one_directory_in_a_row_and_the_rest_stays_in_order(
        tmp_path_factory, items):
    archive = _archive(items, tarfile.PAX_FORMAT)
    path = tmp_path_factory.mktemp("runs") / "a.img"
    with Ext4Writer(path, Ext4Options(fsync=False)) as w:
        for raw, strings in read_batches(io.BytesIO(archive), "t", w):
            assert _runs_from_c(raw, strings) == _runs_by_the_rules(raw, strings)


def _entry(name_off: int, name_len: int, flags: int) -> bytes:
    return TAR_ENTRY.struct.pack(ord("0"), 0o644, 0, 0, 5, 0, 0, 0, flags, 0, 0, name_len,
                                 name_off, 0, 0, 0, 0, 0, -1, 0)


def _c_runs(raw: bytes, strings: bytes, segs: int, names: int, recs: int) -> tuple[int, int]:
    n = len(raw) // TAR_ENTRY.struct.size
    got = lib.oe_tar_runs(ffi.from_buffer("oe_tar_entry[]", raw), n, ffi.from_buffer(strings),
                          len(strings), _PLAIN_SECONDS, WHITEOUT, len(WHITEOUT),
                          ffi.new("oe_tar_seg[]", max(segs, 1)),
                          segs, ffi.new("uint8_t[]", max(names, 1)), names,
                          ffi.new("uint8_t[]", max(recs, 1)), recs)
    return got, (ffi.errno if got < 0 else 0)


def test_tar_runs_refuses_what_would_write_outside_its_arrays_or_a_name_that_is_not_plain():
    strings = b"d/ad/bx/c"
    two = _entry(0, 3, PLAIN_NAME) + _entry(3, 3, PLAIN_NAME)
    three = two + _entry(6, 3, PLAIN_NAME)
    rec = PLAIN.size
    assert _c_runs(three, strings, 2, 4, 3 * rec) == (2, 0)             # d/{a,b}, x/{c}
    assert _c_runs(three, strings, 1, 4, 3 * rec) == (-1, errno.ERANGE)  # one segment of two
    assert _c_runs(three, strings, 2, 3, 3 * rec) == (-1, errno.ERANGE)  # "a\0b", "c": 4 bytes
    assert _c_runs(two, strings, 1, 2, 2 * rec) == (-1, errno.ERANGE)    # "a\0b" is 3 bytes
    assert _c_runs(two, strings, 1, 3, 2 * rec - 1) == (-1, errno.ERANGE)
    assert _c_runs(_entry(7, 3, PLAIN_NAME), strings, 1, 9, rec) == (-1, errno.ERANGE)
    assert _c_runs(_entry(0, 4, PLAIN_NAME), b"d//x", 1, 4, rec) == (-1, errno.EINVAL)
    assert _c_runs(_entry(0, 4, 0), b"d//x", 1, 4, rec) == (1, 0)  # not flagged: left as it is

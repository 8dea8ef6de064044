"""A tar's members into a tree: the records of plain files and directories
become nodes straight from the reader's batch (apply_batch: plain files as
plain records, ociext4.tree.PLAIN, when the writer stores their mtime as it
is), every other member through TarEntry and entry_node.  Both ways must
make the same tree."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from test_layers import _archive, members

from ociext4.errors import SourceError
from ociext4.ext4 import Ext4Options, Ext4Writer
from ociext4.layers import read_entries
from ociext4.sources.tarball import entry_node, link_target, read_tar
from ociext4.tree import Inode, Tree, new_dir, split_path, walk


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
    return ("image", shape, path.read_bytes())


@settings(deadline=None, max_examples=60)
@given(items=varied())
def test_members_made_from_records_give_the_tree_and_image_entry_node_gives(
        tmp_path_factory, items):
    archive = _archive(items, tarfile.PAX_FORMAT)
    out = tmp_path_factory.mktemp("tarball")
    # The image too, byte for byte: a plain record packs as its Inode would.
    assert _made(out / "a.img", archive, True) == _made(out / "b.img", archive, False)

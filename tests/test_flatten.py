"""The OCI layer rules: whiteouts, opaque directories, replacement, links."""

from __future__ import annotations

import pytest

from ociext4.errors import SourceError
from ociext4.flatten import apply_layers
from ociext4.tree import S_IFLNK, S_IFREG, Inode, Tree, new_dir, split_path, walk


def f(data: int) -> Inode:
    return Inode(S_IFREG, data=data)


def flat(*layers: list[tuple[bytes, Inode | bytes]]) -> tuple[dict[bytes, object], list[int]]:
    released: list[int] = []
    tree = apply_layers(Tree(on_release=lambda n: released.append(n.data)), layers)
    out: dict[bytes, object] = {}
    for path, node in walk(tree.root):
        if path:
            link = node.target if node.kind == S_IFLNK else node.data
            out[path] = "dir" if node.is_dir else link
    return out, sorted(released)


def test_whiteout_hides_the_lower_file_and_frees_its_data():
    tree, released = flat([(b"a", f(1)), (b"b", f(2))], [(b".wh.a", f(0))])
    assert tree == {b"b": 2} and released == [1]


def test_whiteout_hides_a_whole_lower_directory():
    tree, released = flat([(b"d/x", f(1)), (b"d/y/z", f(2))], [(b".wh.d", f(0))])
    assert tree == {} and released == [1, 2]


def test_whiteout_does_not_hide_what_its_own_layer_adds():
    tree, _ = flat([(b"a", f(1))], [(b"a", f(2)), (b".wh.a", f(0))])
    assert tree == {b"a": 2}


def test_opaque_marker_after_new_files_keeps_them_and_hides_lower_ones():
    tree, released = flat(
        [(b"d/old", f(1)), (b"d/sub/deep", f(2))],
        [(b"d/new", f(3)), (b"d/.wh..wh..opq", f(0))])
    assert tree == {b"d": "dir", b"d/new": 3} and released == [1, 2]


def test_opaque_directory_remade_in_the_layer_loses_its_lower_children():
    tree, _ = flat(
        [(b"d/sub/old", f(1))],
        [(b"d/.wh..wh..opq", f(0)), (b"d/sub", new_dir()), (b"d/sub/new", f(2))])
    assert tree == {b"d": "dir", b"d/sub": "dir", b"d/sub/new": 2}


def test_directory_whited_out_and_remade_in_one_layer_has_only_new_contents():
    tree, _ = flat([(b"d/old", f(1))], [(b".wh.d", f(0)), (b"d", new_dir()), (b"d/new", f(2))])
    assert tree == {b"d": "dir", b"d/new": 2}


def test_file_replaced_by_directory_and_back():
    tree, released = flat([(b"p", f(1))], [(b"p/x", f(2))], [(b"p", f(3))])
    assert tree == {b"p": 3} and released == [1, 2]


def test_hard_link_to_a_lower_file_survives_whiteout_of_the_original():
    tree, released = flat([(b"orig", f(1))], [(b"link", b"orig")], [(b".wh.orig", f(0))])
    assert tree == {b"link": 1} and released == []


def test_overwriting_one_name_of_a_link_group_keeps_the_others():
    tree, _ = flat([(b"a", f(1)), (b"b", b"a")], [(b"a", f(2))])
    assert tree == {b"a": 2, b"b": 1}


def test_symlinked_parent_is_followed_inside_the_image():
    tree, _ = flat([(b"usr/lib", new_dir()), (b"lib", Inode(S_IFLNK, target=b"usr/lib"))],
                   [(b"lib/x.so", f(1))])
    assert tree[b"usr/lib/x.so"] == 1 and tree[b"lib"] == b"usr/lib"


def test_opaque_through_a_symlinked_parent_keeps_new_entries():
    tree, _ = flat([(b"usr/lib/old", f(1)), (b"lib", Inode(S_IFLNK, target=b"usr/lib"))],
                   [(b"lib/new", f(2)), (b"usr/lib/.wh..wh..opq", f(0))])
    assert tree[b"usr/lib/new"] == 2 and b"usr/lib/old" not in tree


def test_estargz_metadata_files_are_dropped():
    tree, _ = flat([(b"stargz.index.json", f(1)), (b".prefetch.landmark", f(2)), (b"a", f(3))])
    assert tree == {b"a": 3}


@pytest.mark.parametrize("marker", [b".wh.", b"d/.wh..", b".wh.."])
def test_bare_whiteouts_are_errors(marker):
    with pytest.raises(SourceError, match="invalid whiteout"):
        flat([(b"d/x", f(1))], [(marker, f(0))])


def test_twenty_thousand_entries_with_one_whiteout():
    lower = [(b"big/%05d" % i, f(i + 1)) for i in range(20_000)]
    tree, released = flat(lower, [(b"big/.wh.01234", f(0))])
    assert len(tree) == 20_000 and b"big/01234" not in tree and released == [1235]


def test_missing_parents_are_created():
    tree, _ = flat([(b"a/b/c", f(1))])
    assert tree == {b"a": "dir", b"a/b": "dir", b"a/b/c": 1}
    assert split_path(b"a/b/c") == [b"a", b"b", b"c"]


def test_whiteout_under_a_symlinked_parent_hides_the_file_behind_the_symlink():
    tree, released = flat(
        [(b"usr/lib/a", f(1)), (b"usr/lib/b", f(2)), (b"lib", Inode(S_IFLNK, target=b"usr/lib"))],
        [(b"lib/.wh.a", f(0))])
    assert b"usr/lib/a" not in tree and tree[b"usr/lib/b"] == 2 and released == [1]


def test_opaque_marker_under_a_symlinked_directory_empties_its_target():
    tree, released = flat(
        [(b"e/old", f(1)), (b"d", Inode(S_IFLNK, target=b"e"))],
        [(b"d/.wh..wh..opq", f(0)), (b"d/new", f(2))])
    assert tree == {b"d": b"e", b"e": "dir", b"e/new": 2} and released == [1]


def test_directory_whited_out_then_written_into_is_a_fresh_directory():
    old = new_dir(0o700, uid=7, gid=8, mtime_ns=5)
    old.xattrs = {"user.k": b"v"}
    tree = apply_layers(Tree(), [[(b"d", old), (b"d/old", f(1))],
                                 [(b".wh.d", f(0)), (b"d/new", f(2))]])
    d = tree.lookup([b"d"])
    assert d is not old and sorted(d.children) == [b"new"]
    assert (d.mode, d.uid, d.gid, d.mtime_ns, d.xattrs) == (0o755, 0, 0, 0, {})


def test_opaque_marker_before_new_entries_makes_their_parents_fresh():
    tree = apply_layers(Tree(), [[(b"d/sub", new_dir(0o700, uid=3)), (b"d/sub/old", f(1))],
                                 [(b"d/.wh..wh..opq", f(0)), (b"d/sub/new", f(2))]])
    sub = tree.lookup([b"d", b"sub"])
    assert sorted(sub.children) == [b"new"] and (sub.mode, sub.uid) == (0o755, 0)


def test_whiteout_of_a_missing_directory_is_ignored():
    tree, _ = flat([(b"a", f(1))], [(b"no/such/.wh.x", f(0)), (b"no/.wh..wh..opq", f(0))])
    assert tree == {b"a": 1}


def test_parent_components_inside_the_root_are_resolved_by_name():
    tree, _ = flat([(b"a/../b/c", f(1))])
    assert tree == {b"b": "dir", b"b/c": 1}


def test_markers_inside_directories_the_layer_made_keep_everything_it_put_there():
    # Directories a layer makes itself (named, implied by a path, or
    # replacing a lower file) hold only that layer's entries.
    tree, released = flat(
        [(b"file", f(1)), (b"keep", f(2))],
        [(b"d", new_dir()), (b"d/x", f(3)), (b"e/sub/y", f(4)), (b"file/z", f(5)),
         (b"d/.wh.x", f(0)), (b"d/.wh..wh..opq", f(0)), (b"e/.wh.sub", f(0)),
         (b"e/sub/.wh..wh..opq", f(0)), (b"file/.wh..wh..opq", f(0))])
    assert tree == {b"d": "dir", b"d/x": 3, b"e": "dir", b"e/sub": "dir", b"e/sub/y": 4,
                    b"file": "dir", b"file/z": 5, b"keep": 2}
    assert released == [1]


def test_a_lower_directory_written_into_again_is_not_taken_for_a_new_one():
    tree, released = flat(
        [(b"d/old", f(1)), (b"d/sub/deep", f(2))],
        [(b"d", new_dir(0o700)), (b"d/sub/new", f(3)), (b"d/.wh..wh..opq", f(0)),
         (b"d/sub/.wh..wh..opq", f(0))])
    assert tree == {b"d": "dir", b"d/sub": "dir", b"d/sub/new": 3} and released == [1, 2]

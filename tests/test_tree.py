"""The in-memory tree: paths, replacement rules, hard links, symlinked parents."""

from __future__ import annotations

import sys
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ociext4.errors import UnsafePathError
from ociext4.tree import (
    NO_XATTRS,
    S_IFCHR,
    S_IFLNK,
    S_IFREG,
    Inode,
    Node,
    Tree,
    as_inode,
    new_dir,
    plain_record,
    split_path,
    walk,
)


def file(data: int | None = None) -> Inode:
    return Inode(S_IFREG, data=data)


def test_split_path_drops_dots_slashes_and_leading_root():
    assert split_path(b"/./a//b/./c/") == [b"a", b"b", b"c"]


@pytest.mark.parametrize("path", [b"../x", b"a/../../x", b"a/b/../../../x", b"/.."])
def test_split_path_refuses_paths_that_climb_above_the_root(path):
    with pytest.raises(UnsafePathError, match="climbs out of the root"):
        split_path(path)


@pytest.mark.parametrize(("path", "parts"), [
    (b"a/../b/c", [b"b", b"c"]), (b"a/b/../../c", [b"c"]), (b"a/..", []),
    (b"./a/./b/../c/", [b"a", b"c"])])
def test_split_path_resolves_parent_components_that_stay_inside(path, parts):
    assert split_path(path) == parts


def test_put_creates_missing_parents():
    t = Tree()
    t.put([b"a", b"b", b"c"], file(), new_dir)
    assert t.lookup([b"a", b"b"]).is_dir
    assert t.lookup([b"a", b"b", b"c"]).kind == S_IFREG


def test_directory_over_directory_keeps_children_and_takes_attributes():
    t = Tree()
    t.put([b"d", b"x"], file(), new_dir)
    t.put([b"d"], new_dir(0o700, uid=5), new_dir)
    d = t.lookup([b"d"])
    assert d.mode == 0o700 and d.uid == 5 and b"x" in d.children


def test_file_over_directory_drops_the_subtree_and_releases_its_data():
    released: list[int] = []
    t = Tree(on_release=lambda n: released.append(n.data))
    t.put([b"d", b"x"], file(1), new_dir)
    t.put([b"d", b"y", b"z"], file(2), new_dir)
    t.put([b"d"], file(3), new_dir)
    t.collect()
    assert sorted(released) == [1, 2]
    assert t.lookup([b"d"]).data == 3


def test_hard_link_keeps_data_until_the_last_name_goes():
    released: list[int] = []
    t = Tree(on_release=lambda n: released.append(n.data))
    f = t.put([b"a"], file(7), new_dir)
    t.put([b"b"], f, new_dir)
    t.remove([b"a"])
    t.collect()
    assert released == []
    t.put([b"b"], file(8), new_dir)
    t.collect()
    assert released == [7]


def record(data: int | None) -> bytes:
    return plain_record(0o640, 5, 6, 1_700_000_000, 25, 10, data)


def test_a_hard_link_to_a_plain_record_makes_it_one_inode_under_both_names():
    released: list[int | None] = []
    t = Tree(on_release=lambda n: released.append(as_inode(n).data))
    t.put([b"d", b"a"], record(7), new_dir)
    target = t.lookup([b"d", b"a"])
    assert isinstance(target, Inode) and target.names == 1
    assert (target.mode, target.uid, target.gid, target.mtime_ns, target.size, target.data) == (
        0o640, 5, 6, 1_700_000_000_000_000_025, 10, 7)
    t.put([b"b"], target, new_dir)
    assert t.lookup([b"b"]) is target and t.lookup([b"d", b"a"]) is target
    assert target.names == 2
    t.remove([b"d", b"a"])
    t.collect()
    assert released == []
    t.remove([b"b"])
    t.collect()
    assert released == [7]


def test_a_plain_record_replaced_or_removed_releases_its_data_once():
    released: list[int | None] = []
    t = Tree(on_release=lambda n: released.append(as_inode(n).data))
    t.put([b"a"], record(1), new_dir)
    t.put([b"a"], record(2), new_dir)          # a file over it
    t.put([b"b", b"c"], record(3), new_dir)
    t.put([b"b", b"c", b"d"], file(4), new_dir)  # a directory in its place
    t.put([b"e"], record(None), new_dir)
    t.remove([b"e"])
    t.collect()
    assert released == [1, 3, None]
    assert [(p, n.data) for p, n in walk(t.root) if n.kind == S_IFREG] == [
        (b"a", 2), (b"b/c/d", 4)]


def test_overwriting_one_hard_link_name_leaves_the_others():
    t = Tree()
    f = t.put([b"a"], file(1), new_dir)
    t.put([b"b"], f, new_dir)
    t.put([b"a"], file(2), new_dir)
    assert t.lookup([b"b"]) is f and t.lookup([b"a"]).data == 2


def test_symlinked_parent_resolves_inside_the_tree():
    t = Tree()
    t.put([b"usr", b"lib"], new_dir(), new_dir)
    t.put([b"lib"], Inode(S_IFLNK, target=b"usr/lib"), new_dir)
    t.put([b"lib", b"x.so"], file(), new_dir)
    assert t.lookup([b"usr", b"lib", b"x.so"]) is not None
    assert t.lookup([b"lib"]).kind == S_IFLNK


def test_absolute_symlink_parent_points_at_the_image_root_not_the_host():
    t = Tree()
    t.put([b"etc"], Inode(S_IFLNK, target=b"/"), new_dir)
    t.put([b"etc", b"passwd"], file(), new_dir)
    assert t.lookup([b"passwd"]) is not None
    assert t.lookup([b"etc"]).kind == S_IFLNK


def test_dotdot_in_symlink_target_stops_at_the_root():
    t = Tree()
    t.put([b"a"], Inode(S_IFLNK, target=b"../../../../b"), new_dir)
    t.put([b"a", b"f"], file(), new_dir)
    assert t.lookup([b"b", b"f"]) is not None


def test_symlink_loop_as_parent_is_an_error():
    t = Tree()
    t.put([b"a"], Inode(S_IFLNK, target=b"b"), new_dir)
    t.put([b"b"], Inode(S_IFLNK, target=b"a"), new_dir)
    with pytest.raises(UnsafePathError, match="too many levels"):
        t.put([b"a", b"f"], file(), new_dir)


def test_file_in_the_way_of_a_parent_is_replaced_by_a_directory():
    t = Tree()
    t.put([b"a"], file(), new_dir)
    t.put([b"a", b"f"], file(), new_dir)
    assert t.lookup([b"a"]).is_dir


def test_root_can_only_be_a_directory():
    with pytest.raises(UnsafePathError):
        Tree().put([], file(), new_dir)


def test_walk_yields_parents_before_children_in_name_order():
    t = Tree()
    for p in (b"b/y", b"a/z", b"a/x"):
        t.put(split_path(p), file(), new_dir)
    assert [p for p, _ in walk(t.root)] == [b"", b"a", b"a/x", b"a/z", b"b", b"b/y"]


names = st.sampled_from([b"a", b"b", b"c"])
paths = st.lists(names, min_size=1, max_size=3)
ops = st.lists(st.tuples(st.sampled_from(["file", "record", "dir", "rm", "link", "sym"]), paths,
                         paths), max_size=40)


@given(ops)
def test_every_file_data_is_released_exactly_once_or_still_reachable(program):
    released: list[int] = []
    t = Tree(on_release=lambda n: released.append(as_inode(n).data))  # type: ignore[arg-type]
    made = 0
    for op, path, other in program:
        if op == "sym":
            try:
                t.put(path, Inode(S_IFLNK, target=b"/".join(other)), new_dir)
            except UnsafePathError:
                pass
        elif op in ("file", "record"):
            made += 1
            node: Node = file(made) if op == "file" else record(made)
            try:
                t.put(path, node, new_dir)
            except UnsafePathError:
                made -= 1
        elif op == "dir":
            try:
                t.put(path, new_dir(), new_dir)
            except UnsafePathError:
                pass
        elif op == "rm":
            try:
                t.remove(path)
            except UnsafePathError:
                pass
        else:
            target = t.lookup(other)
            if target is not None and not target.is_dir:
                try:
                    t.put(path, target, new_dir)
                except UnsafePathError:
                    pass
        t.collect()
        for key, cached in t._parents.items():  # the parent cache never goes stale
            fresh = t._resolve([t.root], list(key), [0], None)
            assert fresh is not None and fresh[-1] is cached[0]
    reachable = {n.data for _, n in walk(t.root) if n.kind == S_IFREG}
    assert len(released) == len(set(released))
    assert reachable.isdisjoint(released)
    assert reachable | set(released) == set(range(1, made + 1))


def test_rare_attributes_read_back_and_default_when_never_set():
    plain = Inode(S_IFREG, mode=0o600, uid=1, gid=2, mtime_ns=3, size=4, data=5)
    assert (plain.atime_ns, plain.ctime_ns, plain.target, plain.rdev) == (None, None, b"", (0, 0))
    assert plain.xattrs == {} and plain.xattrs is NO_XATTRS
    dev = Inode(S_IFCHR, atime_ns=7, rdev=(1, 3), xattrs={"user.a": b"1"})
    dev.ctime_ns = 9
    assert (dev.atime_ns, dev.ctime_ns, dev.rdev, dict(dev.xattrs)) == (7, 9, (1, 3),
                                                                       {"user.a": b"1"})
    link = Inode(S_IFLNK)
    link.target = b"somewhere"
    link.xattrs = {}
    assert (link.target, link.xattrs, link.atime_ns) == (b"somewhere", {}, None)


def test_the_shared_empty_xattrs_cannot_be_filled_for_everyone():
    with pytest.raises(TypeError):
        Inode(S_IFREG).xattrs["user.a"] = b"1"  # type: ignore[index]


def test_a_plain_file_inode_with_its_data_handle_costs_at_most_115_bytes():
    # A million of them make a million-entry image: the goal is a few
    # hundred bytes an entry in all (bench/scale.py).  The handles are made
    # inside the measure: the inode keeps its own int for size and handle.
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        nodes = [Inode(S_IFREG, 0o644, 0, 0, 0, None, None, 4096 + d, 10**6 + d)
                 for d in range(10000)]
        used = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    per_inode = (used - sys.getsizeof(nodes)) / len(nodes)   # less the list itself
    # 80 + 32 (it was 112 + 32 + 32, size and handle apart, then 88 + 32)
    assert per_inode < 115
    assert [(n.size, n.data) for n in nodes[:2]] == [(4096, 10**6), (4097, 10**6 + 1)]


_names = st.sampled_from([b"a", b"b", b"c"])
_targets = st.sampled_from([b"a", b"b/c", b"/a", b"/", b"..", b"../b", b"../../c", b"a/..", b"c"])


def _resolved(tree: Tree, parts: list[bytes]) -> tuple[object, ...]:
    try:
        parent, steps = tree.parent_and_trail(parts)
    except UnsafePathError as e:
        return ("error", str(e))
    return (id(parent), [(id(d), name) for d, name in steps])


@settings(max_examples=200, deadline=None)
@given(entries=st.lists(st.tuples(st.lists(_names, min_size=1, max_size=4),
                                  st.one_of(st.none(), _targets)), max_size=12),
       queries=st.lists(st.lists(_names, min_size=1, max_size=6), max_size=12))
def test_a_directory_resolved_from_its_cached_parent_is_the_one_a_walk_from_the_root_finds(
        entries, queries):
    # Directories and symlinks (loops, `..`, absolute targets) over a few
    # names; then each query's parents, shortest first, on a tree whose
    # cache fills as it goes, against a fresh cache that walks from the root.
    tree = Tree()
    for parts, target in entries:
        try:
            tree.put(parts, new_dir() if target is None else Inode(S_IFLNK, target=target),
                     new_dir)
        except UnsafePathError:
            pass
    for query in queries:
        for end in range(1, len(query) + 1):
            warm = _resolved(tree, query[:end] + [b"x"])
            cold = Tree(tree.root)
            assert warm == _resolved(cold, query[:end] + [b"x"])

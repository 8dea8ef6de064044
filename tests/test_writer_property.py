"""Property: any tree the writer is given comes back from the kernel as it
was, and e2fsck finds nothing to fix."""

from __future__ import annotations

import hashlib
import random
import stat

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from support.fscheck import Entry, assert_same_tree

from ociext4.ext4 import Ext4Options, Ext4Writer
from ociext4.ext4.plan import AMBIGUOUS_END_NS, AMBIGUOUS_START_NS
from ociext4.tree import (
    S_IFBLK,
    S_IFCHR,
    S_IFIFO,
    S_IFLNK,
    S_IFREG,
    S_IFSOCK,
    Inode,
    new_dir,
)

pytestmark = pytest.mark.needs_root_loop

names = st.binary(min_size=1, max_size=40).filter(
    lambda n: b"/" not in n and b"\0" not in n and n not in (b".", b"..", b"lost+found"))
# The whole ext4 range but 2310-2378, which the writer moves (see plan.py).
times = st.integers(min_value=-(2**31) * 10**9, max_value=(2**34 - 2**31 - 1) * 10**9).filter(
    lambda ns: not AMBIGUOUS_START_NS <= ns < AMBIGUOUS_END_NS)
ids = st.integers(min_value=0, max_value=2**32 - 2)
perms = st.integers(min_value=0, max_value=0o7777)
xattr_names = st.sampled_from(["user.a", "user.long.name.here", "trusted.t", "security.s"])
xattrs = st.dictionaries(xattr_names, st.binary(max_size=600), max_size=4)
# Long pieces (past 64 KiB, at any alignment) take the writer's direct path,
# which skips its output buffer; their bytes come from a seed, not from
# hypothesis, to keep examples cheap.
long_piece = st.builds(lambda n, seed: random.Random(seed).randbytes(n),
                       st.integers(60_000, 300_000), st.integers(0, 2**32))
pieces = st.lists(st.tuples(st.integers(0, 300_000),
                            st.one_of(st.binary(min_size=1, max_size=9000), long_piece)),
                  max_size=4)


@st.composite
def leaf(draw: st.DrawFn) -> dict:
    kind = draw(st.sampled_from(["reg", "reg", "reg", "lnk", "chr", "blk", "fifo", "sock"]))
    node = {"kind": kind, "mode": draw(perms), "uid": draw(ids), "gid": draw(ids),
            "mtime": draw(times), "xattrs": draw(xattrs)}
    if kind == "reg":
        node["pieces"] = draw(pieces)
        node["tail"] = draw(st.integers(0, 5000))
    elif kind == "lnk":
        node["target"] = draw(st.binary(min_size=1, max_size=400).filter(lambda t: b"\0" not in t))
        node["xattrs"] = {}  # user.* xattrs cannot be set on symlinks by Linux
    elif kind in ("chr", "blk"):
        node["rdev"] = (draw(st.integers(0, 4095)), draw(st.integers(0, 2**20 - 1)))
    if kind not in ("reg", "dir"):
        # Linux refuses to read user.* on special files, so only the other
        # namespaces can be checked there.
        node["xattrs"] = {k: v for k, v in node["xattrs"].items() if not k.startswith("user.")}
    return node


trees_ = st.recursive(
    leaf(),
    lambda children: st.fixed_dictionaries({
        "kind": st.just("dir"), "mode": perms, "uid": ids, "gid": ids, "mtime": times,
        "xattrs": xattrs, "children": st.dictionaries(names, children, max_size=6)}),
    max_leaves=25,
)
root_trees = st.fixed_dictionaries({
    "kind": st.just("dir"), "mode": perms, "uid": ids, "gid": ids, "mtime": times,
    "xattrs": xattrs, "children": st.dictionaries(names, trees_, max_size=8)})

_KINDS = {"reg": S_IFREG, "lnk": S_IFLNK, "chr": S_IFCHR, "blk": S_IFBLK, "fifo": S_IFIFO,
          "sock": S_IFSOCK}


def _content(spec: dict) -> tuple[list[tuple[int, bytes]], int]:
    """Non-overlapping pieces in order, and the file size."""
    out: list[tuple[int, bytes]] = []
    end = 0
    for off, data in sorted(spec["pieces"]):
        off = max(off, end)
        out.append((off, data))
        end = off + len(data)
    return out, end + spec["tail"]


def build(spec: dict, writer: Ext4Writer, path: str, expected: dict[str, Entry],
          links: list[tuple[str, Inode]]) -> Inode:
    common = {"mode": spec["mode"], "uid": spec["uid"], "gid": spec["gid"],
              "mtime_ns": spec["mtime"], "xattrs": dict(spec["xattrs"])}
    entry = Entry(type=spec["kind"], mode=spec["mode"], uid=spec["uid"], gid=spec["gid"],
                  mtime_ns=spec["mtime"], xattrs=dict(spec["xattrs"]))
    if spec["kind"] == "dir":
        node = new_dir(**common)
        for name, child in spec["children"].items():
            cpath = f"{path}/{name.decode('utf-8', 'surrogateescape')}" if path != "." else \
                name.decode("utf-8", "surrogateescape")
            node.children[name] = build(child, writer, cpath, expected, links)
            node.children[name].names += 1
    else:
        node = Inode(_KINDS[spec["kind"]], **common)
        if spec["kind"] == "reg":
            chunks, size = _content(spec)
            node.size = size
            node.data = writer.add_chunks(chunks) if chunks else None
            body = bytearray(size)
            for off, data in chunks:
                body[off:off + len(data)] = data
            entry.size, entry.sha256 = size, hashlib.sha256(body).hexdigest()
            links.append((path, node))
        elif spec["kind"] == "lnk":
            node.target = spec["target"]
            entry.target = spec["target"]
            entry.mode = None  # the kernel shows symlinks as 0777
        elif spec["kind"] in ("chr", "blk"):
            node.rdev = entry.rdev = spec["rdev"]
    expected[path] = entry
    return node


@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=root_trees, journal=st.booleans(),
       link_picks=st.lists(st.integers(0, 50), max_size=3))
def test_random_trees_mount_back_exactly(tmp_path_factory, spec, journal, link_picks):
    out = tmp_path_factory.mktemp("prop") / "out.img"
    expected: dict[str, Entry] = {}
    files: list[tuple[str, Inode]] = []
    with Ext4Writer(out, Ext4Options(journal=journal, free=0, fsync=False)) as w:
        root = build(spec, w, ".", expected, files)
        root.names = 1
        for i, pick in enumerate(link_picks):
            if files:  # a second name for an existing file: a hard link
                path, node = files[pick % len(files)]
                name = f"hardlink-{i}"
                if node.names and name.encode() not in root.children:
                    root.children[name.encode()] = node
                    node.names += 1
                    expected[name] = expected[path]
        # Hard links share one Entry object, so groups compare by identity.
        for entry in expected.values():
            if entry.type == "reg":
                entry.link = id(entry)
        w.commit(root)
    assert_same_tree(expected, out, check_nlink=False)
    assert stat.S_ISREG(out.stat().st_mode)


@settings(deadline=None, max_examples=6, suppress_health_check=[HealthCheck.too_slow])
@example(count=5_000, seed=1, longest=1, links_every=0)  # more names asked than one byte has
@given(count=st.one_of(st.integers(1, 200), st.integers(5_000, 30_000)),
       seed=st.integers(0, 2**32 - 1), longest=st.integers(1, 255), links_every=st.integers(0, 50))
def test_huge_random_directories_mount_back_exactly(tmp_path_factory, count, seed, longest,
                                                     links_every):
    # Names drawn from a seeded generator rather than by hypothesis one by one:
    # tens of thousands of them, up to 255 bytes, make two-level htrees.
    import random

    rng = random.Random(seed)
    alphabet = bytes(b for b in range(1, 256) if b != ord("/"))
    # Short names run out: there are only 254 of one byte (the loop below
    # would never end), so ask for at most half of what the lengths allow.
    count = min(count, sum(len(alphabet) ** k for k in range(1, longest + 1)) // 2)
    names: set[bytes] = set()
    while len(names) < count:
        n = bytes(rng.choices(alphabet, k=rng.randint(1, longest)))
        if n not in (b".", b"..", b"lost+found"):
            names.add(n)
    out = tmp_path_factory.mktemp("huge") / "out.img"
    expected: dict[str, Entry] = {".": Entry(type="dir", mode=0o755, uid=0, gid=0, mtime_ns=0),
                                  "d": Entry(type="dir", mode=0o700, uid=1, gid=2, mtime_ns=0)}
    with Ext4Writer(out, Ext4Options(free=0, fsync=False)) as w:
        root = new_dir(0o755)
        root.names = 1
        d = new_dir(0o700, uid=1, gid=2, xattrs={"user.big": b"x" * 3000})
        expected["d"].xattrs = {"user.big": b"x" * 3000}
        root.children[b"d"] = d
        d.names = 1
        first: tuple[Inode, Entry] | None = None
        for i, name in enumerate(sorted(names)):
            path = "d/" + name.decode("utf-8", "surrogateescape")
            if first is not None and links_every and i % links_every == 0:
                node, entry = first    # another name for the first file
            else:
                data = name[:17]
                node = Inode(S_IFREG, mode=0o640, uid=i, gid=i, size=len(data),
                             data=w.add_bytes(data), xattrs={"user.i": str(i).encode()})
                entry = Entry(type="reg", mode=0o640, uid=i, gid=i, mtime_ns=0, size=len(data),
                              sha256=hashlib.sha256(data).hexdigest(),
                              xattrs={"user.i": str(i).encode()})
                entry.link = id(entry)
                first = first or (node, entry)
            d.children[name] = node
            node.names += 1
            expected[path] = entry
        w.commit(root)
    assert_same_tree(expected, out, check_nlink=False)

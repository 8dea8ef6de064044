"""The in-memory file tree that sources fill and the ext4 writer consumes.

Names live in directories' `children`; everything else about a file lives in
its `Inode`, so a hard link is one `Inode` reachable under several names.
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import overload

from .errors import SourceError, UnsafePathError

S_IFREG = stat.S_IFREG
S_IFDIR = stat.S_IFDIR
S_IFLNK = stat.S_IFLNK
S_IFCHR = stat.S_IFCHR
S_IFBLK = stat.S_IFBLK
S_IFIFO = stat.S_IFIFO
S_IFSOCK = stat.S_IFSOCK

MAX_SYMLINK_HOPS = 40
NAME_MAX = 255          # bytes in one path component, on ext4 and in the VFS
MAX_LINKS = 65000       # names of one non-directory inode (ext4's EXT4_LINK_MAX)
SYMLINK_MAX = 4095      # bytes of a symlink target: one block, less the kernel's NUL
# Shared by every inode without xattrs (nearly all): an empty dict each
# would cost 64 bytes an entry.  Read-only, so no one can fill it for all.
NO_XATTRS: Mapping[str, bytes] = MappingProxyType({})


class _Rare:
    """The attributes few inodes have, kept apart so the rest do not pay a
    slot for each (a million inodes, 8 bytes a slot)."""

    __slots__ = ("atime_ns", "ctime_ns", "target", "rdev", "xattrs")

    def __init__(self) -> None:
        self.atime_ns: int | None = None
        self.ctime_ns: int | None = None
        self.target = b""
        self.rdev = _NO_RDEV
        self.xattrs = NO_XATTRS


_NO_RDEV = (0, 0)


# Inodes with the same mode, owner and mtime (a package's files) share one
# tuple of them: three slots fewer an inode.  Bounded, and emptied when full,
# so that a long-lived process does not keep every combination it met.
_SHARED_ATTRS: dict[tuple[int, int, int, int], tuple[int, int, int, int]] = {}
_SHARED_ATTRS_MAX = 4096


def _shared(attrs: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    found = _SHARED_ATTRS.get(attrs)
    if found is not None:
        return found
    if len(_SHARED_ATTRS) >= _SHARED_ATTRS_MAX:
        _SHARED_ATTRS.clear()
    _SHARED_ATTRS[attrs] = attrs
    return attrs


# A regular file's size and data handle in one int of at most 60 bits (32
# bytes; two ints would be 64): size << 1 when there is no data, else
# size << 26 | handle << 1 | 1.  Larger ones (files of 16 GiB and more,
# handles past 33 million) are kept as a pair.  The last operation is an
# OR on purpose: CPython's shifts and subtractions may leave an int one
# digit longer than its value needs (36 bytes, the 48-byte size class).
_HANDLE_BITS = 25
_HANDLE_MASK = (1 << _HANDLE_BITS) - 1
_SIZE_LIMIT = 1 << 34


def _size_data(size: int, data: int | None) -> int | tuple[int, int | None]:
    if not 0 <= size < _SIZE_LIMIT:
        return (size, data)
    if data is None:
        return (size << 1) | 0
    if 0 <= data <= _HANDLE_MASK:
        return (size << (_HANDLE_BITS + 1)) | (data << 1) | 1
    return (size, data)


class _Attr:
    """One of the fields an Inode keeps in its shared (mode, uid, gid, mtime) tuple."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _Attr: ...
    @overload
    def __get__(self, obj: Inode, owner: type | None = None) -> int: ...

    def __get__(self, obj: Inode | None, owner: type | None = None) -> int | _Attr:
        return self if obj is None else obj._attrs[self.index]

    def __set__(self, obj: Inode, value: int) -> None:
        obj._set_attr(self.index, value)


class Inode:
    """One file's attributes; a directory's `children` maps names to inodes.
    Inodes compare and hash by identity.

    Small, for a million of them: mode, uid, gid and mtime share one tuple,
    and a regular file's size and data handle are one int (80 bytes and one
    int an inode, from 112 and two).  At 80 bytes inodes share the
    allocator's size class with 4- and 5-tuples, so anything of that size
    kept while the tree lives lands among its inodes and keeps their 1 MiB
    arena from being handed back when the tree is freed; an unpack keeps
    none (measured from outside the process: a sampler thread inside it
    pinned every arena)."""

    __slots__ = ("kind", "_attrs", "_sd", "children", "names", "_rare")

    def __init__(self, kind: int, mode: int = 0o644, uid: int = 0, gid: int = 0,
                 mtime_ns: int = 0, atime_ns: int | None = None, ctime_ns: int | None = None,
                 size: int = 0, data: int | None = None, target: bytes = b"",
                 rdev: tuple[int, int] = _NO_RDEV, xattrs: Mapping[str, bytes] = NO_XATTRS,
                 children: dict[bytes, Node] | None = None, names: int = 0) -> None:
        self.kind = kind                  # one of the S_IF* constants
        # mode: permission bits, including setuid/setgid/sticky
        self._attrs = _shared((mode, uid, gid, mtime_ns))
        self._sd = _size_data(size, data)
        self.children = children
        self.names = names                # how many directory entries point here
        self._rare: _Rare | None = None
        if atime_ns is not None or ctime_ns is not None or target or rdev != _NO_RDEV or xattrs:
            rare = self._rare = _Rare()
            rare.atime_ns, rare.ctime_ns, rare.target, rare.rdev, rare.xattrs = (
                atime_ns, ctime_ns, target, rdev, xattrs)

    @property
    def size(self) -> int:                 # regular files
        sd = self._sd
        if type(sd) is int:
            return sd >> (_HANDLE_BITS + 1) if sd & 1 else sd >> 1
        return sd[0]  # type: ignore[index]

    @size.setter
    def size(self, value: int) -> None:
        self._sd = _size_data(value, self.data)

    @property
    def data(self) -> int | None:          # the writer's handle for the file's bytes
        sd = self._sd
        if type(sd) is int:
            return (sd >> 1) & _HANDLE_MASK if sd & 1 else None
        return sd[1]  # type: ignore[index]

    @property
    def size_and_data(self) -> tuple[int, int | None]:
        """(size, data) at once, for a reader of a million."""
        sd = self._sd
        if type(sd) is int:
            if sd & 1:
                return sd >> (_HANDLE_BITS + 1), (sd >> 1) & _HANDLE_MASK
            return sd >> 1, None
        return sd  # type: ignore[return-value]

    @data.setter
    def data(self, value: int | None) -> None:
        self._sd = _size_data(self.size, value)

    def _set_attr(self, i: int, value: int) -> None:
        a = self._attrs
        self._attrs = _shared((*a[:i], value, *a[i + 1:]))  # type: ignore[arg-type]

    mode = _Attr(0)       # permission bits, including setuid/setgid/sticky
    uid = _Attr(1)
    gid = _Attr(2)
    mtime_ns = _Attr(3)

    def _rare_for_write(self) -> _Rare:
        if self._rare is None:
            self._rare = _Rare()
        return self._rare

    @property
    def atime_ns(self) -> int | None:      # None: same as mtime
        return None if self._rare is None else self._rare.atime_ns

    @atime_ns.setter
    def atime_ns(self, value: int | None) -> None:
        if value is not None or self._rare is not None:
            self._rare_for_write().atime_ns = value

    @property
    def ctime_ns(self) -> int | None:      # None: same as mtime
        return None if self._rare is None else self._rare.ctime_ns

    @ctime_ns.setter
    def ctime_ns(self, value: int | None) -> None:
        if value is not None or self._rare is not None:
            self._rare_for_write().ctime_ns = value

    @property
    def target(self) -> bytes:             # symlinks
        return b"" if self._rare is None else self._rare.target

    @target.setter
    def target(self, value: bytes) -> None:
        if value or self._rare is not None:
            self._rare_for_write().target = value

    @property
    def rdev(self) -> tuple[int, int]:     # devices: (major, minor)
        return _NO_RDEV if self._rare is None else self._rare.rdev

    @rdev.setter
    def rdev(self, value: tuple[int, int]) -> None:
        if value != _NO_RDEV or self._rare is not None:
            self._rare_for_write().rdev = value

    @property
    def xattrs(self) -> Mapping[str, bytes]:
        return NO_XATTRS if self._rare is None else self._rare.xattrs

    @xattrs.setter
    def xattrs(self, value: Mapping[str, bytes]) -> None:
        if value or self._rare is not None:
            self._rare_for_write().xattrs = value

    @property
    def is_dir(self) -> bool:
        return self.kind == S_IFDIR

    @property
    def attrs(self) -> tuple[int, int, int, int]:
        """(mode, uid, gid, mtime_ns) at once, for a reader of a million."""
        return self._attrs

    @property
    def has_rare(self) -> bool:
        """Whether any of atime, ctime, target, rdev and xattrs is set."""
        return self._rare is not None

    def __repr__(self) -> str:
        return (f"Inode(kind={self.kind:o}, mode={self.mode:o}, uid={self.uid}, gid={self.gid}, "
                f"size={self.size}, names={self.names})")


# A plain file (regular, one name, no atime, ctime or xattrs, an mtime the
# writer stores as it is) is kept in its directory not as an Inode but as
# its record for the C commit: the writer's `oe_inode` from `mode` to `ref`,
# byte for byte (ociext4.ext4.records checks this layout against C's at
# import), with a link count of 1 and atime and ctime equal to mtime.  Made
# straight from the tar reader's record and copied as it is by the packing,
# it costs neither an Inode nor its ints, and most of an image's entries are
# such files.  Anything that needs one as an Inode (a hard link to it) gets
# one in its place: see plain_inode().
PLAIN = struct.Struct("<IIIIqqqIIIIQQ")
NO_DATA = (1 << 64) - 1     # a plain record's `ref` when it has no data
Node = Inode | bytes        # what a directory's `children` maps a name to


def plain_record(mode: int, uid: int, gid: int, sec: int, nsec: int, size: int,
                 data: int | None) -> bytes:
    """A plain file's record; its mtime (sec, nsec) must be one the writer
    stores as it is (ociext4.ext4.plan)."""
    return PLAIN.pack(S_IFREG | (mode & 0o7777), uid, gid, 1, sec, sec, sec, nsec, nsec, nsec,
                      0, size, NO_DATA if data is None else data)


def plain_data(rec: bytes) -> int | None:
    """The writer's handle for a plain file's bytes."""
    data: int = PLAIN.unpack(rec)[12]
    return None if data == NO_DATA else data


def plain_inode(rec: bytes, names: int = 0) -> Inode:
    """The Inode a plain file's record stands for."""
    mode, uid, gid, _, _, _, sec, _, _, nsec, _, size, data = PLAIN.unpack(rec)
    return Inode(S_IFREG, mode & 0o7777, uid, gid, sec * 1_000_000_000 + nsec, size=size,
                 data=None if data == NO_DATA else data, names=names)


def as_inode(node: Node) -> Inode:
    """`node` as an Inode: a plain record becomes a new one (a copy)."""
    return plain_inode(node, 1) if type(node) is bytes else node  # type: ignore[arg-type]


# A resolved directory: itself, the (directory, name) steps taken to reach
# it, the chain of directories from the root (symlinks followed) and the
# symlink hops taken on the way.
_Resolved = tuple[Inode, list[tuple[Inode, bytes]], list[Inode], int]


def new_dir(mode: int = 0o755, **attrs: int) -> Inode:
    return Inode(S_IFDIR, mode=mode, children={}, **attrs)


def split_path(path: bytes) -> list[bytes]:
    """Splits an archive path into components.  `..` is resolved by name, as
    Docker and umoci do (`a/../b` is `b`); only a path that climbs above the
    root is refused."""
    parts = path.strip(b"/").split(b"/")
    # The common case: no empty, "." or ".." components, no NUL, short names.
    if (b"" not in parts and b"." not in parts and b".." not in parts and b"\0" not in path
            and (len(path) <= NAME_MAX or max(map(len, parts)) <= NAME_MAX)):
        return parts
    parts = []
    for part in path.split(b"/"):
        if part in (b"", b"."):
            continue
        if part == b"..":
            if not parts:
                raise UnsafePathError(
                    f"path {path.decode(errors='replace')!r} climbs out of the root")
            parts.pop()
            continue
        if b"\0" in part:
            raise UnsafePathError(f"path {path.decode(errors='replace')!r} contains NUL")
        if len(part) > NAME_MAX:
            raise SourceError(f"path {path.decode(errors='replace')[:80]!r}... has a name "
                              f"longer than {NAME_MAX} bytes")
        parts.append(part)
    return parts


class Tree:
    """A rooted tree with the mutations archives need: put, link, remove.

    `on_release` is called, from `collect()`, with every regular file (an
    Inode or a plain record) whose last name went, so its data can be freed.
    Releasing waits for `collect()` because one operation may drop a name and
    add another (a hard link that replaces the directory holding its own
    target).
    """

    def __init__(self, root: Inode | None = None,
                 on_release: Callable[[Node], None] | None = None) -> None:
        self.root = root if root is not None else new_dir()
        self.root.names = 1
        self._on_release = on_release
        # Resolved parent directories by path.  Archives list a directory's
        # entries together, so most lookups hit; anything that replaces or
        # removes a name clears it.
        self._parents: dict[tuple[bytes, ...], _Resolved] = {}
        # Files that lost their last name, waiting for collect(): Inodes and
        # plain records.
        self._orphans: list[Node] = []

    def _resolve(self, stack: list[Inode], parts: list[bytes], hops: list[int],
                 create: Callable[[], Inode] | None,
                 trail: list[tuple[Inode, bytes]] | None = None) -> list[Inode] | None:
        """The chain of directories from the root to `parts`, following
        symlinks inside the image: absolute targets start at its root and
        `..` stops there, so nothing can point at the host.  With `create`,
        missing directories are made (also along a symlink's target) and
        non-directories in the way are replaced, as tar -x does."""
        stack = list(stack)
        for part in parts:
            if part in (b"", b"."):
                continue
            if part == b"..":
                if len(stack) > 1:
                    stack.pop()
                continue
            cur = stack[-1]
            assert cur.children is not None
            if trail is not None:
                trail.append((cur, part))
            child = cur.children.get(part)
            if child is None:
                if create is None:
                    return None
                child = create()
                self._attach(cur, part, child)
            if type(child) is not bytes and child.kind == S_IFLNK:
                hops[0] += 1
                if hops[0] > MAX_SYMLINK_HOPS:
                    raise UnsafePathError(
                        f"too many levels of symlinks at {part.decode(errors='replace')!r}")
                base = [self.root] if child.target.startswith(b"/") else stack
                found = self._resolve(base, child.target.split(b"/"), hops, create, trail)
                if found is None:
                    return None
                stack = found
                continue
            if type(child) is bytes or not child.is_dir:
                if create is None:
                    return None
                child = create()
                self._attach(cur, part, child)
            stack.append(child)
        return stack

    def parent_dir(self, parts: list[bytes],
                   create: Callable[[], Inode] | None = None) -> Inode:
        """The directory that holds the last component of `parts`."""
        return self.parent_and_trail(parts, create)[0]

    def parent_and_trail(self, parts: list[bytes], create: Callable[[], Inode] | None = None
                         ) -> tuple[Inode, list[tuple[Inode, bytes]]]:
        """The parent directory and the (directory, name) steps taken to reach
        it, symlinks followed included.  The steps list is shared between
        calls that hit the same cached parent: do not change it."""
        key = tuple(parts[:-1])
        cached = self._parents.get(key)
        if cached is None:
            cached = self._resolve_dir(key, create)
            if cached is None:
                raise UnsafePathError(
                    f"parent of {b'/'.join(parts).decode(errors='replace')!r} does not exist")
        return cached[0], cached[1]

    def _resolve_dir(self, key: tuple[bytes, ...],
                     create: Callable[[], Inode] | None) -> _Resolved | None:
        """Resolves the directory at `key` and caches it.  A new directory's
        parent is nearly always cached (its entry came just before its
        files): the walk goes on from there, in the state a walk from the
        root would have reached (the chain, the steps, the symlink hops),
        instead of from the root."""
        up = self._parents.get(key[:-1]) if key else None
        if up is None:
            steps: list[tuple[Inode, bytes]] = []
            hops = [0]
            found = self._resolve([self.root], list(key), hops, create, steps)
        else:
            steps, hops = list(up[1]), [up[3]]
            found = self._resolve(up[2], [key[-1]], hops, create, steps)
        if found is None:
            return None
        resolved = self._parents[key] = (found[-1], steps, found, hops[0])
        return resolved

    def existing_parent(self, parts: list[bytes]) -> Inode | None:
        """The directory `parent_dir` would find for `parts` (symlinks
        followed the same way), or None where it does not exist: nothing is
        created.  Whiteouts use it, so they land where writes would."""
        key = tuple(parts[:-1])
        cached = self._parents.get(key)
        if cached is None:
            cached = self._resolve_dir(key, None)
            if cached is None:
                return None
        return cached[0]

    def lookup(self, parts: list[bytes]) -> Inode | None:
        """The inode at the path; a plain record there is made an Inode in
        its place, so that what is returned is what the tree holds (a hard
        link may be made to it)."""
        if not parts:
            return self.root
        try:
            parent = self.parent_dir(parts)
        except UnsafePathError:
            return None
        assert parent.children is not None
        node = parent.children.get(parts[-1])
        if type(node) is bytes:
            node = parent.children[parts[-1]] = plain_inode(node, 1)
        return node  # type: ignore[return-value]

    def _attach(self, parent: Inode, name: bytes, node: Node) -> None:
        assert parent.children is not None
        old = parent.children.get(name)
        if old is node:
            return
        if type(node) is not bytes:
            # Count the new name first: the old subtree may hold `node` itself
            # (a hard link replacing the directory its target lives in).
            if node.names >= MAX_LINKS and not node.is_dir:
                raise SourceError(f"{name.decode(errors='replace')}: more than {MAX_LINKS} "
                                  "hard links to one file (ext4's limit)")
            node.names += 1
        parent.children[name] = node
        if old is not None:
            self._parents.clear()
            self._release(old)

    def _release(self, node: Node) -> None:
        # A loop, not recursion: an image's tree may be thousands deep.
        pending = [node]
        while pending:
            node = pending.pop()
            if type(node) is bytes:     # a plain record has one name: now none
                self._orphans.append(node)
                continue
            node.names -= 1
            if node.names > 0:
                continue
            if node.children is not None:
                pending.extend(node.children.values())
                node.children.clear()
            elif node.kind == S_IFREG:
                self._orphans.append(node)

    def collect(self) -> None:
        """Releases the files that no name reaches any more."""
        if not self._orphans:
            return  # the common case: called after every batch of entries
        orphans, self._orphans = self._orphans, []
        seen: set[int] = set()
        for node in orphans:
            if (type(node) is bytes or node.names == 0) and id(node) not in seen:
                seen.add(id(node))
                if self._on_release is not None:
                    self._on_release(node)

    def put(self, parts: list[bytes], node: Node, create: Callable[[], Inode]) -> Node:
        """Puts `node` at the path.  A directory put over a directory only
        changes its attributes (its children stay); anything else replaces
        what was there.  Returns the node that ends up in the tree."""
        if not parts:
            if type(node) is bytes or not node.is_dir:
                raise UnsafePathError("the root can only be a directory")
            _copy_attrs(node, self.root)  # type: ignore[arg-type]
            return self.root
        return self.put_in(self.parent_dir(parts, create), parts[-1], node)

    def put_in(self, parent: Inode, name: bytes, node: Node) -> Node:
        """`put` for a parent directory already resolved."""
        children = parent.children
        assert children is not None
        old = children.get(name)
        if old is None and type(node) is bytes:   # most entries: a plain file, a new name
            children[name] = node
            return node
        if (old is not None and type(old) is not bytes and old.kind == S_IFDIR
                and type(node) is not bytes and node.kind == S_IFDIR):
            _copy_attrs(node, old)
            return old
        self._attach(parent, name, node)
        return node

    def put_run(self, parent: Inode, names: list[bytes], records: list[bytes]) -> None:
        """put_in() of plain records under `names`, in order, in one
        directory: at the dictionary's speed when the names are new and
        distinct, the usual case (a package's files), else one by one."""
        children = parent.children
        assert children is not None
        if children.keys().isdisjoint(names) and len(set(names)) == len(names):
            children.update(zip(names, records, strict=True))
            return
        for name, rec in zip(names, records, strict=True):
            self.put_in(parent, name, rec)

    def detach(self, parent: Inode, name: bytes) -> None:
        """Removes one name from a directory already in hand."""
        assert parent.children is not None
        old = parent.children.pop(name, None)
        if old is not None:
            self._parents.clear()
            self._release(old)

    def remove(self, parts: list[bytes]) -> None:
        if not parts:
            raise UnsafePathError("cannot remove the root")
        parent = self.parent_dir(parts)
        assert parent.children is not None
        old = parent.children.pop(parts[-1], None)
        if old is not None:
            self._parents.clear()
            self._release(old)


def _copy_attrs(src: Inode, dst: Inode) -> None:
    dst._attrs = src._attrs
    dst.atime_ns, dst.ctime_ns = src.atime_ns, src.ctime_ns
    dst.xattrs = src.xattrs


def walk(root: Inode) -> Iterator[tuple[bytes, Inode]]:
    """Every (path, inode) below root, parents before children, names sorted.
    A plain record is given as a new Inode (as_inode): a copy."""
    stack: list[tuple[bytes, Node]] = [(b"", root)]
    while stack:
        path, item = stack.pop()
        node = as_inode(item)
        yield path, node
        if node.children:
            for name in sorted(node.children, reverse=True):
                stack.append((path + b"/" + name if path else name, node.children[name]))

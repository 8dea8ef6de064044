"""Applying image layers, base first, under the OCI whiteout rules.

Each layer's entries go into one Tree as they stream by.  A marker
(`.wh.NAME`, `.wh..wh..opq`) is applied where it stands in the stream, as
Docker and umoci apply it, except that it never hides what its own layer put
there before it (the spec: whiteouts apply to lower layers only).  So an
opaque marker may follow the new entries of its directory, and a directory
whited out and then written into again in the same layer comes back fresh.
Markers find their directory exactly as writes do, through symlinks.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import SourceError
from .tree import S_IFDIR, Inode, Node, Tree, new_dir, split_path

WHITEOUT = b".wh."
OPAQUE = b".wh..wh..opq"
# eStargz bookkeeping, not part of the file system.
ESTARGZ_FILES = {b"stargz.index.json", b".prefetch.landmark", b".no.prefetch.landmark"}


class LayerApplier:
    """Applies one layer's entries and markers, remembering what the layer
    itself put where; call `finish()` at its end.  Use one per layer."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        # The names each directory got from this layer.  Inodes hash by
        # identity, and holding them here keeps a replaced directory from
        # being mistaken for a new one.  A set of names a directory, not of
        # (directory, name) pairs: a pair would be a 64-byte tuple an entry.
        self._touched: dict[Inode, set[bytes]] = {}
        # Directories this layer made: all they hold is its own, so their
        # names need no set (in a base layer, that is nearly every name).
        self._fresh: set[Inode] = set()
        self._last_trail: list[tuple[Inode, bytes]] | None = None
        self._last_parent: Inode | None = None
        self._last_names: set[bytes] | None = None

    def put(self, parts: list[bytes], node: Node) -> Node | None:
        """Applies one entry; returns None when it was a marker, not a file."""
        if not parts:
            return self.tree.put(parts, node, new_dir)
        name = parts[-1]
        if len(parts) == 1 and name in ESTARGZ_FILES:
            return None
        if name.startswith(WHITEOUT):
            self._marker(parts)
            return None
        return self._place(parts, node)

    def link(self, parts: list[bytes], target: Inode) -> None:
        if parts:
            self._place(parts, target)

    def put_run(self, parts: list[bytes], names: list[bytes], records: list[bytes]) -> None:
        """put() of plain records, in order, under `names` in the directory
        at `parts` (not the root); none of the names is a marker."""
        parent = self._parent(parts + names[:1])
        if self._last_names is not None:
            self._last_names.update(names)
        self.tree.put_run(parent, names, records)

    def _parent(self, parts: list[bytes]) -> Inode:
        """The parent directory of `parts`, made where missing; it and every
        directory on its way (through symlinks too) belong to this layer as
        far as its own whiteouts are concerned."""
        parent, trail = self.tree.parent_and_trail(parts, self._new_dir)
        if trail is not self._last_trail:  # entries of one directory come together
            self._last_trail = trail
            for d, step in trail:
                if d not in self._fresh:
                    self._touched.setdefault(d, set()).add(step)
        if parent is not self._last_parent:
            self._last_parent = parent
            self._last_names = (None if parent in self._fresh
                                else self._touched.setdefault(parent, set()))
        return parent

    def _place(self, parts: list[bytes], node: Node) -> Node:
        parent = self._parent(parts)
        name = parts[-1]
        if self._last_names is not None:
            self._last_names.add(name)
        placed = self.tree.put_in(parent, name, node)
        if placed is node and type(node) is not bytes and node.kind == S_IFDIR:
            self._fresh.add(node)
        return placed

    def _new_dir(self) -> Inode:
        d = new_dir()
        self._fresh.add(d)
        return d

    def _touches(self, d: Inode, name: bytes) -> bool:
        if d in self._fresh:
            return True
        names = self._touched.get(d)
        return names is not None and name in names

    def _marker(self, parts: list[bytes]) -> None:
        name = parts[-1]
        if name != OPAQUE and name.startswith(WHITEOUT + WHITEOUT):
            return  # other aufs bookkeeping (.wh..wh.plnk, …): nothing to apply
        hidden = name[len(WHITEOUT):]
        if hidden in (b"", b".", b".."):
            raise SourceError(f"invalid whiteout {b'/'.join(parts).decode(errors='replace')!r}")
        parent = self.tree.existing_parent(parts)
        if parent is None:
            return  # nothing below to hide
        if name == OPAQUE:
            self._prune(parent)
            return
        assert parent.children is not None
        child = parent.children.get(hidden)
        if child is None:
            return
        if not self._touches(parent, hidden):
            self.tree.detach(parent, hidden)
        elif type(child) is not bytes and child.is_dir:
            self._prune(child)  # made in this layer: only its new contents stay

    def _prune(self, top: Inode) -> None:
        """Removes what lower layers put under `top`, keeping this layer's."""
        pending = [top]     # a loop, not recursion: trees may be thousands deep
        while pending:
            d = pending.pop()
            assert d.children is not None
            for name, child in list(d.children.items()):
                if not self._touches(d, name):
                    self.tree.detach(d, name)
                elif type(child) is not bytes and child.is_dir:
                    pending.append(child)

    def finish(self) -> None:
        """Releases the data of what the layer hid or replaced."""
        self.tree.collect()


def apply_layers(tree: Tree, layers: Iterable[Iterable[tuple[bytes, Inode | bytes]]]) -> Tree:
    """For tests and small uses: each layer is a list of (path, node) pairs,
    where node is an Inode, or bytes naming a hard link's target path."""
    for layer in layers:
        applier = LayerApplier(tree)
        for path, node in layer:
            parts = split_path(path)
            if isinstance(node, bytes):
                target = tree.lookup(split_path(node))
                if target is None or target.is_dir:
                    raise SourceError(f"hard link to missing {node!r}")
                applier.link(parts, target)
            else:
                applier.put(parts, node)
        applier.finish()
    return tree

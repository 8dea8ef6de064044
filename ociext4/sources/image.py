"""A container image (for now from an OCI layout directory) as a source:
layers applied base first under the OCI rules, each checked against its
digest and diff_id while it streams."""

from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from ..ext4.writer import Ext4Writer
from ..flatten import LayerApplier
from ..layers import Limits, read_entries
from ..ocilayout import Image, Platform, layer_streams, open_image
from ..reference import LocalRef
from ..tree import Inode, Tree, new_dir, split_path
from .tarball import entry_node, link_target


def read_image(ref: LocalRef, writer: Ext4Writer, plat: Platform | None = None,
               limits: Limits | None = None) -> tuple[Inode, Image]:
    if ref.transport != "oci":
        raise SourceError(f"{ref.transport}:{ref.path}: this transport is not supported yet")
    root = Path(ref.path)
    image = open_image(root, ref.tag, ref.digest, plat)

    def release(node: Inode) -> None:
        if node.data is not None:
            writer.discard(node.data)
            node.data = None

    tree = Tree(new_dir(), on_release=release)
    for layer, stream in layer_streams(root, image):
        name = f"{root}: layer {layer.digest}"
        applier = LayerApplier(tree)
        for e in read_entries(stream, name, writer, limits, diff_id=layer.diff_id):
            parts = split_path(e.name)
            try:
                if e.type == "1":
                    applier.link(parts, link_target(tree, e))
                else:
                    node = entry_node(e)
                    if applier.put(parts, node) is None:
                        release(node)  # a whiteout marker or eStargz file
            except SourceError as err:
                raise SourceError(f"{name}: {err}") from None
            tree.collect()
        applier.finish()
    return tree.root, image

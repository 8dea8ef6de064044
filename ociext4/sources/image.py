"""A container image (for now from an OCI layout directory) as a source:
layers applied base first under the OCI rules, each checked against its
digest and diff_id while it streams."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..dockerarchive import DockerArchive
from ..errors import SourceError
from ..ext4.writer import Ext4Writer
from ..flatten import LayerApplier
from ..layers import Limits, read_entries
from ..ocilayout import Image, Layer, Platform, layer_streams, open_image
from ..reference import LocalRef
from ..tree import Inode, Tree, new_dir, split_path
from .tarball import entry_node, link_target


def read_image(ref: LocalRef, writer: Ext4Writer, plat: Platform | None = None,
               limits: Limits | None = None) -> tuple[Inode, Image]:
    root = Path(ref.path)
    archive = None
    if ref.transport == "docker-archive":
        archive = DockerArchive(root)
        image = archive.image()
        streams = archive.layer_streams(image)
    else:
        image = open_image(root, ref.tag, ref.digest, plat)
        streams = layer_streams(root, image)
    try:
        return _flatten(image, streams, root, writer, limits), image
    finally:
        if archive is not None:
            archive.close()


def _flatten(image: Image, streams: Iterator[tuple[Layer, Any]], root: Path,
             writer: Ext4Writer, limits: Limits | None) -> Inode:

    def release(node: Inode) -> None:
        if node.data is not None:
            writer.discard(node.data)
            node.data = None

    tree = Tree(new_dir(), on_release=release)
    for layer, stream in streams:
        name = f"{root}: layer {layer.digest or layer.member}"
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
    return tree.root

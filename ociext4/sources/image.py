"""A container image from any image source (an OCI layout, a docker save
archive, a registry pull still fetching into the cache) flattened into one
tree: layers applied base first under the OCI rules, each checked against
its digest and diff_id while it streams."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ..blobs import LayerBlob
from ..errors import SourceError
from ..ext4.writer import Ext4Writer
from ..flatten import LayerApplier
from ..layers import Budget, LayerStats, Limits, layer_pieces, read_batches
from ..lookahead import Lookahead, budget_for
from ..model import Image, Layer, Platform
from ..source import ImageSource
from ..tree import Inode, Tree, new_dir
from .tarball import apply_batch

Progress = Callable[[int, int, LayerStats], None]


def read_image(source: ImageSource, writer: Ext4Writer, plat: Platform | None = None,
               limits: Limits | None = None, progress: Progress | None = None,
               stats: list[LayerStats] | None = None) -> tuple[Inode, Image]:
    """Flattens the image's layers into a tree, their data into `writer`.
    `progress(layer_index, layer_count, stats)` is called as layers stream;
    `stats` receives one LayerStats per layer."""
    image = source.open(plat)
    return flatten_image(source, image, writer, limits, progress, stats), image


def flatten_image(source: ImageSource, image: Image, writer: Ext4Writer,
                  limits: Limits | None = None, progress: Progress | None = None,
                  stats: list[LayerStats] | None = None) -> Inode:
    return _flatten(image, source.layer_blobs(image), source.name, writer, limits, progress,
                    stats if stats is not None else [])


def _flatten(image: Image, blobs: Iterator[LayerBlob], root: str,
             writer: Ext4Writer, limits: Limits | None, progress: Progress | None,
             stats: list[LayerStats]) -> Inode:

    limits = limits or Limits()
    if len(image.layers) > limits.max_layers:
        raise SourceError(f"{root}: the image has {len(image.layers)} layers, over the limit "
                          f"of {limits.max_layers} (raise it with --max-layers)")
    budget = Budget(limits)
    tree = Tree(new_dir(), on_release=writer.release)

    def name_of(layer: Layer) -> str:
        return f"{root}: layer {layer.digest or layer.member}"

    def open_next() -> tuple[tuple[LayerBlob, LayerStats], Iterator[bytes]] | None:
        blob = next(blobs, None)
        if blob is None:
            return None
        st = LayerStats(blob.layer.digest or blob.layer.member)
        try:
            return (blob, st), layer_pieces(blob.stream, name_of(blob.layer), st, blob.piece)
        except BaseException:
            blob.close()
            raise

    # The next layer is opened and starts inflating (on spare CPU, a bounded
    # amount) while this one is applied: see ociext4.lookahead.
    def lookahead() -> Lookahead[tuple[LayerBlob, LayerStats]]:
        return Lookahead(open_next, release=lambda handle: handle[0].close(),
                         budget=lambda handle: budget_for(handle[0].layer.size))

    ahead = lookahead()
    current: LayerBlob | None = None
    try:
        for i in range(len(image.layers)):
            taken = ahead.take()
            if taken is None:
                break
            (current, st), pieces = taken
            ahead = lookahead()
            stats.append(st)
            try:
                _apply_layer(tree, current.layer, pieces, st, writer, limits, budget,
                             name_of(current.layer),
                             None if progress is None else
                             lambda st, i=i: progress(i, len(image.layers), st),
                             current.abandon)
            except SourceError:
                # A tampered blob shows first as a bad stream (a gzip CRC, a
                # diff_id); its own digest names the fault better.
                if current.check is not None:
                    current.check()
                raise
            blob, current = current, None
            blob.finish()
    finally:
        ahead.cancel()
        if current is not None:
            current.close()
    return tree.root


def _apply_layer(tree: Tree, layer: Layer, pieces: Iterator[bytes], st: LayerStats,
                 writer: Ext4Writer, limits: Limits, budget: Budget, name: str,
                 progress: Callable[[LayerStats], None] | None,
                 abandon: Callable[[], None] | None = None) -> None:
    applier = LayerApplier(tree)
    ints: dict[int, int] = {}
    for raw, strings in read_batches(None, name, writer, limits, diff_id=layer.diff_id,
                                     stats=st, budget=budget, pieces=pieces, abandon=abandon):
        if progress is not None:
            progress(st)
        try:
            apply_batch(raw, strings, applier, tree, writer, ints)
        except SourceError as err:
            raise SourceError(f"{name}: {err}") from None
    applier.finish()
    if progress is not None:
        progress(st)

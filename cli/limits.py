"""Options that raise (or lower) the bounds on what an input may ask for."""

from __future__ import annotations

import argparse

from ociext4.layers import Limits

from .units import parse_size

_DEFAULTS = Limits()


def _count(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise argparse.ArgumentTypeError(f"invalid count {text!r} (a positive whole number)")
    return int(text)


def add_limit_options(p: argparse.ArgumentParser, layers: bool = True) -> None:
    g = p.add_argument_group("limits", "bounds on what an untrusted input may ask for")
    g.add_argument("--max-bytes", type=parse_size, default=_DEFAULTS.max_bytes, metavar="SIZE",
                   help="decompressed tar bytes, all layers together (default: 64G)")
    g.add_argument("--max-entries", type=_count, default=_DEFAULTS.max_entries, metavar="N",
                   help=f"tar entries, all layers together (default: {_DEFAULTS.max_entries})")
    g.add_argument("--max-header", type=parse_size, default=_DEFAULTS.max_meta, metavar="SIZE",
                   help="one PAX header, GNU long name or sparse map (default: 1M)")
    g.add_argument("--max-path", type=_count, default=_DEFAULTS.max_path, metavar="BYTES",
                   help=f"one path or link target (default: {_DEFAULTS.max_path})")
    if layers:
        g.add_argument("--max-layers", type=_count, default=_DEFAULTS.max_layers, metavar="N",
                       help=f"layers in one image (default: {_DEFAULTS.max_layers})")


def limits_from(args: argparse.Namespace) -> Limits:
    return Limits(max_meta=args.max_header, max_path=args.max_path, max_bytes=args.max_bytes,
                  max_entries=args.max_entries,
                  max_layers=getattr(args, "max_layers", _DEFAULTS.max_layers))

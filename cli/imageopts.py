"""Options every command that writes an image shares."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from .units import parse_size


def add_image_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=parse_size, metavar="SIZE",
                   help="image size (e.g. 2G); default: sized from the content")
    p.add_argument("--free", type=parse_size, metavar="SIZE",
                   help="free space to leave when sizing from content "
                        "(default: 10%% of the content, at least 64M)")
    p.add_argument("--no-journal", action="store_true", help="leave out the journal")
    p.add_argument("--uuid", type=uuid.UUID, help="file-system UUID (default: from the content)")
    p.add_argument("--label", default="", help="volume label (at most 16 bytes)")
    p.add_argument("--no-fsync", action="store_true", help="do not fsync the image before renaming")


def image_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The image options as keyword arguments of ociext4.mkfs and ociext4.unpack."""
    return {"size": args.size, "free": args.free, "journal": not args.no_journal,
            "uuid": args.uuid, "label": args.label, "fsync": not args.no_fsync}

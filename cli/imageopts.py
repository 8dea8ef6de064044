"""Options every command that writes an image shares."""

from __future__ import annotations

import argparse
import uuid
from typing import Any

from ociext4.errors import ImageError
from ociext4.ext4.verity import parse_salt

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
    p.add_argument("--verity", action="store_true",
                   help="append a dm-verity hash tree (sha256, 4 KiB blocks) after the file "
                        "system; implies --no-journal; the root hash goes in OUT.img.json")
    p.add_argument("--verity-salt", type=_salt, metavar="HEX",
                   help="the hash tree's salt (default: derived from the image, so the "
                        "output stays deterministic)")
    p.add_argument("--no-fsync", action="store_true", help="do not fsync the image before renaming")


def _salt(text: str) -> bytes:
    try:
        return parse_salt(text)
    except ImageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def image_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The image options as keyword arguments of ociext4.mkfs and ociext4.unpack."""
    return {"size": args.size, "free": args.free, "journal": not args.no_journal,
            "uuid": args.uuid, "label": args.label, "fsync": not args.no_fsync,
            "verity": args.verity or args.verity_salt is not None,
            "verity_salt": args.verity_salt}

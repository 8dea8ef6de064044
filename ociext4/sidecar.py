"""`OUT.img.json`: what an unpacked image was made from and how to run it,
kept beside the image.  It names the image's file-system UUID, so a sidecar
left beside another image (a crash between the two renames, an older tool)
is recognised instead of trusted."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import uuid as uuidlib
from dataclasses import dataclass
from pathlib import Path

from . import tempfiles
from .errors import DocumentError, ImageError, SourceError
from .ext4.verity import VerityInfo, parse_root_hash
from .model import ContainerConfig, container_config, fields, parse_json

_UUID_AT = 1024 + 0x68   # s_uuid in the superblock


def path_for(image: str | os.PathLike[str]) -> Path:
    return Path(f"{os.fspath(image)}.json")


@dataclass(frozen=True, slots=True)
class Sidecar:
    manifest: str
    platform: str
    config: ContainerConfig
    uuid: uuidlib.UUID | None = None
    verity: VerityInfo | None = None   # the hash tree appended by --verity

    def to_json(self) -> str:
        doc = {"manifest": self.manifest, "platform": self.platform,
               "config": self.config.to_json()}
        if self.uuid is not None:
            doc["uuid"] = str(self.uuid)
        if self.verity is not None:
            doc["verity"] = self.verity.to_json()
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"


def check_writable(image: Path) -> None:
    """Fails before any work when the sidecar could not be written."""
    side = path_for(image)
    if side.is_dir():
        raise SourceError(f"{side}: is a directory (the image's config is written there)")


class PendingSidecar:
    """A sidecar written under a temporary name; `commit()` renames it into
    place once the image is."""

    def __init__(self, image: Path, sidecar: Sidecar) -> None:
        self.final = path_for(image)
        self.tmp = self.final.with_name(
            f".{self.final.name}.{os.getpid()}.{secrets.token_hex(4)}.partial")
        tempfiles.track(self.tmp)
        try:
            with open(self.tmp, "w") as f:
                f.write(sidecar.to_json())
        except BaseException:
            self.discard()
            raise

    def commit(self) -> None:
        os.replace(self.tmp, self.final)
        tempfiles.untrack(self.tmp)

    def discard(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()
        tempfiles.untrack(self.tmp)


def remove_stale(image: Path) -> None:
    """An image made by mkfs has no config: an old sidecar must not stay."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError):
        path_for(image).unlink()


def image_uuid(image: Path) -> uuidlib.UUID | None:
    try:
        with open(image, "rb") as f:
            f.seek(_UUID_AT)
            raw = f.read(16)
    except OSError:
        return None
    return uuidlib.UUID(bytes=raw) if len(raw) == 16 else None


def read(image: Path) -> Sidecar | None:
    """The image's sidecar, None if it has none; an error if it is
    malformed or describes another image."""
    side = path_for(image)
    try:
        data = side.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise SourceError(f"{side}: {e.strerror or e}") from None
    try:
        doc = fields(parse_json(data, "sidecar"), "sidecar")
        config = container_config(doc.value.get("config"), "sidecar")
        manifest, platform = doc.str("manifest", ""), doc.str("platform", "")
        text = doc.str("uuid", "")
        verity = _verity(doc.value.get("verity"))
    except DocumentError as e:
        raise SourceError(f"{side}: {e.field}: {e.problem}") from None
    except ImageError as e:
        raise SourceError(f"{side}: verity: {e}") from None
    want = None
    if text:
        try:
            want = uuidlib.UUID(text)
        except ValueError:
            raise SourceError(f"{side}: uuid: {text!r} is not a UUID") from None
        if image_uuid(image) != want:
            raise SourceError(f"{side}: describes another image (file-system UUID {want}); "
                              f"unpack {image} again or remove {side.name}")
    return Sidecar(manifest, platform, config, want, verity)


def _verity(value: object) -> VerityInfo | None:
    if value is None:
        return None
    doc = fields(value, "sidecar", "verity")
    numbers = {}
    for key in ("hash_offset", "data_blocks", "data_block_size", "hash_block_size"):
        n = doc.value.get(key)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise DocumentError("sidecar", f"verity.{key}", "not a whole number")
        numbers[key] = n
    return VerityInfo(parse_root_hash(doc.str("root_hash")), doc.str("salt", ""),
                      numbers["hash_offset"], numbers["data_blocks"],
                      numbers["data_block_size"], numbers["hash_block_size"],
                      doc.str("hash_algorithm", ""))

"""A dm-verity hash tree (format version 1, SHA-256, 4 KiB blocks) appended
after the file system in the same image file, as `veritysetup format` lays
it out: at `hash_offset` a veritysetup superblock (so `veritysetup verify`
and the guest's init find salt and size in the image), then the tree's
levels from the top (one block) down to the hashes of the data blocks.

The hashes of the data blocks (level 0) come from the C writer, which
computed them as it wrote the blocks (csrc/verity.c); only the levels above
them, 1/128 of their size, are hashed here.
"""

from __future__ import annotations

import hashlib
import os
import struct
import uuid as uuidlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from ..errors import ImageError
from ._writer import ffi, lib

BLOCK = 4096                   # data and hash block size
DIGEST = 32                    # SHA-256
PER_BLOCK = BLOCK // DIGEST    # hashes in one hash block
ALGORITHM = "sha256"
_PIECE_BLOCKS = 4096           # blocks per call for level 0 (16 MiB if read back)
_MAX_THREADS = 4

# cryptsetup's struct verity_sb (lib/verity/verity.c), little-endian, 512
# bytes: signature, version, hash type, uuid, algorithm, data and hash block
# sizes, data blocks, salt size, padding, salt, padding.
_SB = struct.Struct("<8sII16s32sIIQH6x256s168x")
_SIGNATURE = b"verity\0\0"
_EXT4_BLOCKS_LO = 1024 + 0x4   # s_blocks_count_lo, s_blocks_count_hi
_EXT4_BLOCKS_HI = 1024 + 0x150


@dataclass(frozen=True, slots=True)
class VerityInfo:
    root_hash: str             # hex
    salt: str                  # hex
    hash_offset: int           # bytes: where the superblock of the hash area is
    data_blocks: int
    data_block_size: int = BLOCK
    hash_block_size: int = BLOCK
    hash_algorithm: str = ALGORITHM

    @property
    def hash_start_block(self) -> int:
        """The kernel target's hash_start: the tree, after the superblock."""
        return self.hash_offset // self.hash_block_size + 1

    def to_json(self) -> dict[str, object]:
        return {"root_hash": self.root_hash, "salt": self.salt,
                "hash_offset": self.hash_offset, "data_blocks": self.data_blocks,
                "data_block_size": self.data_block_size,
                "hash_block_size": self.hash_block_size,
                "hash_algorithm": self.hash_algorithm}

    def table(self, device: str) -> str:
        """The dm-verity target's parameters for `device` holding both."""
        return (f"1 {device} {device} {self.data_block_size} {self.hash_block_size} "
                f"{self.data_blocks} {self.hash_start_block} {self.hash_algorithm} "
                f"{self.root_hash} {self.salt or '-'}")


def derived_salt(purpose: bytes) -> bytes:
    """A salt from what the image is made of, so output stays deterministic."""
    return hashlib.sha256(b"ociext4 verity-salt " + purpose).digest()


def parse_salt(text: str) -> bytes:
    """`--verity-salt HEX`: at most 256 bytes, as veritysetup allows."""
    try:
        salt = bytes.fromhex(text)
    except ValueError:
        raise ImageError(f"verity salt {text!r}: not hexadecimal") from None
    if len(salt) > 256:
        raise ImageError(f"verity salt {text[:20]}...: longer than 256 bytes")
    return salt


def parse_root_hash(text: str) -> str:
    """A SHA-256 root hash given by hand, normalised to lower-case hex."""
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != DIGEST:
        raise ImageError(f"verity root hash {text!r}: not {DIGEST * 2} hexadecimal digits")
    return raw.hex()


def _level_sizes(data_blocks: int) -> list[int]:
    """Hash blocks per level, from the hashes of the data up to the top (a
    single data block has none: its hash is the root, as the kernel has it)."""
    sizes = []
    n = data_blocks
    while n > 1:
        n = -(-n // PER_BLOCK)
        sizes.append(n)
    return sizes


def tree_bytes(data_blocks: int) -> int:
    """What the hash area adds to the image: superblock and tree."""
    return BLOCK * (1 + sum(_level_sizes(data_blocks)))


def leaves(writer: object, data_blocks: int, salt: bytes, name: str = "the image"
           ) -> tuple[bytearray, int]:
    """Level 0: the hash of every data block, in order, from the C writer
    (`Ext4Writer.handle`), which hashed each whole block as it wrote it
    (csrc/verity.c); the few it could not (written in part, copied inside
    the kernel, or all of them when the salt was not known before the first
    write) are read back here, in pieces on a thread per CPU (up to four),
    since the C call releases the GIL.  Also returns how many were read."""
    out = bytearray(data_blocks * DIGEST)
    view = ffi.from_buffer(out)
    pieces = [(lo, min(_PIECE_BLOCKS, data_blocks - lo))
              for lo in range(0, data_blocks, _PIECE_BLOCKS)]
    read = lib.oe_verity_to_read(writer, salt, len(salt), 0, data_blocks)

    def one(piece: tuple[int, int]) -> int:
        first, count = piece
        return int(lib.oe_verity_leaves(writer, salt, len(salt), first, count,
                                        view + first * DIGEST))

    workers = max(1, min(len(os.sched_getaffinity(0)), _MAX_THREADS, len(pieces)))
    if read == 0 or workers == 1:
        codes = [one(p) for p in pieces]
    else:
        with ThreadPoolExecutor(workers) as pool:
            codes = list(pool.map(one, pieces))
    for code in codes:
        if code:
            raise ImageError(f"{name}: reading the image back for its dm-verity hash tree: "
                             f"{os.strerror(code)}", code)
    return out, int(read)


def _hash_blocks(hashes: bytes | bytearray, salt: bytes) -> bytes:
    """The hashes of the hash blocks `hashes` fills (the last one padded
    with zeros), for the level above."""
    base = hashlib.sha256(salt)
    above = bytearray()
    view = memoryview(hashes)
    for i in range(0, len(view), BLOCK):
        h = base.copy()
        piece = view[i:i + BLOCK]
        h.update(piece)
        if len(piece) < BLOCK:
            h.update(bytes(BLOCK - len(piece)))
        above += h.digest()
    return bytes(above)


def superblock(data_blocks: int, salt: bytes, uuid: uuidlib.UUID) -> bytes:
    sb = _SB.pack(_SIGNATURE, 1, 1, uuid.bytes, ALGORITHM.encode(), BLOCK, BLOCK,
                  data_blocks, len(salt), salt)
    return sb + bytes(BLOCK - len(sb))


def append(fd: int, data_blocks: int, salt: bytes, uuid: uuidlib.UUID,
           leaves: bytes | bytearray, name: str = "the image") -> VerityInfo:
    """Builds the tree over `leaves`, the hashes of the first `data_blocks`
    blocks of the image open at `fd` (see `leaves`), and writes the
    superblock and tree right after them; `name` is the image as errors
    call it."""
    if len(leaves) != data_blocks * DIGEST:
        raise ValueError(f"{len(leaves)} bytes of hashes for {data_blocks} blocks")
    try:
        return _append(fd, data_blocks, salt, uuid, leaves)
    except OSError as e:
        raise ImageError(f"{name}: writing the dm-verity hash tree: {e.strerror or e}",
                         e.errno) from None
    except ImageError as e:
        raise ImageError(f"{name}: {e}") from None


def _append(fd: int, data_blocks: int, salt: bytes, uuid: uuidlib.UUID,
            hashes: bytes | bytearray) -> VerityInfo:
    levels: list[bytes | bytearray] = []
    while len(hashes) > DIGEST:
        levels.append(hashes)
        hashes = _hash_blocks(hashes, salt)
    root = hashes   # the hash of the top block (or of the only data block)
    offset = data_blocks * BLOCK
    os.pwrite(fd, superblock(data_blocks, salt, uuid), offset)
    pos = offset + BLOCK
    for level in reversed(levels):
        pad = -len(level) % BLOCK   # each level fills whole blocks
        os.pwrite(fd, level, pos)
        if pad:
            os.pwrite(fd, bytes(pad), pos + len(level))
        pos += len(level) + pad
    return VerityInfo(root.hex(), salt.hex(), offset, data_blocks)


def read_info(path: str | os.PathLike[str], root_hash: str) -> VerityInfo:
    """The hash area's parameters from the image itself (found after the
    file system the ext4 superblock sizes), with the root hash the caller
    trusts: nothing read here is trusted, since a wrong salt or size only
    makes every block fail to verify."""
    try:
        with open(path, "rb") as f:
            ext4 = f.read(2048)
            if len(ext4) < 2048:
                raise ImageError(f"{path}: too short for an ext4 image")
            lo, = struct.unpack_from("<I", ext4, _EXT4_BLOCKS_LO)
            hi, = struct.unpack_from("<I", ext4, _EXT4_BLOCKS_HI)
            offset = ((hi << 32) | lo) * BLOCK
            f.seek(offset)
            raw = f.read(_SB.size)
    except OSError as e:
        raise ImageError(f"{path}: {e.strerror or e}", e.errno) from None
    if len(raw) < _SB.size or not raw.startswith(_SIGNATURE):
        raise ImageError(f"{path}: has no dm-verity hash tree after its file system "
                         "(made without --verity)")
    sig, version, hash_type, _uuid, alg, dbs, hbs, blocks, salt_size, salt = _SB.unpack(raw)
    algorithm = alg.rstrip(b"\0").decode("ascii", "replace")
    if (version, hash_type, dbs, hbs, algorithm) != (1, 1, BLOCK, BLOCK, ALGORITHM) \
            or salt_size > 256:
        raise ImageError(f"{path}: its dm-verity hash tree is not version 1, sha256, "
                         "4 KiB blocks")
    return VerityInfo(parse_root_hash(root_hash), salt[:salt_size].hex(), offset, blocks)

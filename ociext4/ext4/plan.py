"""Sizing policy: how much room, how many inodes, how big a journal.

Pure functions of the content's size, so the same content always gets the
same image.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ImageError

BLOCK_SIZE = 4096
INODE_RATIO = 16384            # bytes of free space per spare inode, as mke2fs
MIN_FREE_BYTES = 64 << 20
FREE_FRACTION = 0.10
DEFAULT_MAX_BYTES = 1 << 40    # group-descriptor room kept for growth up to 1 TiB
# The largest image made.  The writer holds every group's bitmaps in memory,
# ~34 MB a TiB of image (a 16 TiB image peaked at 566 MB, a 64 TiB one at
# 2.2 GB after 85 s): a size from the command line must not be able to ask
# for all of the machine's memory.  It is also ext4's limit without the
# 64bit feature, and the largest file an ext4 host can hold.
MAX_BYTES = 16 << 40
# ext4's time range: 32 signed bits plus two epoch bits of seconds.
MIN_TIME_NS = -(1 << 31) * 10**9
MAX_TIME_NS = ((1 << 34) - (1 << 31)) * 10**9 - 1
# The image's own times (superblock, journal inode): whole seconds from 1970
# to ext4's last second, 2446-05-10 22:38:55 UTC.
MAX_TIMESTAMP = MAX_TIME_NS // 10**9


@dataclass(frozen=True, slots=True)
class Sizing:
    blocks: int          # 0: size from content
    free_blocks: int
    min_inodes: int
    journal_blocks: int


def blocks_for(nbytes: int) -> int:
    return -(-nbytes // BLOCK_SIZE)


def journal_blocks_for(fs_blocks: int) -> int:
    """mke2fs's default journal size for a file system of this many blocks."""
    if fs_blocks < 32768:
        return 1024
    if fs_blocks < 256 * 1024:
        return 4096
    if fs_blocks < 512 * 1024:
        return 8192
    if fs_blocks < 4096 * 1024:
        return 16384
    if fs_blocks < 8192 * 1024:
        return 32768
    if fs_blocks < 16384 * 1024:
        return 65536
    if fs_blocks < 32768 * 1024:
        return 131072
    return 262144


def plan(*, used_blocks: int, entries: int, size: int | None, free: int | None,
         journal: bool) -> Sizing:
    """used_blocks: blocks the data and directories need (an estimate is fine:
    the writer finds the exact layout); entries: inodes the tree uses."""
    if size is not None:
        total = size // BLOCK_SIZE
        free_blocks = max(total - used_blocks, 0)
    else:
        free_bytes = free if free is not None else max(
            MIN_FREE_BYTES, int(used_blocks * BLOCK_SIZE * FREE_FRACTION))
        free_blocks = blocks_for(free_bytes)
        total = used_blocks + free_blocks
    spare_inodes = free_blocks * BLOCK_SIZE // INODE_RATIO
    return Sizing(
        blocks=size // BLOCK_SIZE if size is not None else 0,
        free_blocks=free_blocks if size is None else 0,
        min_inodes=entries + 10 + spare_inodes,
        journal_blocks=journal_blocks_for(total) if journal else 0,
    )


def check_timestamp(seconds: int) -> None:
    """Refuses an image timestamp ext4 cannot store, rather than storing
    another one: the C writer would refuse it only after all the data."""
    if not 0 <= seconds <= MAX_TIMESTAMP:
        raise ImageError(f"timestamp {seconds} is outside ext4's range for the image's times "
                         f"(0 to {MAX_TIMESTAMP}, 1970-01-01 to 2446-05-10)")


# e2fsck reads times from 2310-04-04 to 2378-04-22 (epoch bits 3, the low
# word's sign bit set) as an old kernel's encoding of a date before 1970 and
# offers to fix them; such times are stored as the last second before.
AMBIGUOUS_START_NS = (3 * 2**32 - 2**31) * 10**9
AMBIGUOUS_END_NS = 3 * 2**32 * 10**9


def clamp_time_ns(ns: int) -> int:
    ns = min(max(ns, MIN_TIME_NS), MAX_TIME_NS)
    if AMBIGUOUS_START_NS <= ns < AMBIGUOUS_END_NS:
        return AMBIGUOUS_START_NS - 1
    return ns

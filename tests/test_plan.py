"""Sizing policy: journal sizes as mke2fs, headroom, inode counts."""

from __future__ import annotations

from ociext4.ext4.plan import (
    AMBIGUOUS_END_NS,
    AMBIGUOUS_START_NS,
    MAX_TIME_NS,
    MIN_FREE_BYTES,
    MIN_TIME_NS,
    clamp_time_ns,
    journal_blocks_for,
    plan,
)


def test_journal_sizes_follow_mke2fs_steps():
    assert journal_blocks_for(16_384) == 1024
    assert journal_blocks_for(100_000) == 4096
    assert journal_blocks_for(300_000) == 8192
    assert journal_blocks_for(1_000_000) == 16384
    assert journal_blocks_for(50_000_000) == 262144


def test_content_sizing_leaves_at_least_the_minimum_free_space():
    s = plan(used_blocks=100, entries=10, size=None, free=None, journal=True)
    assert s.blocks == 0 and s.free_blocks * 4096 >= MIN_FREE_BYTES
    assert s.min_inodes > 20


def test_explicit_free_space_is_taken_as_given():
    s = plan(used_blocks=100, entries=10, size=None, free=4096 * 10, journal=False)
    assert s.free_blocks == 10 and s.journal_blocks == 0


def test_explicit_size_fixes_the_block_count():
    s = plan(used_blocks=100, entries=10, size=1 << 30, free=None, journal=True)
    assert s.blocks == (1 << 30) // 4096 and s.free_blocks == 0


def test_inodes_follow_the_entry_count():
    few = plan(used_blocks=100, entries=10, size=None, free=0, journal=False)
    many = plan(used_blocks=100, entries=100_000, size=None, free=0, journal=False)
    assert many.min_inodes - few.min_inodes == 100_000 - 10


def test_times_outside_ext4_range_are_clamped():
    assert clamp_time_ns(-(10**30)) == MIN_TIME_NS
    assert clamp_time_ns(10**30) == MAX_TIME_NS
    assert clamp_time_ns(123) == 123


def test_times_e2fsck_would_read_as_pre_1970_are_stored_just_before_2310():
    assert clamp_time_ns(AMBIGUOUS_START_NS + 5) == AMBIGUOUS_START_NS - 1
    assert clamp_time_ns(AMBIGUOUS_END_NS - 1) == AMBIGUOUS_START_NS - 1
    assert clamp_time_ns(AMBIGUOUS_END_NS) == AMBIGUOUS_END_NS  # 2378 on is unambiguous

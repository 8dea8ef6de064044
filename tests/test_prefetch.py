"""Prefetch runs an iterator ahead on a thread without changing what it yields."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ociext4.prefetch import Prefetch


def test_items_arrive_in_order_and_complete():
    with Prefetch(iter(range(1000)), depth=3) as ahead:
        assert list(ahead) == list(range(1000))


def test_an_error_in_the_producer_is_raised_after_the_items_before_it():
    def produce() -> Iterator[int]:
        yield 1
        yield 2
        raise ValueError("broken at 3")

    got = []
    with Prefetch(produce()) as ahead, pytest.raises(ValueError, match="broken at 3"):
        for item in ahead:
            got.append(item)
    assert got == [1, 2]


def test_close_stops_a_producer_the_consumer_abandoned():
    def endless() -> Iterator[int]:
        n = 0
        while True:
            n += 1
            yield n

    ahead = Prefetch(endless(), depth=2)
    assert next(iter(ahead)) == 1
    ahead.close()
    assert not ahead._thread.is_alive()

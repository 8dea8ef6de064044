"""Lookahead: the next layer's first pieces, made on a thread ahead of time."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from ociext4.lookahead import BUDGET, MIN_BUDGET, Lookahead, budget_for


def _pieces(n: int, made: list[int], reached: dict[int, threading.Event] | None = None
            ) -> Iterator[bytes]:
    for i in range(n):
        made.append(i)
        if reached and i in reached:
            reached[i].set()
        yield bytes([i]) * 10


def test_take_gives_the_held_pieces_then_the_rest_in_order():
    made: list[int] = []
    third = threading.Event()
    ahead = Lookahead(lambda: ("h", _pieces(8, made, {2: third})), release=lambda h: None,
                      budget=30)
    assert third.wait(10)
    handle, pieces = ahead.take()
    assert handle == "h"
    assert made == [0, 1, 2]          # the thread stopped at its budget
    assert [p[0] for p in pieces] == list(range(8))
    assert made == list(range(8))


def test_a_layer_shorter_than_the_budget_is_held_whole():
    made: list[int] = []
    ahead = Lookahead(lambda: ("h", _pieces(3, made)), release=lambda h: None, budget=1 << 20)
    _, pieces = ahead.take()
    assert [p[0] for p in pieces] == [0, 1, 2]


def test_no_next_layer_gives_none():
    assert Lookahead(lambda: None, release=lambda h: None).take() is None


def test_an_error_opening_the_layer_is_raised_by_take():
    def fail() -> None:
        raise ValueError("missing blob")

    ahead = Lookahead(fail, release=lambda h: None)
    with pytest.raises(ValueError, match="missing blob"):
        ahead.take()


def test_an_error_while_inflating_comes_after_the_pieces_before_it():
    def broken() -> Iterator[bytes]:
        yield b"a"
        yield b"b"
        raise ValueError("corrupt gzip")

    _, pieces = Lookahead(lambda: ("h", broken()), release=lambda h: None).take()
    assert next(pieces) == b"a" and next(pieces) == b"b"
    with pytest.raises(ValueError, match="corrupt gzip"):
        next(pieces)


def test_cancel_releases_a_layer_opened_after_it_once():
    gate, released = threading.Event(), []
    finished = threading.Event()

    def slow_open() -> tuple[str, Iterator[bytes]]:
        gate.wait(10)    # a download still on its way
        return "h", iter([b"x"] * 5)

    def release(handle: str) -> None:
        released.append(handle)
        finished.set()

    ahead = Lookahead(slow_open, release=release)
    ahead.cancel()
    assert released == []             # cancel does not wait for the download
    gate.set()
    assert finished.wait(10)
    ahead.cancel()
    assert released == ["h"]


def test_a_taken_layer_is_not_released_by_a_later_cancel():
    released: list[str] = []
    ahead = Lookahead(lambda: ("h", iter([b"x"])), release=released.append)
    ahead.take()
    ahead.cancel()
    assert released == []


class _Piece(bytearray):
    """A piece that can be watched for being let go of."""


def test_held_pieces_are_let_go_of_as_they_are_handed_over():
    import gc
    import weakref

    def pieces() -> Iterator[bytes]:
        for i in range(3):
            yield _Piece(bytes([i]) * 10)

    ahead = Lookahead(lambda: ("h", pieces()), release=lambda h: None, budget=1 << 20)
    _, taken = ahead.take()
    first = next(taken)
    gone = weakref.ref(first)
    del first
    second = next(taken)
    gc.collect()
    assert gone() is None            # the lookahead kept no reference to it
    assert second[0] == 1 and [p[0] for p in taken] == [2]


def test_the_budget_may_depend_on_the_layer_opened():
    made: list[int] = []
    second = threading.Event()
    ahead = Lookahead(lambda: (20, _pieces(8, made, {1: second})), release=lambda h: None,
                      budget=lambda handle: handle)
    assert second.wait(10)
    handle, pieces = ahead.take() or (None, iter(()))
    assert handle == 20
    assert made == [0, 1]             # 20 bytes: two pieces of 10
    assert [p[0] for p in pieces] == list(range(8))


def test_a_small_blob_is_held_as_far_as_its_size_a_large_one_to_the_cap():
    assert budget_for(None) == BUDGET
    assert budget_for(10) == MIN_BUDGET
    assert budget_for(5 << 20) == 5 << 20
    assert budget_for(1 << 40) == BUDGET

"""Turns on a card: served in film order, a turn given up holds nobody back."""

from __future__ import annotations

import threading
import time

import pytest

from lipdub.pipeline.turns import Turns


def _take(turns: Turns, number: int, order: list, hold: float = 0.0) -> threading.Thread:
    def run():
        with turns.turn(number) as wait:
            wait()
            order.append(number)
            time.sleep(hold)
            order.append(f"{number} done")

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_turns_are_served_in_order_one_at_a_time():
    turns, order = Turns(), []
    late = _take(turns, 1, order)  # asks first
    time.sleep(0.3)
    assert order == []  # waits for number 0
    first = _take(turns, 0, order, hold=0.3)
    first.join(timeout=5)
    late.join(timeout=5)
    assert order == [0, "0 done", 1, "1 done"]


def test_a_turn_given_up_holds_nobody_back_and_a_retry_is_not_held():
    turns, order = Turns(), []
    with pytest.raises(ValueError, match="before its turn"), turns.turn(0):
        raise ValueError("the unit failed before its turn")  # before its wait (or found done)
    _take(turns, 1, order).join(timeout=5)
    _take(turns, 0, order).join(timeout=5)  # number 0 again (a retry): not held
    assert order == [1, "1 done", 0, "0 done"]

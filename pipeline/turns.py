"""Turns on a card, given in film order.

On one machine a film's units take the generator one at a time, whole, while the film is
assembled beside them in film order: unit k must have the card before unit k+1, or the assembly
waits for k while k+1 runs. ``threading.Lock`` promises no order (two units started together race
for it), so the card is handed out by number. A unit first prepares its first frames, then
waits for its number, so that the card never waits for a unit's seek and decode.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from lipdub.pipeline import stopping


class Turns:
    """Numbers 0, 1, 2... served in order, one at a time. ``with turns.turn(k) as wait``:
    ``wait()`` returns when every number before k is over; leaving the block ends turn k,
    whether it was waited for or given up (an error first, a unit found done), so no later
    number is held up. A number already passed (a retried unit) is served at once."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._serving = 0
        self._over: set[int] = set()

    @contextmanager
    def turn(self, number: int) -> Iterator[Callable[[], None]]:
        def wait() -> None:
            with self._cond:
                while not self._cond.wait_for(lambda: self._serving >= number, timeout=0.5):
                    stopping.check()  # a worker thread: no signal reaches it otherwise

        try:
            yield wait
        finally:
            with self._cond:
                self._over.add(number)
                while self._serving in self._over:
                    self._over.remove(self._serving)
                    self._serving += 1
                self._cond.notify_all()

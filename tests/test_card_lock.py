"""A chunk worker's card: one chunk process computes, the next waits, a killed one lets go."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

from pipeline.card_lock import WORKER_VARIABLE, card_turn

HOLD = """
from pipeline.card_lock import card_turn
import time
with card_turn() as wait:
    wait()
    print("holding", flush=True)
    time.sleep(60)
"""


def test_the_next_chunk_waits_for_the_card_and_a_killed_holder_lets_it_go(monkeypatch,
                                                                          tmp_path):
    worker = f"test-{os.getpid()}-gpu0"
    monkeypatch.setenv(WORKER_VARIABLE, worker)
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, **{WORKER_VARIABLE: worker}))
    try:
        assert holder.stdout.readline().strip() == "holding"
        got = threading.Event()

        def next_chunk():
            with card_turn() as wait:
                wait()
                got.set()

        waiter = threading.Thread(target=next_chunk, daemon=True)
        waiter.start()
        assert not got.wait(1.0)  # the card is taken
        holder.kill()  # SIGKILL: nothing of the holder's runs, the kernel drops its lock
        assert got.wait(5.0)
        waiter.join(5.0)
    finally:
        holder.kill()
        holder.wait()
    # Outside a chunk worker (in-process runs) nothing waits, even while the card is held.
    with card_turn() as wait:
        wait()
        started = time.monotonic()
        monkeypatch.delenv(WORKER_VARIABLE)
        with card_turn() as other:
            other()
        assert time.monotonic() - started < 1.0

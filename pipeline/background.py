"""An iterator run ahead in a thread: decoding overlaps the model (lipdub sync, film units)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator


def in_background(items: Iterator, maxsize: int) -> Iterator:
    """Run an iterator in a thread behind a bounded queue, so that what makes the items
    (decoding, cropping) overlaps what consumes them (the generator). An error in the thread is
    raised in the consumer; a consumer that stops early stops the thread."""
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    done = object()
    failure: list[BaseException] = []
    stop = threading.Event()

    def worker():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
        except BaseException as exc:  # noqa: BLE001 - re-raised in the consumer
            failure.append(exc)
        finally:
            q.put(done)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    try:
        while (item := q.get()) is not done:
            yield item
        if failure:
            raise failure[0]
    finally:
        stop.set()

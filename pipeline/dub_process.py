"""A dub's mel spectrogram taken in a forked child process while the parent starts up.

``lipdub sync`` spends its first second importing torch on one core. The dub's decode and mel
(librosa's STFT and mel filters pull in scipy.signal and numba's cache: about a second of imports
that hold the GIL) fit on the other core in a child forked before torch is imported; the parent
then never imports them. This module imports neither torch nor librosa itself.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from concurrent.futures import Future
from pathlib import Path

from lipdub.pipeline.die_with_parent import die_with_parent
from lipdub.pipeline.errors import LipdubError


class DubInChildProcess:
    """Decode ``audio`` and take its :func:`~lipdub.pipeline.audio.dub_mel` in a forked process.

    Attributes:
        future: resolves to the :class:`~lipdub.pipeline.audio.DubMel`, or to the child's error
            (MediaError, AudioError...), or to a LipdubError when the child died.

    Use as a context manager: leaving it stops a child that is still working (an error or an
    interrupt in the parent) and reaps it.
    """

    def __init__(self, audio: str | Path):
        self.audio = Path(audio)
        self.future: Future = Future()
        context = multiprocessing.get_context("fork")
        receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_send_dub_mel,
                                        args=(self.audio, send, receive, os.getpid()),
                                        name="lipdub-dub", daemon=True)
        self._process.start()
        send.close()  # the child holds the only writer: its death reads as end of file
        threading.Thread(target=self._receive, args=(receive,), name="lipdub-dub-wait",
                         daemon=True).start()

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._process.pid

    @staticmethod
    def available() -> bool:
        """Whether a child can be forked safely here: fork exists, and torch (whose thread
        pools do not survive a fork) is not imported yet."""
        return "fork" in multiprocessing.get_all_start_methods() and "torch" not in sys.modules

    def _receive(self, receive) -> None:
        try:
            ok, value = receive.recv()
        except (EOFError, OSError):
            ok, value = False, LipdubError(
                f"{self.audio}: the process decoding the dub stopped unexpectedly (out of "
                "memory?); run again with more memory free")
        finally:
            receive.close()
            self._process.join(timeout=10)  # reaped now, not left a zombie for the whole run
        if ok:
            self.future.set_result(value)
        else:
            self.future.set_exception(value)

    def __enter__(self) -> DubInChildProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        if self._process.is_alive() and not self.future.done():
            self._process.terminate()
        self._process.join()


def _send_dub_mel(audio: Path, send, receive, parent: int) -> None:
    """The child's work: the mel, or the error, back through the pipe."""
    # The fork gave us the reading end too: holding it, a send bigger than the pipe's buffer
    # would wait forever for a parent that is gone. Closed, the send fails and we end.
    receive.close()
    die_with_parent(parent)
    try:
        from lipdub.pipeline.audio import dub_mel

        result = (True, dub_mel(audio))
    except Exception as exc:  # noqa: BLE001 - handed to the parent, which raises it
        result = (False, exc)
    try:
        send.send(result)
    except Exception as exc:  # noqa: BLE001 - an error that cannot be pickled: say what it was
        send.send((False, LipdubError(f"{audio}: {type(exc).__name__}: {exc}")))
    finally:
        send.close()

"""A stem's mel spectrogram: computed once, in a child process, and kept in the work folder.

The generator hears a character's stem as Wav2Lip's mel spectrogram. Its first computation in a
process pulls in librosa's filters and STFT, scipy.signal and numba: about 200 MB that a film
run would then carry to the end (measured: 418 -> 741 MB over a film's first unit). As
``lipdub sync`` does for its dub, the film path leaves that to a child: the stem's whole mel is
written next to its 16 kHz samples (same content key) and every unit, here or on a chunk worker,
reads the columns it needs from a memory map.

The mel is computed block by block, each with a margin either side, so that it equals the mel
of the whole stem taken at once (what ``lipdub sync`` and the reference compute) to the last
column, at any stem length, in bounded memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np

from lipdub.pipeline.die_with_parent import die_with_parent
from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.partial_files import writing

MEL_VERSION = 1  # of what a kept stem mel holds (part of its file name)
BLOCK_COLUMNS = 6000  # 60 s of mel columns per block (about 70 MB of STFT at a time)
MARGIN_COLUMNS = 8  # beyond a block's ends: the STFT's edge padding and the pre-emphasis


def stem_mel_path(samples_path: Path) -> Path:
    """Where the mel of the stem whose 16 kHz samples are at ``samples_path`` is kept."""
    return samples_path.with_name(samples_path.name.replace("_16k.f32", "")
                                  + f"_mel{MEL_VERSION}.npy")


def stem_mel(samples_path: Path) -> np.ndarray:
    """The stem's whole mel (80 x columns, float32, memory-mapped), computed first if missing."""
    path = stem_mel_path(samples_path)
    if not path.exists():
        _compute_in_child(samples_path, path)
    return np.load(path, mmap_mode="r")


def mel_between(samples: np.ndarray, first: int, last: int) -> np.ndarray:
    """Columns ``[first, last)`` of the mel of all of ``samples``, computed from the samples
    they depend on only (columns past the samples' end are silence)."""
    from lipdub.pipeline.audio import HOP_SIZE, mel_columns, melspectrogram, with_silence

    lo_col = max(0, first - MARGIN_COLUMNS)
    hi_col = last + MARGIN_COLUMNS
    # Column j is centred on sample 200 * j: cut the samples on that grid. A block that reaches
    # the end takes the samples up to it and no further, so that the STFT's reflect padding
    # there is the whole stem's.
    end = None if hi_col >= mel_columns(len(samples)) else hi_col * HOP_SIZE
    piece = np.asarray(samples[lo_col * HOP_SIZE : end], dtype=np.float32)
    mel = (melspectrogram(piece) if len(piece) > 4 * HOP_SIZE
           else np.zeros((80, 0), np.float32))  # nothing of the stem left: all silence
    mel = with_silence(mel, hi_col - lo_col)
    return mel[:, first - lo_col : last - lo_col]


def write_stem_mel(samples_path: Path, out: Path, block: int = BLOCK_COLUMNS) -> None:
    """Compute the whole mel of the stem at ``samples_path`` into ``out`` (.npy, atomically)."""
    from lipdub.pipeline.audio import mel_columns

    samples = np.memmap(samples_path, dtype=np.float32, mode="r")
    columns = mel_columns(len(samples))
    with writing(out) as tmp:
        mel = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(80, columns))
        for first in range(0, columns, block):
            last = min(columns, first + block)
            mel[:, first:last] = mel_between(samples, first, last)
        mel.flush()
        del mel


def _compute_in_child(samples_path: Path, out: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "lipdub.pipeline.stem_mel", str(samples_path), str(out)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True,
        preexec_fn=partial(die_with_parent, os.getpid()))
    if done.returncode or not out.exists():
        tail = " ".join(done.stderr.strip().splitlines()[-3:]) or f"exit {done.returncode}"
        raise LipdubError(f"the mel spectrogram of {samples_path} could not be computed: {tail}")


if __name__ == "__main__":  # the child: python -m lipdub.pipeline.stem_mel SAMPLES OUT
    write_stem_mel(Path(sys.argv[1]), Path(sys.argv[2]))

"""Training data: the prepared dataset layout and the two windowed datasets (spec §1.5, §3.3, §5.2).

Layout (the original preprocess.py's, so either code base trains on the other's data)::

    ROOT/dataset.json              {"fps": 25, ...}: properties of the whole dataset
    ROOT/train.txt, ROOT/val.txt   one entry per line, "<group>/<video>" (first token used)
    ROOT/<group>/<video>/{k}.jpg   face crop of frame k (0-based, at the dataset's fps); frames
                                   without a face are missing, which leaves gaps
    ROOT/<group>/<video>/audio.wav the utterance's audio (any rate; decoded to 16 kHz mono)
    ROOT/<group>/<video>/mel.npy   optional: its mel spectrogram (80, T), to skip recomputing it

Windows and audio indices follow the reference exactly (at 25 fps ``sync_mel_start(k)`` is
``int(80 * k / 25)``):

- a window is 5 consecutive *existing* frames; a video needs more than 15 frames;
- the expert sees the mel chunk starting at ``sync_mel_start(frame)`` of the drawn frame, and the
  5 frames starting there (in sync, y = 1) or at a different random frame of the same video
  (y = 0), with probability 1/2 each;
- the generator's frame k gets its own chunk at ``indiv_mel_start(k)``, one frame earlier than
  inference does (the reference's "+1 then -2"); a window starting at frame 0 is therefore
  rejected; the reference ("wrong") window is 5 frames from another time of the same video.

Samples are drawn from a generator seeded by (seed, index): sample i is the same whatever the
number of workers, so a resumed run sees exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from lipdub.pipeline.audio import (
    MEL_STEP_SIZE,
    indiv_mel_start,
    melspectrogram,
    read_audio,
    sync_mel_start,
)
from lipdub.pipeline.errors import LipdubError

DATASET_META = "dataset.json"
DEFAULT_FPS = 25.0
SYNCNET_T = 5  # frames per window
MIN_FRAMES = 3 * SYNCNET_T  # a video must have MORE than this many frames (the reference's rule)
IMG_SIZE = 96
MAX_DRAWS = 1000  # rejected draws before a sample gives up


class DatasetError(LipdubError):
    """A dataset folder or filelist is missing, empty or unusable."""


@dataclass(frozen=True)
class Video:
    """One utterance of the dataset.

    Attributes:
        name: its filelist entry (``group/video``).
        path: its folder.
        frames: indices of the frames that exist, ascending.
    """

    name: str
    path: Path
    frames: tuple[int, ...]
    present: frozenset = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "present", frozenset(self.frames))

    def has_window(self, start: int, length: int = SYNCNET_T) -> bool:
        """Whether frames start .. start+length-1 all exist."""
        return all(start + t in self.present for t in range(length))


def dataset_fps(root: str | Path, override: float | None = None) -> float:
    """The dataset's frame rate: ``override``, else dataset.json's ``fps``, else 25."""
    if override is not None:
        return float(override)
    meta = Path(root) / DATASET_META
    if meta.is_file():
        try:
            fps = json.loads(meta.read_text()).get("fps")
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{meta}: not valid JSON ({exc})") from exc
        if fps:
            return float(fps)
    return DEFAULT_FPS


def read_filelist(root: str | Path, filelist: str | Path) -> list[str]:
    """Entries of a filelist (first whitespace token of each non-empty line).

    Arguments:
        root: dataset folder; a relative ``filelist`` is looked up there first.
        filelist: file name or path.

    Raises:
        DatasetError: the file is missing or lists nothing.
    """
    path = Path(filelist)
    if not path.is_absolute() and (Path(root) / path).is_file():
        path = Path(root) / path
    if not path.is_file():
        raise DatasetError(
            f"{filelist}: filelist not found (in {root} or as given); `lipdub prepare` writes "
            "train.txt and val.txt"
        )
    entries = [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not entries:
        raise DatasetError(f"{path}: the filelist is empty")
    return entries


def list_frames(folder: Path) -> tuple[int, ...]:
    """Indices of the ``{k}.jpg`` files in a video folder, ascending."""
    indices = []
    with os.scandir(folder) as it:
        for entry in it:
            stem, dot, ext = entry.name.partition(".")
            if dot and ext == "jpg" and stem.isdigit():
                indices.append(int(stem))
    return tuple(sorted(indices))


def load_videos(root: str | Path, filelist: str | Path) -> list[Video]:
    """The usable videos of a filelist: existing folders with more than 15 frames.

    Raises:
        DatasetError: none is usable (the message says why for the first few).
    """
    root = Path(root)
    videos, problems = [], []
    for name in read_filelist(root, filelist):
        folder = root / name
        if not folder.is_dir():
            problems.append(f"{name}: no such folder")
            continue
        frames = list_frames(folder)
        if len(frames) <= MIN_FRAMES:
            problems.append(f"{name}: {len(frames)} frames (needs more than {MIN_FRAMES})")
            continue
        videos.append(Video(name, folder, frames))
    if not videos:
        shown = "; ".join(problems[:3]) or "no entries"
        raise DatasetError(f"{root} / {filelist}: no usable video ({shown})")
    return videos


def read_mel(folder: Path) -> np.ndarray:
    """The (80, T) mel spectrogram of a video folder: mel.npy, else computed from audio.wav."""
    cached = folder / "mel.npy"
    if cached.is_file():
        return np.load(cached)
    wav = folder / "audio.wav"
    if not wav.is_file():
        raise DatasetError(f"{folder}: has neither mel.npy nor audio.wav")
    return melspectrogram(read_audio(wav).samples)


def read_image(path: Path, size: int = IMG_SIZE) -> np.ndarray | None:
    """A BGR crop resized to size x size (bilinear, as the reference), or None if unreadable."""
    image = cv2.imread(str(path))
    if image is None:
        return None
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR)
    return image


@dataclass(frozen=True)
class Draw:
    """What one sample was made of (for tests and debugging).

    Attributes:
        video: index into the dataset's videos.
        frame: the drawn frame: the audio is aligned with it.
        wrong: the other frame of the same video.
        positive: expert only: whether the face window starts at ``frame`` (in sync).
    """

    video: int
    frame: int
    wrong: int
    positive: bool = True

    @property
    def window_start(self) -> int:
        """First frame of the face window the expert sees."""
        return self.frame if self.positive else self.wrong


class WindowDataset(Dataset):
    """Common part of both datasets: videos, frame rate, mel cache, seeded draws.

    Arguments:
        root: dataset folder.
        filelist: its train or val list.
        fps: frame rate; None reads dataset.json (25 when absent).
        seed: base seed of the draws; sample i is drawn from a generator seeded (seed, i).
        img_size: crop size fed to the networks.
        mel_cache: mel spectrograms kept in memory (per worker).

    ``len`` is the number of videos, as the reference's: an "epoch" is that many samples.
    """

    def __init__(self, root, filelist, *, fps: float | None = None, seed: int = 0,
                 img_size: int = IMG_SIZE, mel_cache: int = 64):
        self.root = Path(root)
        self.videos = load_videos(self.root, filelist)
        self.fps = dataset_fps(self.root, fps)
        self.seed = seed
        self.img_size = img_size
        self._mels: OrderedDict[int, np.ndarray] = OrderedDict()
        self._mel_cache = mel_cache

    def __len__(self) -> int:
        return len(self.videos)

    def mel(self, video: int) -> np.ndarray:
        """(80, T) mel of a video, from a small LRU cache."""
        if video in self._mels:
            self._mels.move_to_end(video)
            return self._mels[video]
        mel = read_mel(self.videos[video].path)
        self._mels[video] = mel
        if len(self._mels) > self._mel_cache:
            self._mels.popitem(last=False)
        return mel

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index])

    def _frames_pair(self, rng: np.random.Generator) -> tuple[int, int, int]:
        """A random video and two different random frames of it (the reference's draw)."""
        video = int(rng.integers(len(self.videos)))
        frames = self.videos[video].frames
        frame = frames[int(rng.integers(len(frames)))]
        wrong = frame
        while wrong == frame:
            wrong = frames[int(rng.integers(len(frames)))]
        return video, frame, wrong

    def mel_chunk(self, video: int, start: int) -> np.ndarray | None:
        """Mel columns [start, start + 16), or None when they run past the end."""
        mel = self.mel(video)
        if start < 0 or start + MEL_STEP_SIZE > mel.shape[1]:
            return None
        return mel[:, start : start + MEL_STEP_SIZE]

    def read_window(self, video: int, start: int) -> list[np.ndarray] | None:
        """The 5 BGR crops from ``start``, or None if one is missing or unreadable."""
        entry = self.videos[video]
        if not entry.has_window(start):
            return None
        images = [read_image(entry.path / f"{start + t}.jpg", self.img_size)
                  for t in range(SYNCNET_T)]
        return None if any(im is None for im in images) else images

    def _give_up(self, index: int) -> DatasetError:
        return DatasetError(
            f"{self.root}: no valid window after {MAX_DRAWS} draws for sample {index}; videos "
            "need runs of 5 consecutive readable frames and audio covering them"
        )


class ExpertDataset(WindowDataset):
    """Samples of the SyncNet expert (color_syncnet_train.py).

    Each item is ``(x, mel, y)``: x (15, 48, 96) lower halves of 5 crops stacked frame-major on
    channels (BGR, /255), mel (1, 80, 16), y (1,) 1.0 in sync / 0.0 off sync.
    """

    def sample(self, index: int) -> tuple[Draw, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Draw sample ``index``: what was chosen and the tensors."""
        rng = self.rng(index)
        for _ in range(MAX_DRAWS):
            video, frame, wrong = self._frames_pair(rng)
            draw = Draw(video, frame, wrong, positive=bool(rng.random() < 0.5))
            window = self.read_window(video, draw.window_start)
            if window is None:
                continue
            chunk = self.mel_chunk(video, sync_mel_start(frame, self.fps))
            if chunk is None:
                continue
            x = np.concatenate(window, axis=2).astype(np.float32) / 255.0
            x = x.transpose(2, 0, 1)[:, self.img_size // 2 :]
            y = torch.full((1,), 1.0 if draw.positive else 0.0)
            mel = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float32))[None]
            return draw, (torch.from_numpy(np.ascontiguousarray(x)), mel, y)
        raise self._give_up(index)

    def __getitem__(self, index: int):
        return self.sample(index)[1]


class GeneratorDataset(WindowDataset):
    """Samples of the Wav2Lip generator (wav2lip_train.py / hq_wav2lip_train.py).

    Each item is ``(x, indiv_mels, mel, gt)``: x (6, 5, 96, 96) the target window with rows
    48-95 zeroed then the reference window; indiv_mels (5, 1, 80, 16); mel (1, 80, 16) for the
    sync loss; gt (3, 5, 96, 96). BGR, /255.
    """

    def sample(self, index: int):
        """Draw sample ``index``: what was chosen and the tensors."""
        rng = self.rng(index)
        for _ in range(MAX_DRAWS):
            video, frame, wrong = self._frames_pair(rng)
            draw = Draw(video, frame, wrong)
            window = self.read_window(video, frame)
            reference = self.read_window(video, wrong) if window is not None else None
            if reference is None:
                continue
            mel = self.mel_chunk(video, sync_mel_start(frame, self.fps))
            if mel is None or frame < 1:  # frame 0 has no chunk one frame earlier
                continue
            chunks = [self.mel_chunk(video, indiv_mel_start(k, self.fps))
                      for k in range(frame, frame + SYNCNET_T)]
            if any(c is None for c in chunks):
                continue
            gt = _to_window_tensor(window)
            masked = gt.clone()
            masked[:, :, self.img_size // 2 :] = 0.0
            x = torch.cat([masked, _to_window_tensor(reference)], dim=0)
            indiv = torch.from_numpy(np.stack(chunks).astype(np.float32))[:, None]
            mel_t = torch.from_numpy(np.ascontiguousarray(mel, dtype=np.float32))[None]
            return draw, (x, indiv, mel_t, gt)
        raise self._give_up(index)

    def __getitem__(self, index: int):
        return self.sample(index)[1]


def _to_window_tensor(images: list[np.ndarray]) -> torch.Tensor:
    """5 HxWx3 uint8 crops -> (3, 5, H, W) float32 / 255."""
    stacked = np.stack(images).astype(np.float32) / 255.0  # (T, H, W, 3)
    return torch.from_numpy(np.ascontiguousarray(stacked.transpose(3, 0, 1, 2)))


class StepBatchSampler(Sampler[list[int]]):
    """Batches of sample indices for steps ``start_step .. end_step - 1``.

    Step s is made of samples ``s * batch_size .. (s + 1) * batch_size - 1``, so where a run
    starts (0 or a resumed step) decides which samples it sees and nothing else does.
    """

    def __init__(self, batch_size: int, start_step: int, end_step: int, offset: int = 0):
        self.batch_size = batch_size
        self.start_step = start_step
        self.end_step = end_step
        self.offset = offset

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            first = self.offset + step * self.batch_size
            yield list(range(first, first + self.batch_size))


def make_loader(dataset: Dataset, batch_size: int, start_step: int, end_step: int, *,
                num_workers: int = 0, pin_memory: bool = False) -> torch.utils.data.DataLoader:
    """A DataLoader over steps ``start_step .. end_step - 1`` (see :class:`StepBatchSampler`)."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_sampler=StepBatchSampler(batch_size, start_step, end_step),
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        worker_init_fn=_share_by_file_name if num_workers else None,
    )


def _share_by_file_name(worker_id: int) -> None:
    """A worker hands its batches over by shared-memory file name, not by passing descriptors:
    that needs a descriptor-serving thread in the worker, which printed a traceback when a
    stopped run's main process went first (one SIGINT stop test in CI)."""
    torch.multiprocessing.set_sharing_strategy("file_system")

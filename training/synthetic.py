"""A synthetic talking-mouth dataset: the proof, on a CPU, that the trainers learn lip sync.

Drawn faces (random identities: skin, face shape, hair, eyes, lips, freckles, background) whose
mouth opening follows the loudness envelope, and its width the brightness, of real speech
(``../shared/media/audio``, each clip sped up or slowed down and made louder or softer; a
synthetic babble when no folder is given), with head jitter and pixel noise. The audio is what
the networks hear; the opening is the ground truth they never see. Validation uses held-out
identities speaking held-out recordings, so a model that scores there has learnt the mapping
from sound to mouth, not the training clips.

The dataset has the layout of :mod:`lipdub.training.data` (``lipdub prepare``'s), plus the true
opening of every frame in ``openings.npy``. :func:`mouth_opening` measures how open a mouth is in
any crop (dark mouth-interior pixels in the lower half); :func:`mouth_sync_correlation` correlates
what a generator draws with the audio envelope of held-out clips.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from lipdub.pipeline.audio import MEL_STEP_SIZE, SAMPLE_RATE, indiv_mel_start, read_audio
from lipdub.pipeline.errors import LipdubError
from lipdub.pipeline.generator import resolve_device
from lipdub.training.data import IMG_SIZE, dataset_fps, load_videos, read_mel
from lipdub.training.prepare import write_audio, write_dataset_files

DRAW_SCALE = 4  # faces are drawn 4x larger and downscaled: smooth, sub-pixel edges
MOUTH_INSIDE = (30, 22, 58)  # BGR, luminance ~35: nothing else in the lower half is this dark
DARK_LEVEL = 70.0  # luminance under which a pixel counts (partly) as mouth interior
AUDIO_SUFFIXES = (".wav", ".mp3", ".flac", ".ogg", ".m4a")
TARGET_LOUD_RMS = 0.1  # each recording is scaled so its loud frames sit at this RMS
OPEN_FLOOR_DB, OPEN_RANGE_DB = -42.0, 24.0  # RMS dB mapped linearly onto opening 0..1


@dataclass
class SyntheticOptions:
    """What to generate (``lipdub prepare synthetic`` flags, one to one)."""

    train_identities: int = 64
    val_identities: int = 16
    videos_per_identity: int = 3
    seconds: tuple[float, float] = (3.2, 4.8)  # clip length range
    audio_dir: str | None = None  # speech recordings; None: synthetic babble
    val_audio: int = 2  # recordings held out for validation (the last ones by name)
    fps: float = 25.0
    jitter: float = 1.0  # head motion, pixels (std of a smooth random walk)
    noise: float = 2.0  # pixel noise std
    speed_jitter: float = 0.12  # audio clips are played 1 +- this fast (tempo and pitch)
    gain_jitter_db: float = 4.0  # ... and this much louder or softer
    seed: int = 0


@dataclass(frozen=True)
class Identity:
    """One drawn person (sizes in pixels of the 96x96 crop)."""

    background: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    lips: tuple[int, int, int]
    iris: tuple[int, int, int]
    centre: tuple[float, float]
    face_axes: tuple[float, float]
    hair_height: float
    eye_y: float  # offset from the face centre (negative: up)
    eye_dx: float
    eye_r: float
    mouth_y: float
    mouth_w: float
    lip_t: float
    max_open: float
    shade: float  # left-right shading strength
    freckles: tuple[tuple[float, float, float], ...]  # (dx, dy, r)


def _luma(bgr) -> float:
    b, g, r = bgr
    return 0.114 * b + 0.587 * g + 0.299 * r


def _colour(rng: np.random.Generator, min_luma: float, max_luma: float = 255.0):
    while True:
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        if min_luma <= _luma(c) <= max_luma:
            return c


def random_identity(rng: np.random.Generator) -> Identity:
    """A random face; every colour of the lower half is far lighter than the mouth interior."""
    skin_base = np.array([rng.uniform(60, 170), rng.uniform(100, 200), rng.uniform(150, 245)])
    skin = tuple(int(v) for v in np.clip(skin_base, 0, 255))
    while _luma(skin) < 115:
        skin = tuple(min(255, v + 10) for v in skin)
    lips = tuple(int(v) for v in np.clip(np.array(skin) * [0.7, 0.6, 0.95] + [0, 0, 20], 0, 255))
    while _luma(lips) < 85:
        lips = tuple(min(255, v + 10) for v in lips)
    n_freckles = int(rng.integers(0, 7))
    return Identity(
        background=_colour(rng, 95),
        skin=skin,
        hair=_colour(rng, 75, 220),  # never dark enough to count as mouth
        lips=lips,
        iris=_colour(rng, 10, 120),
        centre=(48 + rng.uniform(-3, 3), 50 + rng.uniform(-2, 2)),
        face_axes=(rng.uniform(29, 37), rng.uniform(38, 45)),
        hair_height=rng.uniform(6, 16),
        eye_y=rng.uniform(-14, -10),
        eye_dx=rng.uniform(11, 15),
        eye_r=rng.uniform(3.0, 4.2),
        mouth_y=rng.uniform(19, 23),
        mouth_w=rng.uniform(9, 13),
        lip_t=rng.uniform(1.6, 2.8),
        max_open=rng.uniform(6, 9),
        shade=rng.uniform(0, 0.25),
        freckles=tuple((rng.uniform(-20, 20), rng.uniform(0, 18), rng.uniform(0.8, 1.6))
                       for _ in range(n_freckles)),
    )


def render_face(ident: Identity, opening: float, offset=(0.0, 0.0), scale: float = 1.0,
                noise: float = 0.0, rng: np.random.Generator | None = None,
                shape: float = 0.5) -> np.ndarray:
    """Draw one 96x96 BGR crop of ``ident``.

    Arguments:
        opening: mouth opening, 0 (closed) .. 1 (wide open).
        offset, scale: head position (pixels) and size.
        noise: pixel noise std.
        shape: mouth shape, 0 (rounded, narrow: dark vowels) .. 1 (spread: bright sounds).
    """
    s = DRAW_SCALE
    size = IMG_SIZE * s
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = ident.background
    cx = (ident.centre[0] + offset[0]) * s
    cy = (ident.centre[1] + offset[1]) * s

    def pt(dx, dy):
        return int(round(cx + dx * scale * s)), int(round(cy + dy * scale * s))

    def ax(a, b):
        return max(1, int(round(a * scale * s))), max(1, int(round(b * scale * s)))

    fw, fh = ident.face_axes
    cv2.ellipse(canvas, pt(0, -fh * 0.35), ax(fw * 1.05, fh * 0.55 + ident.hair_height), 0, 0,
                360, ident.hair, -1)
    cv2.ellipse(canvas, pt(0, 0), ax(fw, fh), 0, 0, 360, ident.skin, -1)
    face_mask = None
    if ident.shade > 0:
        face_mask = np.zeros((size, size), np.uint8)
        cv2.ellipse(face_mask, pt(0, 0), ax(fw, fh), 0, 0, 360, 255, -1)
    freckle = tuple(int(v * 0.8) for v in ident.skin)
    for dx, dy, r in ident.freckles:
        cv2.circle(canvas, pt(dx, dy), max(1, int(r * s)), freckle, -1)
    for side in (-1, 1):
        eye = pt(side * ident.eye_dx, ident.eye_y)
        cv2.ellipse(canvas, eye, ax(ident.eye_r * 1.6, ident.eye_r), 0, 0, 360,
                    (240, 240, 240), -1)
        cv2.circle(canvas, eye, max(1, int(ident.eye_r * 0.8 * scale * s)), ident.iris, -1)
    nose = tuple(int(v * 0.85) for v in ident.skin)
    cv2.line(canvas, pt(0, -4), pt(-2, 8), nose, max(1, int(0.8 * s)))
    # Mouth: lips around a dark interior whose height is the opening.
    inner = float(np.clip(opening, 0, 1)) * ident.max_open / 2
    width = ident.mouth_w * (0.8 + 0.4 * float(np.clip(shape, 0, 1)))
    mouth = pt(0, ident.mouth_y)
    cv2.ellipse(canvas, mouth, ax(width, ident.lip_t + inner), 0, 0, 360, ident.lips, -1)
    if inner > 0.15:
        cv2.ellipse(canvas, mouth, ax(width * 0.8, inner), 0, 0, 360, MOUTH_INSIDE, -1)
    image = cv2.resize(canvas, (IMG_SIZE, IMG_SIZE), interpolation=cv2.INTER_AREA)
    image = image.astype(np.float32)
    if face_mask is not None:  # light from one side: the far half of the face is darker
        mask = cv2.resize(face_mask, (IMG_SIZE, IMG_SIZE), interpolation=cv2.INTER_AREA)
        ramp = np.linspace(0.0, ident.shade, IMG_SIZE, dtype=np.float32)[None, :]
        image *= (1.0 - ramp * (mask.astype(np.float32) / 255.0))[..., None]
    if noise > 0:
        rng = rng or np.random.default_rng()
        image += rng.normal(0, noise, image.shape).astype(np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def mouth_opening(images) -> np.ndarray:
    """How open the mouth is in each crop: the darkness of the lower half (a pixel count).

    Arguments:
        images: (N, 96, 96, 3) BGR, uint8 or float in [0, 255].

    Returns:
        (N,) sum over the lower half of clip((70 - luminance) / 70, 0, 1).
    """
    images = np.asarray(images, dtype=np.float32)
    lower = images[:, images.shape[1] // 2 :]
    luma = lower @ np.array([0.114, 0.587, 0.299], np.float32)
    return np.clip((DARK_LEVEL - luma) / DARK_LEVEL, 0, 1).sum(axis=(1, 2))


# --- audio --------------------------------------------------------------------------------------


def frame_rms_db(samples: np.ndarray, n_frames: int, fps: float, margin: float = 0.02):
    """RMS level (dB) of each frame's time span, widened by ``margin`` seconds on each side."""
    out = np.empty(n_frames, np.float64)
    for k in range(n_frames):
        a = max(0, int((k / fps - margin) * SAMPLE_RATE))
        b = min(len(samples), int(((k + 1) / fps + margin) * SAMPLE_RATE))
        segment = samples[a:b]
        rms = math.sqrt(float(np.mean(segment.astype(np.float64) ** 2))) if b > a else 0.0
        out[k] = 20 * math.log10(rms + 1e-6)
    return out


def openings_from_audio(samples: np.ndarray, n_frames: int, fps: float) -> np.ndarray:
    """Mouth opening per frame from the speech envelope: louder is wider, silence closed."""
    db = frame_rms_db(samples, n_frames, fps)
    return np.clip((db - OPEN_FLOOR_DB) / OPEN_RANGE_DB, 0, 1).astype(np.float32)


def shapes_from_audio(samples: np.ndarray, n_frames: int, fps: float,
                      margin: float = 0.02) -> np.ndarray:
    """Mouth shape per frame from the spectral centroid: bright sounds spread the lips.

    A centroid of 500 Hz or less gives 0 (rounded), 4 kHz or more gives 1 (spread).
    """
    out = np.full(n_frames, 0.5, np.float32)
    for k in range(n_frames):
        a = max(0, int((k / fps - margin) * SAMPLE_RATE))
        b = min(len(samples), int(((k + 1) / fps + margin) * SAMPLE_RATE))
        if b - a < 64:
            continue
        spectrum = np.abs(np.fft.rfft(samples[a:b] * np.hanning(b - a)))
        if spectrum.sum() < 1e-6:
            continue
        freqs = np.fft.rfftfreq(b - a, 1 / SAMPLE_RATE)
        centroid = float((spectrum * freqs).sum() / spectrum.sum())
        out[k] = np.clip(np.log2(max(centroid, 1.0) / 500.0) / 3.0, 0, 1)
    return out


def normalise_level(samples: np.ndarray, fps: float = 25.0) -> np.ndarray:
    """Scale a recording so that its loud frames (90th percentile of frame RMS) sit at 0.1."""
    n = int(len(samples) / SAMPLE_RATE * fps)
    rms = 10 ** (frame_rms_db(samples, max(n, 1), fps, margin=0) / 20)
    loud = float(np.percentile(rms, 90)) if len(rms) else 0.0
    return (samples * (TARGET_LOUD_RMS / loud)).astype(np.float32) if loud > 1e-5 else samples


def babble(seconds: float, rng: np.random.Generator) -> np.ndarray:
    """Speech-like audio without a recording: voiced syllables at ~4 Hz with pauses."""
    n = int(seconds * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    envelope = np.zeros(n)
    pos = rng.uniform(0, 0.2)
    while pos < seconds:
        width = rng.uniform(0.06, 0.14)
        envelope += rng.uniform(0.4, 1.0) * np.exp(-0.5 * ((t - pos) / width) ** 2)
        pos += rng.uniform(0.18, 0.32) + (rng.uniform(0.3, 0.7) if rng.random() < 0.15 else 0)
    f0 = rng.uniform(100, 220) * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voiced = sum(np.sin(h * phase) / h for h in range(1, 7))
    signal = envelope * (voiced + 0.3 * rng.normal(size=n))
    return normalise_level((0.1 * signal).astype(np.float32))


def load_recordings(audio_dir: str | Path) -> list[tuple[str, np.ndarray]]:
    """Every recording of a folder at 16 kHz mono, level-normalised, sorted by name.

    Raises:
        LipdubError: the folder has no audio files.
    """
    files = sorted(p for p in Path(audio_dir).iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise LipdubError(f"{audio_dir}: no audio files ({', '.join(AUDIO_SUFFIXES)})")
    return [(p.name, normalise_level(read_audio(p).samples)) for p in files]


# --- dataset ------------------------------------------------------------------------------------


def _jitter_path(n: int, amount: float, rng: np.random.Generator) -> np.ndarray:
    """(n, 3) smooth head motion: dx, dy (pixels) and scale."""
    steps = rng.normal(0, 1, (n, 3))
    path = np.zeros((n, 3))
    for k in range(1, n):
        path[k] = 0.85 * path[k - 1] + 0.5 * steps[k]
    path[:, :2] *= amount
    path[:, 2] = 1.0 + 0.015 * amount * path[:, 2]
    return path


def write_video(folder: Path, ident: Identity, samples: np.ndarray, options: SyntheticOptions,
                rng: np.random.Generator) -> int:
    """One synthetic utterance: crops, audio.wav, mel.npy, openings.npy; returns its frames."""
    folder.mkdir(parents=True, exist_ok=True)
    n = int(len(samples) / SAMPLE_RATE * options.fps)
    openings = openings_from_audio(samples, n, options.fps)
    shapes = shapes_from_audio(samples, n, options.fps)
    motion = _jitter_path(n, options.jitter, rng)
    for k in range(n):
        image = render_face(ident, openings[k], motion[k, :2], motion[k, 2], options.noise, rng,
                            shape=shapes[k])
        cv2.imwrite(str(folder / f"{k}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    write_audio(folder, samples)
    np.save(folder / "openings.npy", openings)
    return n


def _random_clip(audio: np.ndarray, options: SyntheticOptions,
                 rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """A random stretch of a recording, sped up or slowed down and louder or softer."""
    speed = rng.uniform(1 - options.speed_jitter, 1 + options.speed_jitter)
    seconds = rng.uniform(*options.seconds)
    length = min(len(audio), int(seconds * SAMPLE_RATE * speed))
    start = int(rng.integers(0, len(audio) - length + 1))
    clip = audio[start : start + length].astype(np.float64)
    if speed != 1.0:  # tape-style: tempo and pitch change together
        clip = np.interp(np.arange(0, len(clip) - 1, speed), np.arange(len(clip)), clip)
    gain = 10 ** (rng.uniform(-options.gain_jitter_db, options.gain_jitter_db) / 20)
    clip = clip * gain + rng.normal(0, 1e-4, len(clip))
    return clip.astype(np.float32), start


def build_synthetic_dataset(root: str | Path, options: SyntheticOptions | None = None) -> dict:
    """Write the synthetic dataset to ``root`` (train.txt: train identities and recordings;
    val.txt: held-out identities speaking held-out recordings).

    Returns:
        A summary (counts, the recordings of each split).
    """
    options = options or SyntheticOptions()
    root = Path(root)
    rng = np.random.default_rng(options.seed)
    if options.audio_dir:
        recordings = load_recordings(options.audio_dir)
        if len(recordings) <= options.val_audio:
            raise LipdubError(f"{options.audio_dir}: {len(recordings)} recordings, need more "
                              f"than val_audio={options.val_audio}")
        split = {"train": recordings[: len(recordings) - options.val_audio],
                 "val": recordings[len(recordings) - options.val_audio :]}
    else:
        length = max(10.0, 3 * options.seconds[1])
        split = {name: [(f"babble{i}", babble(length, rng)) for i in range(count)]
                 for name, count in (("train", 6), ("val", 2))}
    entries: dict[str, list[str]] = {"train": [], "val": []}
    frames = 0
    counts = {"train": options.train_identities, "val": options.val_identities}
    first = {"train": 0, "val": options.train_identities}
    for name in ("train", "val"):
        for i in range(counts[name]):
            ident = random_identity(rng)
            for j in range(options.videos_per_identity):
                source, audio = split[name][int(rng.integers(len(split[name])))]
                clip, start = _random_clip(audio, options, rng)
                entry = f"id{first[name] + i:03d}/v{j:02d}"
                frames += write_video(root / entry, ident, clip, options, rng)
                (root / entry / "meta.json").write_text(json.dumps(
                    {"identity": asdict(ident), "audio": source, "start": start,
                     "frames": int(len(clip) / SAMPLE_RATE * options.fps)}))
                entries[name].append(entry)
    summary = {
        "fps": options.fps,
        "created_by": "lipdub prepare synthetic",
        "options": asdict(options),
        "train_audio": [n for n, _ in split["train"]],
        "val_audio": [n for n, _ in split["val"]],
        "videos": {k: len(v) for k, v in entries.items()},
        "frames": frames,
    }
    write_dataset_files(root, entries["train"], entries["val"], summary)
    return summary


# --- the measure --------------------------------------------------------------------------------


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if len(a) < 3 or np.std(a) < 1e-9 or np.std(b) < 1e-9:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def _finite_mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


@torch.no_grad()
def mouth_sync_correlation(generator: torch.nn.Module, root: str | Path,
                           filelist: str = "val.txt", *, device: str | torch.device = "auto",
                           batch_size: int = 64, frame_step: int = 1) -> dict:
    """How well a generator's mouths follow held-out audio.

    Every frame k >= 1 of every listed video is regenerated as in training: its crop with the
    lower half masked, a reference crop from half the clip away (mouth in another state), and
    the mel chunk at ``indiv_mel_start(k)``. The opening measured on the output
    (:func:`mouth_opening`) is correlated with the clip's true opening, the audio envelope.

    Arguments:
        frame_step: use every n-th frame (2 halves the cost, the statistics barely move).

    Returns:
        {"r_generated": mean per-video Pearson r of the generated mouths,
         "r_ground_truth": the same for the real frames (the measure's ceiling),
         "r_reference": the same for the reference frames (what copying scores, about 0),
         "videos", "frames"}.
    """
    root = Path(root)
    fps = dataset_fps(root)
    generator.eval()
    device = resolve_device(device) if isinstance(device, str) else device
    scores = {"generated": [], "ground_truth": [], "reference": []}
    total = 0
    for video in load_videos(root, filelist):
        truth = np.load(video.path / "openings.npy")
        mel = read_mel(video.path)
        frames = [k for k in video.frames
                  if k >= 1 and indiv_mel_start(k, fps) + MEL_STEP_SIZE <= mel.shape[1]
                  and k < len(truth)][::frame_step]
        images = {k: cv2.imread(str(video.path / f"{k}.jpg")) for k in video.frames}
        n = len(video.frames)
        measured = {"generated": [], "ground_truth": [], "reference": []}
        for i in range(0, len(frames), batch_size):
            chunk = frames[i : i + batch_size]
            gt = np.stack([images[k] for k in chunk])
            ref = np.stack([images[video.frames[(video.frames.index(k) + n // 2) % n]]
                            for k in chunk])
            face = torch.from_numpy(np.concatenate([gt, ref], axis=3)).float() / 255.0
            face = face.permute(0, 3, 1, 2).contiguous()
            face[:, :3, IMG_SIZE // 2 :] = 0.0
            mels = np.stack([mel[:, indiv_mel_start(k, fps) :][:, :MEL_STEP_SIZE]
                             for k in chunk])
            out = generator(torch.from_numpy(mels[:, None]).float().to(device), face.to(device))
            out = out.float().clamp(0, 1).mul(255).permute(0, 2, 3, 1).cpu().numpy()
            measured["generated"].append(mouth_opening(out))
            measured["ground_truth"].append(mouth_opening(gt))
            measured["reference"].append(mouth_opening(ref))
        target = truth[frames]
        for name, parts in measured.items():
            scores[name].append(_pearson(np.concatenate(parts), target))
        total += len(frames)
    result = {f"r_{name}": _finite_mean(values) for name, values in scores.items()}
    result.update(videos=len(scores["generated"]), frames=total)
    return result

"""Routing benchmark films, built from the shared clips with the ground truth known by construction.

Every film is a sequence of shots; a shot shows one to three *panels* side by side (a talking-head
clip, or a still photo that drifts or nods: a listener), and *lines* say who speaks when. A line
spoken by a panel puts that clip's own audio into the film's original mix at the clip's own time,
so the face and the original audio are in sync exactly where the truth says that face speaks; an
off-screen line puts a recording nobody on screen speaks. Every talking-head panel keeps talking
(its lips move) whether or not its audio is heard: only the audio says who speaks, as in the
hardest real case (a listener who mouths along, chews or nods).

The dubbed stems are *other* recordings (other voices, other words) placed over each character's
lines, as a dub in another language would be: they say *when* a character speaks, never how the
lips move.

Nothing here is committed media: films are written to a temporary folder from ``../shared/media``.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

RATE = 48000
FPS = 25
SIZE = (640, 360)
DUB_VOICES = ["en_librispeech_spk1320__rtvc.mp3", "en_vctk_p240__rtvc.mp3",
              "en_librispeech_spk6829__rtvc.mp3", "en_vctk_p260__rtvc.mp3"]
OFF_SCREEN_VOICES = ["en_ljspeech_LJ001-0001__coqui.wav", "en_librispeech_spk3575__rtvc.mp3",
                     "en_librispeech_spk8230__rtvc.mp3"]

FLAG = "talkinghead_woman_flag__vretalk_face3.mp4"  # 5.0 s, 25 fps
BLUE = "talkinghead_woman_bluebg_30fps__vretalk_face4.mp4"  # 6.6 s, 30 fps
SUIT = "talkinghead_man_suit_VFR__vretalk_face1.mp4"  # 6.1 s, VFR
INTERVIEW = "talkinghead_man_interview_offcamera_720p__ghost_obama_short.mp4"  # 6.9 s, 3/4 view
SEATED = "talkinghead_woman_seated_HEVC_portrait__latentsync_demo1.mp4"  # 10 s, small face
SPLIT = "two_people_splitscreen__ghost_2person.mp4"  # 8.8 s, right-hand man speaks, guitar
PHOTO = "one_face_frontal__facerec_obama.jpg"
PHOTO2 = "one_face_lowres_256__sadtalker_happy.png"


@dataclass
class Panel:
    """What one part of the picture shows.

    Attributes:
        source: a clip in ``media/video`` or a photo in ``media/images``.
        offset: seconds into the clip at the start of the shot.
        motion: for photos: "drift" (slow push-in) or "nod" (head nods, a listener agreeing).
        microphone: seconds of the shot (from, to) during which a microphone hides the mouth.
    """

    source: str
    offset: float = 0.0
    motion: str = "drift"
    microphone: tuple[float, float] | None = None


@dataclass
class Line:
    """A character speaking from ``start`` to ``end`` (seconds from the shot's start).

    ``panel``: whose own audio it is (that face speaks), or None for an off-screen voice.
    ``region``: the speaking face's horizontal span as fractions of the picture width, where it
    is not the whole panel (a two-person clip in one panel).
    """

    character: str
    start: float
    end: float
    panel: int | None
    region: tuple[float, float] | None = None


@dataclass
class ShotSpec:
    seconds: float
    panels: list[Panel]
    lines: list[Line] = field(default_factory=list)


@dataclass
class Case:
    name: str
    what: str
    shots: list[ShotSpec]
    music: float = 0.0  # RMS of a synthetic music bed under the original mix (0: none)


@dataclass
class Truth:
    """Ground truth per character: for every frame, the speaking face's x-span in pixels or None
    (the character speaks off screen or not at all), and the frames the character speaks in."""

    frames: int
    speaking: dict[str, np.ndarray]  # character -> bool per frame
    region: dict[str, np.ndarray]  # character -> (frames, 2) x-span, NaN when off screen


CASES: list[Case] = [
    Case("side_by_side", "two talking faces, only the audio says the left one speaks",
         [ShotSpec(4.8, [Panel(FLAG), Panel(BLUE)], [Line("anna", 0.2, 4.6, 0)])]),
    Case("side_by_side_swapped", "the same two faces, now the right one is heard",
         [ShotSpec(4.8, [Panel(FLAG), Panel(BLUE)], [Line("anna", 0.2, 4.6, 1)])]),
    Case("alternation", "two faces taking turns three times, two characters",
         [ShotSpec(6.5, [Panel(INTERVIEW), Panel(BLUE)],
                   [Line("anna", 0.1, 2.0, 0), Line("ben", 2.2, 4.2, 1),
                    Line("anna", 4.4, 6.4, 0)])]),
    Case("cuts_between_speakers", "hard cuts between lone speakers, three characters",
         [ShotSpec(4.0, [Panel(FLAG)], [Line("anna", 0.2, 3.9, 0)]),
          ShotSpec(4.0, [Panel(SEATED, 2.0)], [Line("ben", 0.1, 3.8, 0)]),
          ShotSpec(4.0, [Panel(SUIT, 1.0)], [Line("carl", 0.1, 3.9, 0)])]),
    Case("lone_listener", "the speaker's line goes on over a cut to a listener",
         [ShotSpec(3.0, [Panel(FLAG)], [Line("anna", 0.3, 3.0, 0)]),
          ShotSpec(3.0, [Panel(PHOTO, motion="nod")], [Line("anna", 0.0, 2.6, None)])]),
    Case("narrator", "an off-screen narrator over a face that says nothing",
         [ShotSpec(3.5, [Panel(PHOTO2, motion="drift")], [Line("nora", 0.3, 3.3, None)]),
          ShotSpec(3.5, [Panel(BLUE, 1.0)], [Line("nora", 0.2, 3.3, None)])]),
    Case("three_faces", "three talking faces; the middle one, then the right one speaks",
         [ShotSpec(4.9, [Panel(FLAG), Panel(BLUE), Panel(SUIT)],
                   [Line("anna", 0.2, 2.3, 1), Line("ben", 2.5, 4.8, 2)])]),
    Case("nodding_listener", "a nodding listener beside a speaker",
         [ShotSpec(5.0, [Panel(PHOTO, motion="nod"), Panel(SUIT)],
                   [Line("ben", 0.2, 4.9, 1)])]),
    Case("overlap", "two characters talk over each other for a second",
         [ShotSpec(4.9, [Panel(FLAG), Panel(BLUE)],
                   [Line("anna", 0.2, 2.8, 0), Line("ben", 1.8, 4.8, 1)])]),
    Case("three_quarter_view", "a speaker looking off camera, a talking face beside",
         [ShotSpec(5.5, [Panel(BLUE), Panel(INTERVIEW, 1.0)], [Line("ben", 0.2, 5.3, 1)])]),
    Case("microphone", "a lone speaker whose mouth a microphone hides for a second and a half",
         [ShotSpec(4.8, [Panel(FLAG, microphone=(1.5, 3.0))], [Line("anna", 0.2, 4.6, 0)])]),
    Case("short_shot", "a 0.3 s insert of the other speaker between two shots",
         [ShotSpec(2.5, [Panel(FLAG)], [Line("anna", 0.2, 2.5, 0)]),
          ShotSpec(0.32, [Panel(BLUE, 2.0)], [Line("ben", 0.0, 0.32, 0)]),
          ShotSpec(2.2, [Panel(FLAG, 2.5)], [Line("anna", 0.0, 2.0, 0)])]),
    Case("music_under_dialogue", "two talking faces, the right one heard over a music bed",
         [ShotSpec(5.5, [Panel(BLUE), Panel(SUIT)], [Line("ben", 0.2, 5.3, 1)])], music=0.05),
    Case("split_screen_real", "the real split-screen clip: the right-hand man talks over a guitar",
         [ShotSpec(8.0, [Panel(SPLIT)], [Line("ben", 0.3, 7.8, 0, region=(0.5, 1.0))])]),
]


def _panel_pictures(media: Path, panel: Panel, seconds: float, size: tuple[int, int],
                    rng: np.random.Generator) -> list[np.ndarray]:
    """The panel's pictures at FPS for ``seconds``, letterboxed into ``size``."""
    n = int(round(seconds * FPS))
    if panel.source.endswith((".jpg", ".png")):
        photo = cv2.imread(str(media / "images" / panel.source))
        out = []
        for i in range(n):
            t = i / FPS
            if panel.motion == "nod":  # a nod every 1.2 s, about a tenth of the face's height
                dy, zoom = 0.04 * photo.shape[0] * np.sin(2 * np.pi * t / 1.2) ** 2, 1.0
            else:
                dy, zoom = 0.0, 1.0 + 0.02 * t
            m = np.float32([[zoom, 0, (1 - zoom) * photo.shape[1] / 2],
                            [0, zoom, (1 - zoom) * photo.shape[0] / 2 + dy]])
            moved = cv2.warpAffine(photo, m, (photo.shape[1], photo.shape[0]),
                                   borderMode=cv2.BORDER_REFLECT)
            out.append(_letterbox(moved, *size))
        return out
    with av.open(str(media / "video" / panel.source)) as src:
        stream = src.streams.video[0]
        decoded = [(float(f.pts * f.time_base), _letterbox(f.to_ndarray(format="bgr24"), *size))
                   for f in src.decode(stream)]
    first = decoded[0][0]
    times = np.array([t - first for t, _ in decoded])
    pictures = []
    for i in range(n):
        t = panel.offset + i / FPS
        k = int(np.searchsorted(times, t + 1e-6) - 1)
        if k >= len(decoded) - 1 and t > times[-1] + 0.1:
            raise ValueError(f"{panel.source}: {t:.2f} s is past its end")
        picture = decoded[max(k, 0)][1].copy()
        if panel.microphone and panel.microphone[0] <= i / FPS < panel.microphone[1]:
            _draw_microphone(picture)
        pictures.append(picture)
    return pictures


def _draw_microphone(picture: np.ndarray) -> None:
    """A dark microphone in front of the lower middle of the picture (where the mouth is)."""
    h, w = picture.shape[:2]
    cx, cy = w // 2, int(h * 0.66)
    cv2.ellipse(picture, (cx, cy), (int(w * 0.09), int(h * 0.09)), 0, 0, 360, (30, 30, 30), -1)
    cv2.rectangle(picture, (cx - int(w * 0.03), cy), (cx + int(w * 0.03), h), (20, 20, 20), -1)


def _letterbox(bgr: np.ndarray, width: int, height: int) -> np.ndarray:
    scale = min(width / bgr.shape[1], height / bgr.shape[0])
    w, h = max(2, int(bgr.shape[1] * scale)), max(2, int(bgr.shape[0] * scale))
    out = np.zeros((height, width, 3), np.uint8)
    y, x = (height - h) // 2, (width - w) // 2
    out[y : y + h, x : x + w] = cv2.resize(bgr, (w, h), interpolation=cv2.INTER_AREA)
    return out


_audio_cache: dict[str, np.ndarray] = {}


def _audio(path: Path) -> np.ndarray:
    from lipdub.pipeline.audio import read_audio

    if str(path) not in _audio_cache:
        _audio_cache[str(path)] = read_audio(path, RATE).samples.astype(np.float32)
    return _audio_cache[str(path)]


def _place(track: np.ndarray, at: float, samples: np.ndarray, seconds: float) -> None:
    """Add ``seconds`` of ``samples`` at ``at`` (short fades, no clicks)."""
    n = min(int(seconds * RATE), len(samples), len(track) - int(at * RATE))
    piece = samples[:n].copy()
    fade = min(480, n // 2)
    if fade:
        ramp = np.linspace(0, 1, fade, dtype=np.float32)
        piece[:fade] *= ramp
        piece[-fade:] *= ramp[::-1]
    start = int(at * RATE)
    track[start : start + n] += piece


def _speech(media: Path, names: list[str], seconds: float, skip: float = 0.0) -> np.ndarray:
    """``seconds`` of speech from the recordings ``names`` in turn (leading silence trimmed)."""
    parts, have = [], 0
    while have < seconds * RATE:
        for name in names:
            audio = _audio(media / "audio" / name)
            loud = np.flatnonzero(np.abs(audio) > 0.02)
            audio = audio[loud[0] : loud[-1] + 1] if len(loud) else audio
            parts.append(audio[int(skip * RATE):] if not parts else audio)
            have += len(parts[-1])
            if have >= seconds * RATE:
                break
    return np.concatenate(parts)[: int(seconds * RATE)]


def _music(seconds: float, level: float, rng: np.random.Generator) -> np.ndarray:
    """A music bed: sustained chords changing every second, and a soft beat (synthetic)."""
    t = np.arange(int(seconds * RATE)) / RATE
    out = np.zeros_like(t)
    roots = [220.0, 174.6, 196.0, 261.6]
    for k in range(int(np.ceil(seconds))):
        part = (t >= k) & (t < k + 1)
        for ratio in (1.0, 1.26, 1.5, 2.0):
            out[part] += np.sin(2 * np.pi * roots[k % 4] * ratio * t[part])
    beat = np.exp(-((t % 0.5) / 0.03)) * rng.standard_normal(len(t)) * 0.7
    out = out + beat
    return (level * out / np.sqrt(np.mean(out**2))).astype(np.float32)


def build_case(case: Case, media: Path, folder: Path) -> tuple[Path, dict[str, Path], Truth]:
    """Write the case's film (H.264 + AAC with the original mix) and one dub stem per character.

    Returns:
        (film path, {character: stem path}, the truth).
    """
    from lipdub.pipeline.media.decode import audio_lead

    rng = np.random.default_rng(zlib.crc32(case.name.encode()))  # the same film every run
    folder.mkdir(parents=True, exist_ok=True)
    total_frames = sum(int(round(s.seconds * FPS)) for s in case.shots)
    seconds = total_frames / FPS
    original = np.zeros(int(seconds * RATE) + RATE, np.float32)
    characters = sorted({line.character for s in case.shots for line in s.lines})
    stems = {c: np.zeros_like(original) for c in characters}
    dub_used = {c: 0.0 for c in characters}
    speaking = {c: np.zeros(total_frames, bool) for c in characters}
    region = {c: np.full((total_frames, 2), np.nan) for c in characters}
    off_screen = 0
    film = folder / f"{case.name}.mp4"
    with av.open(str(film), "w") as out:
        video = out.add_stream("libx264", rate=FPS, options={"crf": "18", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = SIZE[0], SIZE[1], "yuv420p"
        audio = out.add_stream("aac", rate=RATE, layout="mono")
        first = 0
        for shot in case.shots:
            n = int(round(shot.seconds * FPS))
            width = SIZE[0] // len(shot.panels)
            pictures = [_panel_pictures(media, p, shot.seconds, (width, SIZE[1]), rng)
                        for p in shot.panels]
            for i in range(n):
                frame = np.concatenate([p[i] for p in pictures], axis=1)
                frame = np.ascontiguousarray(cv2.resize(frame, SIZE) if frame.shape[1] != SIZE[0]
                                             else frame)
                vf = av.VideoFrame.from_ndarray(frame, format="bgr24").reformat(format="yuv420p")
                vf.pts, vf.time_base = first + i, Fraction(1, FPS)
                for packet in video.encode(vf):
                    out.mux(packet)
            t0 = first / FPS
            for line in shot.lines:
                length = line.end - line.start
                if line.panel is None:
                    voice = OFF_SCREEN_VOICES[off_screen % len(OFF_SCREEN_VOICES)]
                    off_screen += 1
                    _place(original, t0 + line.start, _speech(media, [voice], length), length)
                else:
                    panel = shot.panels[line.panel]
                    clip = _audio(media / "video" / panel.source)
                    lead = audio_lead(media / "video" / panel.source)  # audio before picture
                    at = int((panel.offset + line.start + lead) * RATE)
                    _place(original, t0 + line.start, clip[at:], length)
                    lo, hi = line.region or (line.panel / len(shot.panels),
                                             (line.panel + 1) / len(shot.panels))
                    a, b = first + int(round(line.start * FPS)), first + int(round(line.end * FPS))
                    region[line.character][a:b] = (lo * SIZE[0], hi * SIZE[0])
                a, b = first + int(round(line.start * FPS)), first + int(round(line.end * FPS))
                speaking[line.character][a:b] = True
                voice = DUB_VOICES[characters.index(line.character) % len(DUB_VOICES)]
                dub = _speech(media, [voice] + DUB_VOICES, length, skip=dub_used[line.character])
                dub_used[line.character] += length
                _place(stems[line.character], t0 + line.start, dub, length)
            first += n
        for packet in video.encode(None):
            out.mux(packet)
        if case.music:
            original += _music(len(original) / RATE, case.music, rng)
        write_audio(out, audio, original[: int(seconds * RATE)])
    stem_paths = {}
    for c, samples in stems.items():
        stem_paths[c] = folder / f"{case.name}_{c}.wav"
        with av.open(str(stem_paths[c]), "w", format="wav") as wav:
            stream = wav.add_stream("pcm_s16le", rate=RATE, layout="mono")
            write_audio(wav, stream, samples[: int(seconds * RATE)])
    return film, stem_paths, Truth(total_frames, speaking, region)


def write_audio(container, stream, samples: np.ndarray) -> None:
    """Encode mono samples (float, -1..1) into ``stream`` (AAC or 16-bit PCM) and flush it."""
    fmt = "fltp" if stream.codec_context.name == "aac" else "s16"
    data = np.clip(samples, -1, 1)[None]
    data = data.astype(np.float32) if fmt == "fltp" else (data * 32767).astype(np.int16)
    step = 1024
    for k in range(0, data.shape[1], step):
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data[:, k : k + step]),
                                           format=fmt, layout="mono")
        frame.sample_rate, frame.pts = RATE, k
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)

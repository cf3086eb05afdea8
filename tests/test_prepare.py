"""``lipdub prepare``: frame-rate resampling by timestamps, audio alignment, filelists split by
group, resuming, failures reported; and a real clip through our detector and tracker."""

from __future__ import annotations

import json
import os
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest

from lipdub.cli.main import main as cli_main
from lipdub.pipeline.audio import melspectrogram, read_audio
from lipdub.training.data import GeneratorDataset, list_frames
from lipdub.training.prepare import PrepareOptions, prepare_dataset, resample_indices

GREY_STEP = 4
SIZE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_clip(path, fps: int, frames: int, audio: bool = True, rate: int = 44100):
    """A lossless clip whose frame i is a flat grey of 4i, with a 440 Hz tone (or no audio)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video = container.add_stream("ffv1", rate=fps)
        video.width = video.height = SIZE
        video.pix_fmt = "yuv444p"
        sound = None
        if audio:
            sound = container.add_stream("flac", rate=rate)
            sound.layout = "mono"
        for i in range(frames):
            image = np.full((SIZE, SIZE, 3), GREY_STEP * i, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, fps)
            for packet in video.encode(frame):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if sound is not None:
            n = int(rate * frames / fps)
            tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / rate) * 32767).astype(np.int16)
            chunk = 4096
            for start in range(0, n, chunk):
                piece = av.AudioFrame.from_ndarray(tone[None, start : start + chunk],
                                                   format="s16", layout="mono")
                piece.sample_rate = rate
                piece.pts = start
                for packet in sound.encode(piece):
                    container.mux(packet)
            for packet in sound.encode():
                container.mux(packet)
    return path


def grey_index(path) -> int:
    value = float(cv2.imread(str(path)).mean())
    index = round(value / GREY_STEP)
    assert abs(value - GREY_STEP * index) < 1.6, (path, value)
    return index


def box_options(**kw) -> PrepareOptions:
    return PrepareOptions(face="box", face_box=(4, 4, 60, 60), progress=False, **kw)


def test_resample_indices():
    t30 = np.arange(60) / 30
    assert list(resample_indices(t30, 25, 1 / 30)) == [int(k * 30 / 25) for k in range(50)]
    t25 = 3.2 + np.arange(50) / 25  # a late first frame, and a 1/12800 time base rounding
    t25 = np.round(t25 * 12800) / 12800
    assert list(resample_indices(t25, 25, 1 / 25)) == list(range(50))
    vfr = np.array([0.0, 0.03, 0.1, 0.11, 0.2])  # variable: the frame shown at each k/25
    assert list(resample_indices(vfr, 25, 0.04)) == [0, 1, 1, 3, 3, 4]


@pytest.fixture
def clips(tmp_path):
    source = tmp_path / "src"
    write_clip(source / "g1" / "a.mkv", fps=30, frames=60)
    write_clip(source / "g2" / "b.mkv", fps=25, frames=50)
    write_clip(source / "g3" / "silent.mkv", fps=25, frames=30, audio=False)
    return source


def test_prepare_resamples_aligns_splits_and_resumes(clips, tmp_path):
    out = tmp_path / "data"
    report = prepare_dataset(clips, out, box_options(val_fraction=0.5))
    assert (report.found, report.prepared, report.skipped) == (3, 2, 0)
    assert len(report.failed) == 1 and "silent.mkv" in report.failed[0][0]
    assert "no audio stream" in report.failed[0][1]
    assert not (out / "g3").exists() and not list(out.rglob("*.partial"))

    # 30 fps -> 25 fps by timestamps: output frame k shows source frame floor(1.2 k).
    a = out / "g1" / "a"
    assert list_frames(a) == tuple(range(50))
    assert [grey_index(a / f"{k}.jpg") for k in range(50)] == [int(k * 1.2) for k in range(50)]
    assert cv2.imread(str(a / "0.jpg")).shape == (96, 96, 3)
    b = out / "g2" / "b"
    assert [grey_index(b / f"{k}.jpg") for k in range(50)] == list(range(50))

    # The audio starts with the first picture; mel.npy is its mel.
    samples = read_audio(a / "audio.wav").samples
    assert abs(len(samples) - 32000) < 400
    np.testing.assert_allclose(np.load(a / "mel.npy"), melspectrogram(samples), atol=1e-5)

    # One group per list; the dataset says its frame rate.
    lists = {name: (out / f"{name}.txt").read_text().split() for name in ("train", "val")}
    assert sorted(lists["train"] + lists["val"]) == ["g1/a", "g2/b"]
    assert lists["train"] and lists["val"]
    assert json.loads((out / "dataset.json").read_text())["fps"] == 25.0
    assert GeneratorDataset(out, "train.txt")[0][0].shape == (6, 5, 96, 96)

    # A second run skips finished videos and redoes an interrupted one.
    stamp = os.stat(b / "10.jpg").st_mtime_ns
    (a.with_name("a.partial")).mkdir()
    (a.with_name("a.partial") / "junk.jpg").write_bytes(b"x")
    import shutil

    shutil.rmtree(a)
    again = prepare_dataset(clips, out, box_options(val_fraction=0.5))
    assert (again.prepared, again.skipped) == (1, 1)
    assert os.stat(b / "10.jpg").st_mtime_ns == stamp
    assert list_frames(a) == tuple(range(50)) and not a.with_name("a.partial").exists()


def test_prepare_refuses_to_mix_frame_rates(clips, tmp_path):
    out = tmp_path / "data"
    prepare_dataset(clips / "g2", out, box_options())
    with pytest.raises(Exception, match="25.0 fps dataset"):
        prepare_dataset(clips / "g2", out, box_options(fps=30))


def test_prepare_a_real_clip_with_our_detector(media_dir, detector_weights, tmp_path, capsys):
    clip = media_dir / "video" / "talkinghead_woman_bluebg_30fps__vretalk_face4.mp4"
    out = tmp_path / "real"
    code = cli_main(["prepare", "videos", str(clip), str(out), "--detector",
                     str(detector_weights), "--device", "cpu", "--no-progress",
                     "--val-fraction", "0"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["prepared"] == 1 and report["train"] == 1
    folder = out / clip.stem
    meta = json.loads((folder / "meta.json").read_text())
    # 199 frames at 30 fps (6.63 s) become 165 at 25 fps; the face is found in every one.
    assert meta["source_frames"] == 199 and meta["frames_total"] == 165
    assert meta["frames"] == 165 and meta["face_tracks"] >= 1
    crop = cv2.imread(str(folder / "80.jpg"))
    assert crop.shape == (96, 96, 3)
    # A face crop, not background: the blue backdrop does not fill the middle of the crop.
    centre = crop[30:70, 30:70].reshape(-1, 3).mean(axis=0)
    assert centre[2] > centre[0], f"centre of the crop is not skin-toned: {centre}"

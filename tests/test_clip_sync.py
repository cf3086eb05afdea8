"""``lipdub sync`` end to end on the shared clips, with a synthetic generator checkpoint.

Every output is lossless (FFV1), so the test can check the promises exactly: the input's frame
count and timestamps, pixels outside the mouth mask identical to the decoded input, and pixels
inside equal to the model's output for that crop, composited as documented in
``pipeline/composite.py`` -- recomputed here independently by running the plain (unfused)
generator on the same crop.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from lipdub.models.wav2lip import Wav2Lip
from lipdub.models.weights import load_weights
from lipdub.pipeline.audio import load_audio, melspectrogram
from lipdub.pipeline.clip_sync import SyncOptions, sync_clip
from lipdub.pipeline.composite import lower_face_mask
from lipdub.pipeline.faces.detector import load_face_detector
from lipdub.pipeline.faces.face_plan import plan_boxes, scan_video
from lipdub.pipeline.generator import LipSyncModel
from lipdub.pipeline.media.decode import probe_video

DUB = "audio/en_vctk_p240__rtvc.mp3"
CLIPS = [
    "talkinghead_woman_flag__vretalk_face3.mp4",
    "talkinghead_woman_bluebg_30fps__vretalk_face4.mp4",
    "talkinghead_man_suit_VFR__vretalk_face1.mp4",
    "talkinghead_man_interview_offcamera_720p__ghost_obama_short.mp4",
    "talkinghead_woman_seated_HEVC_portrait__latentsync_demo1.mp4",
    "talkinghead_man_selfie_NO_AUDIO_STREAM__liveportrait_d13.mp4",
    "two_people_splitscreen__ghost_2person.mp4",
    "crowd_many_faces_no_speech_1080p__facenet_video.mp4",
]


@pytest.fixture(scope="module")
def model(synthetic_generator):
    return LipSyncModel(synthetic_generator, device="cpu", precision="fp32")


@pytest.fixture(scope="module")
def raw_generator(synthetic_generator):
    """The generator exactly as the checkpoint defines it (no BatchNorm folding)."""
    return load_weights(Wav2Lip(), synthetic_generator).eval()


@pytest.fixture(scope="module")
def detector(detector_weights):
    return load_face_detector(detector_weights)


def decode(path: Path) -> tuple[list[float], list[av.VideoFrame]]:
    with av.open(str(path)) as container:
        frames = list(container.decode(video=0))
    return [float(f.pts * f.time_base) for f in frames], frames


def planes(frame: av.VideoFrame) -> list[np.ndarray]:
    return [np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, : p.width]
            for p in frame.planes]


def expected_composite(frame_bgr, box, mel_chunk, generator) -> tuple[np.ndarray, np.ndarray]:
    """The documented composite of the model's output for this crop, computed from scratch."""
    x0, y0, x1, y1 = box
    region = frame_bgr[y0:y1, x0:x1].astype(np.float32)
    crop = cv2.resize(frame_bgr[y0:y1, x0:x1], (96, 96))
    masked = crop.copy()
    masked[48:] = 0
    x = np.concatenate([masked, crop], axis=2).transpose(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        pred = generator(torch.from_numpy(mel_chunk[None, None]), torch.from_numpy(x).float())
    pred = pred[0].permute(1, 2, 0).numpy() * 255.0
    resized = cv2.resize(pred, (x1 - x0, y1 - y0))
    m = lower_face_mask(y1 - y0, x1 - x0)
    weight = (m * (1 - m) * 4)[..., None]
    offset = ((region - resized) * weight).sum(axis=(0, 1)) / weight.sum()
    out = region * (1 - m[..., None]) + (resized + offset) * m[..., None]
    return np.clip(np.rint(out), 0, 255), m


def run(media_dir, tmp_path, clip, model, detector, dub=None, **kw) -> tuple[Path, dict]:
    out = tmp_path / (Path(clip).stem + kw.pop("suffix", ".mkv"))
    options = SyncOptions(progress=False, batch_size=16, **kw)
    video = media_dir / clip if not Path(clip).is_absolute() else Path(clip)
    sync_clip(video, dub or media_dir / DUB, out, options, model=model, detector=detector)
    return out, json.loads(Path(str(out) + ".json").read_text())


@pytest.mark.parametrize("clip", CLIPS, ids=[c.split("__")[0] for c in CLIPS])
def test_every_clip_is_frame_exact_and_only_the_mouth_changes(
    clip, media_dir, tmp_path, model, raw_generator, detector
):
    out, summary = run(media_dir, tmp_path, "video/" + clip, model, detector)
    in_times, in_frames = decode(media_dir / "video" / clip)
    out_times, out_frames = decode(out)

    # Same frames at the same times (Matroska stores milliseconds).
    assert len(out_frames) == len(in_frames) == summary["frames"]
    np.testing.assert_allclose(out_times, in_times, atol=6e-4)
    assert (out_frames[0].width, out_frames[0].height) == (in_frames[0].width, in_frames[0].height)
    assert summary["frames_synced"] > 0.8 * summary["frames"]

    boxes = {b[0]: tuple(b[1:]) for b in summary["face_boxes"]}
    # Outside each synced box, and in every frame passed through, the samples are the source's.
    for i, (a, b) in enumerate(zip(in_frames, out_frames)):
        diff = [pa != pb for pa, pb in zip(planes(a), planes(b))]
        if i not in boxes:
            assert not any(d.any() for d in diff), f"frame {i} was not synced but changed"
            continue
        x0, y0, x1, y1 = boxes[i]
        ys, xs = np.nonzero(diff[0])
        assert len(ys) > 0, f"frame {i}: synced but no pixel changed"
        assert xs.min() >= x0 and xs.max() < x1 and ys.min() >= y0 and ys.max() < y1

    # Inside: the model's output for that very crop, composited as documented.
    mel = melspectrogram(np.pad(load_audio(media_dir / DUB), (0, 16000 * 20)))
    for i in list(boxes)[:: max(1, len(boxes) // 2)][:2]:
        t = in_times[i] - in_times[0]
        start = int(np.floor(t * 80 + 1e-9))
        want, m = expected_composite(
            in_frames[i].to_ndarray(format="bgr24"), boxes[i], mel[:, start : start + 16],
            raw_generator,
        )
        x0, y0, x1, y1 = boxes[i]
        # Compare luma: the output is stored as YUV, so convert the expected pixels the way any
        # BGR picture is stored (libswscale, the source's colour matrix); 4:2:0 chroma would
        # blur a noisy synthetic mouth too much to compare pixel by pixel.
        region = in_frames[i].to_ndarray(format="bgr24")
        ax0, ay0 = x0 - x0 % 2, y0 - y0 % 2
        region = region[ay0 : y1 + y1 % 2, ax0 : x1 + x1 % 2].copy()
        region[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0] = want.astype(np.uint8)
        want_y = planes(
            av.VideoFrame.from_ndarray(region, format="bgr24").reformat(
                format="yuv420p", dst_colorspace=in_frames[i].colorspace
            )
        )[0][y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0].astype(int)
        got_y = planes(out_frames[i])[0][y0:y1, x0:x1].astype(int)
        src_y = planes(in_frames[i])[0][y0:y1, x0:x1].astype(int)
        inside = m > 0
        err = np.abs(got_y - want_y)[inside]
        assert err.max() <= 1, f"frame {i}: luma differs by up to {err.max()}"
        # ...and the check has teeth: the untouched source is far from the expected mouth.
        assert np.abs(src_y - want_y)[m > 0.5].mean() > 5


def test_no_audio_stream_clip_with_external_audio_and_silent_dub(
    media_dir, tmp_path, model, detector
):
    silent = tmp_path / "silence.wav"
    with av.open(str(silent), "w") as f:
        stream = f.add_stream("pcm_s16le", rate=48000, layout="stereo")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 2 * 48000 * 3), np.int16), format="s16",
                                           layout="stereo")
        frame.sample_rate = 48000
        for packet in stream.encode(frame):
            f.mux(packet)
        f.mux(stream.encode(None))
    clip = "video/talkinghead_man_selfie_NO_AUDIO_STREAM__liveportrait_d13.mp4"
    out, summary = run(media_dir, tmp_path, clip, model, detector, dub=silent, suffix=".mp4")
    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1 and c.streams.audio[0].codec_context.name == "aac"
        samples = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    assert np.abs(samples).max() < 1e-3  # digital silence stays silence
    report = summary["audio_report"]
    assert report["padded_seconds"] == pytest.approx(352 / 30 - 3.0, abs=0.05)
    assert report["cut_seconds"] == 0


def test_still_image_input(media_dir, tmp_path, model, detector):
    out, summary = run(media_dir, tmp_path, "images/one_face_frontal__facerec_obama.jpg", model,
                       detector, still_fps=25.0)
    times, frames = decode(out)
    dub_seconds = len(load_audio(media_dir / DUB)) / 16000
    assert len(frames) == summary["frames"] == int(np.ceil(dub_seconds * 25))
    np.testing.assert_allclose(times, np.arange(len(frames)) / 25, atol=6e-4)
    assert summary["frames_synced"] == len(frames)
    # FFV1 keeps the exact size and the JPEG's own chroma (4:4:4), nothing padded.
    assert (frames[0].width, frames[0].height, frames[0].format.name) == (910, 1137, "yuv444p")
    assert summary["size_note"] == ""


@pytest.mark.parametrize("index", [0, 1])
def test_face_choice_on_two_faces(media_dir, tmp_path, model, detector, index):
    clip = "video/two_people_splitscreen__ghost_2person.mp4"
    out, summary = run(media_dir, tmp_path, clip, model, detector, face="index", face_index=index)
    centres = [(b[1] + b[3]) / 2 for b in summary["face_boxes"]]
    # The split screen: person 0 on the left half, person 1 on the right half (and a face was
    # followed at all: all() of nothing is true).
    assert summary["frames_synced"] > 0 and len(centres) >= summary["frames_synced"], summary
    assert all((c < 640) == (index == 0) for c in centres)


def test_face_choice_by_point_and_fixed_box(media_dir, tmp_path, model, detector):
    clip = "video/two_people_splitscreen__ghost_2person.mp4"
    _, by_point = run(media_dir, tmp_path, clip, model, detector, face="point",
                      face_point=(960.0, 300.0))
    assert by_point["frames_synced"] > 0 and by_point["face_boxes"], by_point
    assert all((b[1] + b[3]) / 2 > 640 for b in by_point["face_boxes"])
    out, fixed = run(media_dir, tmp_path, clip, model, None, face="box",
                     face_box=(200, 150, 420, 400), suffix=".mov")
    assert {tuple(b[1:]) for b in fixed["face_boxes"]} == {(200, 150, 420, 400)}
    assert fixed["keyframes_detected"] == 0


def test_crowd_faces_are_counted_from_the_left(media_dir, tmp_path, model, detector):
    clip = "video/crowd_many_faces_no_speech_1080p__facenet_video.mp4"
    _, first = run(media_dir, tmp_path, clip, model, detector, face="index", face_index=0)
    _, second = run(media_dir, tmp_path, clip, model, detector, face="index", face_index=1,
                    suffix=".mov")
    assert first["face_tracks"] >= 4
    assert first["frames_synced"] > 0 and second["frames_synced"] > 0
    mean_x = [np.mean([(b[1] + b[3]) / 2 for b in s["face_boxes"]]) for s in (first, second)]
    assert mean_x[0] < mean_x[1]


def test_bf16_generator_stays_within_two_grey_levels_of_fp32(synthetic_generator,
                                                               raw_generator):
    """--precision bf16: weights converted once; compared with the checkpoint's own fp32 net."""
    rng = np.random.default_rng(11)
    faces = rng.integers(0, 256, (8, 96, 96, 3), dtype=np.uint8)
    mels = rng.uniform(-4, 4, (8, 80, 16)).astype(np.float32)
    bf16 = LipSyncModel(synthetic_generator, device="cpu", precision="bf16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    x = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255.0
    masked = x.clone()
    masked[:, :, 48:] = 0
    with torch.no_grad():
        fp32 = raw_generator(torch.from_numpy(mels)[:, None], torch.cat([masked, x], 1))
    fp32 = fp32.permute(0, 2, 3, 1).numpy() * 255.0
    diff = np.abs(bf16(mels, faces) - fp32)
    # Measured: max 2.1, mean 0.26 grey levels (benchmarks/RESULTS.md); a wrong cast is far off.
    assert diff.max() < 4.0 and diff.mean() < 0.5, (diff.max(), diff.mean())


def test_keyframes_are_refined_where_a_face_appears_or_jumps(media_dir, tmp_path, detector):
    """Every 4th frame is detected; an entrance and a cut between keyframes are found to the
    frame (the frames between are detected too), never interpolated across."""
    face = cv2.imread(str(media_dir / "images/one_face_lowres_256__sadtalker_happy.png"))
    path = tmp_path / "enter_and_cut.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"crf": "10"})
        stream.width, stream.height, stream.pix_fmt = 640, 360, "yuv420p"
        for i in range(34):
            canvas = np.full((360, 640, 3), 90, np.uint8)
            if 10 <= i < 22:
                canvas[52:308, 20:276] = face  # enters at frame 10, on the left
            elif i >= 22:
                canvas[52:308, 364:620] = face  # cut at frame 22: on the right
            frame = av.VideoFrame.from_ndarray(canvas, format="bgr24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    info = probe_video(path)
    options = SyncOptions(detect_every=4, progress=False)
    times, detections = scan_video(info, detector.detect, options)
    plan, _, _ = plan_boxes(len(times.times), detections, options, info)
    found = dict(detections)
    assert len(found) < 34  # the still stretches were not detected frame by frame
    assert {9, 10, 21, 22} <= found.keys()  # both sides of the entrance and of the cut
    assert [i for i in sorted(found) if len(found[i])] == [i for i in sorted(found) if i >= 10]
    centres = {i: (d.boxes[0, 0] + d.boxes[0, 2]) / 2 for i, d in found.items() if len(d)}
    assert all((20 < c < 276) if i < 22 else (364 < c < 620) for i, c in centres.items())
    # One face is chosen; its boxes start and end exactly where it was seen.
    covered = [i for i, box in enumerate(plan) if box is not None]
    assert covered in (list(range(10, 22)), list(range(22, 34)))

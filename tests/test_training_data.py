"""Training data windows and audio indices (spec §1.5, §3.3, §5.2), and the typed presets.

The tiny datasets here encode what was drawn in the data itself: frame k is a flat grey of value
6k, and ``mel.npy`` holds its own column index in every row, so a mel chunk's first value is the
column it starts at. Every rule is then checked on many draws.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from lipdub.pipeline.audio import indiv_mel_start, sync_mel_start
from lipdub.training.args import ArgsError, ExpertArgs, GeneratorArgs, load_args, preset_path
from lipdub.training.data import (
    DatasetError,
    ExpertDataset,
    GeneratorDataset,
    StepBatchSampler,
    dataset_fps,
    load_videos,
)

GREY_STEP = 6


def make_video(root, name, frames, mel_columns):
    folder = root / name
    folder.mkdir(parents=True)
    for k in frames:
        cv2.imwrite(str(folder / f"{k}.jpg"), np.full((96, 96, 3), GREY_STEP * k, np.uint8))
    np.save(folder / "mel.npy", np.tile(np.arange(mel_columns, dtype=np.float32), (80, 1)))
    return folder


def make_dataset(root, videos: dict, fps=None):
    """videos: name -> (frames, mel columns); every video goes in both lists."""
    for name, (frames, columns) in videos.items():
        make_video(root, name, frames, columns)
    (root / "train.txt").write_text("".join(f"{n}\n" for n in videos))
    (root / "val.txt").write_text("".join(f"{n}\n" for n in videos))
    if fps is not None:
        (root / "dataset.json").write_text(json.dumps({"fps": fps}))
    return root


def frame_of(channel: torch.Tensor) -> int:
    """The frame index a flat grey crop (or half crop) encodes."""
    value = float(channel.float().mean()) * 255.0
    index = round(value / GREY_STEP)
    assert abs(value - GREY_STEP * index) < 2.5, value
    return index


@pytest.fixture
def dataset_root(tmp_path):
    # 30 frames with a gap at 20 (windows starting 16..20 are invalid); audio for 1.0 s only,
    # so late windows are rejected for lack of mel columns; a second, complete video.
    frames = [k for k in range(30) if k != 20]
    return make_dataset(tmp_path / "ds", {
        "g1/a": (frames, 80),
        "g1/b": (list(range(25)), 200),
    })


def test_reference_index_formulas_at_25_fps():
    # int(80 * k / 25): the expert's chunk for a window starting at frame k...
    assert [sync_mel_start(k) for k in (0, 1, 2, 5, 7, 10, 24)] == [0, 3, 6, 16, 22, 32, 76]
    # ...and the generator's per-frame chunk, one frame earlier (the reference's +1 then -2).
    assert [indiv_mel_start(k) for k in (1, 2, 5, 7, 10)] == [0, 3, 12, 19, 28]
    assert all(indiv_mel_start(k) == sync_mel_start(k - 1) for k in range(1, 200))


def test_expert_samples_follow_the_reference_rules(dataset_root):
    ds = ExpertDataset(dataset_root, "train.txt", seed=3)
    assert ds.fps == 25.0
    positives = 0
    for i in range(200):
        draw, (x, mel, y) = ds.sample(i)
        video = ds.videos[draw.video]
        assert x.shape == (15, 48, 96) and x.dtype == torch.float32
        assert mel.shape == (1, 80, 16) and y.shape == (1,)
        # The audio always belongs to the drawn frame...
        assert mel[0, 0, 0] == sync_mel_start(draw.frame) == int(80.0 * (draw.frame / 25.0))
        assert mel[0, 0, 15] == sync_mel_start(draw.frame) + 15
        # ... the face window starts there (y=1) or at the other frame of the same video (y=0).
        assert draw.wrong != draw.frame
        assert draw.frame in video.frames and draw.wrong in video.frames
        assert float(y) == (1.0 if draw.positive else 0.0)
        start = draw.frame if draw.positive else draw.wrong
        seen = [frame_of(x[3 * t : 3 * t + 3]) for t in range(5)]
        assert seen == list(range(start, start + 5)), "5 consecutive frames, frame-major"
        assert all(k in video.frames for k in seen)
        positives += draw.positive
    assert 60 < positives < 140  # about half in sync


def test_expert_input_is_the_lower_half_in_bgr_order(tmp_path):
    root = tmp_path / "ds"
    folder = make_video(root, "v", range(20), 100)
    for k in range(20):  # top half blue-ish, bottom half with distinct B, G, R
        image = np.zeros((96, 96, 3), np.uint8)
        image[:48] = (200, 0, 0)
        image[48:] = (10, 120, 240)
        cv2.imwrite(str(folder / f"{k}.png"), image)
        cv2.imwrite(str(folder / f"{k}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 100])
    (root / "train.txt").write_text("v\n")
    x = ExpertDataset(root, "train.txt")[0][0]
    means = [float(x[c].mean()) * 255 for c in range(15)]
    assert np.allclose(means, [10, 120, 240] * 5, atol=4)


def test_generator_samples_follow_the_reference_rules(dataset_root):
    ds = GeneratorDataset(dataset_root, "train.txt", seed=5)
    for i in range(100):
        draw, (x, indiv, mel, gt) = ds.sample(i)
        video = ds.videos[draw.video]
        assert x.shape == (6, 5, 96, 96) and gt.shape == (3, 5, 96, 96)
        assert indiv.shape == (5, 1, 80, 16) and mel.shape == (1, 80, 16)
        assert draw.frame >= 1, "a window starting at frame 0 has no earlier chunk"
        # Per-frame chunks one frame earlier than inference; the sync chunk at the window start.
        for t in range(5):
            k = draw.frame + t
            assert indiv[t, 0, 0, 0] == indiv_mel_start(k) == int(80.0 * ((k - 1) / 25.0))
        assert mel[0, 0, 0] == sync_mel_start(draw.frame)
        # Target window: its own frames; masked copy zero below row 48; reference window from
        # the other frame of the same video.
        assert [frame_of(gt[:, t]) for t in range(5)] == list(range(draw.frame, draw.frame + 5))
        assert torch.equal(x[:3, :, :48], gt[:, :, :48])
        assert float(x[:3, :, 48:].abs().max()) == 0.0
        ref = [frame_of(x[3:, t]) for t in range(5)]
        assert ref == list(range(draw.wrong, draw.wrong + 5))
        assert all(k in video.frames for k in ref)


def test_windows_never_cross_a_gap_or_run_past_the_audio(dataset_root):
    ds = ExpertDataset(dataset_root, "train.txt", seed=11)
    starts = set()
    for i in range(400):
        draw, _ = ds.sample(i)
        if ds.videos[draw.video].name == "g1/a":
            starts.add(draw.window_start)
            # 80 mel columns: the chunk of frame f fits when int(3.2 f) + 16 <= 80, f <= 20.
            assert sync_mel_start(draw.frame) + 16 <= 80
    assert starts.isdisjoint({16, 17, 18, 19, 20}), "window across the missing frame 20"
    assert starts & {21, 22}, "windows after the gap are used"


def test_a_window_at_frame_zero_is_the_generators_only_reject(tmp_path):
    # The only run of 5 consecutive frames starts at 0: fine for the expert (and its audio),
    # impossible for the generator, whose first frame needs the chunk one frame earlier.
    frames = [0, 1, 2, 3, 4] + list(range(6, 40, 2))
    root = make_dataset(tmp_path / "ds", {"v": (frames, 400)})
    expert = ExpertDataset(root, "train.txt")
    assert {expert.sample(i)[0].window_start for i in range(50)} == {0}
    with pytest.raises(DatasetError, match="no valid window"):
        GeneratorDataset(root, "train.txt")[0]


def test_the_frame_rate_is_a_dataset_property(tmp_path):
    root = make_dataset(tmp_path / "ds30", {"v": (list(range(40)), 400)}, fps=30)
    assert dataset_fps(root) == 30.0
    ds = ExpertDataset(root, "train.txt")
    assert ds.fps == 30.0
    for i in range(50):
        draw, (_, mel, _) = ds.sample(i)
        assert mel[0, 0, 0] == int(80.0 * (draw.frame / 30.0))
    gen = GeneratorDataset(root, "train.txt")
    draw, (_, indiv, _, _) = gen.sample(0)
    assert indiv[0, 0, 0, 0] == int(80.0 * ((draw.frame - 1) / 30.0))
    assert ExpertDataset(root, "train.txt", fps=25).fps == 25.0  # an explicit override wins
    assert dataset_fps(tmp_path) == 25.0  # no dataset.json: the reference's 25


def test_draws_are_seeded_by_index_only(dataset_root):
    a = ExpertDataset(dataset_root, "train.txt", seed=1)
    b = ExpertDataset(dataset_root, "train.txt", seed=1)
    for i in (7, 3, 7, 0):  # any order, any instance: sample i is sample i
        assert all(torch.equal(u, v) for u, v in zip(a[i], b[i]))
    assert {a.sample(i)[0] for i in range(20)} != {a.sample(0)[0]}
    c = ExpertDataset(dataset_root, "train.txt", seed=2)
    assert [c.sample(i)[0] for i in range(10)] != [a.sample(i)[0] for i in range(10)]


def test_short_and_missing_videos_are_left_out(tmp_path):
    root = make_dataset(tmp_path / "ds", {"short": (list(range(15)), 100),
                                          "ok": (list(range(16)), 100)})
    (root / "train.txt").write_text("short\nok\nmissing\n")
    assert [v.name for v in load_videos(root, "train.txt")] == ["ok"]
    (root / "val.txt").write_text("short\n")
    with pytest.raises(DatasetError, match="15 frames"):
        load_videos(root, "val.txt")
    with pytest.raises(DatasetError, match="not found"):
        load_videos(root, "nope.txt")


def test_step_sampler_resumes_where_it_stopped():
    whole = list(StepBatchSampler(4, 0, 5))
    assert whole[1] == [4, 5, 6, 7]
    assert list(StepBatchSampler(4, 3, 5)) == whole[3:]
    assert len(StepBatchSampler(4, 3, 5)) == 2


# --- typed presets ------------------------------------------------------------------------------


PRESETS = sorted(p.stem for p in preset_path("expert").parent.glob("*.yaml"))


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_loads(name):
    cls = ExpertArgs if "expert" in name else GeneratorArgs
    overrides = ["data.root=/data"] + (["expert=e.pth"] if cls is GeneratorArgs else [])
    args = load_args(cls, name, overrides)
    assert args.data.root == "/data"
    assert args.lr > 0 and args.data.img_size == 96


def test_presets_hold_the_reference_hyperparameters():
    expert = load_args(ExpertArgs, "expert", ["data.root=x"])
    assert (expert.batch_size, expert.lr, expert.width_divisor) == (64, 1e-4, 1)
    gen = load_args(GeneratorArgs, "generator", ["data.root=x", "expert=e"])
    assert (gen.batch_size, gen.betas, gen.syncnet_wt, gen.gan) == (16, (0.9, 0.999), 0.01, False)
    assert (gen.sync_threshold, gen.syncnet_wt_initial, gen.expert_bn) == (0.75, 0.0, "train")
    gan = load_args(GeneratorArgs, "generator_gan", ["data.root=x", "expert=e"])
    assert (gan.betas, gan.syncnet_wt, gan.disc_wt, gan.gan) == ((0.5, 0.999), 0.03, 0.07, True)


def test_preset_errors_name_the_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  root: x\n  rooot: y\n")
    with pytest.raises(ArgsError, match=r"bad\.yaml: unknown key 'data\.rooot'"):
        load_args(ExpertArgs, bad)
    bad.write_text("data: {root: x}\nbatch_size: lots\n")
    with pytest.raises(ArgsError, match=r"key 'batch_size' must be int, got 'lots'"):
        load_args(ExpertArgs, bad)
    with pytest.raises(ArgsError, match=r"key 'betas' must be"):
        load_args(GeneratorArgs, None, ["data.root=x", "expert=e", "betas=[0.5]"])
    with pytest.raises(ArgsError, match="no such preset"):
        load_args(ExpertArgs, "nonexistent_preset")
    with pytest.raises(ArgsError, match="expected key=value"):
        load_args(ExpertArgs, None, ["data.root"])


def test_overrides_are_typed_and_problems_reported_together():
    args = load_args(GeneratorArgs, "generator",
                     ["data.root=/d", "expert=e", "lr=1e-5", "data.fps=30", "gan=true"])
    assert args.lr == 1e-5 and args.data.fps == 30.0 and args.gan is True
    with pytest.raises(ArgsError) as info:
        load_args(GeneratorArgs, None, ["batch_size=0", "expert_bn=frozen"])
    message = str(info.value)
    for part in ("batch_size must be >= 1", "data.root is not set", "expert is not set",
                 "expert_bn must be train or eval"):
        assert part in message

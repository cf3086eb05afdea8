"""A few steps of each trainer on a tiny synthetic dataset: they run, log, checkpoint, switch the
sync loss on, keep the expert frozen, and a resumed run ends bit for bit where an uninterrupted
one does. Networks are narrowed 16x (the paper's widths are the default elsewhere)."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch
from lse_reference import lse_by_definition

from lipdub.cli.main import main as cli_main
from lipdub.training.args import ExpertArgs, GeneratorArgs, load_args
from lipdub.training.checkpoints import checkpoint_path, read_weights_for
from lipdub.training.evaluate import evaluate_expert
from lipdub.training.logging_utils import read_metrics
from lipdub.training.networks import build_discriminator, build_expert, build_generator
from lipdub.training.synthetic import (
    SyntheticOptions,
    build_synthetic_dataset,
    mouth_opening,
    mouth_sync_correlation,
    random_identity,
    render_face,
)
from lipdub.training.train_generator import (
    adversarial_loss,
    generator_loss,
    reconstruction_loss,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    options = SyntheticOptions(train_identities=3, val_identities=1, videos_per_identity=1,
                               seconds=(1.2, 1.4), seed=1)
    summary = build_synthetic_dataset(root, options)
    assert summary["videos"] == {"train": 3, "val": 1}
    return root


def expert_args(root, out, **overrides) -> ExpertArgs:
    values = {"data.root": root, "data.num_workers": 0, "out_dir": out, "width_divisor": 16,
              "batch_size": 4, "max_steps": 4, "eval_interval": 2, "eval_batches": 2,
              "checkpoint_interval": 2, "log_interval": 1, "device": "cpu", "threads": 1,
              **overrides}
    return load_args(ExpertArgs, "expert", [f"{k}={v}" for k, v in values.items()])


def generator_args(root, out, expert, **overrides) -> GeneratorArgs:
    values = {"data.root": root, "data.num_workers": 0, "out_dir": out, "expert": expert,
              "width_divisor": 16, "batch_size": 2, "max_steps": 4, "eval_interval": 2,
              "eval_batches": 1, "checkpoint_interval": 2, "log_interval": 1, "device": "cpu",
              "threads": 1, "sample_count": 1, **overrides}
    return load_args(GeneratorArgs, "generator_gan", [f"{k}={v}" for k, v in values.items()])


def same_file_state(a, b) -> None:
    """Two checkpoints hold identical weights, optimizer state and counters."""
    x = torch.load(a, weights_only=True)
    y = torch.load(b, weights_only=True)
    assert (x["global_step"], x["global_epoch"]) == (y["global_step"], y["global_epoch"])
    for key, value in x["state_dict"].items():
        assert torch.equal(value, y["state_dict"][key]), key
    for index, state in x["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, y["optimizer"]["state"][index][name]), (index, name)


@pytest.fixture(scope="module")
def expert_run(tiny_data, tmp_path_factory):
    """4 expert steps through the CLI, the way a user starts a run."""
    out = tmp_path_factory.mktemp("expert")
    code = cli_main(["train", "expert", "--data", str(tiny_data), "--out", str(out),
                     "--width-divisor", "16", "--batch-size", "4", "--max-steps", "4",
                     "--device", "cpu", "--set", "eval_interval=2", "--set", "eval_batches=2",
                     "--set", "checkpoint_interval=2", "--set", "log_interval=1",
                     "--set", "data.num_workers=0", "--set", "threads=1"])
    assert code == 0
    return out


def test_expert_trains_logs_and_checkpoints(expert_run):
    names = sorted(p.name for p in expert_run.iterdir())
    assert "checkpoint_step000000001.pth" in names  # the reference also saves at step 1
    assert "checkpoint_step000000004.pth" in names
    assert "metrics.csv" in names and "metrics.png" in names
    rows = read_metrics(expert_run / "metrics.csv")
    train = [r["value"] for r in rows if r["split"] == "train" and r["metric"] == "loss"]
    assert len(train) == 4 and all(0 < v < 5 for v in train)
    evals = {r["metric"] for r in rows if r["split"] == "eval"}
    assert {"loss", "accuracy", "acc_in_sync", "acc_off_sync"} <= evals
    checkpoint = torch.load(expert_run / "checkpoint_step000000004.pth", weights_only=True)
    assert checkpoint["lipdub"]["width_divisor"] == 16


def test_expert_resume_is_exact(tiny_data, expert_run, tmp_path):
    # Continue a copy of the step-2 checkpoint to step 4 in another folder.
    args = expert_args(tiny_data, tmp_path, resume=expert_run / "checkpoint_step000000002.pth",
                       seed=1337)
    from lipdub.training.train_expert import main

    summary = main(args)
    assert summary["global_step"] == 4
    same_file_state(tmp_path / "checkpoint_step000000004.pth",
                    expert_run / "checkpoint_step000000004.pth")


def test_expert_evaluation(tiny_data, expert_run):
    metrics = evaluate_expert(expert_run / "checkpoint_step000000004.pth", tiny_data,
                              batches=2, batch_size=8, device="cpu")
    assert metrics["samples"] == 16 and metrics["width_divisor"] == 16
    assert 0 <= metrics["accuracy"] <= 1 and metrics["loss"] > 0
    # The run evaluated this very checkpoint at step 4 on the draws evaluate_expert makes with
    # the same seed and sizes (eval_batches 2 of batch_size 4): the figures it logged come back.
    # A wrong checkpoint, width, seed or sample list gives other figures.
    again = evaluate_expert(expert_run / "checkpoint_step000000004.pth", tiny_data,
                            batches=2, batch_size=4, device="cpu")
    logged = {r["metric"]: r["value"] for r in read_metrics(expert_run / "metrics.csv")
              if r["split"] == "eval" and r["step"] == 4}
    assert again["samples"] == 8
    for name in ("loss", "accuracy", "acc_in_sync", "acc_off_sync"):
        assert again[name] == pytest.approx(logged[name], rel=2e-5, abs=1e-9), name


def test_gan_generator_switches_sync_on_and_resumes_exactly(tiny_data, expert_run, tmp_path):
    from lipdub.training.train_generator import main, setup

    expert = expert_run / "checkpoint_step000000004.pth"
    # sync_threshold 10: the first eval (step 2) switches the sync loss on for steps 3 and 4.
    whole = generator_args(tiny_data, tmp_path / "whole", expert, sync_threshold=10.0)
    summary = main(whole)
    assert summary["syncnet_wt"] == 0.03
    rows = read_metrics(tmp_path / "whole" / "metrics.csv")
    sync_steps = sorted(r["step"] for r in rows if r["split"] == "train" and r["metric"] == "sync")
    assert sync_steps == [3, 4], "the sync loss runs only after the switch"
    assert {"adversarial", "disc_real", "disc_fake"} <= {r["metric"] for r in rows}
    for step in (2, 4):
        assert checkpoint_path(tmp_path / "whole", step, "disc_checkpoint_step").is_file()
    samples = sorted(p.name for p in (tmp_path / "whole" / "samples_step000000004").iterdir())
    assert samples == [f"0_{t}.jpg" for t in range(5)]

    resumed = generator_args(tiny_data, tmp_path / "resumed", expert, sync_threshold=10.0,
                             resume=tmp_path / "whole" / "checkpoint_step000000002.pth")
    run = setup(resumed)
    assert run.global_step == 2 and run.syncnet_wt == 0.03, "the switch survives a resume"
    main(resumed)
    for prefix in ("checkpoint_step", "disc_checkpoint_step"):
        same_file_state(checkpoint_path(tmp_path / "resumed", 4, prefix),
                        checkpoint_path(tmp_path / "whole", 4, prefix))


def test_generator_keeps_the_expert_frozen_in_the_chosen_bn_mode(tiny_data, expert_run,
                                                                  tmp_path):
    from lipdub.training.train_generator import fit, setup

    expert_file = expert_run / "checkpoint_step000000004.pth"
    before, _ = read_weights_for(build_expert, expert_file, "expert")
    for mode in ("train", "eval"):
        args = generator_args(tiny_data, tmp_path / mode, expert_file, gan="false",
                              syncnet_wt_initial=0.01, max_steps=2, expert_bn=mode,
                              **{"data.fps": 25})
        run = setup(args)
        assert run.expert.training == (mode == "train")
        assert not any(p.requires_grad for p in run.expert.parameters())
        fit(run)
        for (key, value), ref in zip(run.expert.state_dict().items(),
                                     before.state_dict().values()):
            if "running" in key or "num_batches" in key:
                continue  # train-mode BatchNorm updates its statistics, never the weights
            assert torch.equal(value, ref), key
        if mode == "eval":  # eval-mode BatchNorm leaves even the statistics alone
            assert all(torch.equal(v, r) for v, r in zip(run.expert.state_dict().values(),
                                                          before.state_dict().values()))


def test_mixed_precision_and_channels_last_paths_run(tiny_data, expert_run, tmp_path):
    # The GPU settings, exercised on the CPU (bf16 autocast exists there too): losses stay in
    # float32 outside autocast, where BCE is safe.
    from lipdub.training.train_generator import main

    args = generator_args(tiny_data, tmp_path, expert_run / "checkpoint_step000000004.pth",
                          amp="bf16", channels_last="true", max_steps=2,
                          syncnet_wt_initial=0.01)
    summary = main(args)
    assert summary["global_step"] == 2
    rows = read_metrics(tmp_path / "metrics.csv")
    losses = [r["value"] for r in rows if r["metric"] in ("l1", "sync", "adversarial")]
    assert losses and all(math.isfinite(v) for v in losses)


def test_generator_losses():
    torch.manual_seed(0)
    disc = build_discriminator(16)
    generated, target = torch.rand(2, 3, 5, 96, 96), torch.rand(2, 3, 5, 96, 96)
    assert torch.allclose(adversarial_loss(disc, generated), disc.perceptual_forward(generated))
    assert torch.allclose(reconstruction_loss(generated, target),
                          (generated - target).abs().mean())
    l1, sync, adv = torch.tensor(0.2), torch.tensor(0.6), torch.tensor(0.9)
    total = generator_loss(l1, sync, adv, 0.03, 0.07)
    assert torch.isclose(total, torch.tensor(0.03 * 0.6 + 0.07 * 0.9 + 0.9 * 0.2))
    assert generator_loss(l1, sync, adv, 0.0, 0.0) == l1


def test_synthetic_mouths_follow_the_audio(tiny_data):
    # The measure sees the drawn opening (and nothing else in the lower half is dark).
    rng = np.random.default_rng(0)
    ident = random_identity(rng)
    values = mouth_opening(np.stack([render_face(ident, o) for o in (0.0, 0.3, 0.6, 1.0)]))
    assert values[0] < 1 and np.all(np.diff(values) > 0)
    # On the held-out clip, real frames correlate with the envelope; a fresh generator's
    # output does not come close.
    result = mouth_sync_correlation(build_generator(16), tiny_data, device="cpu")
    assert result["videos"] == 1 and result["frames"] > 20
    assert result["r_ground_truth"] > 0.95
    # NaN: the fresh generator's mouths do not move at all (no correlation to speak of).
    assert np.isnan(result["r_generated"]) or result["r_generated"] < 0.5


# --- evaluation ---------------------------------------------------------------------------------


def write_short_clip(source, target, frames: int):
    """The first ``frames`` pictures of ``source`` as an H.264 clip without audio."""
    import av

    from lipdub.pipeline.media.decode import iter_video_frames

    with av.open(str(target), "w") as out:
        stream = None
        for i, frame in enumerate(iter_video_frames(source)):
            if i == frames:
                break
            if stream is None:
                stream = out.add_stream("libx264", rate=25)
                stream.width, stream.height, stream.pix_fmt = frame.width, frame.height, "yuv420p"
            picture = av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), "rgb24")
            picture.pts = i
            for packet in stream.encode(picture):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return target


def test_lse_pairs_generate_score_skip_and_resume(media_dir, synthetic_generator, make_weights,
                                                  parity_dir, detector_weights, tmp_path):
    from lipdub.pipeline.audio import read_audio
    from lipdub.training.evaluate import evaluate_lse, make_pairs, read_pairs, score_video
    from lipdub.training.prepare import write_wav

    clip = write_short_clip(media_dir / "video" / "talkinghead_woman_flag__vretalk_face3.mp4",
                            tmp_path / "clip.mp4", 30)
    speech = read_audio(media_dir / "audio" / "en_vctk_p240__rtvc.mp3").samples
    write_wav(tmp_path / "other.wav", speech[: int(1.2 * 16000)])
    write_wav(tmp_path / "long.wav", speech[: 2 * 16000])
    (tmp_path / "pairs.txt").write_text("clip.mp4 other.wav  # another utterance\n"
                                        "clip.mp4 long.wav\n")
    lse_weights = tmp_path / "syncnet_v2.model"  # syncnet_python layout: a bare state_dict
    torch.save(make_weights.build_state_dict(str(parity_dir.parent / "syncnet_eval.keys"), 7),
               lse_weights)

    pairs = read_pairs(tmp_path / "pairs.txt")
    assert pairs[0] == (tmp_path / "clip.mp4", tmp_path / "other.wav")
    summary = evaluate_lse(pairs, tmp_path / "eval", lse_model=lse_weights,
                           generator=synthetic_generator, detector=detector_weights,
                           device="cpu")
    assert (summary["scored"], summary["skipped"]) == (1, 1)  # the paper skips long audio
    assert math.isfinite(summary["lse_d"]) and math.isfinite(summary["lse_c"])
    assert summary["lse_c"] >= 0  # median minus minimum over the offsets
    with (tmp_path / "eval" / "lse_results.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and rows[1]["skipped"] == "video shorter than audio"
    # One pair scored: the summary's means are its row's figures.
    assert (float(rows[0]["lse_d"]), float(rows[0]["lse_c"])) == pytest.approx(
        (summary["lse_d"], summary["lse_c"]), rel=1e-9)
    generated = next((tmp_path / "eval").glob("00000_*.mp4"))
    stamp = generated.stat().st_mtime_ns
    again = evaluate_lse(pairs, tmp_path / "eval", lse_model=lse_weights,
                         generator=synthetic_generator, detector=detector_weights, device="cpu")
    assert generated.stat().st_mtime_ns == stamp, "an existing output is not generated again"
    assert again["lse_d"] == summary["lse_d"]

    from lipdub.training.evaluate import load_lse_model

    scorer = load_lse_model(lse_weights, torch.device("cpu"))
    own = score_video(scorer, clip, tmp_path / "other.wav")
    # The figures from their definitions (lse_reference.py): Wav2Lip's evaluation resizes each
    # whole picture to 224x224 (spec §7.2); the clip is 25 fps, so every picture is used.
    import av
    import cv2

    from lipdub.pipeline.audio import read_pcm16_mono_16k
    from lipdub.pipeline.lse_metric import mfcc

    with av.open(str(clip)) as container:
        pictures = [cv2.resize(f.to_ndarray(format="bgr24"), (224, 224),
                               interpolation=cv2.INTER_LINEAR) for f in container.decode(video=0)]
    assert len(pictures) == 30
    want = lse_by_definition(scorer, pictures, mfcc(read_pcm16_mono_16k(tmp_path / "other.wav")))
    assert want["windows"] == 24  # min(30 pictures, 119 MFCC columns // 4) - 5
    assert own.lse_d == pytest.approx(want["lse_d"], rel=1e-5)
    assert own.lse_c == pytest.approx(want["lse_c"], rel=1e-4, abs=1e-4)
    assert own.offset == want["offset"]
    videos = [tmp_path / f"v{i}.mp4" for i in range(5)]
    assert all(v != a for v, a in make_pairs(videos, seed=3))
    assert sorted(a for _, a in make_pairs(videos, seed=3)) == sorted(videos)

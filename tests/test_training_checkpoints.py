"""Checkpoints in the original layout: round trips, the original loader's view, atomic writes,
width detection, official-layout files as a starting point; the metrics log and its curves."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from lipdub.models.discriminator import QualityDiscriminator
from lipdub.models.syncnet import SyncNetExpert
from lipdub.models.wav2lip import Wav2Lip
from lipdub.models.weights import WeightsFormatError, WeightsKeyError
from lipdub.training import checkpoints as ck
from lipdub.training.logging_utils import MetricsLog, read_metrics
from lipdub.training.networks import build_discriminator, build_expert, build_generator, narrowed

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def trained_expert(divisor=16, seed=0):
    """A narrow expert and its Adam after one step (so the optimizer has state)."""
    torch.manual_seed(seed)
    model = build_expert(divisor)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    audio, face = model(torch.randn(4, 1, 80, 16), torch.rand(4, 15, 48, 96))
    (1 - torch.nn.functional.cosine_similarity(audio, face)).mean().backward()
    optimizer.step()
    return model, optimizer


def original_loader(path, model, optimizer):
    """What the reference scripts do: torch.load, strip 'module.', strict load, restore Adam."""
    checkpoint = torch.load(path, map_location="cpu")
    state = {k.replace("module.", ""): v for k, v in checkpoint["state_dict"].items()}
    model.load_state_dict(state)
    optimizer.load_state_dict(checkpoint["optimizer"])
    return checkpoint["global_step"], checkpoint["global_epoch"]


def test_narrowed_models_keep_every_key_and_divide_hidden_widths():
    for cls, build in ((Wav2Lip, build_generator), (SyncNetExpert, build_expert),
                       (QualityDiscriminator, build_discriminator)):
        with torch.device("meta"):
            full = cls().state_dict()
        narrow = build(4).state_dict()
        assert list(narrow) == list(full), cls.__name__
        first = next(k for k, v in full.items() if v.dim() == 4)
        assert narrow[first].shape[0] * 4 == full[first].shape[0]
        assert narrow[first].shape[1] == full[first].shape[1]  # input channels kept
    with torch.device("meta"):
        assert type(build_generator(1)) is Wav2Lip  # the paper's network, untouched
    out = build_generator(8)(torch.randn(2, 5, 1, 80, 16), torch.rand(2, 6, 5, 96, 96))
    assert out.shape == (2, 3, 5, 96, 96)
    assert build_discriminator(8)(torch.rand(3, 3, 96, 96)).shape == (3, 1)
    with pytest.raises(ValueError, match="width_divisor"):
        narrowed(Wav2Lip(), 3)


def test_round_trip_in_the_original_layout(tmp_path):
    model, optimizer = trained_expert()
    path = ck.save_checkpoint(ck.checkpoint_path(tmp_path, 7), model, optimizer, 7, 2,
                              {"trainer": "expert", "rng": ck.rng_state()})
    assert path.name == "checkpoint_step000000007.pth"
    raw = torch.load(path, map_location="cpu", weights_only=True)
    assert set(raw) == {"state_dict", "optimizer", "global_step", "global_epoch", "lipdub"}
    assert (raw["global_step"], raw["global_epoch"]) == (7, 2)

    # The reference's own loading code takes it as it is...
    twin, twin_opt = trained_expert(seed=1)
    assert original_loader(path, twin, twin_opt) == (7, 2)
    for (k, a), b in zip(model.state_dict().items(), twin.state_dict().values()):
        assert torch.equal(a, b), k
    # ... and so does ours, optimizer state included.
    again, again_opt = trained_expert(seed=2)
    checkpoint = ck.load_training_checkpoint(path, again, again_opt, "expert")
    assert checkpoint["global_step"] == 7
    state, saved = again_opt.state_dict()["state"], optimizer.state_dict()["state"]
    assert all(torch.equal(state[i]["exp_avg"], saved[i]["exp_avg"]) for i in saved)


def test_writes_are_atomic(tmp_path, monkeypatch):
    model, optimizer = trained_expert()
    path = ck.checkpoint_path(tmp_path, 1)
    ck.save_checkpoint(path, model, optimizer, 1, 0)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as out:
            out.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        ck.save_checkpoint(path, model, optimizer, 2, 0)
    assert path.read_bytes() == before, "the previous checkpoint is intact"
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "no temporary file left"


def test_latest_checkpoint_picks_the_highest_step(tmp_path):
    assert ck.latest_checkpoint(tmp_path) is None
    for name in ("checkpoint_step000000010.pth", "checkpoint_step000000200.pth",
                 "disc_checkpoint_step000000900.pth", ".checkpoint_step000000999.pth.1.tmp",
                 "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert ck.latest_checkpoint(tmp_path).name == "checkpoint_step000000200.pth"
    assert ck.latest_checkpoint(tmp_path, ck.DISC_PREFIX).name.startswith("disc_")


def test_the_width_is_read_from_the_file(tmp_path):
    model, optimizer = trained_expert(divisor=8)
    path = ck.save_checkpoint(tmp_path / "e.pth", model, optimizer, 3, 0)
    loaded, divisor = ck.read_weights_for(build_expert, path, "expert")
    assert divisor == 8
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(),
                                                   model.state_dict().values()))
    with pytest.raises(WeightsKeyError, match="width_divisor 8 expert .* width_divisor 4"):
        ck.read_weights_for(build_expert, path, "expert", width_divisor=4)
    wide = build_expert(4)
    with pytest.raises(WeightsKeyError, match="set width_divisor to 8"):
        ck.load_training_checkpoint(path, wide, None, "expert")
    with pytest.raises(WeightsKeyError, match="holds a SyncNet expert"):
        ck.read_weights_for(build_generator, path, "generator")


def test_an_official_layout_checkpoint_starts_a_run(synthetic_generator, tmp_path):
    # The official layout with DataParallel 'module.' prefixes, full width.
    model, divisor = ck.read_weights_for(build_generator, synthetic_generator, "generator", 1)
    assert divisor == 1 and isinstance(model, Wav2Lip)
    with pytest.raises(WeightsKeyError, match="width_divisor 1 generator"):
        ck.read_weights_for(build_generator, synthetic_generator, "generator", 4)
    # It holds no optimizer state: it can start a run, not resume one exactly.
    with pytest.raises(WeightsKeyError, match="no optimizer state"):
        ck.load_training_checkpoint(synthetic_generator, Wav2Lip(),
                                    torch.optim.Adam(model.parameters()), "generator")
    bare = tmp_path / "bare.pth"
    torch.save(model.state_dict(), bare)
    with pytest.raises(WeightsFormatError, match="cannot resume"):
        ck.load_training_checkpoint(bare, model, None, "generator")


def test_rng_state_round_trip():
    saved = ck.rng_state()
    first = torch.rand(3)
    ck.restore_rng_state(saved)
    assert torch.equal(torch.rand(3), first)


def test_metrics_log_resumes_and_plots(tmp_path):
    log = MetricsLog(tmp_path / "metrics.csv")
    for step in range(1, 11):
        log.log(step, 0, "train", loss=1.0 / step)
        if step % 5 == 0:
            log.log(step, 0, "eval", loss=1.2 / step, accuracy=step / 10)
    png = log.plot()
    image = cv2.imread(str(png))
    assert image.shape[0] == 2 * 220 and (image < 128).any()  # two panels, something drawn
    # A run resumed from step 5 drops what came after it, then goes on appending.
    resumed = MetricsLog(tmp_path / "metrics.csv", resume_step=5)
    resumed.log(6, 0, "train", loss=0.5)
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [r["step"] for r in rows if r["split"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert rows[-1]["value"] == 0.5
    assert np.isclose([r["value"] for r in rows if r["metric"] == "accuracy"], [0.5]).all()
    # A fresh run in the same folder starts a fresh log.
    MetricsLog(tmp_path / "metrics.csv")
    assert read_metrics(tmp_path / "metrics.csv") == []

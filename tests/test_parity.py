"""Parity with the original Wav2Lip / syncnet_python code on the shared fixtures.

Weights are rebuilt with the fixture set's own ``make_weights.py`` (seed read from each .npz),
saved in the original checkpoint layouts and loaded through ``lipdub.models.weights`` exactly as a
studio's official files would be; outputs are compared with the stored reference outputs at the
tolerances of the fixture README. ``LIPDUB_PARITY_DIR`` points these tests at another fixture set.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from lipdub.models.discriminator import QualityDiscriminator
from lipdub.models.lse import SyncNetLSE
from lipdub.models.syncnet import SyncNetExpert
from lipdub.models.wav2lip import Wav2Lip
from lipdub.models.weights import load_weights
from lipdub.training.losses import cosine_loss, discriminator_losses, expert_face_input, sync_loss

# (atol, rtol) per array, from the fixture README's "recommended" column.
TOL = {
    "out_eval": (1e-5, 0),
    "out_eval_5d": (1e-5, 0),
    "out_train": (2e-4, 0),
    "out_train_5d": (2e-4, 0),
    "audio_emb": (5e-6, 0),
    "face_emb": (5e-6, 0),
    "cos": (1e-6, 0),
    "bce_loss": (2e-6, 0),
    "sync_audio_emb_trainbn": (1e-4, 0),
    "sync_face_emb_trainbn": (1e-4, 0),
    "sync_cos_trainbn": (2e-5, 0),
    "sync_loss_trainbn": (2e-5, 0),
    "sync_cos_evalbn": (1e-6, 0),
    "sync_loss_evalbn": (2e-6, 0),
    "pred_fake": (2e-6, 0),
    "pred_real": (2e-6, 0),
    "perceptual_loss": (2e-6, 0),
    "disc_real_loss": (2e-6, 0),
    "disc_fake_loss": (2e-6, 0),
    "aud_feat": (2e-4, 1e-5),
    "lip_feat": (2e-3, 1e-5),
}

MODELS = {
    "wav2lip": (Wav2Lip, "wav2lip.keys", False),
    "expert": (SyncNetExpert, "syncnet_expert.keys", False),
    "disc": (QualityDiscriminator, "quality_disc.keys", False),
    "lse": (SyncNetLSE, "syncnet_eval.keys", True),
}


@pytest.fixture(autouse=True)
def _deterministic_cpu():
    threads = torch.get_num_threads()
    with torch.no_grad():
        yield
    torch.set_num_threads(threads)


def check(name: str, candidate, reference: np.ndarray) -> None:
    atol, rtol = TOL[name]
    candidate = candidate.detach().numpy() if isinstance(candidate, torch.Tensor) else candidate
    np.testing.assert_allclose(
        np.asarray(candidate).reshape(reference.shape),
        reference,
        atol=atol,
        rtol=rtol,
        err_msg=name,
    )


@pytest.fixture(scope="module")
def weight_files(parity_dir: Path, tmp_path_factory) -> dict:
    """Checkpoint files in the original layouts, built by the fixture set's make_weights.py."""
    spec = importlib.util.spec_from_file_location(
        "make_weights", parity_dir.parent / "make_weights.py"
    )
    make_weights = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_weights)
    out = tmp_path_factory.mktemp("parity_weights")
    fixture_of = {
        "wav2lip": "wav2lip_forward",
        "expert": "syncnet_color_forward",
        "disc": "quality_disc_forward",
        "lse": "syncnet_eval_forward",
    }
    files = {}
    for key, (_, keys_file, plain) in MODELS.items():
        seed = int(np.load(parity_dir / f"{fixture_of[key]}.npz")["weights_seed"])
        state = make_weights.build_state_dict(str(parity_dir.parent / keys_file), seed)
        path = out / f"{key}.pth"
        if plain:  # syncnet_python layout: a bare state_dict
            torch.save(state, path)
        else:  # Wav2Lip training-checkpoint layout with DataParallel prefixes
            torch.save(
                {
                    "state_dict": {"module." + k: v for k, v in state.items()},
                    "global_step": 0,
                    "global_epoch": 0,
                },
                path,
            )
        files[key] = path
    return files


def fresh(key: str, weight_files: dict, train: bool = False) -> torch.nn.Module:
    """A freshly loaded model: a train-mode forward must not see another check's BN updates."""
    cls = MODELS[key][0]
    model = load_weights(cls(), weight_files[key])
    return model.train(train)


def load(parity_dir: Path, name: str) -> dict:
    with np.load(parity_dir / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def test_generator_4d_and_5d(parity_dir, weight_files):
    d = load(parity_dir, "wav2lip_forward")
    for mode, suffix, audio, face in [
        (False, "", "audio", "face"),
        (True, "", "audio", "face"),
        (False, "_5d", "audio_5d", "face_5d"),
        (True, "_5d", "audio_5d", "face_5d"),
    ]:
        model = fresh("wav2lip", weight_files, train=mode)
        out = model(torch.from_numpy(d[audio]), torch.from_numpy(d[face]))
        name = ("out_train" if mode else "out_eval") + suffix
        assert tuple(out.shape) == d[name].shape
        check(name, out, d[name])


def test_expert_embeddings_and_loss(parity_dir, weight_files):
    d = load(parity_dir, "syncnet_color_forward")
    model = fresh("expert", weight_files)
    audio_emb, face_emb = model(torch.from_numpy(d["audio"]), torch.from_numpy(d["face"]))
    check("audio_emb", audio_emb, d["audio_emb"])
    check("face_emb", face_emb, d["face_emb"])
    check("cos", torch.nn.functional.cosine_similarity(audio_emb, face_emb), d["cos"])
    check("bce_loss", cosine_loss(audio_emb, face_emb, torch.from_numpy(d["y"])), d["bce_loss"])


def test_generator_sync_loss_train_and_eval_bn(parity_dir, weight_files):
    d = load(parity_dir, "syncnet_color_forward")
    g, mel = torch.from_numpy(d["sync_g"]), torch.from_numpy(d["sync_mel"])
    np.testing.assert_array_equal(expert_face_input(g).numpy(), d["sync_face"])
    for bn in ("trainbn", "evalbn"):
        expert = fresh("expert", weight_files, train=bn == "trainbn")
        check(f"sync_loss_{bn}", sync_loss(expert, mel, g), d[f"sync_loss_{bn}"])
        expert = fresh("expert", weight_files, train=bn == "trainbn")
        a, v = expert(mel, expert_face_input(g))
        check(f"sync_cos_{bn}", torch.nn.functional.cosine_similarity(a, v), d[f"sync_cos_{bn}"])
        if bn == "trainbn":
            check("sync_audio_emb_trainbn", a, d["sync_audio_emb_trainbn"])
            check("sync_face_emb_trainbn", v, d["sync_face_emb_trainbn"])


def test_quality_discriminator(parity_dir, weight_files):
    d = load(parity_dir, "quality_disc_forward")
    disc = fresh("disc", weight_files)
    fake, real = torch.from_numpy(d["fake"]), torch.from_numpy(d["real"])
    np.testing.assert_array_equal(disc.lower_halves(fake).numpy(), d["fake_2d_lower"])
    check("pred_fake", disc(fake), d["pred_fake"])
    check("pred_real", disc(real), d["pred_real"])
    check("perceptual_loss", disc.perceptual_forward(fake), d["perceptual_loss"])
    real_loss, fake_loss = discriminator_losses(disc, real, fake)
    check("disc_real_loss", real_loss, d["disc_real_loss"])
    check("disc_fake_loss", fake_loss, d["disc_fake_loss"])


def test_lse_model(parity_dir, weight_files):
    d = load(parity_dir, "syncnet_eval_forward")
    model = fresh("lse", weight_files)
    check("aud_feat", model.forward_aud(torch.from_numpy(d["aud"])), d["aud_feat"])
    check("lip_feat", model.forward_lip(torch.from_numpy(d["lip"])), d["lip_feat"])


def test_lse_model_inputs_come_from_the_mfcc_windows(parity_dir):
    """The LSE audio input is MFCC columns [4v, 4v+20) for video frame v (spec §7.2)."""
    d = load(parity_dir, "syncnet_eval_forward")
    mfcc = load(parity_dir, "mfcc")["mfcc_f64"]
    for i, v in enumerate(d["aud_mfcc_frames"]):
        np.testing.assert_array_equal(
            d["aud"][i, 0], mfcc[:, 4 * v : 4 * v + 20].astype(np.float32)
        )

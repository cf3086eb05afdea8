"""LSE-D / LSE-C maths and syncnet_python's MFCC vs the fixtures, plus the feature windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lipdub.models.lse import SyncNetLSE
from lipdub.pipeline.lse_metric import mfcc, pairwise_offset_distances, sync_score, syncnet_features


def fixture(parity_dir, name):
    with np.load(parity_dir / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def test_mfcc_matches_python_speech_features(parity_dir):
    d = fixture(parity_dir, "mfcc")
    out = mfcc(d["pcm16"])
    assert out.shape == d["mfcc"].shape
    np.testing.assert_allclose(out.astype(np.float32), d["mfcc"], atol=1e-4, rtol=1e-6)
    np.testing.assert_allclose(mfcc(d["pcm16"].astype(np.float64)), out)  # int16 == float input


@pytest.mark.parametrize("case", ["A", "B"])
def test_lse_math(parity_dir, case):
    d = fixture(parity_dir, "lse_math")
    vshift = int(d["vshift"])
    im, aud = d[f"{case}_im_feat"], d[f"{case}_aud_feat"]
    dists = pairwise_offset_distances(im, aud, vshift).numpy()
    np.testing.assert_allclose(dists, d[f"{case}_dists"], atol=2e-5, rtol=0)
    score = sync_score(im, aud, vshift)
    np.testing.assert_allclose(score.mean_dists, d[f"{case}_mdist"], atol=2e-5, rtol=0)
    np.testing.assert_allclose(score.lse_d, d[f"{case}_minval"], atol=2e-5, rtol=0)
    np.testing.assert_allclose(score.lse_c, d[f"{case}_conf"], atol=2e-5, rtol=0)
    assert score.offset == int(d[f"{case}_offset"])
    np.testing.assert_allclose(score.frame_dists, d[f"{case}_fdist"], atol=2e-5, rtol=0)
    np.testing.assert_allclose(score.frame_conf, d[f"{case}_fconfm"], atol=2e-5, rtol=0)


def test_shifted_features_give_that_offset():
    rng = np.random.default_rng(0)
    video = rng.normal(0, 0.3, (50, 64)).astype(np.float32)
    for shift in (-4, 0, 3):
        audio = np.roll(video, shift, axis=0) + rng.normal(0, 0.05, video.shape).astype(np.float32)
        assert sync_score(video, audio).offset == -shift


def test_feature_windows_follow_syncnet_python():
    torch.manual_seed(0)
    model = SyncNetLSE(embedding_dim=1024).eval()
    frames = np.random.default_rng(1).integers(0, 256, (12, 224, 224, 3)).astype(np.uint8)
    mfcc_feat = np.random.default_rng(2).normal(size=(13, 12 * 4 + 3))
    video_feat, audio_feat = syncnet_features(model, frames, mfcc_feat, batch_size=4)
    assert video_feat.shape == audio_feat.shape == (7, 1024)  # min(12, 51 // 4) - 5
    with torch.inference_mode():
        lips = torch.from_numpy(frames[2:7].astype(np.float32)).permute(3, 0, 1, 2)[None]
        aud = torch.from_numpy(mfcc_feat[None, None, :, 8:28].astype(np.float32))
        torch.testing.assert_close(video_feat[2], model.forward_lip(lips)[0])
        torch.testing.assert_close(audio_feat[2], model.forward_aud(aud)[0])

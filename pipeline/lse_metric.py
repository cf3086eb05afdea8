"""LSE-D / LSE-C: syncnet_python's audio-visual sync metrics (spec §7), and their MFCC front end.

The MFCC is python_speech_features 0.6's ``mfcc`` with its defaults, written out here in numpy
(the package is unmaintained since 2020 and is ~40 lines of what is below); the distance maths is
``SyncNetInstance.evaluate``'s, including its quirks (eps 1e-6 inside the distance, zero-padded
audio features at out-of-range offsets), so that figures are comparable with the paper's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.fft import dct
from scipy.signal import medfilt

from lipdub.pipeline.errors import LipdubError

MFCC_RATE = 16000
MFCC_WINDOW = 400  # 25 ms, rectangular
MFCC_STEP = 160  # 10 ms: 100 MFCC frames per second, 4 per 25 fps video frame
MFCC_NFFT = 512
MFCC_FILTERS = 26
MFCC_CEPSTRA = 13
MFCC_LIFTER = 22
VSHIFT = 15  # offsets searched: +-15 video frames (+-0.6 s at 25 fps)


def _hz_to_mel(hz):
    return 2595 * np.log10(1 + hz / 700.0)


def _mel_to_hz(mel):
    return 700 * (10 ** (mel / 2595.0) - 1)


def _filterbank(nfilt: int, nfft: int, rate: int) -> np.ndarray:
    """Triangular filters on FFT bins placed by flooring, as python_speech_features does."""
    mel_points = np.linspace(_hz_to_mel(0), _hz_to_mel(rate / 2), nfilt + 2)
    bins = np.floor((nfft + 1) * _mel_to_hz(mel_points) / rate)
    bank = np.zeros((nfilt, nfft // 2 + 1))
    for j in range(nfilt):
        lo, mid, hi = bins[j], bins[j + 1], bins[j + 2]
        for i in range(int(lo), int(mid)):
            bank[j, i] = (i - lo) / (mid - lo)
        for i in range(int(mid), int(hi)):
            bank[j, i] = (hi - i) / (hi - mid)
    return bank


def mfcc(signal: np.ndarray, rate: int = MFCC_RATE) -> np.ndarray:
    """syncnet_python's MFCC of int16-valued samples (fed unscaled).

    Returns:
        (13, T) float64, T = 1 + ceil((N - 400) / 160); column 0 of each frame is its log energy.
    """
    signal = np.asarray(signal, dtype=np.float64)
    emphasised = np.append(signal[0], signal[1:] - 0.97 * signal[:-1])
    n = len(emphasised)
    n_frames = 1 if n <= MFCC_WINDOW else 1 + math.ceil((n - MFCC_WINDOW) / MFCC_STEP)
    padded = np.zeros((n_frames - 1) * MFCC_STEP + MFCC_WINDOW)
    padded[:n] = emphasised
    index = np.arange(MFCC_WINDOW)[None, :] + MFCC_STEP * np.arange(n_frames)[:, None]
    power = np.abs(np.fft.rfft(padded[index], MFCC_NFFT)) ** 2 / MFCC_NFFT
    eps = np.finfo(float).eps
    energy = power.sum(axis=1)
    energy = np.where(energy == 0, eps, energy)
    feat = power @ _filterbank(MFCC_FILTERS, MFCC_NFFT, rate).T
    feat = np.log(np.where(feat == 0, eps, feat))
    feat = dct(feat, type=2, axis=1, norm="ortho")[:, :MFCC_CEPSTRA]
    lift = 1 + (MFCC_LIFTER / 2.0) * np.sin(np.pi * np.arange(MFCC_CEPSTRA) / MFCC_LIFTER)
    feat = feat * lift
    feat[:, 0] = np.log(energy)
    return feat.T


@dataclass(frozen=True)
class SyncScore:
    """The result of the offset search.

    Attributes:
        lse_d: LSE-D, the mean feature distance at the best offset (lower is better).
        lse_c: LSE-C, median over offsets minus LSE-D (higher is more confident).
        offset: best offset in video frames (syncnet_python's printed "AV offset").
        mean_dists: (2*vshift+1,) mean distance per offset, offset = vshift - index.
        frame_dists: (N,) per-frame distance at the best offset.
        frame_conf: (N,) per-frame confidence, median-filtered with kernel 9.
    """

    lse_d: float
    lse_c: float
    offset: int
    mean_dists: np.ndarray
    frame_dists: np.ndarray
    frame_conf: np.ndarray


def pairwise_offset_distances(video_feat, audio_feat, vshift: int = VSHIFT) -> torch.Tensor:
    """dists[v, j] = || video_feat[v] - audio_pad[v + j] + 1e-6 ||, audio zero-padded by vshift.

    Arguments:
        video_feat, audio_feat: (N, D) features of the same N frames.

    Returns:
        (N, 2*vshift+1) float tensor.
    """
    video = torch.as_tensor(video_feat)
    audio = F.pad(torch.as_tensor(audio_feat), (0, 0, vshift, vshift))
    width = 2 * vshift + 1
    windows = audio.unfold(0, width, 1)[: len(video)]  # (N, D, width)
    # torch.pairwise_distance's formula (eps added to the difference), over all offsets at once.
    return torch.linalg.vector_norm(video[:, :, None] - windows + 1e-6, dim=1)


def sync_score(video_feat, audio_feat, vshift: int = VSHIFT) -> SyncScore:
    """LSE-D, LSE-C and the A/V offset of one clip from its per-frame features (spec §7.3)."""
    dists = pairwise_offset_distances(video_feat, audio_feat, vshift)
    mean_dists = dists.mean(dim=0)
    min_val, min_idx = torch.min(mean_dists, 0)
    median = torch.median(mean_dists)
    frame_dists = dists[:, int(min_idx)].numpy()
    frame_conf = medfilt(median.numpy() - frame_dists, kernel_size=9)
    return SyncScore(
        lse_d=float(min_val),
        lse_c=float(median - min_val),
        offset=int(vshift - int(min_idx)),
        mean_dists=mean_dists.numpy(),
        frame_dists=frame_dists,
        frame_conf=frame_conf,
    )


@torch.inference_mode()
def syncnet_features(model, frames: np.ndarray, mfcc_feat: np.ndarray, batch_size: int = 20):
    """Per-frame lip and audio features with syncnet_python's windows.

    Arguments:
        model: a :class:`lipdub.models.lse.SyncNetLSE` in eval mode.
        frames: (N, 224, 224, 3) BGR face crops (or whole frames resized to 224, as Wav2Lip's
            evaluation does), values 0..255.
        mfcc_feat: (13, T) from :func:`mfcc`; video frame v uses MFCC columns [4v, 4v + 20).

    Returns:
        (video_feat, audio_feat), each (M, 1024) with M = min(N, T // 4) - 5 windows.
    """
    device = next(model.parameters()).device
    count = min(len(frames), mfcc_feat.shape[1] // 4) - 5
    if count <= 0:
        raise LipdubError(f"need at least 6 frames of video and audio for LSE, got "
                          f"{len(frames)} frames and {mfcc_feat.shape[1] // 4} of audio")
    video = torch.from_numpy(np.ascontiguousarray(frames, dtype=np.float32)).permute(3, 0, 1, 2)
    audio = torch.from_numpy(np.asarray(mfcc_feat, dtype=np.float32))
    video_out, audio_out = [], []
    for start in range(0, count, batch_size):
        idx = range(start, min(count, start + batch_size))
        lips = torch.stack([video[:, v : v + 5] for v in idx]).to(device)
        mfccs = torch.stack([audio[None, :, 4 * v : 4 * v + 20] for v in idx]).to(device)
        video_out.append(model.forward_lip(lips).cpu())
        audio_out.append(model.forward_aud(mfccs).cpu())
    return torch.cat(video_out), torch.cat(audio_out)

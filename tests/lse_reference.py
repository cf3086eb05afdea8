"""LSE-D, LSE-C and the A/V offset computed from their definitions (spec §7.2, §7.3, §7.5), for
tests to check ``lipdub.pipeline.lse_metric`` and its callers against something they did not
compute themselves: only the network's two halves are shared, the windows and the offset search
are written out here, plainly, in numpy."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import torch

VSHIFT = 15  # spec §7.3: offsets -15..15 video frames


def syncnet_python_crop(bgr: np.ndarray, box) -> np.ndarray:
    """Spec §7.5's crop for a box well inside the picture: half-size s = max(w, h) / 2 about
    the box's centre, y from cy - s to cy + 1.8 s, x over cx +- 1.4 s, resized to 224x224."""
    x0, y0, x1, y1 = box
    s, cx, cy = max(x1 - x0, y1 - y0) / 2, (x0 + x1) / 2, (y0 + y1) / 2
    assert cy - s >= 0 and cx - 1.4 * s >= 0 and cy + 1.8 * s <= bgr.shape[0]  # no 110 border
    face = bgr[int(cy - s): int(cy + 1.8 * s), int(cx - 1.4 * s): int(cx + 1.4 * s)]
    return cv2.resize(face, (224, 224), interpolation=cv2.INTER_LINEAR)


def lse_by_definition(model, crops: list[np.ndarray], mfcc_feat: np.ndarray) -> dict:
    """{"lse_d", "lse_c", "offset", "conf", "windows"} of 224x224 BGR pictures against their
    (13, T) MFCCs with a ``SyncNetLSE``: windows v = 0 .. min(N, T // 4) - 6 of pictures
    [v, v + 5) and MFCC columns [4v, 4v + 20); d[v, k] = || lip[v] - aud[v + k] + 1e-6 || with
    zeros beyond the ends; LSE-D the least mean over v, LSE-C the median of the means minus it,
    the offset 15 - its index; per-frame confidence median - d[v, best], median-filtered (9)."""
    from scipy.signal import medfilt

    count = min(len(crops), mfcc_feat.shape[1] // 4) - 5
    video = torch.from_numpy(np.stack(crops).astype(np.float32)).permute(3, 0, 1, 2)  # 3,N,H,W
    with torch.inference_mode():
        lip = np.stack([model.forward_lip(video[None, :, v: v + 5])[0].double().numpy()
                        for v in range(count)])
        aud = np.stack([model.forward_aud(torch.from_numpy(
            mfcc_feat[None, None, :, 4 * v: 4 * v + 20].astype(np.float32)))[0].double().numpy()
            for v in range(count)])
    dist = np.array([[np.linalg.norm(lip[v] - (aud[v + k] if 0 <= v + k < count else 0) + 1e-6)
                      for k in range(-VSHIFT, VSHIFT + 1)] for v in range(count)])
    mdist = dist.mean(axis=0)
    best = int(np.argmin(mdist))
    median = np.median(mdist)
    with warnings.catch_warnings():  # fewer than 9 windows: zero-padded, as syncnet_python's
        warnings.simplefilter("ignore", UserWarning)
        conf = medfilt(median - dist[:, best], kernel_size=9)
    return {"lse_d": float(mdist[best]), "lse_c": float(median - mdist[best]),
            "offset": VSHIFT - best, "conf": conf, "windows": count}

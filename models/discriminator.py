"""The visual-quality discriminator ``Wav2Lip_disc_qual`` of Wav2Lip-GAN (spec §4).

Shapes:
    faces: (B, 3, T, 96, 96) or (N, 3, 96, 96), BGR in [0, 1]; only rows 48-95 are looked at
    out:   (B*T, 1) probabilities of "real", rows time-major (row r = t*B + b)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lipdub.models.blocks import NoNormConvBlock as NoNorm


class QualityDiscriminator(nn.Module):
    """Judges the realism of generated lower faces; it has no BatchNorm by design (issue #275)."""

    def __init__(self):
        super().__init__()
        self.face_encoder_blocks = nn.ModuleList(
            [
                nn.Sequential(NoNorm(3, 32, 7, 1, 3)),
                nn.Sequential(NoNorm(32, 64, 5, (1, 2), 2), NoNorm(64, 64, 5, 1, 2)),
                nn.Sequential(NoNorm(64, 128, 5, 2, 2), NoNorm(128, 128, 5, 1, 2)),
                nn.Sequential(NoNorm(128, 256, 5, 2, 2), NoNorm(256, 256, 5, 1, 2)),
                nn.Sequential(NoNorm(256, 512, 3, 2, 1), NoNorm(512, 512, 3, 1, 1)),
                nn.Sequential(NoNorm(512, 512, 3, 2, 1), NoNorm(512, 512, 3, 1, 1)),
                nn.Sequential(NoNorm(512, 512, 3, 1, 0), NoNorm(512, 512, 1, 1, 0)),
            ]
        )
        self.binary_pred = nn.Sequential(nn.Conv2d(512, 1, 1, 1, 0), nn.Sigmoid())

    @staticmethod
    def lower_halves(faces: Tensor) -> Tensor:
        """Unroll (B,3,T,H,W) time-major to (B*T,3,H,W) and keep rows H//2 onwards."""
        if faces.dim() > 4:
            faces = torch.cat([faces[:, :, t] for t in range(faces.size(2))], dim=0)
        return faces[:, :, faces.size(2) // 2 :]

    def forward(self, faces: Tensor) -> Tensor:
        x = self.lower_halves(faces)
        for block in self.face_encoder_blocks:
            x = block(x)
        return self.binary_pred(x).view(len(x), -1)

    def perceptual_forward(self, fake_faces: Tensor) -> Tensor:
        """The generator's adversarial loss: BCE(D(fake lower halves), 1).

        Despite its name in the original code this is not a feature-distance loss. The original
        creates its target with a hard-coded ``.cuda()``; here it follows the input's device.
        """
        pred = self.forward(fake_faces)
        return F.binary_cross_entropy(pred, torch.ones_like(pred))

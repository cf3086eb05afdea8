"""The expert lip-sync discriminator ``SyncNet_color`` of Wav2Lip (spec §3).

Shapes:
    audio: (B, 1, 80, 16) mel chunk (0.2 s)
    face:  (B, 15, 48, 96) lower halves of 5 consecutive 96x96 BGR crops, stacked frame-major on
           channels (f0 B,G,R, f1 B,G,R, ...), pixel / 255
    out:   (audio_emb, face_emb), each (B, 512), L2-normalised
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from lipdub.models.blocks import ConvBlock, res
from lipdub.models.wav2lip import audio_encoder


class SyncNetExpert(nn.Module):
    """Two-stream embedding network; the sync probability is the cosine of the two embeddings."""

    def __init__(self):
        super().__init__()
        self.face_encoder = nn.Sequential(
            ConvBlock(15, 32, 7, 1, 3),
            ConvBlock(32, 64, 5, (1, 2), 1),
            res(64),
            res(64),
            ConvBlock(64, 128, 3, 2, 1),
            res(128),
            res(128),
            res(128),
            ConvBlock(128, 256, 3, 2, 1),
            res(256),
            res(256),
            ConvBlock(256, 512, 3, 2, 1),
            res(512),
            res(512),
            ConvBlock(512, 512, 3, 2, 1),
            ConvBlock(512, 512, 3, 1, 0),
            ConvBlock(512, 512, 1, 1, 0),
        )
        self.audio_encoder = audio_encoder(extra_residual=True)

    def forward(self, audio: Tensor, face: Tensor) -> tuple[Tensor, Tensor]:
        face_emb = self.face_encoder(face).flatten(1)
        audio_emb = self.audio_encoder(audio).flatten(1)
        return F.normalize(audio_emb, p=2, dim=1), F.normalize(face_emb, p=2, dim=1)

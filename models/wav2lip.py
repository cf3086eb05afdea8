"""The Wav2Lip generator (Prajwal et al., ACM MM 2020), compatible with the public checkpoints.

Shapes (see ``docs/wav2lip_spec.md`` §2):
    audio: (B, 1, 80, 16) mel chunks, or (B, T, 1, 80, 16) in the training layout
    face:  (B, 6, 96, 96), or (B, 6, T, 96, 96); channels 0-2 the target frame with rows 48-95
           zeroed, channels 3-5 the reference frame; BGR, pixel / 255
    out:   (B, 3, 96, 96) or (B, 3, T, 96, 96), sigmoid output, BGR
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lipdub.models.blocks import ConvBlock, ConvTransposeBlock, res


def _face_encoder() -> nn.ModuleList:
    return nn.ModuleList(
        [
            nn.Sequential(ConvBlock(6, 16, 7, 1, 3)),  # 96x96
            nn.Sequential(ConvBlock(16, 32, 3, 2, 1), res(32), res(32)),  # 48x48
            nn.Sequential(ConvBlock(32, 64, 3, 2, 1), res(64), res(64), res(64)),  # 24x24
            nn.Sequential(ConvBlock(64, 128, 3, 2, 1), res(128), res(128)),  # 12x12
            nn.Sequential(ConvBlock(128, 256, 3, 2, 1), res(256), res(256)),  # 6x6
            nn.Sequential(ConvBlock(256, 512, 3, 2, 1), res(512)),  # 3x3
            nn.Sequential(ConvBlock(512, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)),  # 1x1
        ]
    )


def audio_encoder(extra_residual: bool = False) -> nn.Sequential:
    """The mel encoder (B,1,80,16) -> (B,512,1,1); the expert's has one more 256 residual."""
    layers = [
        ConvBlock(1, 32, 3, 1, 1),
        res(32),
        res(32),
        ConvBlock(32, 64, 3, (3, 1), 1),
        res(64),
        res(64),
        ConvBlock(64, 128, 3, 3, 1),
        res(128),
        res(128),
        ConvBlock(128, 256, 3, (3, 2), 1),
        res(256),
    ]
    if extra_residual:
        layers.append(res(256))
    layers += [ConvBlock(256, 512, 3, 1, 0), ConvBlock(512, 512, 1, 1, 0)]
    return nn.Sequential(*layers)


def _face_decoder() -> nn.ModuleList:
    return nn.ModuleList(
        [
            nn.Sequential(ConvBlock(512, 512, 1, 1, 0)),  # 1x1
            nn.Sequential(ConvTransposeBlock(1024, 512, 3, 1, 0), res(512)),  # 3x3
            nn.Sequential(ConvTransposeBlock(1024, 512, 3, 2, 1, 1), res(512), res(512)),  # 6x6
            nn.Sequential(ConvTransposeBlock(768, 384, 3, 2, 1, 1), res(384), res(384)),  # 12x12
            nn.Sequential(ConvTransposeBlock(512, 256, 3, 2, 1, 1), res(256), res(256)),  # 24x24
            nn.Sequential(ConvTransposeBlock(320, 128, 3, 2, 1, 1), res(128), res(128)),  # 48x48
            nn.Sequential(ConvTransposeBlock(160, 64, 3, 2, 1, 1), res(64), res(64)),  # 96x96
        ]
    )


class Wav2Lip(nn.Module):
    """Audio-conditioned U-Net that redraws the lower half of a 96x96 face crop.

    Arguments:
        None: the architecture is fixed by the public checkpoints.

    The forward takes ``(audio, face)`` in that order (4-D or 5-D, see the module docstring).
    A 5-D call is unrolled time-major (all B samples for t=0, then t=1, ...), run per frame
    (the network has no temporal layers) and restacked on dim 2.
    """

    def __init__(self):
        super().__init__()
        self.face_encoder_blocks = _face_encoder()
        self.audio_encoder = audio_encoder()
        self.face_decoder_blocks = _face_decoder()
        self.output_block = nn.Sequential(
            ConvBlock(80, 32, 3, 1, 1), nn.Conv2d(32, 3, 1, 1, 0), nn.Sigmoid()
        )

    def forward(self, audio: Tensor, face: Tensor) -> Tensor:
        batch = audio.size(0)
        is_sequence = face.dim() > 4
        if is_sequence:
            audio = torch.cat([audio[:, t] for t in range(audio.size(1))], dim=0)
            face = torch.cat([face[:, :, t] for t in range(face.size(2))], dim=0)

        x = self.audio_encoder(audio)
        skips = []
        feats = face
        for block in self.face_encoder_blocks:
            feats = block(feats)
            skips.append(feats)
        for block in self.face_decoder_blocks:
            x = block(x)
            # The decoder output comes first in the concatenation, as the checkpoints expect.
            x = torch.cat((x, skips.pop()), dim=1)
        out = self.output_block(x)

        if is_sequence:
            out = torch.stack(torch.split(out, batch, dim=0), dim=2)
        return out

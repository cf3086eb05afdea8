"""Wav2Lip's training losses as named functions (spec §3.2, §4, §5.3).

Kept apart from the trainers so that each loss is tested on its own against the parity fixtures.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def cosine_loss(audio_emb: Tensor, face_emb: Tensor, target: Tensor) -> Tensor:
    """BCE of the cosine similarity of L2-normalised embeddings against 1 (in sync) / 0 (off).

    Arguments:
        audio_emb, face_emb: (B, 512) expert embeddings.
        target: (B, 1) labels.
    """
    similarity = F.cosine_similarity(audio_emb, face_emb).unsqueeze(1)
    return F.binary_cross_entropy(similarity, target)


def expert_face_input(generated: Tensor) -> Tensor:
    """(B, 3, T, 96, 96) -> (B, 3*T, 48, 96): lower halves stacked frame-major on channels."""
    lower = generated[:, :, :, generated.size(3) // 2 :]
    return torch.cat([lower[:, :, t] for t in range(lower.size(2))], dim=1)


def sync_loss(expert, mel: Tensor, generated: Tensor) -> Tensor:
    """The expert's verdict on generated frames: BCE(cos(audio, face), 1).

    The original training scripts never put the expert in eval mode, so its BatchNorm runs on
    batch statistics; callers choose the mode (the trainer's ``expert_bn`` option).

    Arguments:
        expert: a frozen :class:`lipdub.models.syncnet.SyncNetExpert`.
        mel: (B, 1, 80, 16) chunk aligned with the window's first frame.
        generated: (B, 3, 5, 96, 96) generator output.
    """
    audio_emb, face_emb = expert(mel, expert_face_input(generated))
    target = torch.ones(audio_emb.size(0), 1, device=audio_emb.device, dtype=audio_emb.dtype)
    return cosine_loss(audio_emb, face_emb, target)


def discriminator_losses(disc, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
    """The quality discriminator's two terms: BCE(D(real), 1) and BCE(D(fake.detach()), 0)."""
    pred_real = disc(real)
    pred_fake = disc(fake.detach())
    return (
        F.binary_cross_entropy(pred_real, torch.ones_like(pred_real)),
        F.binary_cross_entropy(pred_fake, torch.zeros_like(pred_fake)),
    )

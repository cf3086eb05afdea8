"""RetinaFace with a MobileNetV1-0.25 backbone, in plain torch.

The module layout (and therefore every ``state_dict`` key) matches the public Pytorch_Retinaface
checkpoints, so their weights load with ``strict=True``. Written here without torchvision, whose
wheel does not import beside the CPU torch we install.

Input: ``(B, 3, H, W)`` float, BGR channel order, minus the mean ``(104, 117, 123)``, no scaling.
Output: raw per-anchor predictions; :func:`prior_boxes`, :func:`decode_boxes`,
:func:`decode_landmarks` and :func:`nms` turn them into faces. The anchor sizes (``min_sizes``)
belong to the checkpoint and are not stored in it, so callers pass them in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

STEPS = (8, 16, 32)
VARIANCE = (0.1, 0.2)
MEAN_BGR = (104.0, 117.0, 123.0)
ANCHORS_PER_CELL = 2


# --- building blocks (Sequential index layout is what the checkpoint keys depend on) -----------


def conv_bn(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    """3x3 conv (no bias) -> BN -> LeakyReLU."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, 3, stride, 1, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_bn_no_relu(inp: int, oup: int, stride: int = 1) -> nn.Sequential:
    """3x3 conv (no bias) -> BN; SSH concatenates these and applies one ReLU afterwards."""
    return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup))


def conv_bn1x1(inp: int, oup: int, stride: int = 1, leaky: float = 0.0) -> nn.Sequential:
    """1x1 conv (no bias) -> BN -> LeakyReLU (FPN lateral connections)."""
    return nn.Sequential(
        nn.Conv2d(inp, oup, 1, stride, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


def conv_dw(inp: int, oup: int, stride: int, leaky: float = 0.1) -> nn.Sequential:
    """MobileNetV1 depthwise-separable block: dw 3x3 -> BN -> act -> pw 1x1 -> BN -> act."""
    return nn.Sequential(
        nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
        nn.BatchNorm2d(inp),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
        nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
        nn.BatchNorm2d(oup),
        nn.LeakyReLU(negative_slope=leaky, inplace=True),
    )


class MobileNetV1(nn.Module):
    """MobileNetV1 at width 0.25, cut into the three stages RetinaFace taps.

    ``(B, 3, H, W)`` -> feature maps of strides 8, 16, 32 with 64, 128, 256 channels. The
    classifier head of the ImageNet model is not part of the detector checkpoints, so it is omitted.
    """

    def __init__(self) -> None:
        super().__init__()
        self.stage1 = nn.Sequential(
            conv_bn(3, 8, 2, leaky=0.1),
            conv_dw(8, 16, 1),
            conv_dw(16, 32, 2),
            conv_dw(32, 32, 1),
            conv_dw(32, 64, 2),
            conv_dw(64, 64, 1),
        )
        self.stage2 = nn.Sequential(
            conv_dw(64, 128, 2),
            *[conv_dw(128, 128, 1) for _ in range(5)],
        )
        self.stage3 = nn.Sequential(conv_dw(128, 256, 2), conv_dw(256, 256, 1))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = self.stage1(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        return [c1, c2, c3]


class FPN(nn.Module):
    """Top-down feature pyramid: three inputs -> three maps of ``out_channels`` each."""

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        # The reference uses a leaky slope only for the narrow (<= 64 channel) variants.
        leaky = 0.1 if out_channels <= 64 else 0.0
        self.output1 = conv_bn1x1(in_channels[0], out_channels, leaky=leaky)
        self.output2 = conv_bn1x1(in_channels[1], out_channels, leaky=leaky)
        self.output3 = conv_bn1x1(in_channels[2], out_channels, leaky=leaky)
        self.merge1 = conv_bn(out_channels, out_channels, leaky=leaky)
        self.merge2 = conv_bn(out_channels, out_channels, leaky=leaky)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        o1 = self.output1(feats[0])
        o2 = self.output2(feats[1])
        o3 = self.output3(feats[2])
        # Explicit target sizes (not scale_factor=2): odd input sizes give maps that are not
        # exactly twice as large, and nearest to the exact size is what the weights were trained on.
        o2 = self.merge2(o2 + F.interpolate(o3, size=o2.shape[-2:], mode="nearest"))
        o1 = self.merge1(o1 + F.interpolate(o2, size=o1.shape[-2:], mode="nearest"))
        return [o1, o2, o3]


class SSH(nn.Module):
    """Single Stage Headless context module: parallel 3x3 / 5x5 / 7x7 receptive fields.

    The 5x5 and 7x7 branches are stacks of 3x3 convs sharing their first layer. Output channels
    are split 1/2, 1/4, 1/4 between the branches. Attribute names (``conv7x7_3`` with a lowercase
    x included) are fixed by the checkpoint keys.
    """

    def __init__(self, in_channel: int, out_channel: int) -> None:
        super().__init__()
        assert out_channel % 4 == 0, "SSH splits its output channels into quarters"
        leaky = 0.1 if out_channel <= 64 else 0.0
        self.conv3X3 = conv_bn_no_relu(in_channel, out_channel // 2)
        self.conv5X5_1 = conv_bn(in_channel, out_channel // 4, leaky=leaky)
        self.conv5X5_2 = conv_bn_no_relu(out_channel // 4, out_channel // 4)
        self.conv7X7_2 = conv_bn(out_channel // 4, out_channel // 4, leaky=leaky)
        self.conv7x7_3 = conv_bn_no_relu(out_channel // 4, out_channel // 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c3 = self.conv3X3(x)
        c5_1 = self.conv5X5_1(x)
        c5 = self.conv5X5_2(c5_1)
        c7 = self.conv7x7_3(self.conv7X7_2(c5_1))
        return F.relu(torch.cat([c3, c5, c7], dim=1))


class _Head(nn.Module):
    """1x1 conv predicting ``values`` numbers for each of the anchors at every cell.

    ``(B, C, h, w)`` -> ``(B, h * w * anchors, values)``, ordered row, column, anchor: the same
    order :func:`prior_boxes` generates priors in.
    """

    def __init__(self, in_channels: int, values: int, anchors: int = ANCHORS_PER_CELL) -> None:
        super().__init__()
        self.values = values
        self.conv1x1 = nn.Conv2d(in_channels, anchors * values, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1x1(x).permute(0, 2, 3, 1)
        return out.reshape(out.shape[0], -1, self.values)


class RetinaFace(nn.Module):
    """RetinaFace-MobileNet0.25 detector network.

    ``forward(x)`` with ``x`` of shape ``(B, 3, H, W)`` (BGR minus :data:`MEAN_BGR`) returns
    ``(loc, scores, landmarks)`` of shapes ``(B, P, 4)``, ``(B, P)`` and ``(B, P, 10)``, where
    ``P = len(prior_boxes(H, W, min_sizes))``; ``scores`` is the softmax face probability, ``loc``
    and ``landmarks`` are encoded offsets for :func:`decode_boxes` / :func:`decode_landmarks`.
    """

    def __init__(self, fpn_channels: int = 64) -> None:
        super().__init__()
        self.body = MobileNetV1()
        self.fpn = FPN([64, 128, 256], fpn_channels)
        self.ssh1 = SSH(fpn_channels, fpn_channels)
        self.ssh2 = SSH(fpn_channels, fpn_channels)
        self.ssh3 = SSH(fpn_channels, fpn_channels)
        self.ClassHead = nn.ModuleList(_Head(fpn_channels, 2) for _ in STEPS)
        self.BboxHead = nn.ModuleList(_Head(fpn_channels, 4) for _ in STEPS)
        self.LandmarkHead = nn.ModuleList(_Head(fpn_channels, 10) for _ in STEPS)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        p1, p2, p3 = self.fpn(self.body(x))
        feats = [self.ssh1(p1), self.ssh2(p2), self.ssh3(p3)]
        loc = torch.cat([h(f) for h, f in zip(self.BboxHead, feats)], dim=1)
        logits = torch.cat([h(f) for h, f in zip(self.ClassHead, feats)], dim=1)
        ldm = torch.cat([h(f) for h, f in zip(self.LandmarkHead, feats)], dim=1)
        return loc, logits.softmax(dim=-1)[..., 1], ldm


# --- pure post-processing ------------------------------------------------------------------------


def prior_boxes(
    height: int,
    width: int,
    min_sizes: Sequence[Sequence[float]],
    steps: Sequence[int] = STEPS,
) -> torch.Tensor:
    """Anchor boxes for a ``height`` x ``width`` network input.

    Returns ``(P, 4)`` float32 ``(cx, cy, w, h)`` normalised to ``[0, 1]`` by the input size,
    ordered level, row, column, size (the order the heads emit predictions in). Each level's map
    is ``ceil(size / step)`` cells, which is what stride-2 3x3 convs with padding 1 produce.
    """
    per_level = []
    for sizes, step in zip(min_sizes, steps):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        cy = (torch.arange(rows, dtype=torch.float32) + 0.5) * step / height
        cx = (torch.arange(cols, dtype=torch.float32) + 0.5) * step / width
        gy, gx = torch.meshgrid(cy, cx, indexing="ij")  # (rows, cols)
        s = torch.as_tensor(sizes, dtype=torch.float32)
        k = len(sizes)
        level = torch.stack(
            [
                gx[..., None].expand(rows, cols, k),
                gy[..., None].expand(rows, cols, k),
                (s / width).expand(rows, cols, k),
                (s / height).expand(rows, cols, k),
            ],
            dim=-1,
        )  # (rows, cols, k, 4)
        per_level.append(level.reshape(-1, 4))
    return torch.cat(per_level, dim=0)


def decode_boxes(
    loc: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCE
) -> torch.Tensor:
    """Encoded offsets ``(..., P, 4)`` + priors ``(P, 4)`` -> boxes ``(..., P, 4)``.

    Boxes are normalised ``(x1, y1, x2, y2)``; multiply by ``(W, H, W, H)`` for pixels.
    """
    centre = priors[..., :2] + loc[..., :2] * variances[0] * priors[..., 2:]
    size = priors[..., 2:] * torch.exp(loc[..., 2:] * variances[1])
    return torch.cat([centre - size / 2, centre + size / 2], dim=-1)


def decode_landmarks(
    ldm: torch.Tensor, priors: torch.Tensor, variances: Sequence[float] = VARIANCE
) -> torch.Tensor:
    """Encoded offsets ``(..., P, 10)`` + priors ``(P, 4)`` -> points ``(..., P, 5, 2)``.

    Points (left eye, right eye, nose, left/right mouth corner as seen in the image) are
    normalised ``(x, y)``; multiply by ``(W, H)`` for pixels.
    """
    pts = ldm.reshape(*ldm.shape[:-1], 5, 2)
    return priors[..., None, :2] + pts * variances[0] * priors[..., None, 2:]


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.4) -> torch.Tensor:
    """Greedy non-maximum suppression.

    ``boxes (K, 4)`` x1y1x2y2, ``scores (K,)`` -> int64 indices of the kept boxes, highest score
    first. A box is dropped when its IoU with an already kept, higher-scoring box exceeds
    ``iou_threshold``. K is small after score thresholding, so one ``K x K`` IoU matrix is cheap.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.argsort(scores, descending=True)
    b = boxes[order]
    area = (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)
    lt = torch.maximum(b[:, None, :2], b[None, :, :2])
    rb = torch.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=-1)
    iou = inter / (area[:, None] + area[None, :] - inter).clamp(min=1e-12)
    suppress = (iou > iou_threshold).cpu()
    keep = torch.ones(len(order), dtype=torch.bool)
    for i in range(len(order)):
        if keep[i]:
            # Everything after i that overlaps it too much goes; earlier ones were already decided.
            keep[i + 1 :] &= ~suppress[i, i + 1 :]
    return order[keep.to(order.device)]

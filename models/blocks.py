"""Convolution blocks shared by the Wav2Lip generator, its expert and its quality discriminator.

Each block keeps its layers in ``conv_block`` (``conv_block.0`` the convolution, ``conv_block.1``
the BatchNorm) so that state_dict keys match the public checkpoints exactly.
"""

from __future__ import annotations

from torch import Tensor, nn


class ConvBlock(nn.Module):
    """Conv2d (with bias) -> BatchNorm2d -> [+ input] -> ReLU.

    The residual add happens after BatchNorm and before the ReLU, as in the original ``Conv2d``
    wrapper; a residual block needs ``cin == cout`` and stride 1.
    """

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, residual: bool = False):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(cin, cout, kernel_size, stride, padding), nn.BatchNorm2d(cout)
        )
        self.act = nn.ReLU()
        self.residual = residual

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv_block(x)
        if self.residual:
            out = out + x
        return self.act(out)


class ConvTransposeBlock(nn.Module):
    """ConvTranspose2d (weight laid out (cin, cout, k, k)) -> BatchNorm2d -> ReLU."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding, output_padding=0):
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, kernel_size, stride, padding, output_padding),
            nn.BatchNorm2d(cout),
        )
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv_block(x))


class NoNormConvBlock(nn.Module):
    """Conv2d (with bias) -> LeakyReLU(0.01): the quality discriminator avoids BatchNorm."""

    def __init__(self, cin: int, cout: int, kernel_size, stride, padding):
        super().__init__()
        self.conv_block = nn.Sequential(nn.Conv2d(cin, cout, kernel_size, stride, padding))
        self.act = nn.LeakyReLU(0.01)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv_block(x))


def res(channels: int) -> ConvBlock:
    """A 3x3 residual block of ``channels`` (the most common layer in these networks)."""
    return ConvBlock(channels, channels, 3, 1, 1, residual=True)

"""syncnet_python's model ``S`` (Chung & Zisserman 2016), behind the LSE-D / LSE-C metrics.

See spec §7.

Shapes:
    forward_aud: (N, 1, 13, 20) MFCC windows (0.2 s)            -> (N, 1024), not normalised
    forward_lip: (N, 3, 5, 224, 224) raw BGR pixel values 0..255 -> (N, 1024), not normalised
"""

from __future__ import annotations

from torch import Tensor, nn


def _conv_bn_relu(cin: int, cout: int, kernel, padding, conv=nn.Conv2d, bn=nn.BatchNorm2d, **kw):
    return [
        conv(cin, cout, kernel_size=kernel, padding=padding, **kw),
        bn(cout),
        nn.ReLU(inplace=True),
    ]


def _fc(embedding_dim: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(512, 512),
        nn.BatchNorm1d(512),
        nn.ReLU(inplace=True),
        nn.Linear(512, embedding_dim),
    )


class SyncNetLSE(nn.Module):
    """Audio and lip streams whose Euclidean distance measures audio-visual sync.

    Arguments:
        embedding_dim: width of the last fully connected layer (1024 in ``syncnet_v2.model``).
    """

    def __init__(self, embedding_dim: int = 1024):
        super().__init__()
        conv3d = {"conv": nn.Conv3d, "bn": nn.BatchNorm3d}
        self.netcnnaud = nn.Sequential(
            *_conv_bn_relu(1, 64, 3, 1),
            nn.MaxPool2d(kernel_size=1, stride=1),
            *_conv_bn_relu(64, 192, 3, 1),
            nn.MaxPool2d(kernel_size=3, stride=(1, 2)),
            *_conv_bn_relu(192, 384, 3, 1),
            *_conv_bn_relu(384, 256, 3, 1),
            *_conv_bn_relu(256, 256, 3, 1),
            nn.MaxPool2d(kernel_size=3, stride=2),
            *_conv_bn_relu(256, 512, (5, 4), 0),
        )
        self.netfcaud = _fc(embedding_dim)
        self.netfclip = _fc(embedding_dim)
        self.netcnnlip = nn.Sequential(
            *_conv_bn_relu(3, 96, (5, 7, 7), 0, stride=(1, 2, 2), **conv3d),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu(96, 256, (1, 5, 5), (0, 1, 1), stride=(1, 2, 2), **conv3d),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
            *_conv_bn_relu(256, 256, (1, 3, 3), (0, 1, 1), **conv3d),
            *_conv_bn_relu(256, 256, (1, 3, 3), (0, 1, 1), **conv3d),
            *_conv_bn_relu(256, 256, (1, 3, 3), (0, 1, 1), **conv3d),
            nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2)),
            *_conv_bn_relu(256, 512, (1, 6, 6), 0, **conv3d),
        )

    def forward_aud(self, mfcc: Tensor) -> Tensor:
        return self.netfcaud(self.netcnnaud(mfcc).flatten(1))

    def forward_lip(self, frames: Tensor) -> Tensor:
        return self.netfclip(self.netcnnlip(frames).flatten(1))

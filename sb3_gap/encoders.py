"""Convolutional encoders φ (the part of a pixel network *before* the bottleneck).

Both encoders return the raw feature map ``F ∈ R^{B×C×H×W}``; what happens to it
(flatten, pooling, tokens) is the job of :mod:`sb3_gap.bottlenecks`.

Written by hand rather than reusing SB3's ``NatureCNN`` because ``NatureCNN`` fuses
``Flatten + Linear`` into the extractor (exactly the connection this project replaces)
and hard-codes the channel counts, so it cannot be scaled. ``NatureEncoder(scale=1)``
keeps the layer spec of ``NatureCNN.cnn`` (tested in ``tests/test_encoders.py``).
"""

from __future__ import annotations

import torch as th
from torch import nn


class ResidualBlock(nn.Module):
    """Impala residual block: ``x + conv(relu(conv(relu(x))))`` (Espeholt et al. 2018, Fig. 3)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, kernel_size=3, padding=1)

    def forward(self, x: th.Tensor) -> th.Tensor:
        out = self.conv0(th.relu(x))
        out = self.conv1(th.relu(out))
        return x + out


class ImpalaEncoder(nn.Module):
    """
    Impala ResNet encoder (Espeholt et al. 2018) as used by Dopamine and the paper.

    Each stack is ``conv3×3 → max-pool 3×3/2 → num_blocks residual blocks``; a final ReLU
    follows the last stack. With the default channels (16, 32, 32) an 84×84 input gives a
    32×11×11 feature map.

    :param in_channels: Number of input channels (e.g. 4 stacked frames)
    :param scale: Multiplier on every stack's channel count (scales φ)
    :param channels: Base channel count of each stack
    :param num_blocks: Residual blocks per stack (2 in Impala)
    :param extra_blocks: Extra residual blocks per stack to deepen φ (paper Fig. 4 / Appendix A)
    """

    def __init__(
        self,
        in_channels: int,
        scale: int = 1,
        channels: tuple[int, ...] = (16, 32, 32),
        num_blocks: int = 2,
        extra_blocks: int = 0,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_channels
        for base in channels:
            out = base * scale
            layers += [
                nn.Conv2d(prev, out, kernel_size=3, padding=1),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            ]
            layers += [ResidualBlock(out) for _ in range(num_blocks + extra_blocks)]
            prev = out
        layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        self.out_channels = prev

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.net(x)


class NatureEncoder(nn.Module):
    """
    Convolutional torso of the DQN Nature network (Mnih et al. 2015):
    32 8×8/4 → 64 4×4/2 → 64 3×3/1, each followed by ReLU, channels × ``scale``.
    An 84×84 input gives a 64×7×7 feature map; inputs must be at least 36×36.

    :param in_channels: Number of input channels
    :param scale: Multiplier on every layer's channel count (scales φ)
    """

    def __init__(self, in_channels: int, scale: int = 1) -> None:
        super().__init__()
        c1, c2, c3 = 32 * scale, 64 * scale, 64 * scale
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=8, stride=4),
            nn.ReLU(),
            nn.Conv2d(c1, c2, kernel_size=4, stride=2),
            nn.ReLU(),
            nn.Conv2d(c2, c3, kernel_size=3, stride=1),
            nn.ReLU(),
        )
        self.out_channels = c3

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.net(x)


# Smallest square input each encoder accepts, used for the "image too small" error.
MIN_IMAGE_SIZE = {"impala": 1, "nature": 36}

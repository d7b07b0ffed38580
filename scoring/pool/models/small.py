"""Small networks trained from scratch on the dataset itself (``scratch`` pool members)."""

from __future__ import annotations

import torch
from torch import nn


def bf16_native(device: torch.device) -> bool:
    """Whether bfloat16 autocast pays for training here: a CPU with bfloat16 instructions
    (AVX512-BF16 or AMX). Without them bfloat16 is emulated and slower than float32; GPUs train in
    float32 (these networks are too small to gain)."""
    if device.type != "cpu":
        return False
    probes = [getattr(torch.cpu, n, None) for n in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(callable(f) and bool(f()) for f in probes)


def convolutional(net: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in net.modules())


def as_input(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A batch laid out as ``net`` is fastest on: channels-last for a network with convolutions
    (SmallCNN's training step took 0.77x the time on this CPU), unchanged otherwise."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 and convolutional(net) else x


def prepare(net: nn.Module) -> nn.Module:
    """``net`` in the memory layout ``as_input`` feeds it."""
    return net.to(memory_format=torch.channels_last) if convolutional(net) else net


def train_step(net: nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
               xb: torch.Tensor, yb: torch.Tensor, bf16: bool, layout: bool = True) -> None:
    """One step of a scratch member's training loop (and of the fit-time probes): forward with
    label smoothing under bfloat16 autocast where ``bf16``, in ``as_input``'s layout where
    ``layout``, backward, optimiser and schedule."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = nn.functional.cross_entropy(net(as_input(net, xb) if layout else xb), yb, label_smoothing=0.05)
    opt.zero_grad()
    loss.backward()
    opt.step()
    sched.step()


def predict_proba(net: nn.Module, x: torch.Tensor, bf16: bool, batch: int = 512) -> torch.Tensor:
    """Softmax of ``net`` over ``x`` in batches, float64, as the training ran (layout, precision)."""
    out = []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for s in range(0, len(x), batch):
            out.append(torch.softmax(net(as_input(net, x[s : s + batch])).float(), 1))
    return torch.cat(out).double()


class SeededDropout(nn.Dropout):
    """Dropout that draws from ``generator`` when one is set: folds trained at once on several
    threads would otherwise share torch's global generator, and a run would not repeat."""

    generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or self.generator is None:
            return super().forward(x)
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep.to(x.dtype) / (1 - self.p)


def seed_dropout(net: nn.Module, generator: torch.Generator) -> None:
    for m in net.modules():
        if isinstance(m, SeededDropout):
            m.generator = generator


class SmallCNN(nn.Module):
    """Two conv blocks + a linear head, for small images (8..64 px, 1 or 3 channels).

    (B, C, H, W) -> (B, classes). ``width`` scales the channels (16 -> 16/32).
    """

    def __init__(self, num_classes: int, in_channels: int = 3, width: int = 16):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(nn.Flatten(), SeededDropout(0.2), nn.Linear(2 * width * 16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class TinyMLP(nn.Module):
    """One hidden layer over flattened pixels: (B, C, H, W) -> (B, classes)."""

    def __init__(self, num_classes: int, in_channels: int = 3, size: int = 16, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * size * size, hidden), nn.ReLU(), nn.Linear(hidden, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

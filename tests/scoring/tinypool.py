"""Tiny seeded pool members for engine tests: no downloads, milliseconds per batch.

Importable from a subprocess (the kill/resume tests run scoring in a child process).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from scoring.pool.base import Encoder, Member, Pool, Preprocess, stable_hash
from scoring.pool.member_spec import MemberSpec

SIZE = 8
COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def make_imagefolder(root: Path, per_class: int = 6, corrupt: bool = True) -> Path:
    """Solid-ish colour images, one colour per class, plus noise; optionally a corrupt file."""
    rng = np.random.default_rng(0)
    for cls, rgb in COLOURS.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            arr = np.clip(np.array(rgb) + rng.normal(0, 60, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(arr).save(root / cls / f"{i:03d}.png")
    if corrupt:
        (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
        (root / "green" / "empty.jpg").write_bytes(b"")
    return root


class Slow(torch.nn.Module):
    """Sleeps per batch so a test can kill a run part-way."""

    def __init__(self, inner: torch.nn.Module, delay: float):
        super().__init__()
        self.inner, self.delay = inner, delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        return self.inner(x)


class TinyCheckpoint(Member):
    """A seeded linear classifier over 8x8 pixels; counts the images it sees."""

    kind = "checkpoint"

    def __init__(self, name: str, classes: list[str], seed: int, delay: float = 0.0):
        torch.manual_seed(seed)
        lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * SIZE * SIZE, len(classes)))
        self.seen = 0
        self.name, self.classes = name, list(classes)
        self.spec = {"name": name, "kind": "tiny", "seed": seed}
        pp = Preprocess(size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
        module = Slow(lin, delay)
        module.register_forward_hook(self._count)
        self.encoder = Encoder(stable_hash("tiny", seed), module, pp, "logits", f"tiny{seed}")

    def _count(self, _m: object, inp: tuple[torch.Tensor, ...], _out: object) -> None:
        self.seen += int(inp[0].shape[0])

    def probs_from_outputs(self, outputs: np.ndarray) -> np.ndarray:
        e = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class TinyCentroid(Member):
    """A fitted member: out-of-fold nearest-centroid over mean colour features."""

    kind = "scratch"

    def __init__(self, name: str, classes: list[str], folds: int = 3):
        self.name, self.classes, self.folds = name, list(classes), folds
        self.spec = {"name": name, "kind": "tinycentroid", "folds": folds}
        pp = Preprocess(size=SIZE, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        module = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.encoder = Encoder(stable_hash("centroid"), module, pp, "features", "mean colour")

    def fit_predict(self, features, labels, progress=None, cancel=None, fold_cache=None):  # type: ignore[no-untyped-def]
        n, k = len(features), len(self.classes)
        fold = np.arange(n) % self.folds
        out = np.full((n, k), 1.0 / k)
        for f in range(self.folds):
            train = (fold != f) & (labels >= 0)
            cents = np.stack([
                features[train & (labels == c)].mean(0) if (train & (labels == c)).any() else np.zeros(features.shape[1])
                for c in range(k)
            ])
            test = fold == f
            d = ((features[test, None, :] - cents[None]) ** 2).sum(-1)
            e = np.exp(-(d - d.min(1, keepdims=True)) * 20)
            out[test] = e / e.sum(1, keepdims=True)
        return out


def tiny_pool(classes: list[str], delay: float = 0.0, fitted: bool = True) -> Pool:
    members: list[Member] = [TinyCheckpoint(f"tiny{s}", classes, s, delay) for s in (1, 2, 3)]
    if fitted:
        members.append(TinyCentroid("centroid", classes))
    return Pool(members, list(classes), spec=[m.spec for m in members])


def head_pool(classes: list[str], folds: int = 3) -> Pool:
    """Tiny checkpoints and a cross-fitted logistic head over 8x8 pixels (what re-ranking refits)."""
    from scoring.pool.members import HeadMember

    pp = Preprocess(size=SIZE, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    enc = Encoder(stable_hash("tinypixels"), torch.nn.Flatten(), pp, "features", "8x8 pixels")
    members: list[Member] = [TinyCheckpoint(f"tiny{s}", classes, s) for s in (1, 2)]
    members.append(HeadMember(MemberSpec("backbone", "head", folds=folds, weight_decay=1e-2), enc, list(classes)))
    return Pool(members, list(classes), spec=[m.spec for m in members])

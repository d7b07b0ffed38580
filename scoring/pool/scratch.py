"""``scratch`` members: small networks trained from scratch on the dataset, K-fold cross-fitted."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import numpy as np
import torch

from scoring.pool.base import Encoder, Member, Preprocess, stable_hash
from scoring.pool.crossfit import GLOBAL_RNG, cross_fit, fold_workers
from scoring.pool.member_spec import MemberSpec, per_seed
from scoring.pool.members import FittedMember, Pixels
from scoring.pool.models.registry import get_model
from scoring.pool.models.small import bf16_native, predict_proba, prepare, seed_dropout, train_step
from scoring.pool.timing import FitFacts, step_seconds
from scoring.progress import Cancelled

log = logging.getLogger(__name__)


def default_epochs(n_images: int) -> int:
    """Fewer passes for larger datasets: the step count, not the pass count, drives accuracy."""
    return int(np.clip(round(60_000 / max(n_images, 1) ** 1.1 * 8), 6, 30))


class ScratchMember(FittedMember):
    """A small network trained from scratch on the dataset, K-fold cross-fitted."""

    kind = "scratch"

    def __init__(self, spec: MemberSpec, encoder: Encoder, dataset_classes: list[str]):
        super().__init__(spec, encoder, dataset_classes)
        self.arch = spec.arch or "small_cnn"
        self.epochs = spec.epochs
        self.batch_size = spec.batch_size or 64
        self.lr = float(spec.lr or 3e-3)

    def fit_predict(self, features, labels, progress=None, cancel=None, fold_cache=None):  # type: ignore[no-untyped-def]
        pp = self.encoder.preprocess
        c = 1 if pp.grayscale else 3
        x_all = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32)).view(-1, c, pp.size, pp.size)
        k = len(self.classes)
        epochs = int(self.epochs or default_epochs(int((labels >= 0).sum())))
        bf16 = bf16_native(torch.device("cpu"))

        def fit(train: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
            with GLOBAL_RNG:  # folds start at once on several threads: one seeds and draws at a time
                torch.manual_seed(self.seed * 1000 + len(train))
                net = prepare(get_model(self.arch, num_classes=k, in_channels=c, size=pp.size))
            rows, y = torch.from_numpy(train), torch.from_numpy(labels[train]).long()
            steps = epochs * max(1, -(-len(train) // self.batch_size))
            opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=5e-4)
            sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
            gen = torch.Generator().manual_seed(self.seed)
            seed_dropout(net, gen)
            net.train()
            for _ in range(epochs):
                order = torch.randperm(len(train), generator=gen)
                for s in range(0, len(train), self.batch_size):
                    if cancel is not None and cancel():  # every batch: Ctrl+C stops within one
                        raise Cancelled()
                    bi = order[s : s + self.batch_size]
                    train_step(net, opt, sched, _shift(x_all[rows[bi]], gen), y[bi], bf16)
            net.eval()

            def predict(idx: np.ndarray) -> np.ndarray:
                return predict_proba(net, x_all[idx], bf16).numpy()

            return predict

        return cross_fit(labels, k, self.folds, fit, progress, cancel, self.name, fold_cache,
                         workers=fold_workers(self.folds))


def _shift(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (one shift per batch): light augmentation."""
    dx, dy = (int(v) for v in torch.randint(-pad, pad + 1, (2,), generator=gen))
    return torch.roll(x, shifts=(dy, dx), dims=(2, 3))


def scratch_members(spec: MemberSpec, dataset_classes: list[str]) -> list[Member]:
    """One scratch spec -> one member per seed, sharing the pixel encoder."""
    pp = Preprocess.from_dict(spec.preprocess or {"size": 28, "grayscale": False})
    encoder = Encoder(stable_hash("pixels", pp.key), Pixels(), pp, "features", f"pixels {pp.size}px")
    return [ScratchMember(sub, encoder, dataset_classes) for sub in per_seed(spec)]


def scratch_fit_seconds(m: ScratchMember, facts: FitFacts) -> float:
    """The kind's fit time here: one training step of its own network on a batch, timed, times the
    steps of every epoch and fold."""
    pp = m.encoder.preprocess
    c = 1 if pp.grayscale else 3
    net = get_model(m.arch, num_classes=facts.n_classes, in_channels=c, size=pp.size)
    steps = int(m.epochs or default_epochs(facts.n_images)) * max(1, -(-facts.n_train // m.batch_size))
    bf16, workers = bf16_native(torch.device("cpu")), fold_workers(m.folds)
    step = facts.probe(("train step", m.arch, c, pp.size, facts.n_classes, m.batch_size, bf16, workers),
                       lambda: step_seconds(net, c, pp.size, facts.n_classes, m.batch_size, torch.device("cpu"),
                                            bf16, layout=True, workers=workers))
    return math.ceil(m.folds / workers) * steps * step

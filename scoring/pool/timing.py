"""Timing a member's work on this machine, for the run's estimate (scoring.tasks.estimate_time):
the primitives each member kind's ``fit_seconds`` measures with (``MemberKind.fit_seconds``).
Nothing is guessed from a table: a training step, a forward pass and a logistic head are timed
here, on a batch of the member's own input size, and scaled by the run's images and epochs."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from scoring.pool.crossfit import fit_logreg, one_torch_thread_each
from scoring.pool.models.small import prepare, train_step


@dataclass
class FitFacts:
    """What a fit time depends on, for one run: images, the training rows a fold sees, classes,
    the device; ``dims`` keeps each encoder's feature width once measured, ``probes`` each
    timing once measured (:meth:`probe`)."""

    n_images: int
    n_train: int
    n_classes: int
    device: torch.device
    dims: dict[str, int] = field(default_factory=dict)
    probes: dict[Hashable, float] = field(default_factory=dict)

    def probe(self, key: Hashable, measure: Callable[[], float]) -> float:
        """``measure()``, once per ``key`` for the whole estimate: members alike in what is timed
        (two seeds of one network, the four fractions of one head) share one measurement, so
        one slow probe cannot make two seeds of one network differ fivefold (10 s and 56 s, seen
        with another process on the cores) or the first head pay the warm-up of all four."""
        if key not in self.probes:
            self.probes[key] = measure()
        return self.probes[key]

    def feature_dim(self, encoder: Any) -> int:
        """The width of ``encoder``'s output (one forward of a blank image, once per encoder)."""
        if encoder.key not in self.dims:
            pp = encoder.preprocess
            with torch.inference_mode():
                x = torch.zeros(1, 1 if pp.grayscale else 3, pp.size, pp.size)
                self.dims[encoder.key] = int(encoder.module.to("cpu").eval()(x).shape[1])
        return self.dims[encoder.key]


def timed(fn: Any, repeats: int = 3, warm: int = 2, at_least: float = 0.05) -> float:
    """Seconds of one call of ``fn``: the median of ``repeats`` measurements after ``warm`` calls
    (the first calls pay one-time costs: thread pools, lazy kernels, the optimiser's state), each
    measurement as many calls as last ``at_least`` seconds. The median, not the best: a run lasts
    minutes at the rate the machine sustains (the best of three said 56 s for a forward pass of
    76 s over 10,000 images). Many calls per measurement: a call of a millisecond that another
    process preempts once reads ten times slower (an MLP's fit was said at 169 s and took 16 s
    with one core busy)."""
    for _ in range(warm):
        fn()
    t0 = time.perf_counter()
    fn()
    calls = max(1, min(1000, math.ceil(at_least / max(time.perf_counter() - t0, 1e-6))))
    took = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        took.append((time.perf_counter() - t0) / calls)
    return float(np.median(took))


def at_once(measure: Callable[[], float], workers: int) -> float:
    """``measure()`` as folds fitted at once take it (``crossfit.fold_workers``): ``workers``
    copies measured at the same time, each on one torch thread; the median of theirs."""
    with one_torch_thread_each(workers) as ex:
        return float(np.median(list(ex.map(lambda _: measure(), range(workers)))))


def encoder_rate(module: torch.nn.Module, pp: Any, device: torch.device, batch: int = 32) -> float:
    """Images per second of ``module`` (a torch module or scoring.engine.runtime.OrtModule) at ``pp``'s size."""
    x = torch.randn(batch, 1 if pp.grayscale else 3, pp.size, pp.size, device=device)
    module = module.to(device).eval()
    with torch.inference_mode():
        return batch / max(timed(lambda: module(x)), 1e-6)


def step_seconds(net: torch.nn.Module, c: int, size: int, k: int, batch: int, device: torch.device,
                 bf16: bool = False, layout: bool = False, workers: int = 1) -> float:
    """Seconds of one training step of ``net`` on a batch, as the scratch members' loop takes it:
    a shuffled batch gathered from the images, shifted, forward with label smoothing (in bfloat16
    where ``bf16``, channels-last where ``layout``, as the loop runs), backward, AdamW and the
    one-cycle schedule (for a tiny network the loop's own work is most of a step: timing the
    forward and backward alone said 7 s for an MLP that took 17 s on 2,000 images). With
    ``workers`` > 1, as folds fitted at once take it (``crossfit.fold_workers``): that many
    copies timed at the same time, each on one thread; the median of theirs."""
    if workers > 1:
        return at_once(lambda: step_seconds(copy.deepcopy(net), c, size, k, batch, device, bf16, layout), workers)
    net = net.to(device).train()
    if layout:
        net = prepare(net)
    pool = torch.randn(4 * batch, c, size, size, device=device)
    y_all = torch.randint(0, k, (4 * batch,), device=device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=1000)
    gen = torch.Generator().manual_seed(0)

    def step() -> None:
        bi = torch.randperm(len(pool), generator=gen)[:batch]
        dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=gen))
        train_step(net, opt, sched, torch.roll(pool[bi], shifts=(dy, dx), dims=(2, 3)), y_all[bi], bf16, layout)

    return timed(step)


def head_seconds(n_train: int, dim: int, k: int, workers: int = 1) -> float:
    """Seconds of one logistic head on ``n_train`` rows of ``dim`` features: timed on up to 1,000
    rows, scaled linearly (L-BFGS's iterations are full passes); with ``workers`` > 1, as folds
    fitted at once fit it (``at_once``)."""
    if workers > 1:
        return at_once(lambda: head_seconds(n_train, dim, k), workers)
    m = max(k * 2, min(n_train, 1000))
    rng = np.random.default_rng(0)
    # rows like a frozen encoder's features of labelled images: non-negative, grouped by class,
    # a quarter of the labels off. On pure noise L-BFGS stops 1.5-3x sooner, and the heads of
    # the automatic pool on 10,000 CIFAR images were said at 10 s and took 27 s.
    truth = rng.integers(0, k, m)
    x = np.maximum(0.0, rng.standard_normal((m, dim)) + 0.3 * rng.standard_normal((k, dim))[truth]).astype(np.float32)
    y = np.where(rng.random(m) < 0.25, rng.integers(0, k, m), truth)
    return timed(lambda: fit_logreg(x, y, k, 0, 3e-2), repeats=2, warm=1) * n_train / m

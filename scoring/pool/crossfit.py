"""K-fold cross-fitting, shared by every fitted member kind (backbone heads, scratch and
fine-tuned networks): stratified folds, out-of-fold prediction with a fold cache that survives a
kill, class-balanced subsampling, and the logistic head."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from torch import nn

from scoring.pool.base import PoolError, ProgressFn

log = logging.getLogger(__name__)


class FoldCache(Protocol):
    """Where cross-fitting keeps each finished fold's predictions (the project, in a run)."""

    def load(self, fold: int, folds: int, rows: np.ndarray) -> np.ndarray | None: ...

    def save(self, fold: int, folds: int, rows: np.ndarray, probs: np.ndarray) -> None: ...


def stratified_folds(labels: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Fold index per image (N,), each class spread evenly over k folds; -1 labels spread too."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        folds[idx] = (np.arange(len(idx)) + rng.integers(k)) % k
    return folds


def cross_fit(
    labels: np.ndarray,
    n_classes: int,
    folds: int,
    fit: Callable[[np.ndarray], Callable[[np.ndarray], np.ndarray]],
    progress: ProgressFn | None,
    cancel: Callable[[], bool] | None,
    name: str,
    fold_cache: FoldCache | None = None,
    on_cached: Callable[[int], None] | None = None,
) -> np.ndarray:
    """K-fold cross-fitting: ``fit(train_idx)`` returns ``predict(idx) -> (n, K)``.

    Labelled images get their held-out fold's prediction; unlabelled ones the folds' mean.
    With a ``fold_cache``, each fold's predictions are stored as soon as it finishes and a
    fold already stored is not fitted again (a killed run resumes at the next fold).
    """
    n = len(labels)
    labelled = labels >= 0
    n_lab = int(labelled.sum())
    if n_lab < 2:
        raise PoolError(f"member {name!r} needs labelled images to fit on; found {n_lab}")
    k = max(2, min(folds, n_lab))
    fold = np.full(n, -1)
    fold[labelled] = stratified_folds(labels[labelled], k)
    out = np.zeros((n, n_classes), dtype=np.float64)
    unl = np.flatnonzero(~labelled)
    for f in range(k):
        if cancel is not None and cancel():
            from scoring.progress import Cancelled

            raise Cancelled()
        train = np.flatnonzero(labelled & (fold != f))
        test = np.flatnonzero(fold == f)
        rows = np.concatenate([test, unl])
        got = fold_cache.load(f, k, rows) if fold_cache is not None else None
        if got is None:
            predict = fit(train)
            got = predict(rows) if len(rows) else np.zeros((0, n_classes))
            if fold_cache is not None:
                fold_cache.save(f, k, rows, got)
        elif on_cached is not None:
            on_cached(f)
        out[test] = got[: len(test)]
        out[unl] += got[len(test) :] / k
        if progress is not None:
            progress(f + 1, k, f"{name}: fold {f + 1}/{k}")
    out = np.clip(out, 0, None)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def subsample(idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    if fraction >= 1.0:
        return idx
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(labels[idx]):
        ci = idx[labels[idx] == c]
        keep.append(rng.choice(ci, size=max(1, round(fraction * len(ci))), replace=False))
    return np.sort(np.concatenate(keep))


WEIGHT_DECAYS = (1e-3, 1e-2, 3e-2, 1e-1)  # the head's L2 penalties choose_weight_decay tries


def choose_weight_decay(x: np.ndarray, y: np.ndarray, n_classes: int, seed: int) -> float:
    """The L2 penalty of WEIGHT_DECAYS whose head, fitted on 80 % of ``x`` (stratified), gives
    the held-out 20 % the lowest log-loss. On the CIFAR-10 test JPEGs' EfficientNet-Lite0 features
    the fixed 1e-3 gave 0.757 out-of-fold top-1 and 3e-2 gave 0.788: how much to regularise
    depends on the features and the number of images, so it is measured on the data."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(y), bool)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        held[rng.choice(idx, size=len(idx) // 5, replace=False)] = True
    if held.sum() < n_classes or (~held).sum() < n_classes:
        return WEIGHT_DECAYS[1]
    best, best_loss = WEIGHT_DECAYS[1], np.inf
    for wd in WEIGHT_DECAYS:
        p = fit_logreg(x[~held], y[~held], n_classes, seed, wd)(x[held])
        loss = float(-np.log(np.clip(p[np.arange(int(held.sum())), y[held]], 1e-9, 1.0)).mean())
        if loss < best_loss:
            best, best_loss = wd, loss
    return best


def fit_logreg(
    x: np.ndarray, y: np.ndarray, n_classes: int, seed: int, weight_decay: float = 1e-3, steps: int = 100
) -> Callable[[np.ndarray], np.ndarray]:
    """Multinomial logistic regression (full-batch L-BFGS) on standardised features."""
    torch.manual_seed(seed)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mu) / sd).float()
    yt = torch.from_numpy(y).long()
    lin = nn.Linear(x.shape[1], n_classes)
    opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(lin(xt), yt) + weight_decay * (lin.weight**2).sum()
        loss.backward()
        return loss

    opt.step(closure)

    def predict(z: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(lin(torch.from_numpy((z - mu) / sd).float()), 1).double().numpy()

    return predict



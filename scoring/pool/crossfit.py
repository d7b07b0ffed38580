"""K-fold cross-fitting, shared by every fitted member kind (backbone heads, scratch and
fine-tuned networks): stratified folds, out-of-fold prediction with a fold cache that survives a
kill, class-balanced subsampling, and the logistic head."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from typing import Protocol

import numpy as np
import torch
from torch import nn

from scoring.pool.base import PoolError, ProgressFn

log = logging.getLogger(__name__)
GLOBAL_RNG = threading.Lock()  # folds fitted at once seed torch's global generator one at a time


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
    workers: int = 1,
    first: Callable[[np.ndarray], None] | None = None,
) -> np.ndarray:
    """K-fold cross-fitting: ``fit(train_idx)`` returns ``predict(idx) -> (n, K)``.

    Labelled images get their held-out fold's prediction; unlabelled ones the folds' mean.
    With a ``fold_cache``, each fold's predictions are stored as soon as it finishes and a
    fold already stored is not fitted again (a killed run resumes at the next fold). With
    ``workers`` > 1, that many folds are fitted at once, each on one thread (``fold_workers``).
    ``first(train)`` runs once, with the first fold's training rows, before any fold is fitted
    (a head's L2 penalty is chosen there): the same rows whichever fold starts first.
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
    primed: list[bool] = []
    primed_lock = threading.Lock()

    def one(f: int) -> tuple[np.ndarray, bool]:
        """Fold ``f``'s predictions for its held-out and the unlabelled rows, and whether they
        came from the cache."""
        train = np.flatnonzero(labelled & (fold != f))
        rows = np.concatenate([np.flatnonzero(fold == f), unl])
        got = fold_cache.load(f, k, rows) if fold_cache is not None else None
        if got is not None:
            return got, True
        with primed_lock:
            if first is not None and not primed:
                first(np.flatnonzero(labelled & (fold != 0)))
                primed.append(True)
        predict = fit(train)
        got = predict(rows) if len(rows) else np.zeros((0, n_classes))
        if fold_cache is not None:
            fold_cache.save(f, k, rows, got)
        return got, False

    def place(f: int, got: np.ndarray, cached: bool, done: int) -> None:
        test = np.flatnonzero(fold == f)
        out[test] = got[: len(test)]
        out[unl] += got[len(test) :] / k
        if cached and on_cached is not None:
            on_cached(f)
        if progress is not None:
            progress(done, k, f"{name}: fold {f + 1}/{k}")

    if workers > 1 and k > 1:
        _at_once(one, place, k, workers, cancel)
    else:
        for f in range(k):
            _check(cancel)
            place(f, *one(f), f + 1)
    out = np.clip(out, 0, None)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


def fold_workers(folds: int) -> int:
    """How many folds to fit at once: one per thread torch would use, each fold on one thread.
    A fold's steps (a small network's, a logistic head's) are too small to share out, and a fit
    on a helper thread (the engine fits there, to report each fold) ran its two-thread steps 1.5-2x slower than the
    same steps on the main thread once that thread had run torch: the GNU OpenMP runtime spins
    only briefly when it manages more threads than there are CPUs. On this 2-core CPU the
    automatic pool's CNN took 9.9 ms a step on one thread, 18.6 on two from a helper thread, and
    two folds at once 6.1 ms a step each."""
    return max(1, min(folds, torch.get_num_threads()))


def _check(cancel: Callable[[], bool] | None) -> None:
    if cancel is not None and cancel():
        from scoring.progress import Cancelled

        raise Cancelled()


@contextmanager
def one_torch_thread_each(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of ``workers`` threads that run torch on one thread each (``fold_workers``);
    torch's thread count is as it was after, whatever happens."""
    threads = torch.get_num_threads()
    ex = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fold",
                            initializer=torch.set_num_threads, initargs=(1,))
    try:
        yield ex
    finally:
        ex.shutdown(wait=True)
        torch.set_num_threads(threads)


def _at_once(one: Callable[[int], tuple[np.ndarray, bool]], place: Callable[[int, np.ndarray, bool, int], None],
             k: int, workers: int, cancel: Callable[[], bool] | None) -> None:
    """``one(f)`` for every fold, ``workers`` at a time on one torch thread each; ``place`` on
    this thread as each finishes."""

    def checked(f: int) -> tuple[np.ndarray, bool]:
        _check(cancel)
        return one(f)

    with one_torch_thread_each(workers) as ex:
        futures = {ex.submit(checked, f): f for f in range(k)}
        try:
            for done, fut in enumerate(as_completed(futures), 1):
                place(futures[fut], *fut.result(), done)
        except BaseException:
            for fut in futures:  # folds not started do not start; a running one stops at its next
                fut.cancel()     # batch on a cancel, or ends (the fits check nothing else)
            raise


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
    with GLOBAL_RNG:
        torch.manual_seed(seed)
        lin = nn.Linear(x.shape[1], n_classes)
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xt = torch.from_numpy((x - mu) / sd).float()
    yt = torch.from_numpy(y).long()
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



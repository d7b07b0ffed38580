"""How many label errors are there, and how many are left in what has not been reviewed?

* Before any review: a confident-joint count (Northcutt, Jiang & Chuang, "Confident Learning",
  JAIR 2021). Per class j a threshold t_j = the pool's mean probability of j over the images
  labelled j; an image labelled i is counted as truly j* = the most probable class whose
  probability reaches its threshold; the images counted off the diagonal (j* != i) are the
  estimated label errors - cleanlab's ``num_label_issues`` default ("off_diagonal"). The
  calibrated variant (rows rescaled to the class sizes, ``calibrated=True``) also gives the
  images with no confident class the same error rate as the confident ones; with a pool that is
  unsure of many images that overcounts. Measured with 500 planted flips in 10,000 images
  (benchmarks/bench_label_errors.py): CIFAR-10, four cross-fitted heads (pool top-1 0.88),
  random / confusable flips: 507 / 519 uncalibrated, 767 / 778 calibrated.
* The thresholds assume calibrated probabilities, and a pool's mean is under-confident (averaging
  members flattens it; small networks trained on noisy labels are too): the mean is first
  temperature-scaled (one T, fitted by the likelihood of the given labels, Guo et al. 2017).
  Measured, same benchmark, random / confusable flips: CIFAR-10 545 / 587 (T 0.86 / 0.80),
  MNIST with the scratch pool 400 / 423 (T 0.80 / 0.70; without scaling 363 / 375).
* As the annotator works: each image's chance of being an error is taken as
  ``1 - self-confidence`` (the pool's mean probability of its given label), scaled by a factor
  that starts where the confident joint puts it and moves towards the observed hit rate
  (relabels + removes per reviewed image) as reviews accumulate; the errors left are the scaled
  sum over the unreviewed images, with a 90 % interval, and the expected errors among the next
  100 images of the queue tell the annotator when to stop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring.store import Project, QueueFilter

PRIOR_WEIGHT = 20.0  # reviews the confident-joint calibration counts for, before observed hits take over
CHUNK = 50_000


def confident_joint(mean_probs: np.ndarray, labels: np.ndarray, calibrated: bool = True) -> np.ndarray:
    """(N, K) pool-mean probabilities, (N,) labels (-1 = none) -> (K, K) counts, rows = given
    label, columns = estimated true label; ``calibrated``: rows rescaled to the class sizes."""
    p = np.asarray(mean_probs, dtype=np.float64)
    y = np.asarray(labels)
    k = p.shape[1]
    lab = y >= 0
    counts = np.bincount(y[lab], minlength=k).astype(np.float64)
    thresholds = np.array([p[y == j, j].mean() if counts[j] else np.inf for j in range(k)])
    above = p[lab] >= thresholds
    masked = np.where(above, p[lab], -1.0)
    best = masked.argmax(axis=1)
    has = above.any(axis=1)
    cj = np.zeros((k, k))
    np.add.at(cj, (y[lab][has], best[has]), 1.0)
    if not calibrated:
        return cj
    row = cj.sum(axis=1, keepdims=True)
    return np.divide(cj, row, out=np.zeros_like(cj), where=row > 0) * counts[:, None]


def temperature_scaled(probs: np.ndarray, labels: np.ndarray, fit_rows: int = 50_000) -> tuple[float, np.ndarray]:
    """(T, probs ** (1/T) renormalised) with T > 0 maximising the likelihood of the given labels
    (-1 = none, left out) over a grid from 0.05 to 3; fitted on at most ``fit_rows`` rows."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1.0)
    y = np.asarray(labels)
    rows = np.flatnonzero(y >= 0)
    if len(rows) == 0:
        return 1.0, p / p.sum(axis=1, keepdims=True)
    if len(rows) > fit_rows:
        rows = np.random.default_rng(0).choice(rows, fit_rows, replace=False)
    lp = np.log(p[rows])
    best_t, best_nll = 1.0, np.inf
    for t in np.exp(np.linspace(np.log(0.05), np.log(3.0), 60)):
        z = lp / t
        z -= z.max(axis=1, keepdims=True)
        nll = float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(rows)), y[rows]]))
        if nll < best_nll:
            best_t, best_nll = float(t), nll
    z = np.log(p) / best_t
    z -= z.max(axis=1, keepdims=True)
    q = np.exp(z)
    return best_t, q / q.sum(axis=1, keepdims=True)


def estimated_errors(mean_probs: np.ndarray, labels: np.ndarray, calibrated: bool = False) -> float:
    """The estimated number of label errors: the off-diagonal count of the confident joint of the
    temperature-scaled pool mean (see the module text); ``calibrated`` rescales its rows to the
    class sizes first."""
    _, scaled = temperature_scaled(mean_probs, labels)
    cj = confident_joint(scaled, labels, calibrated=calibrated)
    return float(cj.sum() - np.trace(cj))


@dataclass(frozen=True)
class ErrorsLeft:
    estimated_total: float  # confident-joint estimate over the whole dataset
    reviewed: int
    found: int  # relabels and removes so far
    left: float
    low: float
    high: float
    next_100: float  # expected errors among the next 100 unreviewed images of the queue

    def suggests_stop(self, threshold: float = 1.0) -> bool:
        """True when the next 100 images of the queue hold fewer than ``threshold`` expected errors."""
        return self.next_100 < threshold

    def line(self) -> str:
        return f"about {self.left:,.0f} ({self.low:,.0f}-{self.high:,.0f}) errors left"


def errors_left(project: Project, sort: str = "margin") -> ErrorsLeft | None:
    """The estimate for a scored, labelled project (None when there is nothing to estimate)."""
    members = project.active_members()
    if not members:
        return None
    rows = project.self_confidences()
    if not rows:
        return None
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    p_err = 1.0 - np.array([r[1] for r in rows], dtype=np.float64)
    status = np.array([r[2] for r in rows])
    fps = [m["fingerprint"] for m in members]
    labels = project.given_labels(ids)
    mean = np.concatenate([project.get_probs(fps, ids[s : s + CHUNK]).mean(axis=0) for s in range(0, len(ids), CHUNK)])
    total = estimated_errors(mean, labels)
    c0 = total / max(float(p_err.sum()), 1e-9)
    reviewed = status != "unreviewed"
    hits = int(np.isin(status, ("relabelled", "removed")).sum())
    expected_hits = float(p_err[reviewed].sum())
    c = (hits + c0 * PRIOR_WEIGHT * float(p_err.mean())) / (expected_hits + PRIOR_WEIGHT * float(p_err.mean()))
    q = np.clip(c * p_err[~reviewed], 0.0, 1.0)
    left = float(q.sum())
    rel_sd = 1.0 / np.sqrt(hits + PRIOR_WEIGHT)
    sd = float(np.sqrt((q * (1 - q)).sum() + (left * rel_sd) ** 2))
    nxt = project.queue(QueueFilter(status="unreviewed"), sort=sort, limit=100)
    next_100 = float(sum(min(1.0, c * (1.0 - (r.self_confidence or 0.0))) for r in nxt))
    return ErrorsLeft(total, int(reviewed.sum()), hits, left, max(0.0, left - 1.64 * sd), left + 1.64 * sd, next_100)

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
* As the annotator works: the images are binned by ``1 - self-confidence`` (the pool's doubt
  in the given label: stretches of the label queue). A bin's error rate starts at the share of
  its images the confident joint counts as errors and moves to the hit rate observed in it
  (relabels + removes per reviewed image) as it is reviewed; the errors left are the rates
  times the unreviewed images per bin, with a 90 % interval, and the expected errors among the
  next 100 images of the queue tell the annotator when to stop. Fifty bins of equal size: the
  reviewed images of a bin are its most suspicious, so a coarse bin carries the head's hit rate
  too far. Measured (a simulated annotator working down the margin queue, 100 reviews at a
  time): CIFAR-10 with 500 flips (and its own real errors), truly left 400 / 256 / 189 / 138 ->
  about 526 / 394 / 283 / 180; eight fixed bins said 870 / 599 / 387 / 298, and one factor for
  all images (as first built) said 196 of 34 on the demo after its first 20 reviews.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scoring.store import Project, QueueFilter

PRIOR_WEIGHT = 20.0  # reviews the confident-joint calibration counts for, before observed hits take over
CHUNK = 50_000


def _confident_class(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(N,) each image's confident class: the most probable class j whose probability reaches
    t_j (the mean probability of j over the images labelled j); -1 where none does."""
    k = p.shape[1]
    thresholds = np.array([p[y == j, j].mean() if (y == j).any() else np.inf for j in range(k)])
    above = p >= thresholds
    return np.where(above.any(axis=1), np.where(above, p, -1.0).argmax(axis=1), -1)


def confident_joint(mean_probs: np.ndarray, labels: np.ndarray, calibrated: bool = True) -> np.ndarray:
    """(N, K) pool-mean probabilities, (N,) labels (-1 = none) -> (K, K) counts, rows = given
    label, columns = estimated true label; ``calibrated``: rows rescaled to the class sizes."""
    p = np.asarray(mean_probs, dtype=np.float64)
    y = np.asarray(labels)
    k = p.shape[1]
    counts = np.bincount(y[y >= 0], minlength=k).astype(np.float64)
    best = _confident_class(p, y)
    ok = (y >= 0) & (best >= 0)
    cj = np.zeros((k, k))
    np.add.at(cj, (y[ok], best[ok]), 1.0)
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


def confident_errors(mean_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) bool: the images the confident joint of the temperature-scaled mean counts off the
    diagonal (a confident class other than the given label); their number is the estimate."""
    _, p = temperature_scaled(mean_probs, labels)
    y = np.asarray(labels)
    best = _confident_class(p, y)
    return (y >= 0) & (best >= 0) & (best != y)


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


N_BINS = 50  # stretches of the queue: bins of 1 - self-confidence holding a 50th of the images each


def _rates_by_bin(bins: np.ndarray, flagged: np.ndarray, reviewed: np.ndarray, hit: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Per bin of 1 - self-confidence (a stretch of the queue): (rate, reviews behind it). The
    rate starts at the share of the bin's images the confident joint counts as errors and moves
    to the hit rate observed in the bin as it is reviewed, PRIOR_WEIGHT reviews to one."""
    n_bins = int(bins.max(initial=0)) + 1
    n = np.bincount(bins, minlength=n_bins).astype(np.float64)
    prior = np.divide(np.bincount(bins, weights=flagged, minlength=n_bins), n, out=np.zeros(n_bins), where=n > 0)
    seen = np.bincount(bins, weights=reviewed, minlength=n_bins)
    hits = np.bincount(bins, weights=reviewed & hit, minlength=n_bins)
    return (hits + PRIOR_WEIGHT * prior) / (seen + PRIOR_WEIGHT), seen


MIN_PER_CLASS = 5  # below this many scored images in a class, no errors-left number is given


def too_few_to_estimate(labels: np.ndarray, n_classes: int) -> bool:
    """Whether some class has fewer than MIN_PER_CLASS labelled images (issue 17: a 3-image
    dataset said "about 0 errors left")."""
    counts = np.bincount(labels[labels >= 0], minlength=n_classes)
    return bool(len(counts) == 0 or counts.min() < MIN_PER_CLASS)


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
    if too_few_to_estimate(labels, len(project.classes)):
        return None  # a number from a handful of images per class would be a guess
    mean = np.concatenate([project.get_probs(fps, ids[s : s + CHUNK]).mean(axis=0) for s in range(0, len(ids), CHUNK)])
    flagged = confident_errors(mean, labels)
    total = float(flagged.sum())
    reviewed = status != "unreviewed"
    hit = np.isin(status, ("relabelled", "removed"))
    edges = np.unique(np.quantile(p_err, np.linspace(0.0, 1.0, N_BINS + 1)[1:-1]))
    bins = np.digitize(p_err, edges)
    rate, seen = _rates_by_bin(bins, flagged, reviewed, hit)
    left_by_bin = np.bincount(bins[~reviewed], minlength=len(rate)) * rate
    left = float(left_by_bin.sum())
    # 90 % interval: each unreviewed image an error with its bin's rate, and each bin's rate known
    # as well as the errors behind it (counted in the bin + found in it) allow; a bin where none
    # was counted or found is not known to be clean (half an error of doubt)
    n_left = np.bincount(bins[~reviewed], minlength=len(rate))
    behind = np.bincount(bins, weights=flagged, minlength=len(rate)) + np.bincount(bins, weights=reviewed & hit, minlength=len(rate))
    doubt = np.maximum(left_by_bin, 0.5 * (n_left > 0)) / np.sqrt(1.0 + behind)
    sd = float(np.sqrt((n_left * rate * (1 - rate)).sum() + (doubt**2).sum()))
    nxt = project.queue(QueueFilter(status="unreviewed"), sort=sort, limit=100)
    next_100 = float(sum(rate[int(np.digitize(1.0 - (r.self_confidence or 0.0), edges))] for r in nxt))
    hits = int(hit.sum())
    return ErrorsLeft(total, int(reviewed.sum()), hits, left, max(0.0, left - 1.64 * sd), left + 1.64 * sd, next_100)

"""How many label errors are there, and how many are left in what has not been reviewed?

* Before any review: a confident-joint count (Northcutt, Jiang & Chuang, "Confident Learning",
  JAIR 2021). Per class j a threshold t_j = the pool's mean probability of j over the images
  labelled j; an image labelled i is counted as truly j* = the most probable class whose
  probability reaches its threshold; rows are calibrated to the class sizes; the off-diagonal
  mass is the estimated number of label errors.
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


def confident_joint(mean_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N, K) pool-mean probabilities, (N,) labels (-1 = none) -> (K, K) calibrated counts,
    rows = given label, columns = estimated true label."""
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
    row = cj.sum(axis=1, keepdims=True)
    return np.divide(cj, row, out=np.zeros_like(cj), where=row > 0) * counts[:, None]


def estimated_errors(mean_probs: np.ndarray, labels: np.ndarray) -> float:
    """The confident joint's off-diagonal mass: the estimated number of label errors."""
    cj = confident_joint(mean_probs, labels)
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

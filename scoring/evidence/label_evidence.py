"""Label evidence from the images around each image: its nearest images' labels, as a score.

A label error sits among images of its true class; its nearest images (in the project's
neighbour embedding: a backbone member's frozen features, else the colour thumbnails) mostly
carry another label. Two scores of the label view come from that, computed over the whole
dataset after the per-image scores (:mod:`scoring.engine.score_pass`):

* ``neighbour_agreement`` - the similarity-weighted share of an image's ``K`` nearest images
  (itself left out, removed images left out, current labels) that carry its given label.
  Training-free (SimiFeat, Zhu et al. ICML 2022; cleanlab #735): no model sees the label it
  judges, because an image never votes for itself.
* ``label_issue`` - the neighbours' votes added to the pool as one more member, with the weight
  that makes the given labels most likely (0 to 8 members' worth), then of that mean
  ``((1 - p_label) + OTHER_WEIGHT * p_best_other) / (1 + OTHER_WEIGHT)``, 0 to 1: higher = more
  likely a label error. ``OTHER_WEIGHT`` 1 would order as the margin does, 0 as self-confidence.
  The votes are added only where they classify about as well as the pool does (their top-1
  agreement with the given labels within ``ACCURACY_SLACK`` of the pool's): a weaker source only
  adds noise to a strong pool.
  Chosen by measurement (issue 36; benchmarks/bench_label_errors.py --sorts): margin finds
  flips to a look-alike class best, self-confidence finds random flips and the errors people
  confirmed in MNIST and CIFAR-10 best; with 2 % of CIFAR-10's 10,000 labels flipped, a mix of
  kinds, three draws, the four ResNets' heads: planted flips in the first 100 rows, margin 173,
  self-confidence 180, weight 0.5 175, weight 0.25 185; on MNIST (the automatic pool's heads,
  one draw) 87 before and after, margin 87, self-confidence 85.
"""

from __future__ import annotations

from typing import Any

import numpy as np

K = 10  # nearest images that vote
EXACT_BELOW = 50_000  # exact search below this many images, HNSW (approximate: recall 0.99 on clustered features) above
ACCURACY_SLACK = 0.03  # the neighbours vote when their top-1 is within this of the pool's
WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # members' worth the votes may count for
SMOOTH = 0.1  # added to every class's vote, so no class is impossible
OTHER_WEIGHT = 0.25  # label_issue's weight on the likeliest other class (1: the margin's order, 0: self-confidence's)


def nearest(unit: np.ndarray, k: int = K) -> tuple[np.ndarray, np.ndarray]:
    """(N, d) unit rows -> (similarities, rows) of each row's ``k`` nearest other rows, (N, k)
    each, most similar first; -1 where fewer exist. Inner product = cosine; faiss's exact flat
    search below EXACT_BELOW rows, its HNSW graph above."""
    import faiss

    n, d = unit.shape
    x = np.ascontiguousarray(unit, dtype=np.float32)
    index: Any
    if n < EXACT_BELOW:
        index = faiss.IndexFlatIP(d)
    else:
        index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = 64
    index.add(x)
    sims, rows = index.search(x, min(k + 1, n))
    keep = np.ones(rows.shape, bool)
    own = rows == np.arange(n)[:, None]
    keep[own] = False
    keep[~own.any(axis=1), -1] = False  # itself not found (ties, HNSW): drop the farthest instead
    sims = sims[keep].reshape(n, -1)[:, :k]
    rows = rows[keep].reshape(n, -1)[:, :k]
    return sims, rows


def votes(sims: np.ndarray, rows: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    """(N, K) class distribution of each image's neighbours: similarity-weighted votes of those
    with a label (``labels`` -1: none, or removed), smoothed by SMOOTH per class."""
    n = len(rows)
    ok = rows >= 0
    lab = np.where(ok, labels[np.where(ok, rows, 0)], -1)
    w = np.where(lab >= 0, np.clip(sims, 0.0, None) + 1e-6, 0.0)
    v = np.zeros((n, n_classes))
    r, c = np.nonzero(lab >= 0)
    np.add.at(v, (r, lab[r, c]), w[r, c])
    v += SMOOTH
    return v / v.sum(axis=1, keepdims=True)


def stack_weight(mean: np.ndarray, v: np.ndarray, labels: np.ndarray, n_members: int) -> float:
    """How many members' worth the votes ``v`` count for beside the pool ``mean``: the weight of
    WEIGHTS that makes the given labels most likely; 0 when the votes classify worse than the
    pool by more than ACCURACY_SLACK."""
    y = np.asarray(labels)
    have = y >= 0
    if not have.any():
        return 0.0
    yy, pm, vv = y[have], mean[have], v[have]
    if (vv.argmax(1) == yy).mean() < (pm.argmax(1) == yy).mean() - ACCURACY_SLACK:
        return 0.0
    rows = np.arange(len(yy))
    best, best_ll = 0.0, -np.inf
    for w in WEIGHTS:
        mixed = (n_members * pm[rows, yy] + w * vv[rows, yy]) / (n_members + w)
        ll = float(np.log(np.clip(mixed, 1e-9, 1.0)).mean())
        if ll > best_ll + 1e-9:
            best, best_ll = w, ll
    return best


def scores(mean: np.ndarray, v: np.ndarray, labels: np.ndarray, weight: float, n_members: int
           ) -> tuple[np.ndarray, np.ndarray]:
    """(neighbour_agreement, label_issue), (N,) each, NaN where an image has no label."""
    y = np.asarray(labels)
    n = len(y)
    have = y >= 0
    yy = np.where(have, y, 0)
    agreement = np.where(have, v[np.arange(n), yy], np.nan)
    mixed = (n_members * mean + weight * v) / (n_members + weight)
    own = mixed[np.arange(n), yy]
    other = mixed.copy()
    other[np.arange(n), yy] = -np.inf
    issue = ((1.0 - own) + OTHER_WEIGHT * other.max(axis=1)) / (1.0 + OTHER_WEIGHT)
    return agreement, np.where(have, issue, np.nan)

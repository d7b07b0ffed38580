"""Label evidence from the images around each image: its nearest images' labels, as a score.

A label error sits among images of its true class; its nearest images (in the project's
neighbour embedding: a backbone member's frozen features, else the colour thumbnails) mostly
carry another label. Two scores of the label view come from that, computed over the whole
dataset after the per-image scores (:mod:`scoring.engine.score_pass`):

* ``neighbour_agreement`` - the similarity-weighted share of an image's ``K`` nearest images
  (itself left out, removed images left out, current labels) that carry its given label.
  Training-free (SimiFeat, Zhu et al. ICML 2022; cleanlab #735): no model sees the label it
  judges, because an image never votes for itself.
* ``label_issue`` - the chance that the given label is wrong. The neighbours' votes are added to
  the pool as one more member, with the weight that makes the given labels most likely (0 to 8
  members' worth; only where they classify about as well as the pool does, their top-1 agreement
  with the given labels within ``ACCURACY_SLACK`` of the pool's: a weaker source only adds noise
  to a strong pool). That mean is temperature-scaled, and a model of how this dataset's labels
  went wrong is fitted to it (:func:`fit_noise`): a share ``rate`` of labels is wrong, and of
  those a share ``look_alike`` went to a class the image resembles (in proportion to the pool's
  belief in it) and the rest to any other class at random. Both are chosen by the likelihood of
  the given labels, so the data say which kind of error they hold; ``label_issue`` is then the
  posterior chance, under that model, that the label is wrong.
  Chosen by measurement (issue 36; benchmarks/bench_label_errors.py --sorts): with random slips
  the posterior orders as self-confidence does (look_alike fitted 0), with flips to a
  look-alike class as the margin does or better (1), so no fixed blend is needed; see the README.
  Where the labels hold too little sign of either kind (``NoiseModel.decided`` false: the
  untouched CIFAR-10 and MNIST labels, flips among images the pool already doubts), the share
  stays near its prior, which leans to slips (on CIFAR-10 the errors people confirmed rank best
  that way), and the detail pane says the labels did not tell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from scoring.metrics import scaled_by, temperature_scaled

K = 10  # nearest images that vote
EXACT_BELOW = 50_000  # exact search below this many images, HNSW (approximate: recall 0.99 on clustered features) above
ACCURACY_SLACK = 0.03  # the neighbours vote when their top-1 is within this of the pool's
WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # members' worth the votes may count for
SMOOTH = 0.1  # added to every class's vote, so no class is impossible
FIT_ROWS = 50_000  # the noise model is fitted on at most this many labelled images
LOOK_ALIKE_PRIOR = 0.25  # look_alike where the labels say nothing either way (a weak prior, PRIOR_NATS at distance 1)
PRIOR_NATS = 5.0
DECIDED_NATS = 3.0  # below this the labels do not tell slips from look-alike mix-ups (issue 36: untouched
# CIFAR-10 and MNIST labels, and flips among images the pool already doubts, all within 2.3 nats)


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


@dataclass(frozen=True)
class NoiseModel:
    """How this dataset's labels went wrong, as fitted to the pool (see the module text):
    ``rate`` the share of wrong labels, ``look_alike`` the share of those that went to a class
    the image resembles (the rest: any other class), ``temperature`` the pool's scaling."""

    look_alike: float = LOOK_ALIKE_PRIOR
    rate: float = 0.0
    temperature: float = 1.0
    evidence: float = 0.0  # nats by which the fitted share beats the worse of all-slips and all-look-alike
    corrections: int = 0  # annotators' relabels the fit read (each a wrong label and its true class)

    @property
    def decided(self) -> bool:
        """Whether the labels say which kind of error they hold (a likelihood ratio of at least
        e ** DECIDED_NATS against one of the two kinds); otherwise look_alike is mostly the prior."""
        return self.evidence >= DECIDED_NATS

    def as_dict(self) -> dict[str, float]:
        return {"look_alike": self.look_alike, "rate": self.rate, "temperature": self.temperature,
                "evidence": self.evidence, "corrections": self.corrections}


def _shapes(q: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p_label, look-alike shape, random shape), (N,) each: the chance of the given label if it is
    right, and if wrong, per unit of the error rate, by each kind of error."""
    n, k = q.shape
    q = np.clip(q, 1e-6, 1 - 1e-6)
    py = q[np.arange(n), y]
    look = py * ((q / (1 - q)).sum(axis=1) - py / (1 - py))  # from any true j: p_j, then to y as p_y / (1 - p_j)
    return py, look, (1 - py) / max(k - 1, 1)


Corrections = tuple[np.ndarray, np.ndarray]  # (rows, true classes) of labels annotators corrected


def fit_noise(mean: np.ndarray, labels: np.ndarray, corrections: Corrections | None = None) -> NoiseModel:
    """The NoiseModel that makes the given labels (-1: none) most likely under the pool ``mean``
    (temperature-scaled first), on a grid: look_alike 0 to 1 by 0.05, rate 1e-4 to 0.3.
    ``corrections``: rows whose given label annotators replaced, and the class they chose; each
    says which kind of error it was (see :func:`_corrected`)."""
    y = np.asarray(labels)
    t, q = temperature_scaled(mean, y)
    return _fit(q, y, t, corrections)


def _corrected(q: np.ndarray, y: np.ndarray, corrections: Corrections | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The chance of each corrected image's wrong label given its true class, per unit of each kind:
    (look-alike: q_y / (1 - q_true), random: 1 / (K - 1)). Where the labels alone cannot tell the
    kinds apart (the pool's own mistakes look like flips to the runner-up), the corrections can:
    they say which class the wrong label came from. Measured (issue 36): with flips among images
    the pool already doubts, the 100 rows after the first 100 reviewed held 84 flips re-ranked with
    the corrections, 55 without (CIFAR-10, four ResNets' heads, three draws)."""
    if corrections is None or len(corrections[0]) == 0:
        return None
    rows, true = np.asarray(corrections[0]), np.asarray(corrections[1])
    ok = (y[rows] >= 0) & (true >= 0) & (true != y[rows]) & (true < q.shape[1])
    rows, true = rows[ok], true[ok]
    if len(rows) == 0:
        return None
    qc = np.clip(q[rows], 1e-6, 1 - 1e-6)
    at = np.arange(len(rows))
    return qc[at, y[rows]] / (1 - qc[at, true]), np.full(len(rows), 1.0 / max(q.shape[1] - 1, 1))


def _fit(q: np.ndarray, y: np.ndarray, t: float, corrections: Corrections | None = None) -> NoiseModel:
    """fit_noise on the pool already scaled by ``t``."""
    rows = np.flatnonzero(y >= 0)
    if len(rows) == 0 or q.shape[1] < 2:
        return NoiseModel(temperature=t)
    fixed = _corrected(q, y, corrections)
    if len(rows) > FIT_ROWS:
        rows = np.random.default_rng(0).choice(rows, FIT_ROWS, replace=False)
    py, look, unif = _shapes(q[rows], y[rows])
    rates = np.exp(np.linspace(np.log(1e-4), np.log(0.3), 50))[:, None]
    best, best_ll, profile = NoiseModel(temperature=t), -np.inf, []
    for a in np.linspace(0.0, 1.0, 21):
        ll = np.log(py * (1 - rates) + rates * (a * look + (1 - a) * unif)).sum(axis=1)
        if fixed is not None:
            ll = ll + float(np.log(a * fixed[0] + (1 - a) * fixed[1]).sum())
        profile.append(float(ll.max()))
        ll -= PRIOR_NATS * (a - LOOK_ALIKE_PRIOR) ** 2
        at = int(ll.argmax())
        if ll[at] > best_ll + 1e-9:
            best, best_ll = NoiseModel(float(a), float(rates[at, 0]), t), float(ll[at])
    evidence = max(profile) - min(profile[0], profile[-1])
    return NoiseModel(best.look_alike, best.rate, t, round(evidence, 3), 0 if fixed is None else len(fixed[0]))


def wrong_chance(mean: np.ndarray, labels: np.ndarray, model: NoiseModel) -> np.ndarray:
    """(N,) the posterior chance that each given label is wrong under ``model`` (NaN: no label)."""
    return _chance(scaled_by(mean, model.temperature), np.asarray(labels), model)


def _chance(q: np.ndarray, y: np.ndarray, model: NoiseModel) -> np.ndarray:
    """wrong_chance on the pool already scaled by the model's temperature."""
    have = y >= 0
    py, look, unif = _shapes(q, np.where(have, y, 0))
    wrong = model.rate * (model.look_alike * look + (1 - model.look_alike) * unif)
    return np.where(have, wrong / (wrong + (1 - model.rate) * py), np.nan)


def scores(mean: np.ndarray, v: np.ndarray, labels: np.ndarray, weight: float, n_members: int,
           corrections: Corrections | None = None) -> tuple[np.ndarray, np.ndarray, NoiseModel]:
    """(neighbour_agreement, label_issue, the fitted NoiseModel); the scores (N,) each, NaN where an
    image has no label; ``corrections`` as for :func:`fit_noise`."""
    y = np.asarray(labels)
    n = len(y)
    have = y >= 0
    yy = np.where(have, y, 0)
    agreement = np.where(have, v[np.arange(n), yy], np.nan)
    mixed = (n_members * mean + weight * v) / (n_members + weight)
    t, q = temperature_scaled(mixed, y)  # scaled once: the fit and the chances read the same pool
    model = _fit(q, y, t, corrections)
    return agreement, _chance(q, y, model), model

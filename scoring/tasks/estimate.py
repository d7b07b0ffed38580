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
from scoring.vocabulary import LABEL_SORT

PRIOR_WEIGHT = 20.0  # reviews the confident-joint calibration counts for, before observed hits take over
CHUNK = 50_000
FRONTIER_MIN = 20  # images in the last stretch reviewed, at least
PRECISION_PRIOR = 5.0  # reviews at full precision the flags' confirmed share starts from
PRIOR_DOUBT = 0.15  # the confident joint's count, as a share: within 25 % on planted flips (1.64 sd)


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


def _flags(mean_probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the temperature-scaled mean, (N,) bool: the images the confident joint counts off the
    diagonal - a confident class other than the given label)."""
    _, p = temperature_scaled(mean_probs, labels)
    y = np.asarray(labels)
    best = _confident_class(p, y)
    return p, (y >= 0) & (best >= 0) & (best != y)


TOP_SHARE = 0.2  # the share of images the pool is surest of, where label noise shows and its mistakes hardly do
STRONG_DOUBT = 0.02  # the calibrated pool's probability of the label, below which (with every member against) an error is likely


@dataclass(frozen=True)
class LikelyErrors:
    """How many label errors the evidence supports before review (issue 20), and the two
    counts it comes from; ``flagged`` is the confident joint (what the pool disagrees with
    confidently: on real data mostly the pool's own mistakes), ``disagree`` the pool's top-1
    disagreements with the labels."""

    count: float
    uniform: float  # labels contradicted among the TOP_SHARE surest images, scaled to all
    strong: int  # flagged, every member against the label, the label below STRONG_DOUBT
    flagged: int
    disagree: int


def likely_errors(mean_probs: np.ndarray, labels: np.ndarray, all_against: np.ndarray) -> tuple[LikelyErrors, np.ndarray]:
    """(LikelyErrors, the confident joint's flags (N,) bool, which it reads too). The count of likely label errors: the larger of two lower bounds, each blind to the
    other's errors. ``uniform``: among the TOP_SHARE images the pool is surest of it is almost
    never wrong, so the share of labels it contradicts there is the rate of label noise that
    falls anywhere (planted flips, careless labelling), scaled to the dataset, less one standard
    error (a small dataset's surest fifth is few images). ``strong``:
    errors sitting among hard images (as real ones do) counted one by one where the evidence is
    strong - the confident joint flags it, every member votes against the label, and the
    temperature-scaled pool gives the label less than STRONG_DOUBT. ``all_against``: (N,) bool,
    every member's top-1 differs from the label. Measured (benchmarks/bench_estimate.py
    --sets count): see the README; the confident joint alone counted 208-844 on the untouched
    CIFAR-10 test labels, where a re-annotation finds about 80-120 errors."""
    y = np.asarray(labels)
    have = y >= 0
    n = int(have.sum())
    if n == 0:
        return LikelyErrors(0.0, 0.0, 0, 0, 0), np.zeros(len(y), bool)
    q, flagged = _flags(mean_probs, y)
    p = np.asarray(mean_probs)[have]
    yy = y[have]
    top1 = p.argmax(axis=1)
    surest = np.argsort(-p.max(axis=1), kind="stable")[: max(1, int(TOP_SHARE * n))]
    rate = float((top1[surest] != yy[surest]).mean())
    uniform = max(0.0, rate - float(np.sqrt(rate * (1 - rate) / len(surest)))) * n  # less one standard error
    qy = np.where(have, q[np.arange(len(y)), np.where(have, y, 0)], 1.0)
    strong = int((flagged & all_against & (qy < STRONG_DOUBT)).sum())
    return LikelyErrors(max(uniform, float(strong)), uniform, strong, int(flagged.sum()), int((top1 != yy).sum())), flagged


def estimated_errors(mean_probs: np.ndarray, labels: np.ndarray, calibrated: bool = False) -> float:
    """The estimated number of label errors: the off-diagonal count of the confident joint of the
    temperature-scaled pool mean (see the module text); ``calibrated`` rescales its rows to the
    class sizes first."""
    _, scaled = temperature_scaled(mean_probs, labels)
    cj = confident_joint(scaled, labels, calibrated=calibrated)
    return float(cj.sum() - np.trace(cj))


@dataclass(frozen=True)
class ErrorsLeft:
    estimated_total: float  # likely label errors in the whole dataset before review (LikelyErrors.count)
    reviewed: int
    found: int  # relabels and removes so far
    left: float
    low: float
    high: float
    next_100: float  # expected errors among the next 100 unreviewed images of the queue
    flagged: int = 0  # the confident joint's count (the pool's confident disagreements)
    disagree: int = 0  # the pool's top-1 disagreements with the labels

    def suggests_stop(self, threshold: float = 1.0) -> bool:
        """True when the next 100 images of the queue hold fewer than ``threshold`` expected errors."""
        return self.next_100 < threshold

    def line(self) -> str:
        return f"about {self.left:,.0f} ({self.low:,.0f}-{self.high:,.0f}) errors left"

    def detail(self) -> str:
        """What the numbers are: the likely errors before review, and the pool's disagreements,
        which are not errors (issue 20: counting those said 844 where about 100 are)."""
        return (f"{self.line()}, of about {self.estimated_total:,.0f} likely label errors before review "
                f"({self.found:,} found in {self.reviewed:,} reviewed). The pool disagrees with "
                f"{self.disagree:,} labels ({self.flagged:,} confidently), but most of those are its own mistakes.")


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


def errors_left(project: Project, sort: str = LABEL_SORT) -> ErrorsLeft | None:
    """The estimate for a scored, labelled project (None when there is nothing to estimate)."""
    members = project.runs.active_members()
    if not members:
        return None
    rows = project.queue.self_confidences()
    if not rows:
        return None
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    p_err = 1.0 - np.array([r[1] for r in rows], dtype=np.float64)
    margin = np.array([r[2] for r in rows], dtype=np.float64)
    status = np.array([r[3] for r in rows])
    fps = [m["fingerprint"] for m in members]
    labels = project.images.given_labels(ids)
    if too_few_to_estimate(labels, len(project.classes)):
        return None  # a number from a handful of images per class would be a guess
    means, against = [], []
    for s in range(0, len(ids), CHUNK):
        probs = project.cache.get_probs(fps, ids[s : s + CHUNK])
        means.append(probs.mean(axis=0))
        against.append((probs.argmax(axis=2) != labels[s : s + CHUNK][None]).all(axis=0))
    mean = np.concatenate(means)
    likely, flagged = likely_errors(mean, labels, np.concatenate(against))
    reviewed = status != "unreviewed"
    hit = np.isin(status, ("relabelled", "removed"))
    nxt = project.queue.page(QueueFilter(status="unreviewed"), sort=sort, limit=100)
    left, low, high, next_100 = left_in_queue(p_err, margin, flagged, reviewed, hit,
                                              np.array([1.0 - (r.scores["self_confidence"] or 0.0) for r in nxt]), likely.count)
    return ErrorsLeft(likely.count, int(reviewed.sum()), int(hit.sum()), left, low, high, next_100,
                      likely.flagged, likely.disagree)


def _last_stretch(margin: np.ndarray, reviewed: np.ndarray) -> np.ndarray:
    """The reviewed images the label queue put last (highest margin): a fifth of those reviewed,
    at least FRONTIER_MIN; where review has got to."""
    done = np.flatnonzero(reviewed)
    w = max(FRONTIER_MIN, len(done) // 5)
    return done[np.argsort(np.nan_to_num(margin[done], nan=np.inf), kind="stable")[-w:]]


def left_in_queue(p_err: np.ndarray, margin: np.ndarray, flagged: np.ndarray, reviewed: np.ndarray,
                  hit: np.ndarray, next_p_err: np.ndarray, count: float | None = None
                  ) -> tuple[float, float, float, float]:
    """(left, low, high, next_100) from per-image arrays: ``p_err`` (1 - self-confidence),
    ``margin`` (the label queue's order), ``flagged`` (counted by the confident joint),
    ``reviewed``, ``hit`` (relabelled or removed), and the doubt of the next images of the queue.

    Three corrections from what review has shown (measured by benchmarks/bench_estimate.py):
    the flags still ahead count at the share of flags confirmed in the last stretch reviewed
    (flags get less precise down the queue: the confident joint also counts the pool's own
    confident mistakes and the dataset's other errors); the flag count itself is known to
    within 25 % (PRIOR_DOUBT); and errors the flags miss continue past the last stretch at up
    to its rate of unflagged hits for as many images again as have been reviewed (a heavy tail
    where flips go to confusable classes; the interval's top), while the flags ahead may be
    confirmed at as little as half that share (the interval's foot).
    """
    n_flags = int(flagged.sum())
    count = float(n_flags if count is None else count)
    prior_precision = min(1.0, count / n_flags) if n_flags else 1.0
    unflagged_doubt = np.where(flagged, 0.0, p_err)
    excess = max(0.0, count - n_flags) * unflagged_doubt / max(float(unflagged_doubt.sum()), 1e-9)
    precision = prior_precision
    tail = 0.0
    n_reviewed = int(reviewed.sum())
    if n_reviewed:
        front = _last_stretch(margin, reviewed)
        ff = front[flagged[front]]
        precision = float((hit[ff].sum() + PRECISION_PRIOR * prior_precision) / (len(ff) + PRECISION_PRIOR))
        fu = front[~flagged[front]]
        unflagged_rate = float((hit[fu].sum() + 0.5) / (len(fu) + 1.0)) if len(fu) else 0.0
        tail = unflagged_rate * min(int((~reviewed & ~flagged).sum()), n_reviewed)
    edges = np.unique(np.quantile(p_err, np.linspace(0.0, 1.0, N_BINS + 1)[1:-1]))
    bins = np.digitize(p_err, edges)
    counted = flagged * precision + excess
    rate, seen = _rates_by_bin(bins, counted, reviewed, hit)
    n_left = np.bincount(bins[~reviewed], minlength=len(rate))
    left_by_bin = n_left * rate
    left = float(left_by_bin.sum())
    # 90 % interval: each unreviewed image an error with its bin's rate; each bin's rate known as
    # well as the errors behind it (counted in the bin + found in it) allow, a bin where none was
    # counted or found not known to be clean (half an error of doubt); the flags' share of the
    # rate known to PRIOR_DOUBT (one factor for all bins); and the unflagged tail on top
    n_all = np.bincount(bins, minlength=len(rate))
    found = np.bincount(bins, weights=reviewed & hit, minlength=len(rate))
    behind = np.bincount(bins, weights=flagged, minlength=len(rate)) + found
    doubt = np.maximum(left_by_bin, 0.5 * (n_left > 0)) / np.sqrt(1.0 + behind)
    share = np.divide(np.bincount(bins, weights=counted, minlength=len(rate)), n_all, out=np.zeros(len(rate)), where=n_all > 0)
    from_flags = float((n_left * PRIOR_WEIGHT * share / (seen + PRIOR_WEIGHT)).sum())
    sd = float(np.sqrt((n_left * rate * (1 - rate)).sum() + (doubt**2).sum() + (PRIOR_DOUBT * from_flags) ** 2))
    next_100 = float(rate[np.digitize(next_p_err, edges)].sum())
    # the foot: flags grow less precise down the queue, so those ahead may be confirmed at as
    # little as half the last stretch's rate (measured: a refitted pool's estimate ran 30 % high)
    foot = 0.5 * from_flags if n_reviewed else 0.0
    return left, max(0.0, left - 1.64 * sd - foot), left + 1.64 * sd + tail, next_100

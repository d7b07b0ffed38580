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
* As the annotator works (issue 29): every decision is a labelled example of the pool's doubt
  against the truth. Each image is an error with probability f + (1 - f) * sigmoid(s * (doubt - c)),
  the doubt being the pool's log-odds that the label is wrong; the number of errors T that follow
  the doubt (c follows from it: the probabilities add up to T) has its prior at the count above,
  s near 1.3, f (errors no member doubts) none or FLOOR, and the decisions give the posterior
  over (T, s, f) on a grid.
  The errors left are the unreviewed images' Poisson count mixed over it, with the interval 9 in
  10 reviews end inside. The review order does not bias it (the model conditions on the doubt),
  and a slope fitted from the decisions lets the tail thin out when review finds the errors
  bunched at the top. Measured (benchmarks/bench_estimate.py --sets review, a simulated annotator
  deciding each image of the queue by the planted truth): see the README. It replaced fifty
  bins of 1 - self-confidence whose rates moved to the hit rate seen in each (it said 37 (22-52)
  with 54 errors in the demo, and rose after fixes).
* What the app shows (:func:`steady`): each fix is also evidence about how many errors there
  are, so the model's mean rose after 89 of 203 fixes of the review walks; the number shown is
  held at what was shown unless the new range lies wholly above it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from scoring.metrics import temperature_scaled
from scoring.store import Project, QueueFilter
from scoring.vocabulary import LABEL_SORT

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
    found: int  # label errors fixed so far (relabels)
    left: float
    low: float  # the 90 % interval: 9 in 10 reviews like this one end inside it
    high: float
    next_100: float  # expected errors among the next 100 unreviewed images of the queue
    flagged: int = 0  # the confident joint's count (the pool's confident disagreements)
    disagree: int = 0  # the pool's top-1 disagreements with the labels
    unreviewed: int = 0
    next_one: float = 0.0  # the chance that the next image of the queue has a wrong label
    removed: int = 0  # images removed: reviewed, but no evidence either way about their labels
    model_left: float | None = None  # set where the number is held (steady): what the model alone says now

    def suggests_stop(self, threshold: float = 1.0) -> bool:
        """True when the next 100 images of the queue hold fewer than ``threshold`` expected errors."""
        return self.next_100 < threshold

    def line(self) -> str:
        return f"about {self.left:,.0f} ({self.low:,.0f}-{self.high:,.0f}) errors left"

    def detail(self) -> str:
        """The numbers in words that do not contradict each other (issue 29: "of about 39 likely
        label errors before review (55 found in 60 reviewed)")."""
        before = f"Before review the models suggested about {self.estimated_total:,.0f} in all"
        if self.found > self.estimated_total:
            before += "; review has found more, and the estimate has learnt from what it found"
        return (f"About {self.left:,.0f} label errors are left among the {self.unreviewed:,} images not yet reviewed: "
                f"9 in 10 reviews like this one end with between {self.low:,.0f} and {self.high:,.0f} left, "
                f"allowing for errors none of the models doubts (up to {1000 * FLOOR:.0f} in 1,000 images). "
                f"{self.found:,} fixed in {self.reviewed:,} reviewed{self._removed()}. {before}. The models disagree with "
                f"{self.disagree:,} labels ({self.flagged:,} confidently), but most of those are their own mistakes."
                + self._held())

    def _held(self) -> str:
        if self.model_left is None or round(self.model_left) <= round(self.left):
            return ""
        return (f" The number is held where it was: what you have found since does not rule it out (the models "
                f"alone now say about {self.model_left:,.0f}; it rises when the evidence says there are more).")

    def _removed(self) -> str:
        return f" ({self.removed:,} removed, which says nothing about their labels)" if self.removed else ""


def steady(shown: ErrorsLeft | None, new: ErrorsLeft, rescored: bool = False) -> ErrorsLeft:
    """What the app shows after more decisions (issue 29: the number rose after a fix): the new
    estimate, but the point and upper bound held at ``shown`` (what was shown before) when the
    step is forward (more reviewed or found) and the new range still holds the old point - a fix
    the pool expected is not news. Only a new range wholly above the old point (the evidence says
    there are more) lets the number rise. Replayed after every decision of the five review walks
    (benchmarks/bench_estimate.py): the model's mean rose after 89 of 203 fixes and was 1.8-4.5
    high on average; held, none, 1.6-3.6 high, and each walk's intervals held the truth as often."""
    if shown is None or new.reviewed < shown.reviewed or new.found < shown.found or new.low > shown.left:
        return new  # the first, an undo (the session keeps what it showed then), or news
    if not rescored and (new.reviewed, new.found, new.removed) == (shown.reviewed, shown.found, shown.removed):
        return shown  # the same decisions, asked again (``rescored``: after a re-rank, new scores)
    left = min(new.left, shown.left)
    return replace(new, left=left, low=min(new.low, left), high=max(min(new.high, shown.high), left),
                   model_left=new.left if new.left > left else None)


MIN_PER_CLASS = 5  # below this many scored images in a class, no errors-left number is given


def too_few_to_estimate(labels: np.ndarray, n_classes: int) -> bool:
    """Whether some class has fewer than MIN_PER_CLASS labelled images (issue 17: a 3-image
    dataset said "about 0 errors left")."""
    counts = np.bincount(labels[labels >= 0], minlength=n_classes)
    return bool(len(counts) == 0 or counts.min() < MIN_PER_CLASS)


@dataclass(frozen=True)
class Prior:
    """What the pool says before any decision, per image (sorted ids): the log-odds that the
    given label is wrong (``doubt``), and the likely-errors count."""

    ids: np.ndarray
    doubt: np.ndarray
    likely: LikelyErrors


def label_doubt(mean_probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(N,) log((1 - q) / q), q the temperature-scaled pool's probability of the given label."""
    _, q = temperature_scaled(mean_probs, labels)
    y = np.asarray(labels)
    qy = np.clip(q[np.arange(len(y)), np.where(y >= 0, y, 0)], 1e-7, 1 - 1e-7)
    return np.where(y >= 0, np.log1p(-qy) - np.log(qy), -20.0)


_PRIORS: dict[tuple[str, str, tuple[str, ...]], Prior] = {}  # the last few projects' priors (a re-score or re-rank changes the key)


def _prior(project: Project, ids: np.ndarray) -> Prior | None:
    fps = tuple(m["fingerprint"] for m in project.runs.active_members())
    key = (str(project.path), project.queue.scores_stamp(), fps)
    if key in _PRIORS and np.array_equal(_PRIORS[key].ids, ids):
        return _PRIORS[key]
    labels = project.images.given_labels(ids)
    if too_few_to_estimate(labels, len(project.classes)):
        return None  # a number from a handful of images per class would be a guess
    means, against = [], []
    for s in range(0, len(ids), CHUNK):
        probs = project.cache.get_probs(list(fps), ids[s : s + CHUNK])
        means.append(probs.mean(axis=0))
        against.append((probs.argmax(axis=2) != labels[s : s + CHUNK][None]).all(axis=0))
    mean = np.concatenate(means)
    likely, _ = likely_errors(mean, labels, np.concatenate(against))
    if len(_PRIORS) >= 4:
        _PRIORS.pop(next(iter(_PRIORS)))
    _PRIORS[key] = prior = Prior(ids, label_doubt(mean, labels), likely)
    return prior


def errors_left(project: Project, sort: str = LABEL_SORT) -> ErrorsLeft | None:
    """The estimate for a scored, labelled project (None when there is nothing to estimate). The
    pool's part is computed once per scoring or re-rank; each decision after that costs one read
    of the statuses and the model below."""
    if not project.runs.active_members():
        return None
    rows = project.queue.self_confidences()
    if not rows:
        return None
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    status = np.array([r[3] for r in rows])
    prior = _prior(project, ids)
    if prior is None:
        return None
    reviewed = status != "unreviewed"
    hit = status == "relabelled"
    removed = status == "removed"  # a decision about the image (junk, a duplicate, no class), not about its label
    nxt = [r.id for r in project.queue.page(QueueFilter(status="unreviewed"), sort=sort, limit=100)]
    at = np.clip(np.searchsorted(ids, nxt), 0, len(ids) - 1)
    tail = left_in_queue(prior.doubt, reviewed, hit, prior.likely.count, at[ids[at] == nxt], unknown=removed)
    return ErrorsLeft(prior.likely.count, int(reviewed.sum()), int(hit.sum()), tail.left, tail.low, tail.high,
                      tail.next_100, prior.likely.flagged, prior.likely.disagree, int((~reviewed).sum()), tail.next_one,
                      int(removed.sum()))


@dataclass(frozen=True)
class Tail:
    left: float
    low: float
    high: float
    next_100: float
    next_one: float = 0.0  # the chance that the next image of the queue has a wrong label


BINS = 512  # quantiles of the doubt: the model is evaluated per bin, so a million images cost what 512 do
GRID = 41  # points per parameter of the posterior grid
COUNT_SD = 0.45  # prior sd of the log of the number of errors: the count before review was 30-40 % low on the demo and MNIST
SLOPE_SD = 0.25  # prior sd of the log of the slope: 0.5 let a few misses at the top spread the errors thinly over the tail (CIFAR confusable flips held 35 %, 0.25: 70 %)
SLOPE_CENTRE = float(np.log(1.3))  # the prior's slope: errors thin out faster than the pool's odds (see left_in_queue)
FLOOR = 0.004  # the share of images whose wrong label no member doubts (random slips the pool cannot see) ...
FLOOR_LOGODDS = -1.5  # ... a possibility with prior odds of 1 to e^1.5 (4.5) against it


def _poisson_mixture_quantiles(lams: np.ndarray, w: np.ndarray, qs: tuple[float, ...]) -> list[int]:
    """Quantiles of a count that is Poisson(lams[i]) with probability w[i]: exact over the counts
    where that is small, else from 50,000 seeded draws (a million-image project's count would
    need a table of 1,681 x 50,000 probabilities)."""
    keep = w > 1e-9
    lams, w = lams[keep], w[keep] / w[keep].sum()
    top = int(lams.max() + 10.0 * np.sqrt(lams.max()) + 20.0)
    if top * len(lams) > 4_000_000:
        rng = np.random.default_rng(0)
        draws = rng.poisson(lams[rng.choice(len(lams), size=50_000, p=w)])
        return [int(np.quantile(draws, q, method="inverted_cdf")) for q in qs]
    k = np.arange(top + 1, dtype=np.float64)
    logp = k[None] * np.log(np.maximum(lams[:, None], 1e-300)) - lams[:, None] - np.cumsum(np.log(np.maximum(k, 1.0)))[None]
    cdf = np.cumsum((w[:, None] * np.exp(logp)).sum(axis=0))
    cdf /= cdf[-1]
    return [int(np.searchsorted(cdf, q)) for q in qs]


_CENTRES: dict[bytes, np.ndarray] = {}  # the last prior's grid of centres (it changes only with the scores)


def _centres(at: np.ndarray, size: np.ndarray, totals: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """(T, S) centres c with sum(size * sigmoid(slope * (at - c))) = total, by bisection."""
    key = b"".join(a.tobytes() for a in (at, size, totals, slopes))
    if key not in _CENTRES:
        _CENTRES.clear()
        lo = np.full((len(totals), len(slopes)), at.min() - 60.0)
        hi = np.full_like(lo, at.max() + 60.0)
        for _ in range(50):
            mid = (lo + hi) / 2
            mass = (size / (1.0 + np.exp(slopes[None, :, None] * (mid[..., None] - at)))).sum(axis=-1)
            above = mass > totals[:, None]
            lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
        _CENTRES[key] = (lo + hi) / 2
    return _CENTRES[key]


def left_in_queue(doubt: np.ndarray, reviewed: np.ndarray, hit: np.ndarray, count: float,
                  next_rows: np.ndarray, unknown: np.ndarray | None = None) -> Tail:
    """How many label errors are left among the unreviewed images, from the decisions so far.

    Each image is an error with probability f + (1 - f) * sigmoid(s * (doubt - c)): ``doubt`` the
    pool's log-odds that its label is wrong, the slope s and the number of errors T unknown (c
    follows: the probabilities sum to T), and f a floor of errors no member doubts, either none
    or FLOOR (prior odds e^FLOOR_LOGODDS). The prior puts T near the likely-errors count
    ``count`` (log sd COUNT_SD) and s near 1.3 (log sd SLOPE_SD), so a flatter slope spreads the
    same errors further rather than adding errors in the tail; every decision so far
    (``reviewed``, ``hit``: relabelled) is a labelled example, in whatever order the queue showed
    it, so the posterior over (T, s, f) on a grid is exact. Why 1.3 and a floor (2026-12-05,
    the review walk checked after every decision): with s centred at 1 the tail stayed as fat
    as the pool's odds, and on MNIST's look-alike flips, found 40 in the first 44 images, it
    still said 28 left (86 % of decisions inside the interval; CIFAR's look-alike flips 81 %);
    centred at 1.3 those held at 92 % and 100 %, but random flips the pool cannot see fell out
    of the interval at the end of CIFAR's walk (87 %), which the floor covers (96 %).
    The errors left are a Poisson count given (T, s, f), mixed over the posterior: the point
    is its mean, the interval its 5th and 95th percentiles (9 in 10 reviews like this end inside
    it). ``next_rows``: the next images of the queue, for ``next_100``. ``unknown``: reviewed
    images whose decision says nothing about the label (removed: junk, duplicates, no class; a
    removal of an image the pool trusted had made the demo's estimate jump from 34 to 46): out
    of the unreviewed tail and out of the evidence. Measured by
    benchmarks/bench_estimate.py --sets review (see the README).
    """
    doubt = np.asarray(doubt, dtype=np.float64)
    reviewed = np.asarray(reviewed, bool)
    hit = np.asarray(hit, bool) & reviewed
    edges = np.unique(np.quantile(doubt, np.linspace(0.0, 1.0, BINS + 1)))
    b = np.clip(np.searchsorted(edges, doubt, side="right") - 1, 0, max(len(edges) - 2, 0))
    nb = int(b.max(initial=0)) + 1
    size = np.bincount(b, minlength=nb)
    at = np.divide(np.bincount(b, weights=doubt, minlength=nb), size, out=np.zeros(nb), where=size > 0)
    n_left = np.bincount(b[~reviewed], minlength=nb)
    told = reviewed & ~(np.zeros(len(doubt), bool) if unknown is None else np.asarray(unknown, bool))
    n_hit = np.bincount(b[hit & told], minlength=nb)
    n_kept = np.bincount(b[told & ~hit], minlength=nb)
    z = np.linspace(-3.5, 3.5, GRID)
    totals = np.minimum(max(float(count), 0.5) * np.exp(z * COUNT_SD), 0.999 * len(doubt))
    slopes = np.exp(SLOPE_CENTRE + z * SLOPE_SD)
    lin = slopes[None, :, None] * (at[None, None] - _centres(at, size.astype(np.float64), totals, slopes)[..., None])
    log_sig, log_rest = -np.logaddexp(0.0, -lin), -np.logaddexp(0.0, lin)  # log sigmoid, log (1 - sigmoid)
    logposts, lamss, ps = [], [], []
    for floor, prior in ((0.0, 0.0), (FLOOR, FLOOR_LOGODDS)):  # the floor's errors come on top of the T
        log_p = np.logaddexp(np.log(floor), np.log1p(-floor) + log_sig) if floor else log_sig
        log_q = np.log1p(-floor) + log_rest
        loglik = (n_hit * log_p + n_kept * log_q).sum(axis=-1)
        logposts.append(loglik - 0.5 * (z[:, None] ** 2 + z[None, :] ** 2) + prior)
        ps.append(np.exp(log_p))
        lamss.append((n_left * ps[-1]).sum(axis=-1))
    logpost = np.stack(logposts)
    w = np.exp(logpost - logpost.max())
    w /= w.sum()
    p, lams = np.stack(ps), np.stack(lamss)
    left = float((w * lams).sum())
    low, high = _poisson_mixture_quantiles(lams.ravel(), w.ravel(), (0.05, 0.95))
    per_bin = (w[..., None] * p).sum(axis=(0, 1, 2))
    ahead = per_bin[b[np.asarray(next_rows, dtype=np.int64)]]
    return Tail(left, float(min(low, left)), float(max(high, left)), float(ahead.sum()), float(ahead[0]) if len(ahead) else 0.0)

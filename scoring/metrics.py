"""Difficulty metrics over a pool's predicted distributions.

Every function takes ``probs`` of shape ``(M, N, K)``: M pool models, N images, K classes,
rows summing to 1. Labels are ``(N,)`` ints in ``[0, K)``, ``-1`` for an unlabelled image
(label-aware scores are then NaN). Entropies are in bits (log base 2). Public functions validate
their input and raise ``ValueError``/``TypeError`` with a sentence a user can act on, then call
a private ``_compute_*`` that trusts it (after cleanlab's ``rank.py``).

Sources: C- and X-perplexity and the confusing-class lists from *Example Perplexity*
(Zhang, Xie et al., arXiv:2203.08813); self-confidence and normalised margin from cleanlab
(Northcutt et al., *Confident Learning*, JAIR 2021).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

ROW_SUM_ATOL = 1e-3

# Triage thresholds (see triage_reason). Precedence: mislabelled, then ood, then ambiguous.
MISLABELLED_MIN_CONSENSUS_PROB = 0.5  # the pool's mean puts at least this on its own pick
MISLABELLED_MIN_X_PERPLEXITY = 0.75  # and at least 3 of 4 members' top-1 differ from the label
AMBIGUOUS_MIN_C_PERPLEXITY = 1.5  # members spread mass over ~1.5+ classes on average
AMBIGUOUS_MIN_MUTUAL_INFO = 0.3  # bits of disagreement between members
AMBIGUOUS_MIN_SECOND_PROB = 0.2  # ... or the runner-up class of the pool mean carries mass
OOD_MAX_MEMBER_TOP_PROB = 0.5  # every member's own top probability is below this
OOD_MIN_RELATIVE_PERPLEXITY = 0.5  # and C-perplexity reaches half of K (log-scale: C >= K**0.5)


# ----------------------------------------------------------------------------- validation


def validate_probs(probs: object) -> np.ndarray:
    """Check ``probs`` is a finite (M, N, K) array of distributions; return it as float64."""
    if not isinstance(probs, np.ndarray | list | tuple):
        raise TypeError(f"probs must be a numpy array of shape (models, images, classes), got {type(probs).__name__}")
    arr = np.asarray(probs)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"probs must hold numbers, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise ValueError(
            f"expected probs of shape (models, images, classes), got shape {arr.shape}; "
            "for a single model use probs[None]"
        )
    m, n, k = arr.shape
    if m == 0 or k == 0:
        raise ValueError(f"probs needs at least one model and one class, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    bad = ~np.isfinite(arr)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"probs holds {int(bad.sum())} NaN/inf values (first at model, image, class = {first}); "
            "check the model's outputs"
        )
    if (arr < 0).any():
        first = tuple(int(i) for i in np.argwhere(arr < 0)[0])
        raise ValueError(f"probs holds negative values (first {arr[first]:.3g} at {first}): pass probabilities, not logits")
    if n:
        sums = arr.sum(axis=2)
        err = np.abs(sums - 1.0)
        worst = np.unravel_index(int(err.argmax()), err.shape)
        if err[worst] > ROW_SUM_ATOL:
            raise ValueError(
                f"each row of probs must sum to 1, but the row at (model, image) = "
                f"({worst[0]}, {worst[1]}) sums to {sums[worst]:.4f}; apply a softmax to logits first"
            )
    return arr


def validate_labels(labels: object, n: int, k: int) -> np.ndarray:
    """Check labels are (N,) ints in [-1, K); return as int64."""
    arr = np.asarray(labels)
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        elif arr.size:
            raise TypeError(f"labels must be integers (class indices, -1 = unlabelled), got dtype {arr.dtype}")
        else:
            arr = arr.astype(np.int64)
    if arr.shape != (n,):
        raise ValueError(f"labels must have shape ({n},) to match probs' {n} images, got shape {arr.shape}")
    out = arr.astype(np.int64)
    bad = (out < -1) | (out >= k)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"labels must be in [0, {k}) or -1 for unlabelled; image {i} has label {int(out[i])}")
    return out


# ----------------------------------------------------------------------------- computations


def _entropy_bits(p: np.ndarray) -> np.ndarray:
    """H(p) = -sum p log2 p over the last axis, with 0 log 0 = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(np.where(p > 0, p, 1.0)), 0.0)
    return terms.sum(axis=-1)


def _compute_confusion_perplexity(probs: np.ndarray) -> np.ndarray:
    return np.power(2.0, _entropy_bits(probs).mean(axis=0))


def _compute_x_perplexity(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    top1 = probs.argmax(axis=2)  # (M, N)
    out = (top1 != labels[None, :]).mean(axis=0).astype(np.float64)
    out[labels < 0] = np.nan
    return out


def _compute_c_confusion(probs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(probs > 0, -probs * np.log2(np.where(probs > 0, probs, 1.0)), 0.0)
    return terms.mean(axis=0)


def _compute_x_confusion(probs: np.ndarray) -> np.ndarray:
    m, n, k = probs.shape
    top1 = probs.argmax(axis=2)
    votes = np.zeros((n, k), dtype=np.int64)
    for i in range(m):
        votes[np.arange(n), top1[i]] += 1
    return votes


def _top_k(values: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per row, descending, ties broken by the lower class index (stable sort)."""
    k = min(k, values.shape[1])
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(values, order, axis=1)


# ----------------------------------------------------------------------------- public metrics


def confusion_perplexity(probs: np.ndarray) -> np.ndarray:
    """C-perplexity per image: ``C(x) = 2 ** ((1/M) * sum_i H(P_i(y|x)))``, H in bits.

    (M, N, K) -> (N,), in [1, K]. 1 when every model is certain; k when each spreads evenly over
    k classes. Higher = harder. Blind to confident members that disagree (see mutual_information).
    """
    return _compute_confusion_perplexity(validate_probs(probs))


def x_perplexity(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """X-perplexity per image: the fraction of models whose top-1 class differs from the label.

    (M, N, K), (N,) -> (N,) in [0, 1], NaN where unlabelled. Higher = harder / more suspect.
    """
    p = validate_probs(probs)
    return _compute_x_perplexity(p, validate_labels(labels, p.shape[1], p.shape[2]))




def top_confusing(probs: np.ndarray, k: int = 3, by: str = "c") -> tuple[np.ndarray, np.ndarray]:
    """The k most confusing classes per image by C-confusion (``by="c"``) or votes (``"x"``).

    Returns (indices (N, k) int, values (N, k)), descending; ties go to the lower class index.
    """
    if by not in ("c", "x"):
        raise ValueError(f"by must be 'c' (C-confusion) or 'x' (X-confusion votes), got {by!r}")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    p = validate_probs(probs)
    return _top_k(_compute_c_confusion(p) if by == "c" else _compute_x_confusion(p), k)



def entropy_of_mean(probs: np.ndarray) -> np.ndarray:
    """Entropy of the pool mean ``H(mean_i P_i)`` in bits. (M, N, K) -> (N,), in [0, log2 K]."""
    return _entropy_bits(validate_probs(probs).mean(axis=0))


def _compute_mutual_information(probs: np.ndarray) -> np.ndarray:
    mi = _entropy_bits(probs.mean(axis=0)) - _entropy_bits(probs).mean(axis=0)
    return np.clip(mi, 0.0, None)


def mutual_information(probs: np.ndarray) -> np.ndarray:
    """Disagreement between members: ``H(mean_i P_i) - mean_i H(P_i)`` in bits, >= 0.

    (M, N, K) -> (N,). 0 when all members give the same distribution; log2(M) at most when
    confident members each pick a different class, a case where C-perplexity is 1.
    Higher = harder.
    """
    return _compute_mutual_information(validate_probs(probs))


def vote_scores(votes: list[int], given: int | None) -> tuple[float | None, float | None]:
    """People's labels of one image -> (the share agreeing with the given label, the entropy of
    the votes in bits); (None, None) below two votes, and no share without a given label."""
    if len(votes) < 2:
        return None, None
    counts = np.bincount(votes).astype(float)
    p = counts[counts > 0] / len(votes)
    agree = None if given is None else votes.count(given) / len(votes)
    return agree, float(-(p * np.log2(p)).sum()) + 0.0


def consensus(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pool's pick: argmax of the mean distribution and its mean probability. -> ((N,), (N,))."""
    p = validate_probs(probs)
    pp = PoolPass(p, np.full(p.shape[1], -1))  # the pick needs no labels
    return pp.pick, pp.pick_prob


def _compute_self_confidence(mean: np.ndarray, labels: np.ndarray) -> np.ndarray:
    out = mean[np.arange(len(labels)), np.clip(labels, 0, None)].astype(np.float64)
    out[labels < 0] = np.nan
    return out


def self_confidence(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pool-mean probability of the given label (cleanlab's self-confidence).

    (M, N, K), (N,) -> (N,) in [0, 1], NaN where unlabelled. Lower = more likely mislabelled.
    """
    p = validate_probs(probs)
    return _compute_self_confidence(p.mean(axis=0), validate_labels(labels, p.shape[1], p.shape[2]))


def _compute_margin(mean: np.ndarray, labels: np.ndarray) -> np.ndarray:
    n, k = mean.shape
    lab = np.clip(labels, 0, None)
    own = mean[np.arange(n), lab]
    if k == 1:
        other = np.zeros(n)
    else:
        masked = mean.copy()
        masked[np.arange(n), lab] = -np.inf
        other = masked.max(axis=1)
    out = (own - other).astype(np.float64)
    out[labels < 0] = np.nan
    return out


def normalized_margin(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """cleanlab's normalised margin on the pool mean: ``p_label - max_{c != label} p_c``.

    (M, N, K), (N,) -> (N,) in [-1, 1], NaN where unlabelled. Lower = more likely mislabelled.
    """
    p = validate_probs(probs)
    return _compute_margin(p.mean(axis=0), validate_labels(labels, p.shape[1], p.shape[2]))


def label_error_score(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """One "higher = more likely mislabelled" score: ``(1 - self_confidence + x_perplexity) / 2``.

    Blends the pool mean's doubt about the label (soft, ranks well among many images) with the
    share of members voting against it (hard, robust to one overconfident member).
    (M, N, K), (N,) -> (N,) in [0, 1], NaN where unlabelled.
    """
    p = validate_probs(probs)
    lab = validate_labels(labels, p.shape[1], p.shape[2])
    return (1.0 - _compute_self_confidence(p.mean(axis=0), lab) + _compute_x_perplexity(p, lab)) / 2.0


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
    return best_t, scaled_by(p, best_t)


def scaled_by(probs: np.ndarray, t: float) -> np.ndarray:
    """probs ** (1/t), renormalised (probabilities clipped at 1e-7 first)."""
    z = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-7, 1.0)) / t
    z -= z.max(axis=1, keepdims=True)
    q = np.exp(z)
    return q / q.sum(axis=1, keepdims=True)


MISLABELLED, AMBIGUOUS, OOD = "mislabelled", "ambiguous", "ood"
REASONS = (MISLABELLED, AMBIGUOUS, OOD)  # why an image is in the queue (scoring.vocabulary gives them words)


def _compute_triage(pp: PoolPass) -> np.ndarray:
    """The reasons of :func:`triage_reason`, from one pool pass's shared results (its consensus
    among them: computed once, in PoolPass)."""
    probs, labels, cperp, mi = pp.probs, pp.labels, pp.c_perplexity, pp.mutual_info
    m, n, k = probs.shape
    second = np.sort(pp.mean, axis=1)[:, -2] if k > 1 else np.zeros(n)
    member_top = probs.max(axis=2)  # (M, N)
    reason = np.full(n, None, dtype=object)
    ood = (member_top < OOD_MAX_MEMBER_TOP_PROB).all(axis=0) & (
        np.log(cperp) >= OOD_MIN_RELATIVE_PERPLEXITY * np.log(max(k, 2))
    )
    ambiguous = (cperp >= AMBIGUOUS_MIN_C_PERPLEXITY) | (mi >= AMBIGUOUS_MIN_MUTUAL_INFO) | (
        second >= AMBIGUOUS_MIN_SECOND_PROB
    )
    with np.errstate(invalid="ignore"):
        mislabelled = (
            (labels >= 0)
            & (pp.pick != labels)
            & (pp.pick_prob >= MISLABELLED_MIN_CONSENSUS_PROB)
            & (np.nan_to_num(pp.x_perplexity) >= MISLABELLED_MIN_X_PERPLEXITY)
        )
    reason[ambiguous] = AMBIGUOUS
    reason[ood] = OOD
    reason[mislabelled] = MISLABELLED
    return reason


def triage_reason(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Why an image is in the queue: ``"mislabelled"``, ``"ambiguous"``, ``"ood"`` or None.

    (M, N, K), (N,) -> (N,) object array. First match wins, in this order:

    * mislabelled - the pool agrees with itself but not with the label: the pool mean's pick
      differs from the label, carries >= 0.5 mean probability, and X-perplexity >= 0.75.
    * ood - every member unsure: each member's top probability < 0.5, and C-perplexity
      >= sqrt(K) (half of the maximum on a log scale).
    * ambiguous - members spread their mass or disagree: C-perplexity >= 1.5, or mutual
      information >= 0.3 bits, or the pool mean's runner-up class holds >= 0.2.
    """
    return PoolPass(probs, labels).reason()


class PoolPass:
    """One pool's distributions over a batch, validated once, with the shared intermediate
    results each computed at most once: what every per-image score in scoring.vocabulary is
    computed from (``Score.compute(pass_) -> (N,)``)."""

    def __init__(self, probs: np.ndarray, labels: np.ndarray, top_k: int = 3):
        self.probs = validate_probs(probs)
        self.labels = validate_labels(labels, self.probs.shape[1], self.probs.shape[2])
        self.top_k = top_k

    @cached_property
    def mean(self) -> np.ndarray:
        """(N, K): the pool's mean distribution."""
        return self.probs.mean(axis=0)

    @cached_property
    def pick(self) -> np.ndarray:
        """(N,): the pool mean's top class (the consensus)."""
        return self.mean.argmax(axis=1)

    @cached_property
    def pick_prob(self) -> np.ndarray:
        return self.mean[np.arange(len(self.pick)), self.pick]

    @cached_property
    def c_perplexity(self) -> np.ndarray:
        return _compute_confusion_perplexity(self.probs)

    @cached_property
    def x_perplexity(self) -> np.ndarray:
        return _compute_x_perplexity(self.probs, self.labels)

    @cached_property
    def mutual_info(self) -> np.ndarray:
        return _compute_mutual_information(self.probs)

    def entropy_of_mean(self) -> np.ndarray:
        return _entropy_bits(self.mean)

    def self_confidence(self) -> np.ndarray:
        return _compute_self_confidence(self.mean, self.labels)

    def margin(self) -> np.ndarray:
        return _compute_margin(self.mean, self.labels)

    def reason(self) -> np.ndarray:
        return _compute_triage(self)

    def top_confusing(self) -> dict[str, np.ndarray]:
        """top_c_idx/top_c_val (N, top_k) by C-confusion, top_x_idx/top_x_val by votes."""
        c_idx, c_val = _top_k(_compute_c_confusion(self.probs), self.top_k)
        x_idx, x_val = _top_k(_compute_x_confusion(self.probs), self.top_k)
        return {"top_c_idx": c_idx, "top_c_val": c_val, "top_x_idx": x_idx, "top_x_val": x_val}


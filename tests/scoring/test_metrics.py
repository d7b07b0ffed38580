"""Metrics: the formulas, their properties, and input validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scoring import metrics as M


def random_probs(seed: int, m: int, n: int, k: int, alpha: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(k, alpha), size=(m, n))


shapes = st.tuples(st.integers(0, 2**31), st.integers(1, 5), st.integers(1, 6), st.integers(2, 8))


def test_one_hot_rows_give_perplexity_one() -> None:
    probs = np.zeros((3, 4, 5))
    probs[:, np.arange(4), [0, 1, 2, 3]] = 1.0
    np.testing.assert_allclose(M.confusion_perplexity(probs), 1.0)


@pytest.mark.parametrize("k", [1, 2, 3, 7, 10])
def test_rows_uniform_over_k_classes_give_k(k: int) -> None:
    probs = np.zeros((4, 2, 10))
    probs[:, :, :k] = 1.0 / k
    np.testing.assert_allclose(M.confusion_perplexity(probs), k)


def test_formula_by_hand() -> None:
    p1 = np.array([0.5, 0.5, 0.0])  # H = 1 bit
    p2 = np.array([1.0, 0.0, 0.0])  # H = 0
    probs = np.stack([p1, p2])[:, None, :]
    np.testing.assert_allclose(M.confusion_perplexity(probs), 2 ** 0.5)


@settings(max_examples=60, deadline=None)
@given(shapes)
def test_perplexity_in_range_and_invariant_to_model_and_class_order(shape: tuple[int, int, int, int]) -> None:
    seed, m, n, k = shape
    probs = random_probs(seed, m, n, k)
    c = M.confusion_perplexity(probs)
    assert np.all(c >= 1 - 1e-9) and np.all(c <= k + 1e-9)
    rng = np.random.default_rng(seed)
    np.testing.assert_allclose(M.confusion_perplexity(probs[rng.permutation(m)]), c)
    perm = rng.permutation(k)
    np.testing.assert_allclose(M.confusion_perplexity(probs[:, :, perm]), c)
    mi = M.mutual_information(probs)
    assert np.all(mi >= 0) and np.all(mi <= np.log2(m) + 1e-9)


@settings(max_examples=40, deadline=None)
@given(shapes)
def test_label_aware_scores_follow_class_permutation(shape: tuple[int, int, int, int]) -> None:
    seed, m, n, k = shape
    probs = random_probs(seed, m, n, k)
    labels = np.random.default_rng(seed).integers(0, k, n)
    perm = np.random.default_rng(seed + 1).permutation(k)
    inv = np.argsort(perm)
    permuted, plabels = probs[:, :, perm], inv[labels]
    np.testing.assert_allclose(M.self_confidence(permuted, plabels), M.self_confidence(probs, labels))
    np.testing.assert_allclose(M.normalized_margin(permuted, plabels), M.normalized_margin(probs, labels))
    np.testing.assert_allclose(M.x_perplexity(permuted, plabels), M.x_perplexity(probs, labels))


def test_x_perplexity_counts_models_against_the_label() -> None:
    probs = np.array([
        [[0.9, 0.1], [0.2, 0.8]],
        [[0.6, 0.4], [0.7, 0.3]],
        [[0.3, 0.7], [0.1, 0.9]],
        [[0.8, 0.2], [0.4, 0.6]],
    ])
    x = M.x_perplexity(probs, np.array([0, 1]))
    np.testing.assert_allclose(x, [0.25, 0.25])
    assert np.isnan(M.x_perplexity(probs, np.array([-1, 1]))[0])


def test_mutual_information_sees_confident_disagreement_that_perplexity_misses() -> None:
    probs = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    assert M.confusion_perplexity(probs)[0] == pytest.approx(1.0)
    assert M.mutual_information(probs)[0] == pytest.approx(1.0)
    same = np.array([[[0.5, 0.5]], [[0.5, 0.5]]])
    assert M.mutual_information(same)[0] == pytest.approx(0.0)
    assert M.entropy_of_mean(probs)[0] == pytest.approx(1.0)


def test_top_confusing_and_votes() -> None:
    probs = np.array([[[0.5, 0.5, 0.0]], [[0.25, 0.75, 0.0]]])
    idx, val = M.top_confusing(probs, k=2, by="c")
    assert idx.tolist() == [[0, 1]]
    np.testing.assert_allclose(val[0], [(0.5 + 0.5) / 2, (0.5 + 0.75 * np.log2(1 / 0.75)) / 2])
    idx, votes = M.top_confusing(probs, k=2, by="x")
    assert idx.tolist() == [[0, 1]] and votes.tolist() == [[1, 1]]  # tie at 1 vote: lower index first
    with pytest.raises(ValueError, match="'c'"):
        M.top_confusing(probs, by="z")


def test_consensus_self_confidence_and_margin_by_hand() -> None:
    probs = np.array([[[0.6, 0.3, 0.1]], [[0.2, 0.7, 0.1]]])  # mean 0.4 0.5 0.1
    pick, p = M.consensus(probs)
    assert pick.tolist() == [1] and p[0] == pytest.approx(0.5)
    assert M.self_confidence(probs, np.array([0]))[0] == pytest.approx(0.4)
    assert M.normalized_margin(probs, np.array([0]))[0] == pytest.approx(-0.1)
    assert M.normalized_margin(probs, np.array([1]))[0] == pytest.approx(0.1)
    assert M.label_error_score(probs, np.array([0]))[0] == pytest.approx((0.6 + 0.5) / 2)


def test_triage_reasons() -> None:
    k = 4
    mislabelled = np.tile([0.05, 0.9, 0.03, 0.02], (4, 1))  # all confident in 1; label 0
    ambiguous = np.tile([0.5, 0.45, 0.03, 0.02], (4, 1))
    ood = np.tile(np.full(k, 0.25), (4, 1))
    clear = np.tile([0.97, 0.01, 0.01, 0.01], (4, 1))
    probs = np.stack([mislabelled, ambiguous, ood, clear], axis=1)
    reasons = M.triage_reason(probs, np.array([0, 0, 0, 0]))
    assert reasons.tolist() == ["mislabelled", "ambiguous", "ood", None]


def test_compute_scores_gives_each_score_of_the_table_from_its_function() -> None:
    from scoring.vocabulary import compute_scores, image_score_columns

    probs = random_probs(1, 3, 7, 5)
    labels = np.array([0, 1, 2, 3, 4, -1, 0])
    s = compute_scores(probs, labels, top_k=3)
    assert set(s) == {*image_score_columns(), "top_c_idx", "top_c_val", "top_x_idx", "top_x_val"}
    assert s["top_c_idx"].shape == (7, 3) and s["top_x_val"].shape == (7, 3)
    assert np.isnan(s["self_confidence"][5]) and np.isnan(s["x_perplexity"][5])
    # the one score table's values are the metrics' functions' (issue 32: a second table of the
    # same scores under other names, METRICS, is gone)
    for key, want in (("c_perplexity", M.confusion_perplexity(probs)), ("x_perplexity", M.x_perplexity(probs, labels)),
                      ("mutual_info", M.mutual_information(probs)), ("self_confidence", M.self_confidence(probs, labels)),
                      ("margin", M.normalized_margin(probs, labels)), ("entropy_of_mean", M.entropy_of_mean(probs)),
                      ("consensus_prob", M.consensus(probs)[1])):
        np.testing.assert_allclose(s[key], want, err_msg=key)
        assert want.shape == (7,), key
    np.testing.assert_array_equal(s["reason"], M.triage_reason(probs, labels))
    np.testing.assert_array_equal(s["consensus"], M.consensus(probs)[0])
    assert set(s["reason"]) <= {*M.REASONS, None}


@pytest.mark.parametrize(
    ("probs", "error", "match"),
    [
        (np.ones((3, 4)) / 4, ValueError, r"shape \(models, images, classes\), got shape \(3, 4\)"),
        (np.array([[[0.5, np.nan]]]), ValueError, "1 NaN/inf"),
        (np.array([[[1.5, -0.5]]]), ValueError, "negative"),
        (np.array([[[0.5, 0.6]], [[0.5, 0.5]]]), ValueError, r"\(0, 0\) sums to 1.1000"),
        (np.array([[["a", "b"]]]), TypeError, "numbers"),
        ("probs", TypeError, "numpy array"),
    ],
)
def test_validation_messages(probs: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        M.confusion_perplexity(probs)  # type: ignore[arg-type]


def test_label_validation() -> None:
    probs = random_probs(0, 2, 3, 4)
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        M.x_perplexity(probs, np.array([0, 1]))
    with pytest.raises(ValueError, match="image 2 has label 4"):
        M.self_confidence(probs, np.array([0, 1, 4]))
    with pytest.raises(TypeError, match="integers"):
        M.normalized_margin(probs, np.array([0.5, 1, 2]))


def test_float16_input_is_accepted() -> None:
    probs = random_probs(3, 2, 5, 10).astype(np.float16)
    probs = probs / probs.sum(-1, keepdims=True)
    assert M.confusion_perplexity(probs).dtype == np.float64


def test_the_annotators_votes_give_agreement_and_entropy() -> None:
    agree, ent = M.vote_scores([0, 0, 1], 0)
    assert agree == pytest.approx(2 / 3) and ent == pytest.approx(-(2 / 3) * np.log2(2 / 3) - (1 / 3) * np.log2(1 / 3))
    assert M.vote_scores([2], 2) == (None, None)  # one vote says nothing of agreement
    assert M.vote_scores([1, 1], None) == (None, 0.0)  # unanimous: no entropy; no given label: no share

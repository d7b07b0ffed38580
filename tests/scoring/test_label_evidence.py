"""Issue 20: the neighbours' labels as a label score, and an error count that holds where the
pool is weak."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from scoring.engine.inference import score_project
from scoring.engine.score_pass import write_label_evidence
from scoring.evidence import label_evidence as LE
from scoring.progress import drain
from scoring.store import Project, project_for
from scoring.tasks.estimate import likely_errors
from tests.scoring.tinypool import make_imagefolder, tiny_pool


def _clusters(n_per: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """k tight clusters of unit vectors, labelled by cluster."""
    rng = np.random.default_rng(seed)
    centres = np.linalg.qr(rng.normal(size=(16, k)))[0].T
    x = np.repeat(centres, n_per, axis=0) + 0.05 * rng.normal(size=(n_per * k, 16))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.repeat(np.arange(k), n_per)


def test_an_image_never_votes_for_itself() -> None:
    """Each image's own row is left out of its neighbours, even where it has exact copies."""
    unit, _ = _clusters(6, 3)
    unit = np.concatenate([unit, unit[:1]])  # row 18 copies row 0
    sims, rows = LE.nearest(unit, k=5)
    assert rows.shape == (19, 5)
    assert not (rows == np.arange(19)[:, None]).any()
    assert 18 in rows[0] and 0 in rows[18]  # the copy is a neighbour, the image itself is not


def test_a_mislabelled_image_among_another_class_gets_low_agreement() -> None:
    unit, labels = _clusters(10, 3)
    labels = labels.copy()
    labels[0] = 2  # a class-0 image filed under 2
    sims, rows = LE.nearest(unit, k=5)
    v = LE.votes(sims, rows, labels, 3)
    agreement, _, _ = LE.scores(np.full((30, 3), 1 / 3), v, labels, 1.0, 1)
    assert agreement[0] < 0.1 and np.nanmin(np.delete(agreement, 0)) > 0.7  # its cluster: one vote of 5 off
    removed = labels.copy()
    removed[1:10] = -1  # its neighbours removed: they no longer vote
    v2 = LE.votes(sims, rows, removed, 3)
    assert np.allclose(v2[0], 1 / 3)  # nothing left to vote: the smoothing alone


def test_the_votes_count_only_where_they_classify_about_as_well_as_the_pool() -> None:
    unit, labels = _clusters(20, 3)
    sims, rows = LE.nearest(unit)
    good = LE.votes(sims, rows, labels, 3)
    rng = np.random.default_rng(1)
    weak_pool = rng.dirichlet(np.ones(3), size=60)  # a pool near chance: the neighbours help
    assert LE.stack_weight(weak_pool, good, labels, 3) > 0
    strong_pool = np.eye(3)[labels] * 0.9 + 0.1 / 3
    noisy = LE.votes(sims, rows, rng.integers(0, 3, 60), 3)  # neighbours near chance, a strong pool
    assert LE.stack_weight(strong_pool, noisy, labels, 3) == 0.0


def _pool_with_flips(kind: str, n: int = 3000, k: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A calibrated pool's probabilities for n images of k classes (each image's true class drawn
    from them, as a calibrated pool's are), each with a look-alike class it half-believes; 3 % of
    labels flipped, at random or to the image's likeliest other class. -> (probs, noisy labels,
    flipped)."""
    rng = np.random.default_rng(seed)
    first, second = rng.integers(0, k, n), rng.integers(1, k, n)
    logits = rng.normal(0.0, 1.0, (n, k))
    logits[np.arange(n), first] += rng.uniform(4.0, 8.0, n)
    logits[np.arange(n), (first + second) % k] += rng.uniform(0.0, 4.0, n)
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    true = (probs.cumsum(1) < rng.uniform(size=(n, 1))).sum(1).clip(0, k - 1)
    other = probs.copy()
    other[np.arange(n), true] = -1
    flipped = np.zeros(n, bool)
    flipped[rng.choice(n, n * 3 // 100, replace=False)] = True
    noisy = true.copy()
    to = other.argmax(1) if kind == "look-alike" else (true + rng.integers(1, k, n)) % k
    noisy[flipped] = to[flipped]
    return probs, noisy, flipped


def test_the_labels_say_which_kind_of_error_they_hold_and_the_sort_follows() -> None:
    """Issue 36: no fixed blend of self-confidence and margin wins on both kinds of error; the noise
    model fitted to the labels tells them apart, and label_issue puts the flips first either way,
    at least as well as the better of the two."""
    for kind in ("random", "look-alike"):
        probs, noisy, flipped = _pool_with_flips(kind)
        model = LE.fit_noise(probs, noisy)
        assert (model.look_alike <= 0.3) if kind == "random" else (model.look_alike >= 0.7), (kind, model)
        assert model.decided, model  # 90 flips say which kind
        assert 0.005 <= model.rate <= 0.06, model  # 3 % planted, beside the pool's own doubt
        _, issue, _ = LE.scores(probs, np.full_like(probs, 0.1), noisy, 0.0, 4)
        rows = np.arange(len(noisy))
        other = probs.copy()
        other[rows, noisy] = -1
        found = {name: int(flipped[np.argsort(-s, kind="stable")[:60]].sum()) for name, s in (
            ("label issue", issue), ("self-confidence", -probs[rows, noisy]),
            ("margin", other.max(1) - probs[rows, noisy]))}
        assert found["label issue"] >= max(found["self-confidence"], found["margin"]) - 1, (kind, found)
        assert np.nanmin(issue) >= 0.0 and np.nanmax(issue) <= 1.0


def test_labels_without_flips_do_not_decide_the_kind_and_the_fit_stays_at_its_prior() -> None:
    """Issue 36: on labels drawn from a calibrated pool itself (no errors to tell apart), the
    likelihood is flat in the look-alike share: the model says it is undecided and keeps the prior,
    instead of reporting a kind the labels do not show."""
    probs, noisy, flipped = _pool_with_flips("random")
    model = LE.fit_noise(probs, np.where(flipped, -1, noisy))  # the flipped rows left unlabelled
    assert not model.decided and model.evidence < LE.DECIDED_NATS, model
    assert abs(model.look_alike - LE.LOOK_ALIKE_PRIOR) <= 0.1, model


def test_the_annotators_relabels_say_which_kind_when_the_labels_do_not() -> None:
    """Issue 36: where the labels leave the kind undecided, twenty corrections decide it: wrong
    labels that were the pool's runner-up make it look-alike mix-ups, wrong labels of any class
    slips; the count of corrections read is kept for the detail pane."""
    probs, noisy, flipped = _pool_with_flips("random")
    labels = np.where(flipped, -1, noisy)  # undecided on its own (the test above)
    rows = np.flatnonzero(~flipped)[:20]
    top = probs[rows].argmax(1)
    other = probs[rows].copy()
    other[np.arange(20), top] = -1
    for kind, given in (("look-alike", other.argmax(1)), ("random", (top + 1 + np.arange(20) % 9) % 10)):
        y = labels.copy()
        y[rows] = given  # the wrong labels people found; their true classes are the pool's top-1
        model = LE.fit_noise(probs, y, (rows, top))
        assert model.decided and model.corrections == 20, (kind, model)
        assert (model.look_alike >= 0.7) if kind == "look-alike" else (model.look_alike <= 0.3), (kind, model)
    assert LE.fit_noise(probs, labels, (rows[:0], top[:0])) == LE.fit_noise(probs, labels)  # none: as before


def test_unlabelled_images_get_no_label_issue_and_do_not_move_the_fit() -> None:
    probs, noisy, _ = _pool_with_flips("random", n=1000)
    some = noisy.copy()
    some[::3] = -1
    model = LE.fit_noise(probs, some)
    _, issue, _ = LE.scores(probs, np.full_like(probs, 0.1), some, 0.0, 4)
    assert np.isnan(issue[::3]).all() and not np.isnan(np.delete(issue, np.arange(0, 1000, 3))).any()
    assert model == LE.fit_noise(probs[some >= 0], some[some >= 0])


def test_scoring_fills_the_neighbour_scores_and_the_label_view_opens_on_them(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=12, corrupt=False)
    shutil.move(data / "blue" / "000.png", data / "red" / "blue0.png")  # a planted label error
    db = project_for(data, tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(["blue", "green", "red"]), workers=0))
    with Project.open(db) as p:
        rows = p.queue.page(sort="label_issue", limit=36)
        assert all(r.scores["label_issue"] is not None and r.scores["neighbour_agreement"] is not None for r in rows)
        assert rows[0].path == "red/blue0.png"
        assert rows[0].scores["neighbour_agreement"] < 0.5
        assert p.queue.neighbour_weight() is not None
        noise = p.queue.label_noise()
        assert set(noise) == {"look_alike", "rate", "temperature", "evidence", "corrections"}
        assert 0 <= noise["look_alike"] <= 1 and noise["corrections"] == 0  # nobody has relabelled yet
        p.edits.relabel(rows[0].id, p.classes.index("blue"))  # then a re-rank's pass reads the relabel
        ids = p.images.scorable_ids()
        fps = [m["fingerprint"] for m in p.runs.active_members()]
        drain(write_label_evidence(p, fps, ids, p.images.given_labels(ids), threading.Event()))
        assert p.queue.label_noise()["corrections"] == 1
        p._set_meta(label_noise='{"look_alike": 0.5, "rate": 0.1, "temperature": 1}')  # stored before "evidence"
        assert p.queue.label_noise() == {"look_alike": 0.5, "rate": 0.1, "temperature": 1.0}
        for hostile in ("not json", "[1, 2]", '{"look_alike": 7, "rate": 0.1, "temperature": 1}',
                        '{"look_alike": true, "rate": 0.1, "temperature": 1}', '{"look_alike": 0.5}',
                        '{"look_alike": 0.5, "rate": 0.1, "temperature": 1, "evidence": -3}',
                        '{"look_alike": 0.5, "rate": 0.1, "temperature": 1, "evidence": "lots"}',
                        '{"look_alike": 0.5, "rate": 0.1, "temperature": 1, "corrections": -1}',
                        '{"look_alike": 0.5, "rate": 0.1, "temperature": 1, "corrections": true}'):
            p._set_meta(label_noise=hostile)  # a project file is someone else's input
            assert p.queue.label_noise() == {}


def test_likely_errors_holds_on_a_weak_pool_and_on_planted_flips() -> None:
    """A pool right on 70 % of clean labels, confidently wrong on many: the confident joint
    counts its mistakes as label errors; the likely count stays near the truth (0 planted, then
    50 flips at random), because on the images it is surest of the pool is right."""
    rng = np.random.default_rng(0)
    n, k = 2000, 4
    truth = rng.integers(0, k, n)
    sure = rng.random(n) < 0.5  # half the images easy: the pool right and sure
    pred = np.where(sure | (rng.random(n) < 0.4), truth, (truth + rng.integers(1, k, n)) % k)
    conf = np.where(sure, 0.95, rng.uniform(0.5, 0.8, n))
    probs = np.full((n, k), 0.0)
    probs[np.arange(n), pred] = conf
    probs += ((1 - conf) / (k - 1))[:, None] * (probs == 0)
    members = np.stack([probs, probs])
    clean, _ = likely_errors(probs, truth, (members.argmax(2) != truth[None]).all(0))
    assert clean.flagged > 100 and clean.count < 0.2 * clean.flagged
    flipped = truth.copy()
    idx = rng.choice(n, 50, replace=False)
    flipped[idx] = (truth[idx] + rng.integers(1, k, 50)) % k
    noisy, _ = likely_errors(probs, flipped, (members.argmax(2) != flipped[None]).all(0))
    assert noisy.count == pytest.approx(50, rel=0.5)

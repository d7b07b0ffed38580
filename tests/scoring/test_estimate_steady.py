"""The errors-left number as the app shows it (issue 29): it does not rise when an error is fixed
unless the evidence puts the old number out of the new range, its top comes down as the queue is
worked, an undo shows again what was shown before, and new scores start afresh."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from scoring.tasks.estimate import ErrorsLeft, steady
from scoring.tasks.review import ReviewSession
from tests.scoring.test_duplicates_estimate import _walk


def _est(reviewed: int, found: int, left: float, low: float, high: float, removed: int = 0) -> ErrorsLeft:
    return ErrorsLeft(40.0, reviewed, found, left, low, high, 5.0, removed=removed)


def test_a_fix_the_range_allows_does_not_raise_the_number_or_its_top() -> None:
    shown = _est(10, 4, 20.0, 10.0, 35.0)
    held = steady(shown, _est(11, 5, 21.5, 11.0, 37.0))
    assert (held.left, held.low, held.high) == (20.0, 11.0, 35.0)
    assert (held.reviewed, held.found) == (11, 5)  # the counts are the new ones
    fell = steady(shown, _est(11, 5, 18.0, 9.0, 30.0))
    assert (fell.left, fell.high) == (18.0, 30.0)  # a fall is shown as it is


def test_a_range_wholly_above_the_old_number_lets_it_rise() -> None:
    shown = _est(10, 4, 20.0, 10.0, 35.0)
    news = _est(11, 5, 30.0, 21.0, 45.0)
    assert steady(shown, news) == news


def test_the_first_an_undo_and_the_same_decisions_asked_again() -> None:
    shown = _est(10, 4, 20.0, 10.0, 35.0)
    assert steady(None, shown) == shown
    undone = _est(9, 3, 24.0, 12.0, 40.0)
    assert steady(shown, undone) == undone  # the session keeps what it showed for 9 reviewed
    assert steady(shown, replace(shown, left=23.0, high=38.0)) == shown


def test_along_a_walk_the_number_never_rises_after_a_fix_and_the_range_still_holds() -> None:
    """Errors drawn from the model with the count before review a third low (the model's own mean
    then rises after fixes): held, it never does after a fix, its top never rises, and the range
    holds the truth at 9 in 10 checkpoints. Measured here, the number held was on average 2.5 and
    4.0 off the truth, the model's mean 3.0 and 5.1; but in 3,000 images walked 200 deep the
    held number lagged (6.4, 6.8, 11.9 off against 5.5, 4.8, 10.7): holding costs accuracy where
    the count before review is low and the fixes keep coming."""
    model_rises = 0
    for seed in range(2):
        rng = np.random.default_rng(seed)
        doubt = rng.normal(-4.0, 2.0, 1500)
        truth = rng.random(1500) < 1.0 / (1.0 + np.exp(-1.3 * (doubt - 1.0)))
        rows = _walk(doubt, truth, 0.7 * truth.sum(), 120)
        shown: ErrorsLeft | None = None
        held = []
        for done, truly, low, left, high, fixed in rows:
            before = shown
            found = int(truth.sum()) - truly
            shown = steady(shown, _est(done, found, left, low, high))
            if before is not None and fixed:
                assert shown.left <= before.left and shown.high <= before.high, (done, before, shown)
                model_rises += left > before.left
            assert shown.low <= shown.left <= shown.high
            held.append(shown.low <= truly <= shown.high)
        assert np.mean(held[::10]) >= 0.9, held
    assert model_rises > 0  # the case the rule is for


def test_the_session_holds_the_number_gives_it_back_on_undo_and_drops_it_on_new_scores(session: ReviewSession) -> None:
    session.set_estimate(_est(0, 0, 20.0, 10.0, 35.0))
    session.set_estimate(_est(1, 1, 22.0, 11.0, 38.0))  # a fix the range allowed
    assert session.estimate is not None and (session.estimate.left, session.estimate.high) == (20.0, 35.0)
    session.set_estimate(_est(2, 2, 19.0, 9.0, 33.0))
    session.set_estimate(_est(1, 1, 22.0, 11.0, 38.0))  # an undo: what was shown for these decisions
    assert session.estimate is not None and session.estimate.left == 20.0
    session.set_estimate(_est(0, 0, 20.0, 10.0, 35.0))
    assert session.estimate is not None and session.estimate.left == 20.0
    session.scores_changed()  # a re-score or re-rank: the new scores' number as it is
    session.set_estimate(_est(0, 0, 26.0, 12.0, 44.0))
    assert session.estimate is not None and session.estimate.left == 26.0
    session.reranked()  # the queue's own refit: held like a decision, a fall shown as it is
    session.set_estimate(_est(0, 0, 24.0, 12.0, 40.0))
    assert session.estimate is not None and session.estimate.left == 24.0
    session.rerank_finished(1.0)
    session.set_estimate(_est(0, 0, 27.0, 13.0, 45.0))
    assert session.estimate is not None and (session.estimate.left, session.estimate.high) == (24.0, 40.0)
    session.set_estimate(_est(0, 0, 27.0, 13.0, 45.0))  # the same again: still held
    assert session.estimate is not None and session.estimate.left == 24.0


def test_the_words_say_when_the_number_is_held_and_what_the_models_alone_say() -> None:
    """The tooltip and `stats` (which has no session: it gives the model's number) do not
    contradict each other: where the app holds its number, its words give the models' number too."""
    held = steady(_est(10, 4, 20.0, 10.0, 35.0), _est(11, 5, 23.0, 11.0, 37.0))
    assert held.left == 20.0 and "the models alone now say about 23" in held.detail()
    assert "held" not in steady(None, _est(11, 5, 23.0, 11.0, 37.0)).detail()


def test_the_number_shown_survives_a_restart_only_for_the_same_scores(session: ReviewSession) -> None:
    """A kill -9 and a restart took the demo's "about 8" to "about 11" with no fix: the window
    keeps what it showed, and a new session starts from it when the scores are the same ones."""
    session.set_estimate(_est(5, 3, 20.0, 10.0, 35.0))
    state = session.shown_state()
    assert state is not None and state["left"] == 20.0
    again = ReviewSession(session.project)
    assert again.resume_shown(json.loads(json.dumps(state)))
    again.set_estimate(_est(5, 3, 23.0, 11.0, 38.0))  # the model's number for the same decisions
    assert again.estimate is not None and again.estimate.left == 20.0
    again.set_estimate(_est(6, 4, 24.0, 12.0, 39.0))
    assert again.estimate is not None and again.estimate.left == 20.0


@pytest.mark.parametrize("damage", ["other scores", "nan", "text", "bool", "negative", "not a dict", "missing"])
def test_a_kept_number_from_other_scores_or_a_damaged_settings_file_is_ignored(session: ReviewSession, damage: str) -> None:
    session.set_estimate(_est(5, 3, 20.0, 10.0, 35.0))
    state: Any = session.shown_state()
    assert state is not None
    if damage == "other scores":
        state["scores"] = "another run"
    elif damage == "nan":
        state["left"] = float("nan")
    elif damage == "text":
        state["high"] = "35"
    elif damage == "bool":
        state["reviewed"] = True
    elif damage == "negative":
        state["found"] = -1
    elif damage == "missing":
        del state["low"]
    else:
        state = [state]
    again = ReviewSession(session.project)
    assert not again.resume_shown(state)
    again.set_estimate(_est(5, 3, 23.0, 11.0, 38.0))
    assert again.estimate is not None and again.estimate.left == 23.0

"""The review session without Qt: sort, filter, counts, act, undo, redo."""

from __future__ import annotations

import pytest

from scoring.store import QueueFilter
from scoring.tasks.review import ReviewSession


def test_sort_and_filter_decide_the_page(session: ReviewSession) -> None:
    session.set_view("margin", QueueFilter(given_label=1))
    rows = session.page()
    assert session.matching() == len(rows) == 4 and all(r.given_label == 1 for r in rows)
    margins = [r.scores["margin"] for r in rows]
    assert margins == sorted(margins)  # label errors first: lowest margin first
    session.set_view("path", QueueFilter(score_min=1.5))
    assert session.filter.score_key == "c_perplexity"  # a range on path means C-perplexity


def test_actions_undo_redo_and_counts(session: ReviewSession) -> None:
    first, second = (r.id for r in session.page(limit=2))
    session.act("relabel", first, 2)
    session.act("remove", second)
    assert session.stats["relabelled"] == 1 and session.stats["removed"] == 1
    assert "reviewed 2 / 12" in session.status_text()
    assert session.undo().image_id == second  # type: ignore[union-attr]
    assert session.stats["removed"] == 0 and session.stats["reviewed"] == 1
    assert session.redo().image_id == second  # type: ignore[union-attr]
    assert session.stats["removed"] == 1
    with pytest.raises(ValueError, match="unknown action"):
        session.act("delete", first)


def test_new_scores_make_the_estimate_due_at_once(session: ReviewSession) -> None:
    session.set_estimate(None)
    assert not session.estimate_due()
    session.scores_changed()
    assert session.estimate_due()


def test_the_estimate_is_due_after_every_decision_and_every_change_of_one(session: ReviewSession) -> None:
    """Issue 29: after every decision, not every 20; a relabel turned into a remove changes no
    count of reviewed images but changes what was found."""
    first = session.page(limit=1)[0].id
    session.set_estimate(None)
    session.act("relabel", first, 0)
    assert session.estimate_due()
    session.set_estimate(None)
    assert not session.estimate_due()
    session.act("remove", first)
    assert session.estimate_due()
    session.set_estimate(None)
    session.undo()
    assert session.estimate_due()


def test_a_rerank_is_due_after_every_n_decisions(session: ReviewSession) -> None:
    ids = [r.id for r in session.page(limit=6)]
    assert not session.rerank_due(every=3)
    for i in ids[:2]:
        session.act("keep", i)
    assert not session.rerank_due(every=3)
    session.act("relabel", ids[2], 0)
    assert session.rerank_due(every=3) and not session.rerank_due(every=0)
    session.reranked()
    assert not session.rerank_due(every=3) and session.estimate_due()


def test_keep_group_keeps_one_and_removes_the_rest_as_one_decision(session: ReviewSession) -> None:
    p = session.project
    a, b, c = (int(i) for i in p.images.scorable_ids()[:3])
    p.dupes.put_duplicate_groups([(a, 1), (b, 1), (c, 1)])
    session.act("keep_group", b)
    assert [p.images.image(i).status for i in (a, b, c)] == ["removed", "kept", "removed"]
    assert session.undo().image_id == b  # type: ignore[union-attr]
    assert [p.images.image(i).status for i in (a, b, c)] == ["unreviewed"] * 3


def test_a_long_rerank_is_followed_by_a_rest(session: ReviewSession) -> None:
    """A re-rank of 60 s (a big project) is not followed by another for 180 s, whatever the decisions."""
    from scoring.tasks.review import RERANK_REST

    ids = [r.id for r in session.page(limit=8)]
    session.rerank_due(every=2, now=0.0)
    session.reranked()
    session.rerank_finished(60.0, now=100.0)
    for i in ids[:4]:
        session.act("keep", i)
    assert not session.rerank_due(every=2, now=100.0 + RERANK_REST * 60.0 - 1)
    assert session.rerank_due(every=2, now=100.0 + RERANK_REST * 60.0 + 1)

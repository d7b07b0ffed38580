"""The vocabulary is the table: a score registered at run time is created, scored, sorted,
filtered, shown and exported by every room without touching any of them; the migrations
never read the table."""

from __future__ import annotations

import csv
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from scoring import vocabulary as V
from scoring.engine.inference import score_project
from scoring.io.formats import open_dataset
from scoring.progress import drain
from scoring.store import Project, QueueFilter
from scoring.store.migrations import MIGRATIONS
from scoring.tasks.export import run_export
from tests.scoring.tinypool import make_imagefolder, tiny_pool

KEY = "top_two_gap"


def _gap(p: V.PoolPass) -> np.ndarray:
    """1 - (top - runner-up) of the pool mean: high when the pool hesitates between two classes."""
    top2 = np.sort(p.mean, axis=1)[:, -2:]
    return 1.0 - (top2[:, 1] - top2[:, 0])


@pytest.fixture
def gap_score() -> Iterator[V.Score]:
    s = V.register(V.Score(KEY, "Top-two gap", True, "difficulty", ".4f", compute=_gap))
    yield s
    V.unregister(KEY)


def _schema() -> list[tuple[str, str]]:
    conn = sqlite3.connect(":memory:")
    for m in MIGRATIONS:
        m(conn)
    return sorted(conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL").fetchall())


def test_the_migrations_never_read_the_table(gap_score: V.Score) -> None:
    with_score = _schema()
    V.unregister(KEY)
    try:
        assert _schema() == with_score
        assert KEY not in str(with_score)
    finally:
        V.register(gap_score)


def test_a_score_registered_while_a_project_is_open_gets_its_column_not_an_error(tmp_path: Path) -> None:
    """Issue 32: a score registered after a project was opened failed with "no such column" in
    the queue's page. The store now adds the column before the next query or write reads it."""
    data = make_imagefolder(tmp_path / "d", per_class=3, corrupt=False)
    db = tmp_path / "p.triage.db"
    Project.create(db, open_dataset(data)).close()
    with Project.open(db) as p:
        assert p.queue.page(limit=5)
        V.register(V.Score(KEY, "Top-two gap", True, "difficulty", ".4f", compute=_gap))
        try:
            rows = p.queue.page(sort=KEY, limit=100)
            assert len(rows) == 9 and all(r.scores[KEY] is None for r in rows)
            assert KEY in {r[1] for r in p._q("PRAGMA table_info(images)")}
        finally:
            V.unregister(KEY)
        assert p.queue.page(limit=5)  # taken out again: the column stays, nothing reads it


def test_a_score_registered_at_run_time_goes_through_every_room(gap_score: V.Score, tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "d", per_class=5, corrupt=False)
    db = tmp_path / "p.triage.db"
    Project.create(db, open_dataset(data)).close()
    drain(score_project(db, pool=tiny_pool(["blue", "green", "red"]), batch_size=4, workers=0, runtime="torch"))
    with Project.open(db) as p:
        assert f"ix_images_{KEY}" in {r[1] for r in p._q("PRAGMA index_list(images)")}
        rows = p.queue.page(sort=KEY, limit=100)
        values = [r.scores[KEY] for r in rows]
        assert len(values) == 15 and None not in values
        assert values == sorted(values, reverse=True)  # higher is harder: the hardest first
        # The stored value is the score's own function of the stored probabilities.
        ids = [r.id for r in rows]
        probs = p.cache.get_probs([m["fingerprint"] for m in p.runs.active_members()], ids)
        want = _gap(V.PoolPass(probs, p.images.given_labels(ids)))
        np.testing.assert_allclose(values, want, atol=2e-3)  # probabilities are stored as float16
        cut = float(np.median(values))
        filt = QueueFilter(score_key=KEY, score_min=cut)
        assert {r.id for r in p.queue.page(filt, sort="path", limit=100)} == {r.id for r in rows if r.scores[KEY] >= cut}
        assert p.queue.queue_count(filt) == sum(v >= cut for v in values)
        from gui.detail import DetailPane

        assert f"Top-two gap <b>{values[0]:.4f}</b>" in DetailPane._scores_html(rows[0], "difficulty")
    report = run_export(db, tmp_path / "out", fmt="csv", link="copy")
    assert report["exported"] == 15
    with open(tmp_path / "out" / "difficulty.csv", newline="") as fh:
        got = {r["source_path"]: r[KEY] for r in csv.DictReader(fh)}
    assert len(got) == 15 and all(float(v) >= 0 for v in got.values())


def test_an_older_project_gets_the_column_when_it_next_opens(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "d", per_class=2, corrupt=False)
    Project.create(tmp_path / "p.triage.db", open_dataset(data)).close()
    V.register(V.Score(KEY, "Top-two gap", True, "label", compute=_gap))
    try:
        with Project.open(tmp_path / "p.triage.db") as p:
            assert KEY in {r[1] for r in p._q("PRAGMA table_info(images)")}
            assert p.queue.page(sort=KEY, limit=10)[0].scores[KEY] is None  # not scored yet: unscored come last
            assert KEY in V.label_sorts() and not V.hardest_first("path")
    finally:
        V.unregister(KEY)


def test_the_command_line_and_the_app_offer_a_registered_score(gap_score: V.Score) -> None:
    from gui.filter_panel import sorts
    from scoring.cli.main import build_parser

    queue = next(a for a in build_parser()._subparsers._group_actions[0].choices["queue"]._actions  # type: ignore[union-attr]
                 if a.dest == "sort")
    assert KEY in queue.choices  # type: ignore[operator]
    label = dict((k, t) for t, k in sorts())[KEY]
    assert label == "Top-two gap: hardest first (difficulty, blind to the label)"
    assert "likely label errors first (label-aware)" in dict((k, t) for t, k in sorts())[V.LABEL_SORT]


def test_a_bad_registration_is_refused_in_one_line() -> None:
    for bad, why in ((V.Score("consensus", "x", True, "label"), "must be a lower-case identifier"),
                     (V.Score("Bad Key", "x", True, "label"), "must be a lower-case identifier"),
                     (V.Score(V.LABEL_SORT, "x", True, "label"), "already registered"),
                     (V.Score("fine_key", "x", True, "sideways"), "view must be one of")):
        with pytest.raises(ValueError, match=why):
            V.register(bad)
    with pytest.raises(V.UnknownScoreError, match=f"unknown score 'nope'; registered: {V.DIFFICULTY_SORT}"):
        V.score("nope")
    with pytest.raises(ValueError, match="built in"):
        V.unregister(V.LABEL_SORT)

"""Every room speaks the vocabulary's words: adding a score is one entry plus its function."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scoring.cli import build_parser
from scoring.datasets import open_dataset
from scoring.metrics import HIGHER_IS_HARDER, compute_scores
from scoring.store import Project
from scoring.vocabulary import HARDEST_DESC, IMAGE_SCORE_COLUMNS, SCORE_COLUMNS, SCORES, SORT_KEYS
from tests.scoring.tinypool import make_imagefolder


def test_compute_scores_returns_every_per_image_column() -> None:
    """The per-image pass returns each per-image score; the dataset's scores (neighbour
    agreement, label issue: scoring.score_pass) and the annotators' (their votes, at sync) are not."""
    probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(2, 5))
    out = compute_scores(probs, np.array([0, 1, 2, 0, 1]))
    assert set(IMAGE_SCORE_COLUMNS) <= set(out) and all(len(out[c]) == 5 for c in IMAGE_SCORE_COLUMNS)
    dataset = {s.key for s in SCORES if s.dataset}
    assert dataset == {"neighbour_agreement", "label_issue", "annotator_agreement", "annotator_entropy"}
    assert not dataset & set(out)
    assert set(SCORE_COLUMNS) == set(IMAGE_SCORE_COLUMNS) | dataset
    assert all(HIGHER_IS_HARDER[s.key] == s.higher_is_harder for s in SCORES)


def test_the_store_has_a_column_and_a_hardest_first_index_per_score(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "d", per_class=2, corrupt=False)
    with Project.create(tmp_path / "p.triage.db", open_dataset(data)) as p:
        cols = {r[1] for r in p._q("PRAGMA table_info(images)")}
        assert set(SCORE_COLUMNS) <= cols
        indexes = {r[1]: r for r in p._q("PRAGMA index_list(images)")}
        for key in SORT_KEYS:
            if key != "id":
                assert f"ix_images_{key}" in indexes
            assert Project.hardest_first(key) == (key in HARDEST_DESC)


def test_the_command_line_and_the_app_offer_every_score_and_say_which_view() -> None:
    from gui.filter_panel import SORTS

    queue = next(a for a in build_parser()._subparsers._group_actions[0].choices["queue"]._actions if a.dest == "sort")  # type: ignore[union-attr]
    assert tuple(queue.choices) == SORT_KEYS
    keys = [k for _, k in SORTS]
    assert keys[: len(SCORES)] == [s.key for s in SCORES]
    for label, key in SORTS[: len(SCORES)]:
        assert ("blind to the label" in label) == (key in {s.key for s in SCORES if s.view == "difficulty"})

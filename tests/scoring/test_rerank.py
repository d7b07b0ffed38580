"""The queue that learns: heads refitted on corrected labels, rescored, the unreviewed re-ranked."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from scoring.engine.inference import score_project
from scoring.pool.members import HeadMember
from scoring.progress import drain
from scoring.store import Project, QueueFilter, project_for
from scoring.tasks.rerank import rerank, training_labels
from tests.scoring.tinypool import head_pool, make_imagefolder, tiny_pool

CLASSES = ["blue", "green", "red"]


@pytest.fixture
def flipped(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """24 colour images; four red ones copied into blue/ (labelled blue, truly red)."""
    data = make_imagefolder(tmp_path / "data", per_class=8, corrupt=False)
    for i in range(4):
        shutil.copy(data / "red" / f"{i:03d}.png", data / "blue" / f"flip{i}.png")
    db = project_for(data, tmp_path / "p.triage.db")
    drain(score_project(db, pool=head_pool(CLASSES), workers=0))
    with Project.open(db) as p:
        ids = p.images.scorable_ids()
        return db, dict(zip(p.images.paths_of(ids), (int(i) for i in ids), strict=True))


def test_heads_learn_the_corrections_and_only_the_unreviewed_move(flipped: tuple[Path, dict[str, int]]) -> None:
    db, ids = flipped
    pool = head_pool(CLASSES)
    head = next(m for m in pool.members if isinstance(m, HeadMember))
    with Project.open(db) as p:
        p.edits.relabel(ids["blue/flip0.png"], 2)
        p.edits.relabel(ids["blue/flip1.png"], 2)
        p.edits.keep(ids["green/000.png"])
        p.edits.remove(ids["green/001.png"])
        all_ids = p.images.scorable_ids()
        labels, decisions = training_labels(p, all_ids)
        assert decisions == 4
        assert labels[list(all_ids).index(ids["blue/flip0.png"])] == 2  # corrected
        assert labels[list(all_ids).index(ids["green/001.png"])] == -1  # removed: not trained on
        before = p.cache.get_probs([head.fingerprint], all_ids)[0]
        margin_before = p.queue.queue_row(ids["blue/flip2.png"]).scores["margin"]
        reviewed = {i: (p.images.image(i).current_label, p.images.image(i).status) for i in ids.values() if p.images.image(i).status != "unreviewed"}
        order_before = p.queue.ranked_ids(QueueFilter(status="unreviewed"), "margin")
    out = drain(rerank(db, "margin", pool=pool, prune=False))
    with Project.open(db) as p:
        after = p.cache.get_probs([head.fingerprint], all_ids)[0]
        expected = head.fit_predict(p.cache.get_features(head.encoder.key, all_ids), labels)
        assert np.allclose(after, expected, atol=2e-3)  # stored: the head fitted on the corrected labels
        assert not np.allclose(after, before, atol=2e-3)
        # the flips not yet reviewed stand out more once two of their like are corrected
        assert p.queue.queue_row(ids["blue/flip2.png"]).scores["margin"] < margin_before
        assert {i: (p.images.image(i).current_label, p.images.image(i).status) for i in reviewed} == reviewed
        order_after = p.queue.ranked_ids(QueueFilter(status="unreviewed"), "margin")
    assert sorted(order_after) == sorted(order_before) and len(order_after) == 24 + 4 - 4
    assert out.refitted == ["head"] and out.decisions == 4 and out.unreviewed == len(order_after)
    pos = {i: n for n, i in enumerate(order_before)}
    assert out.moved == sum(pos[i] != n for n, i in enumerate(order_after))
    assert "re-sorted" in out.line()
    # pruning: the suspects at the head of the queue are left out of training, and said so
    pruned = drain(rerank(db, "margin", pool=pool))
    assert pruned.pruned > 0 and f"{pruned.pruned:,} images that look mislabelled were kept out" in pruned.line()
    with Project.open(db) as p:
        head_of_queue = p.queue.ranked_ids(QueueFilter(status="unreviewed"), "margin")[:2].tolist()
        assert ids["blue/flip2.png"] in head_of_queue and ids["blue/flip3.png"] in head_of_queue


def test_a_pool_without_heads_says_so(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(CLASSES, fitted=False), workers=0))
    out = drain(rerank(db, pool=tiny_pool(CLASSES, fitted=False)))
    assert out.refitted == [] and "no cross-fitted heads" in out.line()
    from scoring.tasks.rerank import active_pool

    with Project.open(db) as p:  # its spec has no backbone: nothing is built or loaded
        assert active_pool(p) is None
    assert drain(rerank(db)).refitted == []


def test_the_command_line_reranks_and_shows_neighbours_and_keeps_one_of_a_group(
    flipped: tuple[Path, dict[str, int]], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import scoring.tasks.rerank
    from scoring.cli.main import main

    db, ids = flipped
    monkeypatch.setattr(scoring.tasks.rerank, "active_pool", lambda project, **_: head_pool(CLASSES))
    assert main(["relabel", "--db", str(db), "blue/flip0.png", "red"]) == 0
    capsys.readouterr()
    assert main(["rerank", "--db", str(db), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["refitted"] == ["head"] and out["decisions"] == 1
    assert main(["neighbours", "--db", str(db), "blue/flip1.png", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert [b["label"] for b in got["by_label"]][0] == "blue" and len(got["by_label"][0]["neighbours"]) == 6
    # the flip's twin is the nearest red image
    red = next(b for b in got["by_label"] if b["label"] == "red")
    assert red["neighbours"][0]["path"] == "red/001.png"
    assert main(["duplicates", "--db", str(db), "--json"]) == 0
    capsys.readouterr()
    assert main(["keep-group", "--db", str(db), "blue/flip1.png"]) == 2  # keeps a label the pool doubts: asks
    assert "the pool says 'red'" in capsys.readouterr().err
    assert main(["keep-group", "--db", str(db), "blue/flip1.png", "--yes"]) == 0
    assert "removed: red/001.png" in capsys.readouterr().out
    with Project.open(db) as p:
        assert p.images.image(ids["red/001.png"]).status == "removed"
    assert main(["undo", "--db", str(db)]) == 0
    with Project.open(db) as p:
        assert p.images.image(ids["red/001.png"]).status == "unreviewed"
    assert main(["keep-group", "--db", str(db), "green/000.png"]) == 2  # in no group: one line, exit 2
    assert "in no duplicate group" in capsys.readouterr().err


def test_a_rerank_adds_no_fold_copies_and_refits_networks_only_when_asked(tmp_path: Path) -> None:
    """Each re-rank has new labels: keeping its folds would add a copy of the predictions per
    re-rank. The automatic re-rank refits heads only (seconds); the other fitted members (here a
    centroid, standing for a scratch network) only when asked (issue 17: the demo took minutes)."""
    from scoring.pool.base import Pool

    def make() -> Pool:
        pool = head_pool(CLASSES)
        members = [*pool.members, tiny_pool(CLASSES).members[-1]]  # and a fitted non-head member
        return Pool(members, CLASSES, spec=[m.spec for m in members])

    data = make_imagefolder(tmp_path / "data", per_class=6, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    drain(score_project(db, pool=make(), workers=0))
    pool = make()
    with Project.open(db) as p:
        ids = dict(zip(p.images.paths_of(p.images.scorable_ids()), (int(i) for i in p.images.scorable_ids()), strict=True))

    def rows(p: Project) -> int:
        return int(p._q("SELECT count(*) FROM features")[0][0])

    with Project.open(db) as p:
        p.edits.relabel(ids["blue/000.png"], 2)
        before = rows(p)
    assert drain(rerank(db, pool=pool)).refitted == ["head"]
    out = drain(rerank(db, pool=pool, networks=True))
    with Project.open(db) as p:
        assert rows(p) == before
    assert out.refitted == ["head", "centroid"]

"""Issue 34: ``--budget`` chooses the richest automatic pool whose measured time fits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from scoring.cli.main import main
from scoring.errors import ImageTriageError
from scoring.tasks import budget as B
from scoring.tasks.autopool import Facts, budget_tiers, choose
from tests.scoring.tinypool import make_imagefolder


def _facts(**kw: object) -> Facts:
    base = dict(n_images=10_000, labelled=True, side=32, grayscale=False, gpu=False, thorough=False,
                classes=("a", "b", "c"), min_per_class=1000)
    return Facts(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "seconds"), [("90s", 90), ("3m", 180), ("10 min", 600), ("1h", 3600), ("1h30m", 5400)])
def test_a_budget_is_a_time_with_its_unit(text: str, seconds: float) -> None:
    assert B.parse_budget(text) == seconds


@pytest.mark.parametrize("text", ["10", "ten minutes", "0m", "3m and a bit", "-3m", ""])
def test_a_budget_without_a_unit_or_at_zero_is_refused_with_the_forms_that_work(text: str) -> None:
    with pytest.raises(ImageTriageError, match="for example"):
        B.parse_budget(text)


def test_the_tiers_grow_from_the_heads_to_the_fine_tuned_encoder() -> None:
    colour = budget_tiers(_facts())
    kinds = [[s.kind for s in t.specs] for t in colour]
    assert kinds == [["backbone"], ["backbone", "scratch"], ["backbone", "scratch", "scratch"],
                     ["backbone", "scratch", "finetune"], ["backbone", "scratch", "scratch", "finetune"]]
    assert list(colour[1].specs) == choose(_facts()).specs  # the default is one of them
    grey = budget_tiers(_facts(grayscale=True))  # the default already has all three small networks
    assert [len(t.specs) for t in grey] == [1, 3, 4]
    top = [s for s in colour[-1].specs if s.kind == "finetune"][0]
    assert top.train_blocks == 5 and top.preprocess["size"] == 160  # on a CPU: the last blocks, at the heads' size
    photos = budget_tiers(_facts(side=500))
    assert [[s.kind for s in t.specs] for t in photos] == [["backbone"], ["backbone", "finetune"]]
    assert [[s.kind for s in t.specs] for t in budget_tiers(_facts(labelled=False))] == [["checkpoint"]]


def _fake_estimate(monkeypatch: pytest.MonkeyPatch, seconds: dict[str, float]) -> None:
    """Each stage's time by the kind of member it belongs to (no clock: issue 27)."""
    import scoring.tasks.estimate_time as ET

    def estimate(specs, facts, device, runtime="auto"):  # type: ignore[no-untyped-def]
        from scoring.pool.spec import build_pool

        pool = build_pool([dict(s) for s in specs], list(facts.classes))
        parts = {"decode": 1.0, "runtime": 0.0}
        parts.update({f"forward {e.description or e.key}": seconds["forward"] for e in pool.encoders()})
        parts.update({f"fit {m.name}": seconds[m.kind] for m in pool.members})
        return parts

    monkeypatch.setattr(ET, "estimate", estimate)


@pytest.mark.parametrize(("budget", "kinds"), [
    (60, ["backbone"]),  # heads: 1 + 30 + 4 x 5 = 51 s, x 1.35 = 69 s: over a minute
    (100, ["backbone"]),
    (400, ["backbone", "scratch"]),
    (1000, ["backbone", "scratch", "scratch"]),
    (4400, ["backbone", "scratch", "finetune"]),  # the fine-tuned encoder before the extra small networks
    (100_000, ["backbone", "scratch", "scratch", "finetune"]),
])
def test_the_budget_takes_the_richest_pool_whose_range_ends_inside_it(monkeypatch: pytest.MonkeyPatch, budget: float,
                                                                      kinds: list[str]) -> None:
    _fake_estimate(monkeypatch, {"forward": 30.0, "backbone": 5.0, "scratch": 100.0, "finetune": 3000.0})
    choice = B.choose_for_budget(_facts(), budget, torch.device("cpu"), history=[])
    assert [s.kind for s in choice.specs] == kinds
    assert choice.range[1] <= budget or kinds == ["backbone"]
    assert choice.reasons[0].startswith(f"time budget {B.fmt_budget(budget)}: ")
    assert sum(choice.parts.values()) == pytest.approx(choice.seconds)
    if budget == 60:
        assert "no pool fits" in choice.reasons[0]
    elif budget < 100_000:
        assert "would take" in choice.reasons[0]  # the next richer pool, and its time
    if kinds == ["backbone", "scratch"]:
        assert any("from scratch" in r for r in choice.reasons[1:])  # the default's own reasons


def test_time_already_spent_counts_against_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 34: a 3m budget on 10,000 MNIST digits took 183 s, the survey and the duplicate search
    around a 130 s scoring run: the time the command has spent is taken off before choosing."""
    _fake_estimate(monkeypatch, {"forward": 30.0, "backbone": 5.0, "scratch": 100.0, "finetune": 3000.0})
    assert [s.kind for s in B.choose_for_budget(_facts(), 400, torch.device("cpu"), history=[]).specs] == \
        ["backbone", "scratch"]
    late = B.choose_for_budget(_facts(), 400, torch.device("cpu"), history=[], spent=350)
    assert [s.kind for s in late.specs] == ["backbone"] and "no pool fits" in late.reasons[0]
    assert late.reasons[0].startswith("time budget 6m 40s: ")  # the user's budget, as given


def test_the_duplicate_search_stops_when_the_budget_runs_out_and_stores_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import scoring.tasks.duplicates as D
    from scoring.progress import Progress, check_cancel, drain
    from scoring.store import Project, project_for
    from scoring.tasks.budget import search_within

    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    assert drain(search_within(db, 0.5)) is None  # nothing left: not started
    assert drain(search_within(db, None)) == []  # no budget: the whole search (nothing alike here)
    with Project.open(db) as p:
        searched = p._meta("duplicates_searched")
    assert searched is not None

    def endless(project_path, threshold=0.0, cancel=None):  # type: ignore[no-untyped-def]
        while True:  # a search longer than the budget: only the budget's timer ends it
            check_cancel(cancel)
            yield Progress("dupes", 0, 1)

    monkeypatch.setattr(D, "find_duplicates", endless)
    assert drain(search_within(db, 1.2)) is None
    with Project.open(db) as p:
        assert p._meta("duplicates_searched") == searched  # the stopped search stored nothing


def test_budget_with_a_pool_or_a_bad_time_is_one_line_and_creates_nothing(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    db = tmp_path / "p.triage.db"
    assert main(["score", str(data), "--db", str(db), "--budget", "10", "-q"]) == 2
    assert "for example 90s, 3m" in capsys.readouterr().err and not db.exists()
    assert main(["score", str(data), "--db", str(db), "--budget", "3m", "--scratch", "-q"]) == 2
    assert "--budget chooses the automatic pool" in capsys.readouterr().err and not db.exists()


def test_pool_auto_with_a_budget_says_the_budget_and_prints_a_pool_that_loads(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from scoring.pool.spec import load_pool_file

    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    _fake_estimate(monkeypatch, {"forward": 30.0, "backbone": 5.0, "scratch": 100.0, "finetune": 3000.0})
    assert main(["pool", "auto", str(data), "--budget", "1s"]) == 0  # too short for any pool: the quickest, said so
    text = capsys.readouterr().out
    assert f"score {data} --budget 1s` would choose" in text and "no pool fits in the budget" in text
    (tmp_path / "auto.toml").write_text(text)
    assert [s["kind"] for s in load_pool_file(tmp_path / "auto.toml")] == ["backbone"]

"""The command line end to end on a tiny dataset: score, queue, edits, undo, export, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from scoring.cli.main import main
from scoring.io.formats import open_dataset
from tests.conftest import shared_path
from tests.scoring.tinypool import make_imagefolder


@pytest.fixture
def setup(tmp_path: Path, member_args: list[str]) -> tuple[Path, Path, list[str]]:
    return make_imagefolder(tmp_path / "data", per_class=5), tmp_path / "p.triage.db", member_args


def test_score_queue_edit_undo_export(setup: tuple[Path, Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, db, member = setup
    assert main(["score", str(data), "--db", str(db), *member, "--workers", "0", "--json", "-q"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "done" and summary["scored"] == 15 and summary["errors"] == 2
    assert summary["duplicates"] == {"groups": 0, "label_conflicts": 0}  # looked for after every run
    assert main(["queue", "--db", str(db), "--json", "--limit", "5"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 5 and rows[0]["label_issue"] >= rows[-1]["label_issue"]  # labelled: the label view first
    assert main(["queue", "--db", str(db), "--json", "--limit", "5", "--sort", "c_perplexity"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["c_perplexity"] >= rows[-1]["c_perplexity"]
    assert main(["queue", "--db", str(db), "--class", "red"]) == 0
    out = capsys.readouterr().out
    assert "c_perplexity" in out and "label_issue" in out and "red/" in out and "blue/" not in out
    assert main(["relabel", "--db", str(db), "blue/000.png", "green"]) == 0
    assert main(["remove", "--db", str(db), "red/001.png"]) == 0
    assert main(["keep", "--db", str(db), "green/002.png"]) == 0
    assert main(["undo", "--db", str(db)]) == 0
    assert "green/002.png" in capsys.readouterr().out
    assert main(["relabel", "--db", str(db), "blue/000.png", "purple"]) == 2
    assert "unknown class 'purple'" in capsys.readouterr().err
    assert main(["errors", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "broken.png" in out and "empty.jpg" in out
    assert main(["export", "--db", str(db), str(tmp_path / "clean")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["exported"] == 14 and report["removed"] == 1
    ds = open_dataset(tmp_path / "clean" / "images")
    labels = {Path(r.path).name + "@" + r.label for r in ds.records}
    assert "000.png@green" in labels and not any(x.startswith("001.png@red") for x in labels)
    # a second score run with the same pool rescores nothing and keeps the edits
    assert main(["score", str(db), "--workers", "0", "--json", "-q"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "done"
    assert main(["stats", "--db", str(db)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["relabelled"] == 1 and stats["removed"] == 1


def test_bad_inputs_are_one_line_errors(setup: tuple[Path, Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, db, member = setup
    assert main(["score", str(tmp_path / "nowhere"), "--db", str(db), *member]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["score", str(data), "--db", str(db), "--member", "checkpoint:path=/no/such.pth,arch=tiny_mlp,classes=x"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (tmp_path / "bad.triage.db").write_text("not sqlite")
    assert main(["queue", "--db", str(tmp_path / "bad.triage.db")]) == 2
    assert "not an Image Triage project" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_headless_finds_the_planted_label_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from scoring.store import Project
    from scoring.tasks.demo import flipped_paths

    assert main(["demo", "--headless", "--dest", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "duplicates: " in out  # grouped after scoring, as in the app
    assert f"the answer key (the labels flipped on purpose): {tmp_path / 'demo_truth.csv'}" in out  # issue 30
    flipped = flipped_paths(tmp_path)
    with Project.open(tmp_path / "digits.triage.db") as p:
        top = p.queue.page(sort="self_confidence", limit=100)
        found = sum(r.path in flipped for r in top)
        assert p.queue.stats()["total"] == 1797
    assert len(flipped) == 54 and found >= 45


@pytest.mark.shared
def test_cifar_resnet20_accuracy_on_shared_jpegs(tmp_path: Path) -> None:
    """The loader and preprocessing match the published model: ~81% on the JPEG test set."""
    import numpy as np

    from scoring.engine.inference import score_project
    from scoring.pool.spec import build_pool, cifar_resnet_pool_specs
    from scoring.progress import drain
    from scoring.store import Project

    data = shared_path("data", "cifar10-test")
    models = shared_path("models", "cifar10-resnet")
    full = open_dataset(data)
    lines = ["path,label"] + [f"{full.abspath(r.path)},{r.label}" for r in full.records[::20]]  # 500, every class
    (tmp_path / "subset.csv").write_text("\n".join(lines) + "\n")
    ds = open_dataset(tmp_path / "subset.csv")
    db = tmp_path / "c.triage.db"
    Project.create(db, ds).close()
    pool = build_pool(cifar_resnet_pool_specs(models)[:1], ds.classes)
    drain(score_project(db, pool=pool, batch_size=100, workers=0))
    with Project.open(db) as p:
        ids = p.images.scorable_ids()
        probs = p.cache.get_probs([pool.members[0].fingerprint], ids)[0]
        acc = float((probs.argmax(1) == p.images.given_labels(ids)).mean())
    assert acc >= 0.76, acc
    assert len(ids) == 500 and np.isfinite(probs).all()


def test_pool_check_loads_and_measures_every_member(setup: tuple[Path, Path, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _, _ = setup
    (tmp_path / "model" / "pool.toml").write_text(
        '[[member]]\nname = "tiny"\nkind = "checkpoint"\npath = "m.pth"\narch = "tiny_mlp"\n'
        'classes_file = "classes.txt"\npreprocess = { size = 16 }\n'
    )
    assert main(["pool", "check", str(tmp_path / "model" / "pool.toml"), str(data)]) == 0
    report = json.loads(capsys.readouterr().out)
    (m,) = report["members"]
    assert m["name"] == "tiny" and m["classes"] == ["blue", "green", "red"]
    from scoring.device import pick_device

    assert m["preprocess"]["size"] == 16 and m["device"] == str(pick_device("auto")) and m["forward_images_per_s"] > 0


def test_scoring_images_a_member_was_trained_on_warns(setup: tuple[Path, Path, list[str]], tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data, db, member = setup
    (tmp_path / "train.txt").write_text("blue/000.png\nred/001.png\n")
    with caplog.at_level("WARNING"):
        assert main(["score", str(data), "--db", str(db), "--member", member[1] + f",train_list={tmp_path}/train.txt", "--workers", "0", "-q"]) == 0
    assert any("trained on 2 of these images" in r.getMessage() for r in caplog.records)

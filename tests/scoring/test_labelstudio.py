"""Issue 21: Label Studio both ways, and several annotators' votes as evidence."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoring.cli.main import main
from scoring.engine.inference import score_project
from scoring.io.formats import open_dataset
from scoring.progress import drain
from scoring.store import Project, project_for
from tests.scoring.tinypool import tiny_pool

CLASSES = ["blue", "green", "red"]
COLOURS = {"blue": (20, 40, 220), "green": (30, 200, 40), "red": (220, 30, 30)}


def _ann(who: object, label: str) -> dict:  # type: ignore[type-arg]
    return {"id": 1, "completed_by": who, "was_cancelled": False,
            "result": [{"from_name": "choice", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]}


@pytest.fixture
def ls_export(tmp_path: Path) -> Path:
    """A Label Studio export as its JSON export writes it: 18 tasks, uploads and local files,
    one, two or three annotators per task; one task's image is on the web."""
    rng = np.random.default_rng(0)
    (tmp_path / "ls" / "upload" / "1").mkdir(parents=True)
    (tmp_path / "ls" / "local").mkdir()
    tasks = []
    for n in range(18):
        colour = CLASSES[n % 3]
        arr = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
        if n % 2:
            Image.fromarray(arr).save(tmp_path / "ls" / "upload" / "1" / f"img{n}.png")
            ref = f"/data/upload/1/img{n}.png"
        else:
            Image.fromarray(arr).save(tmp_path / "ls" / "local" / f"img {n}.png")
            ref = f"/data/local-files/?d=local/img%20{n}.png"
        anns = [_ann(1, colour)]
        if n in (3, 4, 5):
            anns.append(_ann({"id": 2, "email": "b@x.org"}, colour))
        if n == 6:  # two of three say green (the image is blue)
            anns = [_ann(1, "green"), _ann(2, "blue"), _ann(3, "green")]
        if n == 7:
            anns.append(_ann(2, "red"))  # a 1-1 tie: the earliest wins
        tasks.append({"id": 100 + n, "data": {"image": ref}, "annotations": anns, "predictions": []})
    tasks.append({"id": 999, "data": {"image": "https://example.org/cat.jpg"}, "annotations": [_ann(1, "red")]})
    path = tmp_path / "ls" / "project-1-export.json"
    path.write_text(json.dumps(tasks))
    return path


def test_an_export_is_read_with_every_annotators_vote(ls_export: Path) -> None:
    ds = open_dataset(ls_export)
    assert ds.layout == "labelstudio" and ds.classes == CLASSES
    by_path = {r.path: r for r in ds.records}
    assert by_path["local/img 6.png"].label == "green"  # the majority of three
    assert by_path["local/img 6.png"].votes == (("1", "green"), ("2", "blue"), ("3", "green"))
    assert by_path["upload/1/img7.png"].label == "green"  # a 1-1 tie (green, red): the earliest annotation
    assert by_path["upload/1/img3.png"].votes[1] == ("b@x.org", "blue")  # 3 % 3 = 0: blue
    web = [r for r in ds.records if r.error is not None]
    assert len(web) == 1 and "task 999" in web[0].error and "not a local file" in web[0].error


def test_the_agreement_scores_match_hand_computed_values(ls_export: Path, tmp_path: Path) -> None:
    db = project_for(ls_export, tmp_path / "p.triage.db")
    with Project.open(db) as p:
        row6 = p.queue.queue_row(p.images.find_image("local/img 6.png"))  # type: ignore[arg-type]
        assert row6.scores["annotator_agreement"] == pytest.approx(2 / 3)
        h = -(2 / 3 * math.log2(2 / 3) + 1 / 3 * math.log2(1 / 3))
        assert row6.scores["annotator_entropy"] == pytest.approx(h)  # 0.918 bits
        row7 = p.queue.queue_row(p.images.find_image("upload/1/img7.png"))  # type: ignore[arg-type]
        assert row7.scores["annotator_agreement"] == pytest.approx(0.5) and row7.scores["annotator_entropy"] == pytest.approx(1.0)
        row3 = p.queue.queue_row(p.images.find_image("upload/1/img3.png"))  # type: ignore[arg-type]
        assert row3.scores["annotator_agreement"] == 1.0 and row3.scores["annotator_entropy"] == 0.0
        row0 = p.queue.queue_row(p.images.find_image("local/img 0.png"))  # type: ignore[arg-type]
        assert row0.scores["annotator_agreement"] is None  # one annotator: nothing to agree with
        first = p.queue.page(sort="annotator_agreement", limit=2)
        assert {r.path for r in first} == {"upload/1/img7.png", "local/img 6.png"}
        assert p.images.votes_of(row6.id) == [("1", 1), ("2", 0), ("3", 1)]


def test_import_relabel_export_import_again_keeps_every_decision(ls_export: Path, tmp_path: Path) -> None:
    db = project_for(ls_export, tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0))
    with Project.open(db) as p:
        i6 = p.images.find_image("local/img 6.png")
        i7 = p.images.find_image("upload/1/img7.png")
        i8 = p.images.find_image("local/img 8.png")
        p.edits.relabel(i6, 0)  # blue, against the majority
        p.edits.keep(i7)
        p.edits.remove(i8)
    dest = tmp_path / "back"
    assert main(["export", "--db", str(db), str(dest), "--format", "labelstudio"]) == 0
    tasks = json.loads((dest / "tasks.json").read_text())
    assert len(tasks) == 17  # 19 tasks, less the removed one and the one on the web
    t6 = next(t for t in tasks if t["data"]["image_triage"]["source"] == "local/img 6.png")
    assert t6["id"] == 106 and len(t6["annotations"]) == 4  # the three people's, and the decision
    assert t6["annotations"][-1]["completed_by"] == "image-triage"
    assert t6["predictions"][-1]["model_version"] == "image-triage"
    assert "label_issue" in t6["data"]["image_triage"]
    again = open_dataset(dest / "tasks.json")
    labels = {r.path.split("/")[-1]: r.label for r in again.records}
    assert labels["img 6.png"] == "blue"  # the decision wins over the votes it settled
    assert labels["img7.png"] == "green" and "img 8.png" not in labels
    assert all(r.error is None for r in again.records)  # every image resolves beside tasks.json
    db2 = project_for(dest / "tasks.json", tmp_path / "p2.triage.db")
    with Project.open(db2) as p2:
        assert len(p2.images.scorable_ids()) == 17
        row = p2.queue.queue_row(p2.images.find_image(next(r.path for r in again.records if r.path.endswith("img 6.png"))))  # type: ignore[arg-type]
        assert p2.classes[row.given_label] == "blue" and row.scores["annotator_agreement"] == pytest.approx(1 / 3)


def test_a_hostile_export_never_hangs_and_names_each_bad_task(ls_export: Path, tmp_path: Path) -> None:
    """A FIFO beside the export and file:///dev/zero as images: listed as unreadable, the rest
    scored; a cancelled annotation written as the string "no" is not a cancel."""
    import os

    os.mkfifo(ls_export.parent / "pipe.png")
    tasks = json.loads(ls_export.read_text())
    tasks += [{"id": 501, "data": {"image": "/data/local-files/?d=pipe.png"}, "annotations": [_ann(1, "red")]},
              {"id": 502, "data": {"image": "file:///dev/zero"}, "annotations": [_ann(1, "red")]}]
    tasks[0]["annotations"][0]["was_cancelled"] = "no"
    ls_export.write_text(json.dumps(tasks))
    assert open_dataset(ls_export).records[0].label == "blue"
    db = project_for(ls_export, tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0))
    with Project.open(db) as p:
        bad = {r.path for r in p.images.errors()}
        assert {"pipe.png", "/dev/zero"} <= bad and len(p.images.scorable_ids()) == 18

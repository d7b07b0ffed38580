"""Issue 21: round trips with FiftyOne's classification format and CVAT's ImageNet layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from scoring.cli.main import main
from scoring.engine.inference import score_project
from scoring.io.formats import open_dataset
from scoring.progress import drain
from scoring.store import Project, project_for
from tests.scoring.tinypool import COLOURS, make_imagefolder, tiny_pool

CLASSES = ["blue", "green", "red"]


def _fiftyone_export(root: Path) -> dict[str, str]:
    """A FiftyOneImageClassificationDataset as FiftyOne writes it: data/<id>.png and labels.json
    with class indices, a dict label and an unlabelled sample."""
    rng = np.random.default_rng(0)
    (root / "data").mkdir(parents=True)
    labels: dict[str, object] = {}
    truth = {}
    for n in range(15):
        c = CLASSES[n % 3]
        arr = np.clip(np.array(COLOURS[c]) + rng.normal(0, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
        key = f"64f0c1e2a{n:03d}"
        Image.fromarray(arr).save(root / "data" / f"{key}.png")
        labels[key] = {"label": c, "confidence": None} if n == 4 else CLASSES.index(c)
        truth[f"data/{key}.png"] = c
    labels["64f0c1e2a014"] = None  # unlabelled
    truth["data/64f0c1e2a014.png"] = None  # type: ignore[assignment]
    (root / "labels.json").write_text(json.dumps({"classes": CLASSES, "labels": labels}))
    return truth  # type: ignore[return-value]


def test_fiftyone_import_relabel_export_import_again(tmp_path: Path) -> None:
    truth = _fiftyone_export(tmp_path / "fo")
    ds = open_dataset(tmp_path / "fo")
    assert ds.layout == "fiftyone" and {r.path: r.label for r in ds.records} == truth
    db = project_for(tmp_path / "fo", tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0))
    with Project.open(db) as p:
        p.edits.relabel(p.images.find_image("data/64f0c1e2a000.png"), 2)  # blue -> red
        p.edits.remove(p.images.find_image("data/64f0c1e2a001.png"))
    dest = tmp_path / "back"
    assert main(["export", "--db", str(db), str(dest), "--format", "fiftyone"]) == 0
    samples = json.loads((dest / "samples.json").read_text())["samples"]
    assert len(samples) == 14
    s0 = next(s for s in samples if s["source_path"] == "data/64f0c1e2a000.png")
    assert s0["ground_truth"] == {"_cls": "Classification", "label": "red"}
    assert s0["prediction"]["_cls"] == "Classification" and "label_issue" in s0 and "c_perplexity" in s0
    again = open_dataset(dest)
    by_source = {s["filepath"]: s["source_path"] for s in samples}
    labels = {by_source[r.path]: r.label for r in again.records}
    assert labels["data/64f0c1e2a000.png"] == "red" and "data/64f0c1e2a001.png" not in labels
    assert labels["data/64f0c1e2a014.png"] is None
    assert all(labels[k] == v for k, v in truth.items() if k not in ("data/64f0c1e2a000.png", "data/64f0c1e2a001.png"))


def test_cvat_imagenet_layout_round_trip(tmp_path: Path) -> None:
    """CVAT's ImageNet export is class folders (an ImageFolder); the imagefolder export is what
    CVAT's ImageNet import reads back."""
    data = make_imagefolder(tmp_path / "cvat", per_class=4, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0))
    with Project.open(db) as p:
        p.edits.relabel(p.images.find_image("green/000.png"), 0)
    dest = tmp_path / "back"
    assert main(["export", "--db", str(db), str(dest)]) == 0
    again = open_dataset(dest / "images")
    counts = {c: sum(r.label == c for r in again.records) for c in CLASSES}
    assert counts == {"blue": 5, "green": 3, "red": 4}  # the relabelled green image is filed under blue
    assert len(again.records) == 12


def test_a_hostile_fiftyone_folder_reads_nothing_outside_it(tmp_path: Path) -> None:
    """A FIFO and a link to a file outside the export are not images of it: the sample naming
    them is an error naming labels.json, and nothing is opened."""
    import os

    from scoring.io.datasets import DatasetError

    truth = _fiftyone_export(tmp_path / "fo")
    assert truth
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    os.symlink(secret, tmp_path / "fo" / "data" / "outside.png")
    os.mkfifo(tmp_path / "fo" / "data" / "fifo.png")
    doc = json.loads((tmp_path / "fo" / "labels.json").read_text())
    for key in ("outside", "fifo"):
        doc["labels"] = {**doc["labels"], key: 0}
        (tmp_path / "fo" / "labels.json").write_text(json.dumps(doc))
        try:
            open_dataset(tmp_path / "fo")
        except DatasetError as exc:
            assert "labels.json" in str(exc) and key in str(exc)
        else:
            raise AssertionError(f"{key} was taken as an image")
        del doc["labels"][key]

"""Issue 21: Hugging Face datasets and CVAT XML, both ways, on files each tool's layout writes."""

from __future__ import annotations

import io
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scoring.cli.main import main
from scoring.engine.inference import score_project
from scoring.io.datasets import DatasetError
from scoring.io.formats import open_dataset
from scoring.progress import drain
from scoring.store import Project, project_for
from tests.scoring.tinypool import COLOURS, tiny_pool

datasets = pytest.importorskip("datasets")

CLASSES = ["blue", "green", "red"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the unpacked images go here, not to ~/.cache
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _png(c: str, rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(np.clip(np.array(COLOURS[c]) + rng.normal(0, 40, (12, 12, 3)), 0, 255).astype(np.uint8))


def _hf_dataset(n: int = 15) -> tuple[object, list[int]]:
    rng = np.random.default_rng(0)
    labels = [n_ % 3 for n_ in range(n)]
    feats = datasets.Features({"img": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES),
                               "note": datasets.Value("string")})
    ds = datasets.Dataset.from_dict({"img": [_png(CLASSES[y], rng) for y in labels], "label": labels,
                                     "note": [f"n{k}" for k in range(n)]}, features=feats)
    return ds, labels


def test_a_saved_dataset_is_read_offline_and_unpacked_once(tmp_path: Path) -> None:
    ds, labels = _hf_dataset()
    ds.save_to_disk(str(tmp_path / "hf"))  # type: ignore[attr-defined]
    got = open_dataset(tmp_path / "hf")
    assert got.layout == "huggingface" and got.classes == CLASSES
    assert [r.label for r in got.records] == [CLASSES[y] for y in labels]
    assert got.root.is_relative_to(tmp_path / "cache") and all((got.root / r.path).is_file() for r in got.records)
    first = (got.root / got.records[0].path).stat().st_mtime_ns
    again = open_dataset(tmp_path / "hf")
    assert again.root == got.root and (again.root / again.records[0].path).stat().st_mtime_ns == first  # not unpacked again
    with Image.open(got.root / got.records[4].path) as im:
        assert im.size == (12, 12)


def test_huggingface_import_relabel_export_import_again(tmp_path: Path) -> None:
    ds, labels = _hf_dataset()
    (tmp_path / "hub" / "data").mkdir(parents=True)
    ds.to_parquet(str(tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"))  # type: ignore[attr-defined]
    db = project_for(tmp_path / "hub", tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0, runtime="torch"))
    with Project.open(db) as p:
        rows = sorted(p.images.image(int(i)).path for i in p.images.scorable_ids())
        assert len(rows) == 15
        p.edits.relabel(p.images.find_image(rows[0]), 2)  # blue -> red
        p.edits.remove(p.images.find_image(rows[1]))
        p.edits.keep(p.images.find_image(rows[2]))
    dest = tmp_path / "back"
    assert main(["export", "--db", str(db), str(dest), "--format", "huggingface"]) == 0
    table = datasets.Dataset.from_parquet(str(dest / "data" / "train-00000-of-00001.parquet"),
                                          cache_dir=str(tmp_path / "hfcache"))
    assert table.features["label"].names == CLASSES and len(table) == 14
    by_source = {r["source_path"]: r for r in table}
    assert by_source[rows[0]]["label"] == 2 and by_source[rows[0]]["status"] == "relabelled"
    assert by_source[rows[0]]["given_label"] == "blue" and "label_issue" in table.column_names
    assert by_source[rows[2]]["status"] == "kept" and rows[1] not in by_source
    assert np.asarray(by_source[rows[3]]["image"]).shape == (12, 12, 3)
    again = open_dataset(dest)  # Image Triage reads its own export back
    assert again.layout == "huggingface" and len(again.records) == 14
    want = [CLASSES[y] for y in labels]
    want[0] = "red"
    del want[1]
    assert [r.label for r in again.records] == [by_source[s]["label"] is not None and CLASSES[by_source[s]["label"]]
                                                for s in table["source_path"]] == want


def test_rows_stored_as_paths_are_read_through_the_one_reader(tmp_path: Path) -> None:
    """An Image column holding paths: a local file beside the data is read; a URL and a FIFO are
    unreadable rows naming the row, and nothing else changes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "paths"
    root.mkdir()
    _png("red", np.random.default_rng(1)).save(root / "a.png")
    os.mkfifo(root / "fifo.png")
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    cells = [{"bytes": None, "path": "a.png"}, {"bytes": None, "path": "http://example.com/x.png"},
             {"bytes": None, "path": "fifo.png"}]
    pq.write_table(pa.Table.from_pydict({"image": cells, "label": [2, 0, -1]}, schema=feats.arrow_schema), root / "d.parquet")
    got = open_dataset(root / "d.parquet")
    assert [r.label for r in got.records] == ["red", "blue", None]
    assert got.records[0].error is None and (got.root / got.records[0].path).read_bytes() == (root / "a.png").read_bytes()
    assert "row 1" in got.records[1].error and "http://example.com/x.png" in got.records[1].error  # type: ignore[operator]
    assert "row 2" in got.records[2].error and "not a regular" in got.records[2].error  # type: ignore[operator]


def test_a_hostile_huggingface_folder_is_one_line_naming_the_file(tmp_path: Path) -> None:
    ds, _ = _hf_dataset(3)
    ds.save_to_disk(str(tmp_path / "hf"))  # type: ignore[attr-defined]
    state = (tmp_path / "hf" / "state.json").read_text()
    (tmp_path / "hf" / "state.json").write_text(state.replace("data-00000-of-00001.arrow", "../../etc/passwd"))
    with pytest.raises(DatasetError, match=r"state\.json.*\.\./\.\./etc/passwd"):
        open_dataset(tmp_path / "hf")
    (tmp_path / "hf" / "state.json").write_text(state)
    os.mkfifo(tmp_path / "hf" / "extra.arrow")
    with pytest.raises(DatasetError, match=r"extra\.arrow.*FIFO|extra\.arrow.*not a regular"):
        open_dataset(tmp_path / "hf")
    assert not (tmp_path / "cache" / "image-triage" / "huggingface").exists() or not any(
        p.name.startswith(".") for p in (tmp_path / "cache" / "image-triage" / "huggingface").iterdir())


def _cvat_export(root: Path) -> dict[str, str | None]:
    """A "CVAT for images 1.1" export with images: annotations.xml and images/, one image with two
    tags that disagree (2 of 3 say red) and one untagged."""
    rng = np.random.default_rng(0)
    (root / "images" / "part1").mkdir(parents=True)
    truth: dict[str, str | None] = {}
    images = []
    for n in range(12):
        c = CLASSES[n % 3]
        name = f"part1/im{n}.png"
        _png(c, rng).save(root / "images" / name)
        tags = "" if n == 11 else f'    <tag label="{c}" source="manual">\n    </tag>\n'
        if n == 5:
            tags = ''.join(f'    <tag label="{t}" source="manual"></tag>\n' for t in ("red", "blue", "red"))
        images.append(f'  <image id="{n}" name="{name}" width="12" height="12">\n{tags}  </image>\n')
        truth[name] = None if n == 11 else c
    labels = "".join(f"<label><name>{c}</name><color>#000000</color><type>tag</type><attributes/></label>" for c in CLASSES)
    (root / "annotations.xml").write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n'
        f"  <meta><task><id>7</id><name>colours</name><size>12</size><labels>{labels}</labels></task></meta>\n"
        + "".join(images) + "</annotations>\n")
    return truth


def test_cvat_xml_import_relabel_export_import_again(tmp_path: Path) -> None:
    truth = _cvat_export(tmp_path / "cvat")
    ds = open_dataset(tmp_path / "cvat" / "annotations.xml")
    assert ds.layout == "cvat" and ds.classes == CLASSES and {r.path: r.label for r in ds.records} == truth
    voted = next(r for r in ds.records if r.path == "part1/im5.png")
    assert [lab for _, lab in voted.votes] == ["red", "blue", "red"]
    db = project_for(tmp_path / "cvat", tmp_path / "p.triage.db")  # the folder works too
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0, runtime="torch"))
    with Project.open(db) as p:
        p.edits.relabel(p.images.find_image("part1/im0.png"), 1)  # blue -> green
        p.edits.remove(p.images.find_image("part1/im1.png"))
        row = p.queue.queue_row(p.images.find_image("part1/im5.png"))  # type: ignore[arg-type]
        assert row.scores["annotator_agreement"] == pytest.approx(2 / 3)
    dest = tmp_path / "back"
    assert main(["export", "--db", str(db), str(dest), "--format", "cvat"]) == 0
    root = ET.parse(dest / "annotations.xml").getroot()
    assert [n.text for n in root.findall("./meta/task/labels/label/name")] == CLASSES
    tags = {im.get("name"): [t.get("label") for t in im.findall("tag")] for im in root.iter("image")}
    assert len(tags) == 11 and all((dest / "images" / name).is_file() for name in tags)
    again = open_dataset(dest)
    labels = {r.path.rsplit("/", 1)[-1]: r.label for r in again.records}
    want = {k.rsplit("/", 1)[-1]: v for k, v in truth.items() if k != "part1/im1.png"} | {"im0.png": "green"}
    assert labels == want


def test_a_hostile_cvat_file_is_refused_in_one_line(tmp_path: Path) -> None:
    truth = _cvat_export(tmp_path / "cvat")
    assert truth
    xml = tmp_path / "cvat" / "annotations.xml"
    text = xml.read_text()
    bomb = text.replace("<annotations>", '<!DOCTYPE a [<!ENTITY x "xx">]>\n<annotations>', 1)
    xml.write_text(bomb)
    with pytest.raises(DatasetError, match=r"annotations\.xml.*DOCTYPE"):
        open_dataset(xml)
    xml.write_text(text.replace('name="part1/im3.png"', 'name="../../secret.png"'))
    with pytest.raises(DatasetError, match=r"annotations\.xml.*secret\.png"):
        open_dataset(xml)
    xml.unlink()
    os.mkfifo(xml)
    with pytest.raises(DatasetError, match=r"annotations\.xml"):
        open_dataset(xml)


def test_every_export_format_is_offered_by_the_cli_and_described() -> None:
    from scoring.io.formats import export_formats, layouts

    assert {"huggingface", "cvat", "labelstudio", "fiftyone"} <= set(export_formats()) & set(layouts())
    assert all(f.help and f.writes for f in export_formats().values())
    buf = io.StringIO()
    with pytest.raises(SystemExit), __import__("contextlib").redirect_stdout(buf):
        main(["export", "--help"])
    assert "huggingface" in buf.getvalue() and "cvat" in buf.getvalue()

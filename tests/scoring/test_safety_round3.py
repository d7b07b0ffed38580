"""Issue 28, hostile input round three: the format readers keep to the dataset through one rule,
caches are verified against a record kept outside them, another program's SQLite file is left as
it is, a writer mark from a dead machine can be cleared, undo is derived inside its transaction.

Each test reproduces a finding of the issue (numbered as there) and asserts the new end, and
that nothing outside the dataset was read (an ``open`` audit hook) or changed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from scoring.cli.main import main
from scoring.engine.inference import score_project
from scoring.errors import UnsafePathError
from scoring.io.datasets import DatasetError
from scoring.io.formats import open_dataset
from scoring.io.safeio import confine
from scoring.progress import drain
from scoring.store import Project, project_for
from tests.scoring.snapshot import snapshot
from tests.scoring.tinypool import COLOURS, make_imagefolder, tiny_pool

CLASSES = ["blue", "green", "red"]

# ----------------------------------------------------------------------------- an open() audit

_OPENED: list[str] | None = None


def _hook(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_hook)


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """Every path this process opens while the test runs (Python's ``open`` audit event: builtins'
    open, os.open and io.open; SQLite and pyarrow open natively and are not listed)."""
    global _OPENED
    _OPENED = []
    try:
        yield _OPENED
    finally:
        _OPENED = None


def _never_opened(opened: list[str], *paths: Path) -> None:
    bad = [p for p in opened if any(os.path.realpath(p) == os.path.realpath(x) or
                                    os.path.realpath(p).startswith(os.path.realpath(x) + os.sep) for x in paths)]
    assert not bad, f"read outside the dataset: {bad}"


@pytest.fixture(autouse=True)
def _own_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "userdata"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def _png(path: Path, colour: str = "red", seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(COLOURS[colour]) + rng.normal(0, 40, (12, 12, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def _outside(tmp_path: Path) -> Path:
    """A folder beside the dataset holding a private PNG and a text secret."""
    out = tmp_path / "outside"
    _png(out / "secret.png", "green", 9)
    (out / "secret.png").chmod(0o600)
    (out / "passwd").write_text("root:x:0:0\n")
    return out


# ----------------------------------------------------------------------------- the one rule


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside/secret.png", "a/../../x.png", "C:/x.png", "", ".",
                                  "file:///etc/hostname", "a\\..\\x.png", "a\x00b.png", 5, None])
def test_the_one_rule_refuses_every_name_that_leaves_the_root(tmp_path: Path, name: object) -> None:
    with pytest.raises(UnsafePathError):
        confine(tmp_path, name)


def test_the_one_rule_normalises_and_follows_links_only_when_asked(tmp_path: Path) -> None:
    out = _outside(tmp_path)
    root = tmp_path / "data"
    _png(root / "a.png")
    (root / "link.png").symlink_to(out / "secret.png")
    (root / "sub").symlink_to(out)
    (root / "inner.png").symlink_to(root / "a.png")
    assert confine(root, "./a.png") == "a.png" == confine(root, "x/../a.png")
    assert confine(root, "inner.png") == "inner.png"  # a link that stays inside is fine
    for name in ("link.png", "sub/secret.png"):
        with pytest.raises(UnsafePathError, match="--follow-symlinks"):
            confine(root, name)
        assert confine(root, name, follow_symlinks=True) == name


# ----------------------------------------------------------------------------- 1: Hugging Face rows


def test_1_a_huggingface_row_never_reads_outside_the_dataset(tmp_path: Path, opened: list[str]) -> None:
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = _outside(tmp_path)
    root = tmp_path / "hf"
    _png(root / "ok.png", "red", 1)
    (root / "link.png").symlink_to(out / "secret.png")
    refs = ["ok.png", str(out / "passwd"), "../outside/secret.png", f"file://{out / 'passwd'}", "link.png",
            str(out / "secret.png")]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    cells = [{"bytes": None, "path": r} for r in refs]
    pq.write_table(pa.Table.from_pydict({"image": cells, "label": [2] * len(refs)}, schema=feats.arrow_schema),
                   root / "d.parquet")
    opened.clear()  # what the test itself wrote above is not a read
    got = open_dataset(root / "d.parquet")
    _never_opened(opened, out)
    assert got.records[0].error is None
    for rec, ref in zip(got.records[1:], refs[1:], strict=True):
        assert rec.error is not None and "outside" in rec.error, (ref, rec.error)
    unpacked = [p for p in got.root.rglob("*") if p.is_file() and p.name != "records.json" and p.name[0] != "."]
    assert len(unpacked) == 1 and unpacked[0].read_bytes() == (root / "ok.png").read_bytes()
    assert unpacked[0].stat().st_mode & 0o077 == 0 and got.root.stat().st_mode & 0o077 == 0  # private


def test_3_huggingface_unpacking_has_a_cap_per_image_and_in_all(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    from scoring.io import huggingface as HF

    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    zeros = b"\0" * 4_000_000  # zstd makes it a few hundred bytes
    root = tmp_path / "bomb"
    root.mkdir()
    table = pa.Table.from_pydict({"image": [{"bytes": zeros, "path": None}] * 4, "label": [0] * 4},
                                 schema=feats.arrow_schema)
    pq.write_table(table, root / "d.parquet", compression="zstd")
    monkeypatch.setattr(HF, "MIN_UNPACK_BUDGET", 6_000_000)
    with pytest.raises(DatasetError, match=r"d\.parquet.*row 1.*bomb"):
        open_dataset(root / "d.parquet")
    cache = tmp_path / "cache" / "image-triage" / "huggingface"
    assert not cache.exists() or not any(cache.iterdir())  # nothing half-made left
    monkeypatch.setattr(HF, "MAX_CELL_BYTES", 1_000_000)
    with pytest.raises(DatasetError, match="none of its 4 images"):
        open_dataset(root / "d.parquet")


# ----------------------------------------------------------------------------- 2: links out of CVAT, FiftyOne, Label Studio


def _cvat(root: Path, names: list[str]) -> Path:
    images = "".join(f'<image id="{n}" name="{name}" width="12" height="12"><tag label="red" source="manual"/></image>'
                     for n, name in enumerate(names))
    xml = root / "annotations.xml"
    xml.write_text('<?xml version="1.0"?><annotations><version>1.1</version><meta><task><labels>'
                   + "".join(f"<label><name>{c}</name></label>" for c in CLASSES)
                   + f"</labels></task></meta>{images}</annotations>")
    return xml


def test_2_cvat_fiftyone_and_label_studio_never_follow_a_link_out(tmp_path: Path, opened: list[str]) -> None:
    out = _outside(tmp_path)
    cv = tmp_path / "cvat"
    for n in range(3):
        _png(cv / "images" / f"{n}.png", "red", n)
    (cv / "images" / "link.png").symlink_to(out / "secret.png")
    (cv / "images" / "sub").symlink_to(out)
    _cvat(cv, ["0.png", "1.png", "./2.png", "2.png", "link.png", "sub/secret.png", f"file://{out / 'secret.png'}"])
    opened.clear()  # what the test itself wrote above is not a read
    ds = open_dataset(cv)  # (file://: found by the format fuzz, tests/scoring/test_safety_fuzz_formats.py)
    errors = {r.path: r.error for r in ds.records}
    assert [r.path for r in ds.records if r.error is None] == ["0.png", "1.png", "2.png"]  # ./2.png and 2.png: one
    assert "listed" in str(errors["2.png" if errors.get("2.png") else "./2.png"]) or any(
        "again" in str(e) for e in errors.values())
    assert "outside" in str(errors["link.png"]) and "outside" in str(errors["sub/secret.png"])
    assert "not a plain relative" in str(errors[f"file://{out / 'secret.png'}"])

    fo = tmp_path / "fo"
    fo.mkdir()
    (fo / "data").symlink_to(out)
    (fo / "labels.json").write_text(json.dumps({"classes": CLASSES, "labels": {"secret": 1}}))
    with pytest.raises(DatasetError, match="secret"):
        open_dataset(fo)

    ls = tmp_path / "ls"
    _png(ls / "ok.png")
    (ls / "link.png").symlink_to(out / "secret.png")
    tasks = [{"id": 1, "data": {"image": "ok.png"}}, {"id": 2, "data": {"image": str(out / "secret.png")}},
             {"id": 3, "data": {"image": "/data/local-files/?d=../outside/secret.png"}},
             {"id": 4, "data": {"image": "link.png"}}, {"id": 5, "data": {"image": f"file://{out / 'passwd'}"}}]
    (ls / "tasks.json").write_text(json.dumps(tasks))
    ds = open_dataset(ls / "tasks.json")
    assert [r.path for r in ds.records if r.error is None] == ["ok.png"]
    assert sum("outside" in str(r.error) for r in ds.records) == 4
    _never_opened(opened, out)


def test_2_an_export_of_a_cvat_project_copies_nothing_from_outside(tmp_path: Path) -> None:
    out = _outside(tmp_path)
    cv = tmp_path / "cvat"
    for n, c in enumerate(CLASSES * 2):
        _png(cv / "images" / f"{n}.png", c, n)
    (cv / "images" / "link.png").symlink_to(out / "secret.png")
    _cvat(cv, [f"{n}.png" for n in range(6)] + ["link.png"])
    db = project_for(cv, tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0, runtime="torch"))
    before = snapshot(out)
    assert main(["export", "--db", str(db), str(tmp_path / "exp"), "--link", "copy"]) == 0
    secret = (out / "secret.png").read_bytes()
    assert not any(p.is_file() and p.read_bytes() == secret for p in (tmp_path / "exp").rglob("*"))
    assert snapshot(out) == before


# ----------------------------------------------------------------------------- 5, 12, 13: the ONNX cache


def test_5_a_tampered_truncated_or_unrecorded_onnx_file_is_never_run(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("onnxruntime")
    import logging

    from scoring.engine import runtime as RT
    from scoring.pool.base import Encoder, Preprocess
    from scoring.pool.models.registry import get_model

    torch.manual_seed(0)
    enc = Encoder("test-r20-32", get_model("cifar_resnet20", num_classes=3).eval(), Preprocess(size=32), "logits", "r20")
    cpu = torch.device("cpu")
    [first], chosen = RT.prepare([enc], cpu, "onnx")
    path = RT.model_path(enc)
    good = path.read_bytes()
    assert chosen[enc.key] == "onnx" and RT.record_path(path).is_file()
    x = torch.rand(3, 3, 32, 32)
    want = first.module(x).numpy()
    for bad in (good[:-1] + bytes([good[-1] ^ 1]), good[: len(good) // 2], b""):
        path.write_bytes(bad)
        with caplog.at_level(logging.WARNING, logger="scoring.engine.runtime"):
            caplog.clear()
            [again], chosen = RT.prepare([enc], cpu, "onnx")
        assert chosen[enc.key] == "onnx" and "not the one Image Triage exported" in caplog.text
        assert path.read_bytes() == good and np.allclose(again.module(x).numpy(), want)
    RT.record_path(path).unlink()  # a file with no record: not ours to trust
    path.write_bytes(good)
    RT.prepare([enc], cpu, "onnx")
    assert RT.record_path(path).is_file()
    stale = path.parent / f".{path.name}.0123abcd"  # a kill mid-export, long ago
    stale.write_bytes(b"half")
    os.utime(stale, (1, 1))
    path.unlink()
    RT.prepare([enc], cpu, "onnx")
    assert not stale.exists() and path.is_file()


# ----------------------------------------------------------------------------- 6: another program's database


def test_6_another_programs_wal_database_or_hot_journal_is_left_byte_for_byte(tmp_path: Path) -> None:
    wal = tmp_path / "other.db"
    subprocess.run([sys.executable, "-c", f"""
import sqlite3, os
c = sqlite3.connect({str(wal)!r}); c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA wal_autocheckpoint=0')
c.execute('create table t(x)'); c.commit(); c.execute('insert into t values (randomblob(5000))'); c.commit()
os._exit(0)"""], check=True)
    hot = tmp_path / "hot.db"
    subprocess.run([sys.executable, "-c", f"""
import sqlite3, os
c = sqlite3.connect({str(hot)!r}, isolation_level=None); c.execute('create table t(x)')
c.execute('insert into t values (randomblob(50000))'); c.execute('PRAGMA cache_size=1'); c.execute('BEGIN')
c.execute('update t set x=randomblob(60000)'); c.execute('insert into t select randomblob(9000) from t'); os._exit(0)"""],
                   check=True)
    assert (tmp_path / "other.db-wal").exists() and (tmp_path / "hot.db-journal").exists()
    before = snapshot(tmp_path)
    for db in (wal, hot):
        for cmd in (["stats"], ["undo"], ["queue"]):
            assert main([cmd[0], "--db", str(db)]) == 2
    assert snapshot(tmp_path) == before


# ----------------------------------------------------------------------------- 7: a writer mark from a dead machine


def test_7_a_writer_mark_from_another_host_is_stale_by_its_heartbeat_and_unlock_clears_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import time

    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    with Project.open(db) as p, p.transaction():
        p._set_meta(scoring_writer=json.dumps({"pid": 4242, "host": "node-7"}))  # an older version's mark
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0, runtime="torch"))  # no heartbeat: cannot be alive
    live = {"pid": 4242, "host": "node-7", "what": "scoring run", "beat": time.time()}
    with Project.open(db) as p, p.transaction():
        p._set_meta(scoring_writer=json.dumps(live))
    assert main(["rerank", "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert "node-7" in err and f"image-triage unlock --db {db}" in err
    assert main(["unlock", "--db", str(db)]) == 0
    assert "node-7" in capsys.readouterr().out
    with Project.open(db) as p:
        assert p.runs.writer() is None
        p._set_meta(scoring_writer=json.dumps({**live, "beat": time.time() - 3600}))
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0, runtime="torch"))  # an hour without a heartbeat: taken over
    with Project.open(db) as p, p.transaction():
        p._set_meta(scoring_writer=json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "what": "x"}))
    assert main(["unlock", "--db", str(db)]) == 2  # a live process here is stopped, not unlocked
    assert "running" in capsys.readouterr().err


# ----------------------------------------------------------------------------- 14: undo beside another process


def test_14_undo_is_derived_inside_its_transaction(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    with Project.open(db) as a, Project.open(db) as b:
        a.edits.relabel(1, 2)
        assert a.edits.redo() is None  # a derives (and caches) its stacks now
        b.edits.relabel(2, 0)  # another process decides in between
        undone = a.edits.undo()
        assert undone is not None and undone.image_id == 2  # the newest decision, b's, is undone
        redone = a.edits.redo()
        assert redone is not None and redone.image_id == 2
        assert a.edits.undo().image_id == 2 and a.edits.undo().image_id == 1  # type: ignore[union-attr]
        assert a.edits.undo() is None


def test_14_undos_from_two_threads_never_undo_one_decision_twice(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    with Project.open(db) as p:
        for i in range(1, 9):
            p.edits.relabel(i, 1)
    got: list[int] = []

    def undo_all() -> None:
        with Project.open(db) as q:
            while (e := q.edits.undo()) is not None:
                got.append(e.target or 0)

    threads = [threading.Thread(target=undo_all) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(got) == list(range(1, 9))  # each decision undone exactly once
    with Project.open(db) as p:
        assert [s for _i, _l, s in p.images.label_states(list(range(1, 13)))].count("unreviewed") == 12


# ----------------------------------------------------------------------------- minor: FiftyOne twins


def test_fiftyone_samples_with_one_stem_are_one_line(tmp_path: Path) -> None:
    fo = tmp_path / "fo"
    _png(fo / "data" / "s0.jpg")
    _png(fo / "data" / "s0.png")
    (fo / "labels.json").write_text(json.dumps({"classes": CLASSES, "labels": {"s0": 1}}))
    with pytest.raises(DatasetError, match=r"s0\.jpg and s0\.png"):
        open_dataset(fo)


def test_a_file_we_save_replaces_a_link_never_writes_through_it_and_refuses_a_fifo(tmp_path: Path) -> None:
    from scoring.io.safewrite import replace_file

    other = tmp_path / "someone_elses.txt"
    other.write_text("theirs")
    link = tmp_path / "pool.toml"
    link.symlink_to(other)
    replace_file(link, b"ours")
    assert other.read_text() == "theirs" and not link.is_symlink() and link.read_bytes() == b"ours"
    os.mkfifo(tmp_path / "fifo.toml")
    with pytest.raises(UnsafePathError, match="fifo.toml.*FIFO"):
        replace_file(tmp_path / "fifo.toml", b"x")  # would block for ever if opened
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.toml", "pool.toml", "someone_elses.txt"]


# ----------------------------------------------------------------------------- 8-11: every export reads back


HOSTILE_LABELS = [".hidden", "..x", "a\x01b", "caf\u00e9", "cafe\u0301", "CON", "plain"]


def _hostile_csv_project(tmp_path: Path) -> Path:
    root = tmp_path / "csvdata"
    rows = ["path,label"]
    for n in range(len(HOSTILE_LABELS) * 2):
        lab = HOSTILE_LABELS[n % len(HOSTILE_LABELS)]
        _png(root / f"im{n:02d}.png", list(COLOURS)[n % 3], n)
        rows.append(f'im{n:02d}.png,"{lab}"')
    (root / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return project_for(root / "m.csv", tmp_path / "p.triage.db")


@pytest.mark.parametrize("fmt,read_at", [("imagefolder", "images"), ("csv", "manifest.csv"), ("labelstudio", "tasks.json"),
                                         ("fiftyone", ""), ("cvat", ""), ("huggingface", "")])
def test_8_to_10_every_export_format_reads_back_with_every_label(tmp_path: Path, fmt: str, read_at: str) -> None:
    """Names with control characters, leading dots, reserved names and Unicode-normalisation twins,
    decided or not: our own reader (and the format's parser) reads back every image and its label."""
    from collections import Counter

    from scoring.io.cvat import xml_text

    if fmt == "huggingface":
        pytest.importorskip("datasets")
    db = _hostile_csv_project(tmp_path)
    with Project.open(db) as p:
        p.edits.relabel(1, p.classes.index("plain"))  # one decided, the rest as given
        want = Counter(p.classes[lab] for _i, lab, _s in p.images.label_states(list(range(1, 15))))
    dest = tmp_path / f"out-{fmt}"
    assert main(["export", "--db", str(db), str(dest), "--format", fmt, "--link", "copy"]) == 0
    back = open_dataset(dest / read_at if read_at else dest)
    got = Counter(r.label for r in back.records if r.error is None)
    if fmt == "cvat":
        import xml.etree.ElementTree as ET

        ET.parse(dest / "annotations.xml")  # well-formed
        want = Counter({xml_text(k): v for k, v in want.items()})
    assert got == want, (fmt, got, want)
    folders = [p.name for p in dest.rglob("*") if p.is_dir()]
    assert not any(f.startswith(".") and f != ".image-triage-created" for f in folders), folders


def test_11_a_classlabel_without_names_or_a_label_past_them_is_one_line(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    import pyarrow as pa
    import pyarrow.parquet as pq

    for names, labels, match in (([], [0, 1], "no class names"), (["x"], [0, 2], "label 2, but the ClassLabel has 1")):
        root = tmp_path / f"hf{len(names)}"
        root.mkdir()
        _png(root / "a.png")
        feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
        cells = [{"bytes": (root / "a.png").read_bytes(), "path": None}] * 2
        schema = feats.arrow_schema
        pq.write_table(pa.Table.from_pydict({"image": cells, "label": labels}, schema=schema), root / "d.parquet")
        with pytest.raises(DatasetError, match=match):
            open_dataset(root / "d.parquet")


# ----------------------------------------------------------------------------- 15 and the minor list


def test_15_an_unreachable_bucket_costs_one_timeout_not_one_per_row(monkeypatch: pytest.MonkeyPatch) -> None:
    from scoring.io import uris
    from scoring.io.datasets import read_bytes

    calls: list[str] = []

    class Down:
        def open_input_file(self, inner: str) -> None:
            calls.append(inner)
            raise OSError("When connecting to gs://bucket: timed out after 30 s")

    monkeypatch.setattr(uris, "UNREACHABLE", {})
    monkeypatch.setattr(uris, "_object_store", lambda uri, scheme: (Down(), uri.split("://", 1)[1]))
    with pytest.raises(OSError, match="timed out"):
        read_bytes("gs://bucket/0.png")
    for n in range(1, 50):
        with pytest.raises(OSError, match=r"gs://bucket did not answer earlier in this run"):
            read_bytes(f"gs://bucket/{n}.png")
    assert calls == ["bucket/0.png"]  # one wait, then at once


@pytest.mark.parametrize("body,match", [
    ('[{"data": {"image": "a.png"}, "annotations": 5}]', None),
    ('[{"data": {"image": "a.png"}, "annotations": [{"result": 7}]}]', None),
    ('[{"data": {"image": "a.png"}, "annotations": [{"result": [{"type": "choices", "value": [1]}]}]}]', None),
    ('[{"data": {"image": "a.png"}, "annotations": [{"result": [{"type": "choices", "value": {"choices": {}}}]}]}]',
     None),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_malformed_label_studio_fields_are_read_or_one_line(tmp_path: Path, body: str, match: str | None) -> None:
    _png(tmp_path / "a.png")
    (tmp_path / "t.json").write_text(body)
    if match is None:
        ds = open_dataset(tmp_path / "t.json")
        assert [r.path for r in ds.records] == ["a.png"] and ds.records[0].label is None
    else:
        with pytest.raises(DatasetError, match=match):
            open_dataset(tmp_path / "t.json")


def test_deep_or_misshapen_fiftyone_hf_and_pool_files_are_one_line(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    fo = tmp_path / "fo"
    _png(fo / "data" / "s0.png")
    for body in ('{"classes": 5, "labels": {"s0": 0}}', '{"labels": ' * 50_000 + "1" + "}" * 50_000):
        (fo / "labels.json").write_text(body)
        with pytest.raises(DatasetError, match="labels.json"):
            open_dataset(fo)
    pool = tmp_path / "pool.json"
    pool.write_text("[" * 100_000 + "]" * 100_000)
    assert main(["pool", "check", str(pool)]) == 2
    assert "nested too deeply" in capsys.readouterr().err
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "dataset_dict.json").write_text('["train"]')
    with pytest.raises(DatasetError, match=r"dataset_dict\.json.*splits"):
        open_dataset(hf, layout="huggingface")


def test_a_bad_timing_history_line_is_skipped_not_a_traceback() -> None:
    from scoring.tasks import estimate_time as ET

    ET.record(120.0, 150.0, 1000)
    ET.record(120.0, 150.0, 1000)  # two runs: one alone does not correct the estimate
    path = ET._history_path()
    host = socket.gethostname()
    bad = [{"host": host, "estimate": "abc", "actual": 1}, {"host": host}, {"host": host, "estimate": float("inf"),
                                                                          "actual": 5}]
    path.write_text(path.read_text() + "".join(json.dumps(b) + "\n" for b in bad) + "{}\n")
    assert [r["actual"] for r in ET.history()] == [150.0, 150.0]
    mid, (lo, hi), _note = ET.calibrate(100.0)
    assert lo < mid < hi and mid == pytest.approx(125.0)


def test_a_header_declaring_a_bomb_does_not_stop_the_automatic_pool(tmp_path: Path) -> None:
    import struct
    import zlib

    from scoring.tasks.autopool import survey

    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    png = b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    (data / "red" / "bomb.png").write_bytes(png + b"\0" * 64)
    facts = survey(open_dataset(data), torch.device("cpu"), sample=100)
    assert facts.n_images == 10 and facts.side == 12


def test_ctrl_c_anywhere_is_one_line_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    import scoring.cli.main as cli_main

    def interrupted(_args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_main, "cmd_pool_auto", interrupted)  # the survey has no cancel check of its own
    assert main(["pool", "auto", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1 and "Ctrl+C" in err


def test_4_13_a_huggingface_project_never_depends_on_a_cache_it_cannot_rebuild(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    import shutil
    import time

    rng = np.random.default_rng(0)
    labels = [n % 3 for n in range(12)]
    imgs = [Image.fromarray(np.clip(np.array(COLOURS[CLASSES[y]]) + rng.normal(0, 40, (12, 12, 3)), 0, 255)
                            .astype(np.uint8)) for y in labels]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    (tmp_path / "hub" / "data").mkdir(parents=True)
    parquet = tmp_path / "hub" / "data" / "train-00000-of-00001.parquet"
    datasets.Dataset.from_dict({"image": imgs, "label": labels}, features=feats).to_parquet(str(parquet))
    db = project_for(tmp_path / "hub", tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(CLASSES), workers=0, runtime="torch"))
    with Project.open(db) as p:
        first = p.dataset_root
        p.edits.relabel(1, 2)
        p.edits.remove(2)
    shutil.rmtree(first)  # the user clears the cache
    assert main(["export", "--db", str(db), str(tmp_path / "out1")]) == 0  # unpacked again for the export
    with Project.open(db) as p:
        assert p.dataset_root.is_dir()
    later = time.time() + 5
    os.utime(parquet, (later, later))  # the dataset's files were touched: a new fingerprint, a new unpack
    assert main(["export", "--db", str(db), str(tmp_path / "out2")]) == 0
    with Project.open(db) as p:
        assert p.dataset_root != first and p.dataset_root.is_dir()
        unpacks = [d for d in p.dataset_root.parent.iterdir() if not d.name.startswith(".")]
    assert unpacks == [p.dataset_root]  # the superseded unpack is gone, not kept for ever
    back = open_dataset(tmp_path / "out2" / "images")
    assert len(back.records) == 11 and sum(r.label == "red" for r in back.records) == 5


def test_minor_weights_engine_options_names_and_members_are_one_line(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    rnd = tmp_path / "random.pth"
    rnd.write_bytes(np.random.default_rng(0).bytes(4096))
    for weights, needle in ((str(rnd), "not a weights file torch can read safely"), ("/dev/zero", "character device")):
        pool = tmp_path / "pool.toml"
        pool.write_text(f'[[member]]\nname = "b"\nkind = "backbone"\narch = "resnet18"\nweights = "{weights}"\n'
                        'fractions = [1.0]\n')
        assert main(["pool", "check", str(pool)]) == 2
        err = capsys.readouterr().err
        assert needle in err and "weights_only" not in err and "Traceback" not in err, err
    for value in ("nan", "inf", "1e400"):
        assert main(["score", str(data), "--engine", "ray", "--engine-option", f"gpus_per_worker={value}"]) == 2
        assert "finite number" in capsys.readouterr().err
    db = tmp_path / "new.triage.db"
    assert main(["score", str(data), "--db", str(db), "--member", "checkpoint:path=/no/such.pth,arch=nope"]) == 2
    assert not db.exists()  # a bad member: nothing created
    capsys.readouterr()
    from scoring.cli.common import for_terminal

    assert for_terminal("a\x1b[2Jb.png") == "a\\x1b[2Jb.png" and for_terminal("plain é.png") == "plain é.png"


@pytest.mark.parametrize("stray", ["state.json", "labels.json", "metadata.parquet"])
def test_a_stray_file_at_an_imagefolder_root_says_how_to_choose_the_layout(tmp_path: Path, stray: str) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    (data / "data").mkdir()  # FiftyOne's pair: labels.json beside data/
    (data / stray).write_text("{}" if stray.endswith(".json") else "not parquet")
    with pytest.raises(DatasetError, match="--layout imagefolder"):
        open_dataset(data)
    assert len(open_dataset(data, layout="imagefolder").records) == 9


def test_a_truncated_arrow_file_or_a_read_only_cache_is_one_line_naming_it(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(0)
    imgs = [Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)) for _ in range(40)]
    feats = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES)})
    datasets.Dataset.from_dict({"image": imgs, "label": [n % 3 for n in range(40)]},
                               features=feats).save_to_disk(str(tmp_path / "hf"))
    arrow = next((tmp_path / "hf").glob("*.arrow"))
    arrow.write_bytes(arrow.read_bytes()[: arrow.stat().st_size // 2])
    with pytest.raises(DatasetError, match=rf"{arrow.name}.*truncated or damaged"):
        open_dataset(tmp_path / "hf")
    from scoring.io import huggingface as HF

    def read_only(dest: Path, kind: str, token: str | None = None) -> Path:
        raise PermissionError(1, "Operation not permitted", str(dest.parent))  # as a read-only cache answers

    monkeypatch.setattr(HF, "new_build_folder", read_only)
    datasets.Dataset.from_dict({"image": imgs[:3], "label": [0, 1, 2]}, features=feats).save_to_disk(
        str(tmp_path / "hf2"))
    with pytest.raises(DatasetError, match="hf2: its images cannot be unpacked into .*XDG_CACHE_HOME"):
        open_dataset(tmp_path / "hf2")


def test_15_object_storage_has_an_overall_deadline_for_failures(monkeypatch: pytest.MonkeyPatch) -> None:
    from scoring.io import uris
    from scoring.io.datasets import read_bytes

    calls: list[str] = []

    class Slow:
        def open_input_file(self, inner: str) -> None:
            calls.append(inner)
            raise OSError("timed out")

    monkeypatch.setattr(uris, "UNREACHABLE", {})
    monkeypatch.setattr(uris, "_FAILED_WAIT", [0.0])
    monkeypatch.setattr(uris, "FAILED_WAIT_BUDGET_S", 1e-12)  # the first failure spends it all
    monkeypatch.setattr(uris, "_object_store", lambda uri, scheme: (Slow(), uri.split("://", 1)[1]))
    with pytest.raises(OSError, match="timed out"):
        read_bytes("s3://one/a.png")
    with pytest.raises(OSError, match="already cost .* of failed requests"):
        read_bytes("s3://two/b.png")  # another bucket: not tried, the run's budget is spent
    assert calls == ["one/a.png"]


def test_a_nul_in_a_label_studio_path_or_a_deep_dataset_info_is_one_line(tmp_path: Path) -> None:
    _png(tmp_path / "a.png")
    (tmp_path / "t.json").write_text(json.dumps([{"data": {"image": "a.png"}}, {"data": {"image": "b\x00.png"}}]))
    ds = open_dataset(tmp_path / "t.json")
    assert [r.error is None for r in ds.records] == [True, False]
    pytest.importorskip("datasets")
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
    (hf / "dataset_info.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)
    with pytest.raises(DatasetError, match=r"dataset_info\.json: nested too deeply"):
        open_dataset(hf)

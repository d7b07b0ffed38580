"""Export: the round trip, every format and link mode, and every way it can fail safely."""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

import scoring.tasks.export as export_mod
from scoring.errors import ImageTriageError
from scoring.io.formats import open_dataset
from scoring.progress import Cancelled
from scoring.store import Project, RunConfig
from scoring.tasks.export import ExportError, export_dataset, run_export, safe_folder_name
from scoring.vocabulary import compute_scores
from tests.scoring.tinypool import make_imagefolder


def _snapshot(root: Path) -> dict[str, tuple[str, float]]:
    return {
        str(p.relative_to(root)): (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime)
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def proj(tmp_path: Path) -> tuple[Path, Path]:
    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    db = tmp_path / "p.triage.db"
    with Project.create(db, open_dataset(data)) as p:
        ids = p.images.scorable_ids()
        probs = np.random.default_rng(0).dirichlet(np.ones(3), size=(2, len(ids))).astype(np.float32)
        from tests.scoring.tinypool import tiny_pool

        pool = tiny_pool(p.classes, fitted=False)
        pool.members = pool.members[:2]
        p.runs.save_members(pool)
        run = p.runs.start_run(pool, RunConfig(member_fingerprints=tuple(m.fingerprint for m in pool.members)), "cpu")
        for m, pr in zip(pool.members, probs, strict=True):
            p.cache.put_probs(m.fingerprint, ids, pr)
        p.queue.put_scores(pool.fingerprint, ids, compute_scores(probs, p.images.given_labels(ids)))
        p.runs.finish_run(run, "done")
    return data, db


def _edit(db: Path) -> None:
    with Project.open(db) as p:
        p.edits.relabel(p.images.find_image("blue/000.png"), 2)  # blue -> red
        p.edits.remove(p.images.find_image("green/001.png"))
        p.edits.keep(p.images.find_image("red/003.png"))


def test_round_trip_gives_exactly_the_expected_files_and_labels(proj: tuple[Path, Path], tmp_path: Path) -> None:
    data, db = proj
    _edit(db)
    before = _snapshot(data)
    report = run_export(db, tmp_path / "out")
    assert report["exported"] == 11 and report["removed"] == 1 and report["relabelled"] == 1
    ds = open_dataset(tmp_path / "out" / "images")
    got = sorted((r.label, Path(r.path).name) for r in ds.records)
    expected = sorted(
        [("blue", f"00{i}.png") for i in (1, 2, 3)] + [("green", f"00{i}.png") for i in (0, 2, 3)]
        + [("red", f"00{i}.png") for i in range(4)] + [("red", "000-1.png")]
    )
    assert got == expected  # blue/000.png became red and met red/000.png: both kept
    assert _snapshot(data) == before  # originals untouched
    out = tmp_path / "out"
    rows = list(csv.DictReader((out / "difficulty.csv").open()))
    assert len(rows) == 11 and {"c_perplexity", "x_perplexity", "mutual_info", "consensus_label", "reason"} <= set(rows[0])
    probs = np.load(out / "mean_probs.npy")
    assert probs.shape == (11, 3) and np.allclose(probs.sum(1), 1, atol=1e-3)
    assert [r["source_path"] for r in rows][0] == "blue/000.png" and rows[0]["final_label"] == "red"
    assert len(list(csv.DictReader((out / "removed.csv").open()))) == 1
    assert [r["action"] for r in csv.DictReader((out / "edits.csv").open())] == ["relabel", "remove", "keep"]
    assert json.loads((out / "export_report.json").read_text())["exported"] == 11
    assert not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.parametrize("fmt", ["imagefolder", "csv", "json"])
def test_formats(proj: tuple[Path, Path], tmp_path: Path, fmt: str) -> None:
    _, db = proj
    run_export(db, tmp_path / fmt, fmt=fmt)
    out = tmp_path / fmt
    ds = open_dataset(out / "manifest.csv")
    assert len(ds.records) == 12 and all((out / r.path).is_file() for r in ds.records)
    assert sorted(r.label for r in ds.records) == ["blue"] * 4 + ["green"] * 4 + ["red"] * 4
    folders = {Path(r.path).parent.as_posix() for r in ds.records}
    if fmt == "csv":  # one flat folder: the label is in the manifest only
        assert folders == {"images"} and all(Path(r.path).name[:7].rstrip("-").isdigit() for r in ds.records)
    else:  # the label is the folder too (torchvision's ImageFolder)
        assert folders == {"images/blue", "images/green", "images/red"}
        assert all(Path(r.path).parent.name == r.label for r in ds.records)
    if fmt == "json":
        assert len(json.loads((out / "manifest.json").read_text())) == 12


def test_hard_links_share_the_inode_and_fall_back_to_copies(proj: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, db = proj
    run_export(db, tmp_path / "hl")
    assert os.stat(tmp_path / "hl/images/blue/001.png").st_ino == os.stat(data / "blue/001.png").st_ino

    def cross_device(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", cross_device)
    report = run_export(db, tmp_path / "cp")
    assert report["link_fallbacks_to_copy"] == 12
    assert os.stat(tmp_path / "cp/images/blue/001.png").st_ino != os.stat(data / "blue/001.png").st_ino
    monkeypatch.undo()
    run_export(db, tmp_path / "sl", link="symlink")
    assert (tmp_path / "sl/images/blue/001.png").is_symlink()


@pytest.mark.parametrize(
    ("err", "match"),
    [(errno.ENOSPC, "disk is full"), (errno.EACCES, "Permission denied")],
    ids=["disk-full", "permission-denied"],
)
def test_a_failure_part_way_leaves_nothing_half_written(proj: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int, match: str) -> None:
    _, db = proj
    run_export(db, tmp_path / "out")  # an earlier export: the only kind of folder force replaces
    (tmp_path / "out" / "old.txt").write_text("previous export")
    calls = {"n": 0}
    real = export_mod._place

    def failing(src: Path, dst: Path, link: str) -> bool:
        calls["n"] += 1
        if calls["n"] == 6:
            raise OSError(err, os.strerror(err), str(dst))
        return real(src, dst, link)

    monkeypatch.setattr(export_mod, "_place", failing)
    with pytest.raises(ExportError, match=match) as e:
        run_export(db, tmp_path / "out", force=True)
    assert ".png" in str(e.value)
    assert (tmp_path / "out" / "old.txt").read_text() == "previous export"  # old export intact
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".out")) == []


def test_a_file_that_vanished_after_the_dataset_was_read_fails_cleanly(proj: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data, db = proj
    real = export_mod._place

    def vanish(src: Path, dst: Path, link: str) -> bool:
        if src.name == "002.png" and src.parent.name == "green":
            src.unlink()
        return real(src, dst, link)

    monkeypatch.setattr(export_mod, "_place", vanish)
    with pytest.raises(ExportError, match="002.png"):
        run_export(db, tmp_path / "out", link="copy")
    assert not (tmp_path / "out").exists()


def test_changed_and_missing_files_are_left_out_with_a_warning(proj: tuple[Path, Path], tmp_path: Path) -> None:
    data, db = proj
    from scoring.io.decoding import file_sha1

    with Project.open(db) as p:
        ids = p.images.scorable_ids()
        p.images.set_image_info(ids, [1] * len(ids), [1] * len(ids), [file_sha1(p.images.abspath(p.images.image(int(i)))) for i in ids])
    (data / "red" / "002.png").write_bytes((data / "blue" / "002.png").read_bytes() + b"changed")
    (data / "red" / "001.png").unlink()
    report = run_export(db, tmp_path / "out")
    assert report["exported"] == 10
    assert {s["path"] for s in report["skipped"]} == {"red/001.png", "red/002.png"}


def test_destination_rules(proj: tuple[Path, Path], tmp_path: Path) -> None:
    data, db = proj
    with pytest.raises(ImageTriageError, match="inside"):
        run_export(db, data / "cleaned")
    with pytest.raises(ImageTriageError, match="holds images"):
        run_export(db, data.parent)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ImageTriageError, match="not empty.*--force"):
        run_export(db, tmp_path / "full")
    with pytest.raises(ImageTriageError, match="not made by Image Triage"):  # force never takes a user's folder
        run_export(db, tmp_path / "full", force=True)
    assert (tmp_path / "full" / "x").read_text() == "x"
    run_export(db, tmp_path / "out")
    run_export(db, tmp_path / "out", force=True)  # an earlier export is replaced
    assert (tmp_path / "out" / "manifest.csv").exists()
    (tmp_path / "empty").mkdir()
    run_export(db, tmp_path / "empty")
    assert (tmp_path / "empty" / "manifest.csv").exists()


@pytest.mark.parametrize(
    "name", ["a/b", "a\\b", "c:d", "..", ".", "", "CON", "nul.txt", "trailing. ", "x" * 300, "100%"]
)
def test_unsafe_class_names_become_safe_distinct_folders(name: str, tmp_path: Path) -> None:
    folder = safe_folder_name(name)
    assert folder and folder not in (".", "..") and "/" not in folder and "\\" not in folder and ":" not in folder
    assert len(folder.encode()) <= 255 and not folder.endswith((" ", "."))
    (tmp_path / folder).mkdir()


def test_class_names_are_mapped_and_reported(tmp_path: Path) -> None:
    from scoring.io.datasets import Dataset, ImageRecord

    root = tmp_path / "ds"
    root.mkdir()
    for n in ("a.png", "b.png"):
        shutil.copy(make_imagefolder(tmp_path / "src", 1, False) / "blue" / "000.png", root / n)
    ds = Dataset(root, "csv", root / "m.csv", ["cat/dog", "CON"], [ImageRecord("a.png", "cat/dog"), ImageRecord("b.png", "CON")])
    Project.create(tmp_path / "p.triage.db", ds).close()
    report = run_export(tmp_path / "p.triage.db", tmp_path / "out")
    assert report["renamed_classes"] == {"cat/dog": "cat%2Fdog", "CON": "%43ON"}
    assert (tmp_path / "out/images/cat%2Fdog/a.png").exists()
    assert "cat/dog\tcat%2Fdog" in (tmp_path / "out/classes.txt").read_text()


def test_cancel_cleans_up(proj: tuple[Path, Path], tmp_path: Path) -> None:
    _, db = proj
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        for _ in export_dataset(db, tmp_path / "out", cancel=cancel):
            pass
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def test_an_export_carries_its_runs_token(tmp_path: Path) -> None:
    """A caller interrupted late can tell whether its export reached the destination."""
    from scoring.io.safewrite import marker_token
    from scoring.store import project_for
    from tests.scoring.tinypool import make_imagefolder

    data = make_imagefolder(tmp_path / "data", per_class=2, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    run_export(db, tmp_path / "out", link="copy", token="first")
    assert marker_token(tmp_path / "out") == "first"
    run_export(db, tmp_path / "out", link="copy", force=True, token="second")
    assert marker_token(tmp_path / "out") == "second"
    assert marker_token(data) is None  # not ours


def test_a_concurrent_exports_build_folder_is_not_a_leftover(tmp_path: Path) -> None:
    """A second export into the same destination cleaned the first's build folder while it was
    still being written (seen by hand: unmarked half folders stayed behind). A build folder whose
    process still runs is left alone; once that process is gone it is a leftover."""
    import subprocess
    import sys

    from scoring.io.safewrite import MARKER, clean_leftovers

    dest = tmp_path / "out"
    partial = tmp_path / ".out.partial-0123abcd"
    partial.mkdir()
    (partial / "a.png").write_bytes(b"x")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        body = {"created_by": "image-triage", "kind": "export", "pid": other.pid, "host": __import__("socket").gethostname()}
        (partial / MARKER).write_text(json.dumps(body))
        assert clean_leftovers(dest) == 0 and (partial / "a.png").exists()
    finally:
        other.kill()
        other.wait()
    assert clean_leftovers(dest) == 1 and not partial.exists()

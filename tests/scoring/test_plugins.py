"""Plugins (issue 32): a package installed beside Image Triage adds a score, a member kind with
its own fit time and refit rule, an engine with an option and an export format through entry
points; the command line offers and runs each, with no file of Image Triage naming them; the format is one entry that is detected,
read and written. A
broken plugin is one warning line and the rest works.

The package is ``tests/scoring/plugin_example``; "installed" here is an entry points fixture:
``importlib.metadata.entry_points`` answers with its entry points, as pip's metadata would."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import torch

from scoring import plugins
from scoring.cli.main import main
from scoring.engine import registry as E
from scoring.io import datasets as D
from scoring.io import formats as F
from scoring.pool import kinds as K
from scoring.store import Project
from scoring.vocabulary import scores, unregister
from tests.scoring.tinypool import make_imagefolder

PKG = "tests.scoring.plugin_example"
ENTRY_POINTS = {
    "image_triage.scores": [EntryPoint("gap", f"{PKG}:GAP", "image_triage.scores")],
    "image_triage.member_kinds": [EntryPoint("mlp", f"{PKG}:KIND", "image_triage.member_kinds"),
                                  EntryPoint("broken", "tests.scoring.no_such_plugin:KIND", "image_triage.member_kinds")],
    "image_triage.engines": [EntryPoint("engine", f"{PKG}:engines", "image_triage.engines")],
    "image_triage.formats": [EntryPoint("lines", f"{PKG}:LINES", "image_triage.formats")],
}


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[str]]]:
    monkeypatch.setattr(plugins, "entry_points", lambda group: ENTRY_POINTS.get(group, []))
    monkeypatch.setattr(plugins, "_loaded", None)  # what the process had loaded comes back after the test
    monkeypatch.delenv("IMAGE_TRIAGE_NO_PLUGINS", raising=False)
    loaded = plugins.load(force=True)
    yield loaded
    _uninstall()


def _uninstall() -> None:
    """Take the plugin's entries out again: nothing a later test sees was registered here (a first
    version loaded them again while its entry points were still patched, and later tests found a
    'plugin_mlp' kind and a score that fails on one class)."""
    for name, remove in (("plugin_gap", unregister), ("plugin_mlp", K.unregister_kind),
                         ("plugin_engine", E.unregister_engine), ("plugin_lines", F.unregister_format)):
        remove(name)


def test_a_broken_plugin_is_one_warning_and_the_rest_load(monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda group: ENTRY_POINTS.get(group, []))
    monkeypatch.setattr(plugins, "_loaded", None)
    with caplog.at_level(logging.WARNING, logger="scoring.plugins"):
        loaded = plugins.load(force=True)
    try:
        warned = [r.getMessage() for r in caplog.records]
        assert len(warned) == 1 and warned[0].startswith("plugin broken (image_triage.member_kinds = "
                                                         "tests.scoring.no_such_plugin:KIND) not loaded: ")
        assert loaded == {"image_triage.scores": ["gap"], "image_triage.member_kinds": ["mlp"],
                          "image_triage.engines": ["engine"], "image_triage.formats": ["lines"]}
    finally:
        _uninstall()
    monkeypatch.setenv("IMAGE_TRIAGE_NO_PLUGINS", "1")
    assert plugins.load(force=True) == {group: [] for group in plugins.GROUPS}
    assert "plugin_gap" not in {s.key for s in scores()}
    assert "plugin_mlp" not in K.kinds() and "plugin_lines" not in F.layouts()


def test_a_plugins_score_kind_engine_and_format_work_from_the_command_line(  # type: ignore[no-untyped-def]
        installed: dict[str, list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str], qtbot) -> None:
    from tests.scoring import plugin_example

    data = make_imagefolder(tmp_path / "data", per_class=6, corrupt=False)
    pool = tmp_path / "pool.toml"
    pool.write_text('[[member]]\nkind = "plugin_mlp"\nname = "p"\narch = "tiny_mlp"\nepochs = 1\nfolds = 2\n'
                    'seeds = [0]\npreprocess = {size = 8}\n')
    db = tmp_path / "p.triage.db"
    assert main(["score", str(data), "--db", str(db), "--pool", str(pool), "--engine", "plugin_engine",
                 "--tag", "from-a-flag", "--runtime", "torch", "-q", "--no-duplicates"]) == 0
    assert plugin_example.ENGINES_MADE[-1] == "from-a-flag"  # the engine's own option, as a flag
    with Project.open(db) as p:
        assert [m["name"] for m in p.runs.active_members()] == ["p-s0"]
        values = [r.scores["plugin_gap"] for r in p.queue.page(sort="plugin_gap", limit=100)]
    assert len(values) == 18 and None not in values and values == sorted(values, reverse=True)
    capsys.readouterr()
    assert main(["queue", "--db", str(db), "--sort", "plugin_gap", "--limit", "3"]) == 0
    assert len([line for line in capsys.readouterr().out.splitlines() if ".png" in line]) == 3
    assert main(["export", "--db", str(db), str(tmp_path / "out"), "--format", "plugin_lines"]) == 0
    assert len((tmp_path / "out" / "labels.txt").read_text().splitlines()) == 18
    # what the plugin wrote, its reader detects on import (and --layout offers it by name)
    again = tmp_path / "again.triage.db"
    assert main(["score", str(tmp_path / "out"), "--db", str(again), "--pool", str(pool), "--runtime", "torch", "-q",
                 "--no-duplicates"]) == 0
    with Project.open(again) as p:
        assert p.dataset().layout == "plugin_lines" and len(p.images.scorable_ids()) == 18
    assert "plugin_lines" in F.layouts() and "plugin_lines" in F.export_formats()  # one entry, both ways
    # the app offers the plugin's score as a sort, and sorts by it
    from PySide6.QtCore import QSettings

    from gui.main_window import MainWindow

    win = MainWindow(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    qtbot.addWidget(win)
    assert win.open_project(db, ask_resume=False)
    at = win.filters.sort.findData("plugin_gap")
    assert at >= 0
    win.filters.sort.setCurrentIndex(at)
    shown = [win.model.row_at(r).scores["plugin_gap"] for r in range(win.model.rowCount())]
    assert win.session.sort == "plugin_gap" and shown == sorted(shown, reverse=True) and len(shown) == 18
    win.close()
    # the kind's own fit time in the run's estimate, and its own refit rule in the re-rank
    from scoring.progress import drain
    from scoring.tasks import estimate_time as ET
    from scoring.tasks.autopool import Facts
    from scoring.tasks.rerank import rerank

    facts = Facts(n_images=18, labelled=True, side=8, grayscale=False, gpu=False, thorough=False,
                  classes=("blue", "green", "red"), min_per_class=6)
    spec = {"name": "p", "kind": "plugin_mlp", "arch": "tiny_mlp", "epochs": 1, "folds": 2, "seeds": [0],
            "preprocess": {"size": 8}}
    assert ET.estimate([spec], facts, torch.device("cpu"), "torch")["fit p-s0"] == 7.0
    assert drain(rerank(db)).refitted == ["p-s0"]


def test_a_plugin_readers_names_go_through_the_one_rule(tmp_path: Path) -> None:
    """A registered reader that lists a name leaving the dataset (or a link out of it) gets the same
    rule as every built-in listing format: recorded as unreadable, never read."""
    root = tmp_path / "d"
    (root / "pics").mkdir(parents=True)
    (root / "pics" / "a.png").write_bytes(b"x")
    (tmp_path / "secret.png").write_bytes(b"y")
    (root / "pics" / "link.png").symlink_to(tmp_path / "secret.png")

    def read(p: Path, follow: bool) -> D.Dataset:
        names = ["pics/a.png", "../secret.png", "/etc/passwd", "pics/link.png"]
        return D.Dataset(root=p, layout="hostile", source=p, classes=["x"], records=[D.ImageRecord(n, "x") for n in names])

    F.register_format(F.Format("hostile", "a test's reader", read, lambda p, f: (p / "pics").is_dir()))
    try:
        ds = F.open_dataset(root)
        assert ds.layout == "hostile"
        ok = [r.path for r in ds.records if r.error is None]
        assert ok == ["pics/a.png"], [(r.path, r.error) for r in ds.records]
    finally:
        F.unregister_format("hostile")

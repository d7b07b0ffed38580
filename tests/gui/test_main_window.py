"""The main window: every keyboard action and its undo, persistence across a restart,
scoring and export through the worker, and clean shutdown during a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from gui.main_window import MainWindow
from scoring.store import Project
from scoring.vocabulary import LABEL_SORT
from tests.gui.conftest import open_window


@pytest.fixture
def win(qtbot, settings, scored_db: Path):  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, scored_db)
    yield w
    w.close()


def _current(w: MainWindow):  # type: ignore[no-untyped-def]
    return w.project.images.image(w.review.current_id())


def test_digit_relabels_to_the_class_beside_it_and_advances(qtbot, win: MainWindow) -> None:  # type: ignore[no-untyped-def]
    first = win.review.current_id()
    qtbot.keyClick(win.view, Qt.Key.Key_3)  # third class: "red"
    row = win.project.images.image(first)
    assert row.current_label == 2 and row.status == ("kept" if row.given_label == 2 else "relabelled")
    assert win.review.current_id() != first and win.view.currentIndex().row() == 1
    assert "reviewed 1 / 12" in win.review.stats_label.text()


def test_delete_removes_enter_and_k_keep(qtbot, win: MainWindow) -> None:  # type: ignore[no-untyped-def]
    a = win.review.current_id()
    qtbot.keyClick(win.view, Qt.Key.Key_Delete)
    b = win.review.current_id()
    qtbot.keyClick(win.view, Qt.Key.Key_Return)
    c = win.review.current_id()
    qtbot.keyClick(win.view, Qt.Key.Key_K)
    p = win.project
    assert (p.images.image(a).status, p.images.image(b).status, p.images.image(c).status) == ("removed", "kept", "kept")
    assert "removed 1" in win.review.stats_label.text() and "kept 2" in win.review.stats_label.text()


def test_undo_and_redo_keys(qtbot, win: MainWindow) -> None:  # type: ignore[no-untyped-def]
    a = win.review.current_id()
    qtbot.keyClick(win.view, Qt.Key.Key_2)
    qtbot.keyClick(win.view, Qt.Key.Key_Delete)
    b = win.project.edits.entries()[-1].image_id
    qtbot.keyClick(win.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.project.images.image(b).status == "unreviewed" and win.review.current_id() == b
    qtbot.keyClick(win.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert win.project.images.image(a).status == "unreviewed" and win.review.current_id() == a
    qtbot.keyClick(win.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert win.project.images.image(a).current_label == 1
    assert "reviewed 1 / 12" in win.review.stats_label.text()


def test_arrow_keys_move_and_the_detail_pane_follows(qtbot, win: MainWindow) -> None:  # type: ignore[no-untyped-def]
    qtbot.keyClick(win.view, Qt.Key.Key_Right)
    row = win.model.row_at(win.view.currentIndex().row())
    assert win.view.currentIndex().row() == 1
    assert row.path in win.detail.info.text()


def test_an_action_persists_across_a_restart(qtbot, settings, scored_db: Path) -> None:  # type: ignore[no-untyped-def]
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    w.open_project(scored_db, ask_resume=False)
    w.view.setFocus()
    target = w.review.current_id()
    qtbot.keyClick(w.view, Qt.Key.Key_1)
    qtbot.keyClick(w.view, Qt.Key.Key_Delete)
    removed = w.project.edits.entries()[-1].image_id
    w.close()
    w2 = MainWindow(settings)
    qtbot.addWidget(w2)
    w2.open_project(scored_db, ask_resume=False)
    assert w2.project.images.image(target).current_label == 0
    assert w2.project.images.image(removed).status == "removed"
    assert str(scored_db) in settings.value("recent")
    w2.review.undo()  # undo works after the restart too
    assert w2.project.images.image(removed).status == "unreviewed"
    w2.close()


def test_filters_narrow_the_queue(qtbot, win: MainWindow) -> None:  # type: ignore[no-untyped-def]
    win.filters.f_given.setCurrentIndex(2)  # "green"
    assert win.model.rowCount() == 4
    assert all(win.model.row_at(r).given_label == 1 for r in range(4))
    win.filters.f_search.setText("003")
    win.filters.f_search.returnPressed.emit()
    assert win.model.rowCount() == 1
    win.filters.clear()
    assert win.model.rowCount() == 12


def test_scoring_runs_in_the_background_and_fills_the_queue(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from scoring.io.formats import open_dataset
    from tests.scoring.tinypool import make_imagefolder

    data = make_imagefolder(tmp_path / "d2", per_class=6)
    db = tmp_path / "d2.triage.db"
    Project.create(db, open_dataset(data)).close()
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.open_project(db, ask_resume=False)
    specs = [{"name": "s", "kind": "scratch", "arch": "tiny_mlp", "epochs": 2, "folds": 2, "seeds": [0, 1],
              "preprocess": {"size": 8}}]
    worker = w.tasks.start_scoring(specs, batch_size=4)
    assert worker is not None and w.jobs.busy and w.jobs.progress.isVisibleTo(w)
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=60_000)  # the window's finished slot ran
    assert w.model.row_at(0).scores["c_perplexity"] is not None
    assert w.project.queue.stats()["errors"] == 2 and len(w.review.members) == 2
    qtbot.waitUntil(lambda: "errors left" in w.review.stats_label.text(), timeout=10_000)  # due again after a run
    w.close()


def test_an_error_in_scoring_shows_a_dialog_and_the_app_lives(qtbot, settings, scored_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text: shown.append(text))
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.open_project(scored_db, ask_resume=False)
    worker = w.tasks.start_scoring([{"name": "x", "kind": "checkpoint", "path": "/no/such/model.pth", "arch": "tiny_mlp",
                               "classes": ["blue", "green", "red"]}])
    assert worker is not None
    qtbot.waitUntil(lambda: bool(shown) and not w.jobs.busy, timeout=20_000)
    assert "model.pth" in shown[0]
    w.close()


def test_closing_during_a_run_asks_then_stops_and_reopening_offers_resume(  # type: ignore[no-untyped-def]
    qtbot, settings, tmp_path: Path, monkeypatch
) -> None:
    from scoring.io.formats import open_dataset
    from tests.scoring.tinypool import make_imagefolder

    data = make_imagefolder(tmp_path / "d3", per_class=20, corrupt=False)
    db = tmp_path / "d3.triage.db"
    Project.create(db, open_dataset(data)).close()
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.open_project(db, ask_resume=False)
    specs = [{"name": "s", "kind": "scratch", "arch": "small_cnn", "epochs": 30, "folds": 5, "seeds": [0, 1, 2],
              "preprocess": {"size": 16}}]
    w.tasks.start_scoring(specs, batch_size=2)
    qtbot.waitUntil(lambda: w.jobs.progress.value() > 0, timeout=20_000)
    asked: list[str] = []

    def answer(label: str):  # type: ignore[no-untyped-def]
        def ask(self, box):  # type: ignore[no-untyped-def]
            asked.append(box.text())
            return next(b for b in box.buttons() if b.text() == label)
        return ask

    monkeypatch.setattr(MainWindow, "_ask", answer("Keep scoring"))
    w.close()
    assert asked and "Scoring is still running" in asked[-1] and w.jobs.busy  # it asked, and kept scoring
    monkeypatch.setattr(MainWindow, "_ask", answer("Stop and close"))
    thread = w.jobs._thread
    w.close()  # must return only after the worker stopped
    assert thread is not None and thread.isFinished()
    with Project.open(db) as p:
        assert p.runs.history()[-1]["status"] == "interrupted"  # closed, not cancelled: resumable
    w2 = MainWindow(settings)
    qtbot.addWidget(w2)
    monkeypatch.setattr(MainWindow, "_ask", lambda self, box: asked.append(box.text())
                        or box.button(QMessageBox.StandardButton.No))
    w2.open_project(db)
    assert "Resume it now?" in asked[-1]
    w2.close()


def test_export_through_the_window(qtbot, win: MainWindow, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text: shown.append(text))
    qtbot.keyClick(win.view, Qt.Key.Key_Delete)
    worker = win.tasks.start_export(tmp_path / "out", fmt="imagefolder", link="copy", audit=True, force=False)
    assert worker is not None
    qtbot.waitUntil(lambda: bool(shown) and not win.jobs.busy, timeout=20_000)
    assert "Exported 11 images" in shown[0]
    assert len(list((tmp_path / "out" / "images").rglob("*.png"))) == 11


def test_an_interrupted_run_is_offered_for_resumption(qtbot, settings, scored_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with Project.open(scored_db) as p, p._tx() as c:
        c.execute(
            "INSERT INTO runs(pool_fingerprint, config, device, started, status, pid, host) VALUES "
            "('x', ?, 'cpu', 0, 'running', 999999999, ?)",
            ('{"pool": [{"kind": "scratch", "name": "s"}]}', __import__("socket").gethostname()),
        )
    asked: list[str] = []
    monkeypatch.setattr(MainWindow, "_ask", lambda self, box: asked.append(box.windowTitle() + box.text())
                        or box.button(QMessageBox.StandardButton.No))
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.open_project(scored_db)
    assert asked and "Resume" in asked[0] and not w.jobs.busy
    w.close()


def test_clicking_the_overview_filters_the_queue(qtbot, win: MainWindow) -> None:  # type: ignore[no-untyped-def]
    from scoring.store import QueueFilter

    win.tabs.setCurrentIndex(1)
    assert not win._overview_stale
    win.overview.filterRequested.emit(QueueFilter(given_label=0, consensus=None))
    assert win.tabs.currentIndex() == 0 and win.filters.f_given.currentData() == 0
    assert win.model.rowCount() == 4
    win.overview.filterRequested.emit(QueueFilter(score_min=1.0, score_max=1.5))
    assert all(1.0 <= win.model.row_at(r).scores["c_perplexity"] <= 1.5 for r in range(win.model.rowCount()))


def test_slash_opens_the_type_ahead_class_picker(qtbot, win: MainWindow, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QInputDialog

    offered: list[list[str]] = []

    def pick(parent, title, label, items, current, editable):  # type: ignore[no-untyped-def]
        offered.append(list(items))
        assert editable  # typing filters the classes
        return "green", True

    monkeypatch.setattr(QInputDialog, "getItem", pick)
    target = win.review.current_id()
    qtbot.keyClick(win.view, Qt.Key.Key_Slash)
    assert offered == [["blue", "green", "red"]]
    assert win.project.images.image(target).current_label == 1
    qtbot.keyClick(win.view, Qt.Key.Key_L)
    assert len(offered) == 2


def test_digit_keys_follow_digit_class_names(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """On MNIST-like classes "3", "5", "7", key 7 gives class "7" (it used to give the 7th class)."""
    import numpy as np
    from PIL import Image

    from scoring.io.formats import open_dataset

    for c in ("3", "5", "7"):
        (tmp_path / "d" / c).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / "d" / c / f"{i}.png")
    Project.create(tmp_path / "d.triage.db", open_dataset(tmp_path / "d")).close()
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    assert w.open_project(tmp_path / "d.triage.db", ask_resume=False)
    w.view.setFocus()
    first = w.review.current_id()
    qtbot.keyClick(w.view, Qt.Key.Key_7)
    assert w.project.classes[w.project.images.image(first).current_label] == "7"
    assert "<b>7</b> 7" in w.legend.text() and "<b>1</b>" not in w.legend.text()
    second = w.review.current_id()
    qtbot.keyClick(w.view, Qt.Key.Key_1)  # names no class: nothing happens
    assert w.project.images.image(second).status == "unreviewed"
    w.close()


def test_duplicate_filters_and_the_errors_left_estimate_in_the_status_bar(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from scoring.engine.inference import score_project
    from scoring.progress import drain
    from scoring.store import project_for
    from scoring.tasks.duplicates import find_duplicates
    from tests.scoring.tinypool import make_imagefolder, tiny_pool

    data = make_imagefolder(tmp_path / "data", per_class=8, corrupt=False)
    shutil.copy(data / "red" / "000.png", data / "blue" / "copy.png")  # a duplicate with another label
    db = project_for(data, tmp_path / "p.triage.db")
    drain(score_project(db, pool=tiny_pool(["blue", "green", "red"]), workers=0))
    drain(find_duplicates(db))
    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    with qtbot.waitSignal(w.review.estimates.ready, timeout=10_000):  # computed off the GUI thread
        assert w.open_project(db, ask_resume=False)
    assert "errors left" in w.review.stats_label.text()
    w.filters.f_conflict.setChecked(True)
    assert w.model.rowCount() == 2
    assert sorted(w.model.row_at(r).path for r in range(2)) == ["blue/copy.png", "red/000.png"]
    w.review.stop_below = 1e9  # any estimate is below: the app suggests stopping
    w.review.update_status()
    assert "you could stop here" in w.review.stats_label.text()
    w.close()


def test_show_filter_sets_every_field_the_panel_has(qtbot, win: MainWindow) -> None:  # type: ignore[no-untyped-def]
    from scoring.store import QueueFilter

    filt = QueueFilter(given_label=1, consensus=2, reason="ambiguous", status="unreviewed", score_min=0.1,
                       score_max=0.9, score_key="margin", disagrees=True, search="00", duplicate=True, conflict=True)
    with qtbot.waitSignal(win.filters.filterChanged):
        win.filters.show_filter(filt)
    assert win.filters.value() == (LABEL_SORT, filt)  # the sort is kept
    assert win.session.filter.status == "unreviewed" and win.session.filter.conflict

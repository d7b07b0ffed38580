"""GUI fixtures: a small scored project, isolated settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication

from scoring.io.formats import open_dataset
from scoring.store import Project
from scoring.vocabulary import compute_scores
from tests.scoring.tinypool import make_imagefolder


@pytest.fixture(autouse=True)
def collect_garbage_on_the_gui_thread() -> Iterator[None]:
    """As the app does (gui.app): no cyclic collection on a pool thread, where it once finalised a
    window's Qt objects under load (Timers cannot be started from another thread); a test's
    garbage is collected here, on the GUI thread, before and after it."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


@pytest.fixture(autouse=True)
def no_unexpected_questions(monkeypatch: pytest.MonkeyPatch) -> None:
    """A question the test did not expect fails it at once instead of hanging offscreen; a test
    that expects one patches ``MainWindow._ask`` itself."""
    from gui.main_window import MainWindow

    def unexpected(self, box):  # type: ignore[no-untyped-def]
        raise AssertionError(f"unexpected question: {box.windowTitle()}: {box.text()}")

    monkeypatch.setattr(MainWindow, "_ask", unexpected)


@pytest.fixture
def settings(tmp_path: Path) -> QSettings:
    return QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)


def fake_scored(tmp_path: Path, per_class: int, seed: int) -> Path:
    """A project of ``3 * per_class`` images with fake but valid scores (seeded)."""
    data = make_imagefolder(tmp_path / "data", per_class=per_class, corrupt=False)
    db = tmp_path / "p.triage.db"
    with Project.create(db, open_dataset(data)) as p:
        ids = p.images.scorable_ids()
        probs = np.random.default_rng(seed).dirichlet(np.ones(3) * 0.7, size=(3, len(ids)))
        scores = compute_scores(probs, p.images.given_labels(ids))
        p.queue.put_scores("pool", ids, scores)
        agreement = np.random.default_rng(seed + 1).random(len(ids))
        p.queue.put_label_evidence(ids, agreement, (1.0 - scores["margin"]) / 2.0, 0.0)  # as with no neighbour weight
    return db


@pytest.fixture
def scored_db(tmp_path: Path) -> Path:
    """12 images in 3 classes with fake but valid scores (seeded)."""
    return fake_scored(tmp_path, 4, 0)


def open_window(qtbot, settings: QSettings, db: Path):  # type: ignore[no-untyped-def]
    """The main window, shown, on project ``db``, keys going to the queue."""
    from gui.main_window import MainWindow

    w = MainWindow(settings)
    qtbot.addWidget(w)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    assert w.open_project(db, ask_resume=False)
    w.view.setFocus()
    return w

"""The review queue model: Qt's model tester, paging, refresh after edits, thumbnails."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtTest import QAbstractItemModelTester

from gui.queue_model import IdRole, ReviewQueueModel, RowRole, ScoreRole
from gui.thumbnails import ThumbnailLoader
from scoring.store import Project, QueueFilter
from scoring.tasks.review import ReviewSession


def test_model_passes_qt_model_tester_while_paging_and_filtering(qtbot, scored_db: Path) -> None:  # type: ignore[no-untyped-def]
    with Project.open(scored_db) as p:
        thumbs = ThumbnailLoader()
        session = ReviewSession(p)
        model = ReviewQueueModel(session, thumbs, page_size=5)
        assert model.rowCount() == 5 and model.canFetchMore(QModelIndex())
        model.fetchMore(QModelIndex())
        model.fetchMore(QModelIndex())
        assert model.rowCount() == 12 and not model.canFetchMore(QModelIndex())
        QAbstractItemModelTester(model, QAbstractItemModelTester.FailureReportingMode.Fatal)
        scores = [model.data(model.index(r, 0), ScoreRole) for r in range(12)]
        assert scores == sorted(scores, reverse=True)
        assert model.data(model.index(0, 0), RowRole).id == model.data(model.index(0, 0), IdRole)
        session.set_view(session.sort, QueueFilter(given_label=2))
        model.reload()
        assert model.rowCount() == 4 and model.total() == 4
        session.set_view("self_confidence", session.filter)
        model.reload()
        assert model.rowCount() == 4
        confidences = [model.data(model.index(r, 0), ScoreRole) for r in range(4)]
        assert confidences == sorted(confidences)  # the label view's score: the likely errors first
        assert [model.data(model.index(r, 0), IdRole) for r in range(4)] == [r.id for r in session.page()]
        thumbs.wait()


def test_refresh_row_reflects_an_edit_in_place(qtbot, scored_db: Path) -> None:  # type: ignore[no-untyped-def]
    with Project.open(scored_db) as p:
        model = ReviewQueueModel(ReviewSession(p), ThumbnailLoader())
        first = model.data(model.index(0, 0), IdRole)
        p.edits.relabel(first, 1)
        with qtbot.waitSignal(model.dataChanged):
            idx = model.refresh_row(first)
        assert idx.row() == 0
        row = model.data(idx, RowRole)
        assert row.current_label == 1
        assert model.data(idx, Qt.ItemDataRole.ForegroundRole) is not None  # status colour


def test_thumbnails_arrive_off_the_gui_thread(qtbot, scored_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import threading

    import gui.thumbnails as thumbnails

    decoded_in: list[int] = []
    real = thumbnails.load_image
    monkeypatch.setattr(thumbnails, "load_image", lambda path: (decoded_in.append(threading.get_ident()), real(path))[1])
    with Project.open(scored_db) as p:
        thumbs = ThumbnailLoader(size=32)
        model = ReviewQueueModel(ReviewSession(p), thumbs)
        placeholder = model.data(model.index(0, 0), Qt.ItemDataRole.DecorationRole)
        assert placeholder is thumbs.placeholder
        with qtbot.waitSignal(model.dataChanged, timeout=5000):
            pass
        pm = model.data(model.index(0, 0), Qt.ItemDataRole.DecorationRole)
        assert pm is not thumbs.placeholder and not pm.isNull()
        thumbs.wait()
    assert decoded_in and threading.get_ident() not in decoded_in  # never on the GUI thread


def test_the_detail_image_is_decoded_off_the_gui_thread(qtbot, scored_db: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import threading

    import gui.thumbnails as thumbnails
    from gui.detail import DetailPane

    decoded_in: list[int] = []
    real = thumbnails.load_image

    def spy(path):  # type: ignore[no-untyped-def]
        decoded_in.append(threading.get_ident())
        return real(path)

    monkeypatch.setattr(thumbnails, "load_image", spy)
    pane = DetailPane()
    qtbot.addWidget(pane)
    with Project.open(scored_db) as p:
        row = p.queue.page(limit=1)[0]
        with qtbot.waitSignal(pane.loader.loaded, timeout=5000):
            pane.show_row(p, row, [])
    assert pane._pixmap is not None and not pane._pixmap.isNull()
    assert decoded_in and threading.get_ident() not in decoded_in

"""Issue 31 in the window: a package says whose it is and never re-ranks; File ▸ Merge review
packages brings the decisions in the background; the disputed filter lists the disputes, the
detail pane shows both decisions, and the adjudicator's key settles one (logged as such)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox

from scoring.store import Project
from scoring.tasks.share import share_project
from tests.gui.conftest import fake_scored, open_window


def test_package_then_merge_then_adjudicate(qtbot, tmp_path: Path, settings: QSettings,  # type: ignore[no-untyped-def]
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    db = fake_scored(tmp_path, per_class=10, seed=2)  # 30 images
    ana, ben = share_project(db, tmp_path / "out", ["ana", "ben"], overlap=1.0)  # everything reviewed twice
    win = open_window(qtbot, settings, ana.path)
    assert "ana's review package" in win.windowTitle() and "ana's review package" in win.review.stats_label.text()
    assert "errors left" not in win.review.stats_label.text()  # a slice is no sample: no count shown there
    for _ in range(25):  # more than a re-rank's worth of decisions: a package never re-ranks
        QTest.keyClick(win.view, Qt.Key.Key_Return)  # keep
    qtbot.wait(200)
    assert not win.jobs.busy
    with Project.open(ana.path) as p:
        kept = [e.image_id for e in p.edits.entries()]
        assert len(kept) == 25 and {e.annotator for e in p.edits.entries()} == {"ana"}
    with Project.open(ben.path) as p:  # ben removes the first five ana kept: five disputes
        for i in kept[:5]:
            p.edits.remove(i)
    assert win.open_project(db, ask_resume=False)
    assert not win.filters.f_disputed.isVisibleTo(win)  # nothing merged yet: no such filter offered
    shown: list[str] = []
    monkeypatch.setattr(QMessageBox, "information", staticmethod(lambda _w, _t, text: shown.append(text)))
    win.tasks.start_merge([ana.path, ben.path])
    qtbot.waitUntil(lambda: bool(shown) and not win.jobs.busy, timeout=30_000)
    assert "5 disputed images" in shown[0] and "Cohen's kappa" in shown[0]
    assert win.filters.f_disputed.isVisibleTo(win)
    win.view.setFocus()
    QTest.keyClick(win.view, Qt.Key.Key_U, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert win.filters.value()[1].disputed  # View ▸ Disputed only (Ctrl+Shift+U)
    qtbot.waitUntil(lambda: win.model is not None and win.model.rowCount() == 5, timeout=5000)
    win.review.select(win.model.index(0, 0))
    first = win.review.current_id()
    assert first in kept[:5]
    text = win.detail.info.text()
    assert "disputed" in text and "<b>ana</b> kept" in text and "<b>ben</b> removed it" in text
    win.view.setFocus()
    QTest.keyClick(win.view, Qt.Key.Key_Delete)  # the adjudicator removes it, as ben did
    with Project.open(db) as p:
        last = p.edits.entries()[-1]
        assert (last.image_id, last.action, last.via) == (first, "remove", "adjudication")
        assert len(p.team.disputed_ids()) == 4
    assert win.review.current_id() in set(kept[:5]) - {first}  # on to the next dispute (the settled one stays in place)

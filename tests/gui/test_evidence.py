"""The detail pane's evidence (duplicate group side by side, G keeps one; neighbours within the
given and the pool's label) and the queue re-ranked after decisions."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from gui.main_window import MainWindow
from scoring.engine.inference import score_project
from scoring.progress import drain
from scoring.store import QueueFilter, project_for
from scoring.tasks.duplicates import find_duplicates
from tests.gui.conftest import open_window
from tests.scoring.tinypool import head_pool, make_imagefolder

CLASSES = ["blue", "green", "red"]


@pytest.fixture
def dup_db(tmp_path: Path) -> Path:
    """24 colour images; red/000 also as blue/copy.png and red/copy.png (a group of three, two labels)."""
    data = make_imagefolder(tmp_path / "data", per_class=8, corrupt=False)
    shutil.copy(data / "red" / "000.png", data / "blue" / "copy.png")
    shutil.copy(data / "red" / "000.png", data / "red" / "copy.png")
    db = project_for(data, tmp_path / "p.triage.db")
    drain(score_project(db, pool=head_pool(CLASSES), workers=0))
    drain(find_duplicates(db))
    return db


@pytest.fixture
def win(qtbot, settings, dup_db: Path):  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, dup_db)
    yield w
    w.jobs.wait_idle()
    w.close()


def _go_to(w: MainWindow, path: str) -> int:
    image_id = w.project.images.find_image(path)
    w.review.select(w.model.index_of(image_id))
    return image_id


def test_the_group_side_by_side_and_g_asks_then_keeps_one_as_one_undo(  # type: ignore[no-untyped-def]
    qtbot, win: MainWindow, monkeypatch
) -> None:
    win.filters.f_conflict.setChecked(True)
    assert win.model.rowCount() == 3
    me = _go_to(win, "blue/copy.png")
    group = win.detail.evidence.group
    assert not group.isHidden() and sorted(group.tiles) == sorted(win.project.dupes.group_of(me))
    assert "conflicting labels" in group.title.text()
    captions = {i: b.text() for i, b in group.tiles.items()}
    assert captions[me] == "▶ blue" and sorted(captions.values()) == ["red", "red", "▶ blue"]
    red = {i for i, b in group.tiles.items() if "#ef5350" in b.styleSheet()}
    assert red == {me}  # the label in conflict with the group's is red where it is shown
    asked: list[str] = []

    def answer(button):  # type: ignore[no-untyped-def]
        return lambda self, box: asked.append(box.text()) or box.button(button)

    from PySide6.QtWidgets import QMessageBox

    others = [i for i in win.project.dupes.group_of(me) if i != me]
    monkeypatch.setattr(MainWindow, "_ask", answer(QMessageBox.StandardButton.Cancel))
    qtbot.keyClick(win.view, Qt.Key.Key_G)  # a group of three: it asks first, naming the count
    assert "remove 2 unreviewed image(s) of its group of 3" in asked[-1]
    assert [win.project.images.image(i).status for i in [me, *others]] == ["unreviewed"] * 3  # cancelled: nothing
    monkeypatch.setattr(MainWindow, "_ask", answer(QMessageBox.StandardButton.Yes))
    qtbot.keyClick(win.view, Qt.Key.Key_G)
    assert win.project.images.image(me).status == "kept"
    assert [win.project.images.image(i).status for i in others] == ["removed", "removed"]
    assert "removed 2" in win.review.stats_label.text()
    qtbot.keyClick(win.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # one undo: the whole decision
    assert [win.project.images.image(i).status for i in [me, *others]] == ["unreviewed"] * 3
    assert win.review.current_id() == me
    win.project.edits.relabel(others[0], 0)  # a decision already made is never overridden by G
    qtbot.keyClick(win.view, Qt.Key.Key_G)
    assert win.project.images.image(others[0]).status == "relabelled" and win.project.images.image(others[1]).status == "removed"
    win.project.edits.keep(me)  # the rest of its group decided: G has nothing to offer (it asked "remove 0 ...?")
    win.review.select(win.model.index_of(others[1]))
    asked.clear()
    edits = len(win.project.edits.entries())
    qtbot.keyClick(win.view, Qt.Key.Key_G)
    assert asked == [] and len(win.project.edits.entries()) == edits
    assert "nothing to remove" in win.statusBar().currentMessage()


def test_neighbours_of_the_given_and_the_pool_label(qtbot, win: MainWindow) -> None:  # type: ignore[no-untyped-def]
    me = _go_to(win, "blue/copy.png")  # a red image labelled blue: the pool says red
    ev = win.detail.evidence
    qtbot.waitUntil(lambda: ev.index is not None, timeout=10_000)
    row = win.project.queue.queue_row(me)
    assert row.current_label == 0 and row.consensus == 2
    assert not ev.given.isHidden() and not ev.pool_label.isHidden()
    assert "«blue»" in ev.given.title.text() and "«red»" in ev.pool_label.title.text()
    for strip, label in ((ev.given, 0), (ev.pool_label, 2)):
        assert len(strip.tiles) == 6 and me not in strip.tiles
        assert {win.project.images.image(i).current_label for i in strip.tiles} == {label}
    # its twin in red is the nearest of the pool's label
    first = next(iter(ev.pool_label.tiles))
    assert win.project.images.paths_of([first])[0] in ("red/000.png", "red/copy.png")
    assert ev.note.text().startswith("Look-alikes by ")
    weight = win.project.queue.neighbour_weight()  # what label_issue gave them, said under the strips
    assert weight is not None and ("not counted" in ev.note.text()) == (weight == 0)
    noise = win.project.queue.label_noise()  # and the kind of errors fitted, or that the labels did not tell
    said = "do not show whether" if noise["evidence"] < 3.0 else "errors here look like"
    assert said in ev.note.text()
    # a narrow pane: the tiles wrap to rows that fit and the note wraps inside what shows (at
    # 1366x768 the sixth tile was cut off and the note's last words sat under the scroll bar)
    area = win.detail.evidence_scroll
    for width in (260, 420):
        win.detail.setFixedWidth(width)
        qtbot.waitUntil(lambda: ev.given.per_row < 6 and ev.width() <= area.viewport().width(), timeout=5_000)
        seen = area.viewport().width()
        for strip in (ev.given, ev.pool_label):
            assert all(b.geometry().right() < seen for b in strip.tiles.values())
        assert ev.note.geometry().right() < seen
    win.detail.setMinimumWidth(0)
    win.detail.setMaximumWidth(16_777_215)


def test_the_queue_is_re_ranked_after_decisions(qtbot, win: MainWindow, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import scoring.tasks.rerank

    monkeypatch.setattr(scoring.tasks.rerank, "active_pool", lambda project, **_: head_pool(CLASSES))
    win.review.rerank_every = 3
    win.filters.show_filter(QueueFilter(status="unreviewed"))
    win.review.select(win.model.index(0, 0))
    reviewed = []
    for key in (Qt.Key.Key_Return, Qt.Key.Key_Return):
        reviewed.append(win.review.current_id())
        qtbot.keyClick(win.view, key)
    assert not win.jobs.busy
    reviewed.append(win.review.current_id())
    with qtbot.waitSignal(win.statusBar().messageChanged, timeout=20_000,
                          check_params_cb=lambda m: m.startswith("re-sorted")):
        qtbot.keyClick(win.view, Qt.Key.Key_3)  # the third decision starts the re-rank
    qtbot.waitUntil(lambda: not win.jobs.busy, timeout=20_000)  # its thread ends after the message (under load: later)
    out = win.review.last_rerank
    assert out is not None and out.refitted == ["head"] and out.decisions == 3
    assert out.unreviewed == win.project.queue.queue_count(QueueFilter(status="unreviewed"))
    assert [win.project.images.image(i).status for i in reviewed][:2] == ["kept", "kept"]
    assert win.project.images.image(reviewed[2]).current_label == 2  # decisions kept through the re-rank
    assert not win.session.rerank_due(3)


def test_a_failing_rerank_says_so_once_and_stops(qtbot, win: MainWindow, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import scoring.tasks.rerank
    from scoring.pool.base import PoolError

    def broken(project, **_):  # type: ignore[no-untyped-def]
        raise PoolError("resnet20.th: no such file")

    monkeypatch.setattr(scoring.tasks.rerank, "active_pool", broken)
    win.review.rerank_every = 1
    with qtbot.waitSignal(win.statusBar().messageChanged, timeout=20_000,
                          check_params_cb=lambda m: m.startswith("Re-ranking stopped")):
        qtbot.keyClick(win.view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: not win.jobs.busy, timeout=20_000)
    assert win.review.rerank_every == 0 and "resnet20.th" in win.statusBar().currentMessage()


def test_review_settings_are_used_and_remembered(qtbot, settings, dup_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gui.dialogs import ReviewSettingsDialog
    from tests.gui.conftest import open_window

    dlg = ReviewSettingsDialog(2.5, 40)
    assert dlg.values() == (2.5, 40) and dlg.rerank_every.specialValueText() == "never"
    w = open_window(qtbot, settings, dup_db)
    monkeypatch.setattr(ReviewSettingsDialog, "exec", lambda self: True)
    monkeypatch.setattr(ReviewSettingsDialog, "values", lambda self: (1e9, 0))
    w.review.review_settings()
    assert (w.review.stop_below, w.review.rerank_every) == (1e9, 0)
    qtbot.waitUntil(lambda: "you could stop here" in w.review.stats_label.text(), timeout=10_000)
    w.jobs.wait_idle()
    w.close()
    again = open_window(qtbot, settings, dup_db)  # remembered
    assert (again.review.stop_below, again.review.rerank_every) == (1e9, 0)
    again.close()


def test_the_export_dialog_can_keep_one_image_per_duplicate_group(qtbot, win: MainWindow, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtWidgets import QMessageBox

    from gui.dialogs import ExportDialog

    out = tmp_path / "clean"

    def accept(self) -> bool:  # type: ignore[no-untyped-def]
        self.dest.setText(str(out))
        self.link.setCurrentText("copy")
        self.drop_duplicates.setChecked(True)
        return True

    shown: list[str] = []
    monkeypatch.setattr(ExportDialog, "exec", accept)
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text: shown.append(text))
    win.tasks.export_dialog()
    qtbot.waitUntil(lambda: bool(shown) and not win.jobs.busy, timeout=20_000)
    # 26 images, one group of three copies: two left out
    assert len(list((out / "images").rglob("*.png"))) == 24


def test_the_overview_plots_errors_found_against_the_estimate(qtbot, win: MainWindow) -> None:  # type: ignore[no-untyped-def]
    qtbot.waitUntil(lambda: win.session.estimate is not None, timeout=10_000)
    given = win.project.images.image(win.review.current_id()).given_label
    relabel = Qt.Key.Key_1 if given != 0 else Qt.Key.Key_2  # a class other than the given one
    for key in (relabel, Qt.Key.Key_Return, Qt.Key.Key_Delete):
        qtbot.keyClick(win.view, key)
    win.tabs.setCurrentIndex(1)
    curves = win.overview.found.listDataItems()
    assert len(curves) == 1
    x, y = curves[0].getData()
    assert list(x) == [1, 2, 3] and list(y) == [1, 1, 1]  # relabelled, kept, removed (says nothing of the label)
    assert any("errors left" in item.toPlainText() for item in win.overview.found.items() if hasattr(item, "toPlainText"))


def test_a_rerank_mid_review_keeps_the_reviewed_in_place_and_the_next_key_decides_the_image_on_screen(  # type: ignore[no-untyped-def]
    qtbot, win: MainWindow, monkeypatch
) -> None:
    """Issue 30: after a re-rank, reviewed images interleaved with unreviewed ones and a key once
    landed on an image already decided."""
    import scoring.tasks.rerank

    monkeypatch.setattr(scoring.tasks.rerank, "active_pool", lambda project, **_: head_pool(CLASSES))
    win.review.rerank_every = 0  # by hand, below
    win.review.select(win.model.index(0, 0))
    for _ in range(6):
        qtbot.keyClick(win.view, Qt.Key.Key_3)  # relabel to red: decisions the heads learn from
    on_screen = win.review.current_id()
    cursor_row = win.session.current_row
    before = [win.model.row_at(n).id for n in range(cursor_row + 1)]
    assert win.project.images.image(on_screen).status == "unreviewed"
    with qtbot.waitSignal(win.statusBar().messageChanged, timeout=20_000,
                          check_params_cb=lambda m: m.startswith("re-sorted")):
        win.review.start_rerank()
    qtbot.waitUntil(lambda: not win.jobs.busy, timeout=60_000)  # under load no job may outlive the test
    assert [win.model.row_at(n).id for n in range(cursor_row + 1)] == before  # what was gone through stays
    assert win.review.current_id() == on_screen and win.session.current_row == cursor_row
    while win.model.canFetchMore(win.model.index(0, 0).parent()):
        win.model.fetchMore(win.model.index(0, 0).parent())
    below = [win.model.row_at(n) for n in range(cursor_row + 1, win.model.rowCount())]
    assert below and all(r.status == "unreviewed" for r in below)  # no decided image below the cursor
    assert len({r.id for r in below} | set(before)) == win.model.rowCount()  # each image once
    assert win.detail.info.text().find(win.project.images.image(on_screen).path) >= 0
    qtbot.keyClick(win.view, Qt.Key.Key_Return)  # the next key decides the image on screen
    assert win.project.images.image(on_screen).status == "kept"

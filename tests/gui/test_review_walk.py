"""Issue 17: the review loop walked with keys only, as an annotator does, on the real window.

After each thing that used to steal the keys (a sort change, a ticked filter, a plot click, a
menu opened and closed, typing in Search and Esc, a dialog), review keys still make decisions,
30 in all; the window never grows; the queue opens on the label view.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from gui.main_window import MainWindow
from scoring.store import QueueFilter
from scoring.vocabulary import LABEL_SORT
from tests.gui.conftest import fake_scored, open_window


@pytest.fixture
def big_db(tmp_path: Path) -> Path:
    """36 images in 3 classes, fake but valid scores (seeded)."""
    return fake_scored(tmp_path, 12, 1)


def _press(qtbot, w: MainWindow, keys: list[Qt.Key]) -> None:  # type: ignore[no-untyped-def]
    """Keys as the keyboard sends them: to the widget of the window that has the focus now (the
    window's focus widget: offscreen there is no window manager to re-activate it after a menu)."""
    for key in keys:
        target = QApplication.focusWidget() or w.focusWidget()
        assert target is not None and target.window() is w, f"the keys would go to {target}"
        qtbot.keyClick(target, key)


def test_keys_survive_every_interruption_and_the_window_never_grows(qtbot, settings, big_db: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, big_db)
    start = w.size()
    assert w.session.sort == LABEL_SORT and w.filters.view_buttons["label"].isChecked()  # labelled: label view
    decisions = [len(w.project.edits.entries())]
    five = [Qt.Key.Key_1, Qt.Key.Key_2, Qt.Key.Key_Return, Qt.Key.Key_3, Qt.Key.Key_Return]

    def decided(n: int) -> None:
        decisions.append(len(w.project.edits.entries()))
        assert decisions[-1] - decisions[-2] == n, (decisions, QApplication.focusWidget(), w.statusBar().currentMessage(), w.session.current, w.model.rowCount(), w.session.filter)

    # 1. the sort: the two-way switch, clicked with the mouse
    qtbot.mouseClick(w.filters.view_buttons["difficulty"], Qt.MouseButton.LeftButton)
    assert w.session.sort == "c_perplexity"
    _press(qtbot, w, five)
    decided(5)
    # 2. a filter ticked with the mouse (the checkbox takes the focus)
    qtbot.mouseClick(w.filters.f_disagree, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(w.filters.f_disagree, Qt.MouseButton.LeftButton)
    _press(qtbot, w, five)
    decided(5)
    # 3. a plot click: filters without changing the sort
    w.overview.filterRequested.emit(QueueFilter(given_label=0))
    assert w.session.sort == "c_perplexity" and w.filters.f_given.currentData() == 0
    _press(qtbot, w, [Qt.Key.Key_Down, *five])
    decided(5)
    w.overview.filterRequested.emit(QueueFilter())
    # 4. a menu opened and closed with Escape
    menu = w.menuBar().actions()[1].menu()
    menu.popup(w.mapToGlobal(QPoint(10, 10)))
    qtbot.waitUntil(menu.isVisible)
    qtbot.keyClick(menu, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not menu.isVisible())
    assert w.focusWidget() is w.view  # the menu's aboutToHide gave the queue the keys
    _press(qtbot, w, five)
    decided(5)
    # 5. typing in Search holds the keys; Esc hands them back
    w.filters.f_search.setFocus()
    qtbot.keyClicks(w.filters.f_search, "0")
    assert w.filters.f_search.text() == "0" and len(w.project.edits.entries()) == decisions[-1]  # typed, not decided
    qtbot.waitUntil(lambda: w.session.filter.search == "0", timeout=3000)  # filters as you type
    qtbot.keyClick(w.filters.f_search, Qt.Key.Key_Escape)
    w.filters.f_search.clear()
    qtbot.waitUntil(lambda: w.session.filter.search is None, timeout=3000)
    _press(qtbot, w, five)
    decided(5)
    # 6. the key overlay (a dialog) opened with ? and closed
    _press(qtbot, w, [Qt.Key.Key_Question])
    assert w.popups and w.popups[-1].isVisible()
    w.popups[-1].close()
    _press(qtbot, w, five)
    decided(5)
    assert decisions[-1] - decisions[0] == 30
    assert w.size().width() <= start.width() and w.size().height() <= start.height()
    w.close()


def test_several_selected_images_are_one_decision(qtbot, settings, big_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, big_db)
    asked: list[str] = []
    monkeypatch.setattr(MainWindow, "_ask", lambda self, box: asked.append(box.text())
                        or box.button(QMessageBox.StandardButton.Yes))
    first = w.model.index(0, 0)
    qtbot.mouseClick(w.view.viewport(), Qt.MouseButton.LeftButton, pos=w.view.visualRect(first).center())
    for n in (1, 2):
        rect = w.view.visualRect(w.model.index(n, 0))
        qtbot.mouseClick(w.view.viewport(), Qt.MouseButton.LeftButton, Qt.KeyboardModifier.ControlModifier,
                         rect.center())
    ids = w.review.selected_ids()
    assert len(ids) == 3
    _press(qtbot, w, [Qt.Key.Key_Delete])
    assert "the 3 selected images" in asked[-1]
    assert [w.project.images.image(i).status for i in ids] == ["removed"] * 3
    qtbot.keyClick(w.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # one undo: all three
    assert [w.project.images.image(i).status for i in ids] == ["unreviewed"] * 3
    w.close()


def test_the_sort_and_filters_are_remembered_per_project(qtbot, settings, big_db: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, big_db)
    qtbot.mouseClick(w.filters.view_buttons["difficulty"], Qt.MouseButton.LeftButton)
    w.filters.f_disagree.setChecked(True)
    w.close()
    w2 = open_window(qtbot, settings, big_db)
    assert w2.session.sort == "c_perplexity" and w2.session.filter.disagrees
    w2.close()


def test_the_margin_range_can_hold_negative_values(qtbot, settings, big_db: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, big_db)
    w.filters.sort.setCurrentIndex(w.filters.sort.findData("margin"))
    assert w.filters.f_max.maximum() == 1.0 and w.filters.f_min.minimum() < -1.0 + 0.01
    w.filters.f_max.setValue(0.0)  # margin <= 0: where label errors sit
    assert w.session.filter.score_max == 0.0 and w.session.filter.score_key == "margin"
    assert all(w.model.row_at(r).scores["margin"] <= 0 for r in range(w.model.rowCount()))
    w.close()


def test_a_chance_is_typed_in_percent_as_it_is_shown(qtbot, settings, big_db: Path) -> None:  # type: ignore[no-untyped-def]
    """The label view's default sort shows a chance (98%): its range boxes take percent too, and
    the filter holds the fraction; a score shown as a number keeps its own units."""
    w = open_window(qtbot, settings, big_db)
    w.filters.sort.setCurrentIndex(w.filters.sort.findData("label_issue"))
    assert w.filters.f_min.suffix() == " %" and w.filters.f_min.maximum() == 100.0
    w.filters.f_min.setValue(50.0)
    assert w.session.filter.score_key == "label_issue" and w.session.filter.score_min == 0.5
    assert w.model.rowCount() > 0 and all(w.model.row_at(r).scores["label_issue"] >= 0.5 for r in range(w.model.rowCount()))
    w.filters.sort.setCurrentIndex(w.filters.sort.findData("margin"))
    assert w.filters.f_min.suffix() == "" and w.filters.f_max.maximum() == 1.0
    w.close()


def test_a_click_into_an_unset_range_box_then_digits_set_it(qtbot, settings, big_db: Path) -> None:  # type: ignore[no-untyped-def]
    """Under Xvfb a click into the "≥" box (showing "–") then typing 50 did nothing: the digits
    went after the mark and "–50" was refused. Now the click selects the mark, the digits replace
    it, and no review key acts meanwhile."""
    from PySide6.QtCore import QPoint

    w = open_window(qtbot, settings, big_db)
    w.filters.sort.setCurrentIndex(w.filters.sort.findData("label_issue"))
    box = w.filters.f_min
    assert box.text() == "–"
    editor = box.lineEdit()
    qtbot.mouseClick(editor, Qt.MouseButton.LeftButton, pos=QPoint(editor.width() - 4, editor.height() // 2))
    qtbot.wait(50)
    qtbot.keyClicks(editor, "50")
    qtbot.keyClick(editor, Qt.Key.Key_Return)
    assert box.value() == 50.0 and w.session.filter.score_min == 0.5
    assert w.project.edits.entries() == []  # the digits and Enter were the box's, not review keys
    w.close()


def test_double_click_opens_the_image_full_size(qtbot, settings, big_db: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, big_db)
    rect = w.view.visualRect(w.view.currentIndex())
    qtbot.mouseClick(w.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.mouseDClick(w.view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    dlg = w.popups[-1]
    assert dlg.isVisible() and "(12×12)" in dlg.windowTitle()
    before = dlg.view.transform().m11()
    dlg.view.zoom(2.0)
    assert dlg.view.transform().m11() == pytest.approx(before * 2)
    dlg.close()
    w.close()


def test_ctrl_u_shows_the_unreviewed_only_and_back(qtbot, settings, big_db: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, big_db)
    _press(qtbot, w, [Qt.Key.Key_Return, Qt.Key.Key_Return])  # two kept
    qtbot.keyClick(w.view, Qt.Key.Key_U, Qt.KeyboardModifier.ControlModifier)  # the menu's shortcut, no fallback
    assert w.session.filter.status == "unreviewed" and w.model.total() == 34
    assert w.project.images.image(w.review.current_id()).status == "unreviewed"
    w.filters.toggle_status("unreviewed")
    assert w.session.filter.status is None and w.model.total() == 36
    w.close()


def test_a_new_sort_starts_at_its_head_and_a_filter_keeps_the_image(qtbot, settings, big_db: Path) -> None:  # type: ignore[no-untyped-def]
    """Seen by hand on the demo: after switching views the cursor stayed on an image from the old
    order, near the end of the new one, and the keys decided the wrong images."""
    w = open_window(qtbot, settings, big_db)
    w.review.select(w.model.index(20, 0))
    qtbot.mouseClick(w.filters.view_buttons["difficulty"], Qt.MouseButton.LeftButton)
    assert w.view.currentIndex().row() == 0
    w.review.select(w.model.index(5, 0))
    me = w.review.current_id()
    w.filters.f_status.setCurrentIndex(0)  # a filter change that keeps the image in the list
    w.filters.f_search.setText("")
    w.filters.clear()
    assert w.review.current_id() == me
    w.close()


def test_the_sort_and_a_filter_are_changed_with_the_keys_and_review_keys_then_act(  # type: ignore[no-untyped-def]
        qtbot, settings, big_db: Path) -> None:
    """Keyboard first: View > Sort by (Ctrl+Shift+S) opens the sort list, arrows and Enter choose,
    View > Filter by given label (Ctrl+Shift+L) the same; then Enter keeps the head of the queue."""
    w = open_window(qtbot, settings, big_db)
    sort_before = w.filters.sort.currentIndex()
    sorts = [a for a in w.menuBar().actions() if a.text() == "&View"][0].menu().actions()
    pick = {a.text(): a for a in sorts}
    pick["&Sort by…"].trigger()
    popup = QApplication.activePopupWidget()
    assert popup is not None and w.filters.sort.view().isVisible()
    qtbot.keyClick(w.filters.sort.view(), Qt.Key.Key_Down)
    qtbot.keyClick(w.filters.sort.view(), Qt.Key.Key_Return)
    assert QApplication.activePopupWidget() is None and w.filters.sort.currentIndex() == sort_before + 1
    assert w.session.sort == w.filters.sort.currentData()
    pick["Filter by &given label…"].trigger()
    qtbot.keyClick(w.filters.f_given.view(), Qt.Key.Key_Down)
    qtbot.keyClick(w.filters.f_given.view(), Qt.Key.Key_Return)
    assert w.session.filter.given_label is not None
    total = w.model.total()
    head = w.review.current_id()
    _press(qtbot, w, [Qt.Key.Key_Return])  # the focus is on the combo: the review key still acts
    assert w.project.images.image(head).status == "kept" and w.view.hasFocus() and w.model.total() == total
    w.close()


def test_clearing_the_search_shows_the_image_under_review_in_the_grid(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Seen under Xvfb on the demo: an image found by the search, far down the queue, stayed in
    the pane (and under the keys) when the search was cleared, but the grid showed the top of the
    queue with nothing highlighted: the grid lays its items out in batches, and it was asked to
    scroll to one not laid out yet."""
    from tests.gui.conftest import fake_scored

    w = open_window(qtbot, settings, fake_scored(tmp_path, 300, 2))
    while w.model.rowCount() < 700 and w.model.canFetchMore(w.model.index(-1, 0)):
        w.model.fetchMore(w.model.index(-1, 0))
    far = w.model.row_at(650)
    assert far is not None
    w.filters.f_search.setText(far.path)
    qtbot.waitUntil(lambda: w.review.current_id() == far.id, timeout=5000)
    w.filters.f_search.setText("")
    qtbot.waitUntil(lambda: w.model.total() == 900, timeout=5000)
    assert w.review.current_id() == far.id

    def shown() -> bool:
        index = w.view.currentIndex()
        return index.isValid() and w.model.row_at(index.row()).id == far.id and w.view.viewport().rect().intersects(w.view.visualRect(index))

    qtbot.waitUntil(shown, timeout=5000)
    w.close()


def test_reopening_a_project_lands_on_the_first_image_still_to_review(qtbot, settings, big_db: Path) -> None:  # type: ignore[no-untyped-def]
    """Seen under Xvfb after a kill -9 and a restart: the window opened on the head of the label
    queue, a relabelled image, where the next Enter would have turned the relabel into a keep."""
    w = open_window(qtbot, settings, big_db)
    ids = [w.model.row_at(n).id for n in range(3)]  # type: ignore[union-attr]
    w.project.edits.relabel(ids[0], 1)
    w.project.edits.keep(ids[1])
    w.close()
    again = open_window(qtbot, settings, big_db)
    current = again.review.current_id()
    assert current is not None and again.project.images.image(current).status == "unreviewed"
    assert again.session.filter.status is None and again.view.currentIndex().row() >= 2
    again.close()

"""Nothing on screen is cut off at a laptop's 1366x768 or at 1920x1080 (issue 30): every
one-line text (a sort's plain words, a button, a check box, a label) fits its widget across
the window's width, the panels scroll rather than squash, and no chart carries a legend over
its bars (the members' key is a wrapped label under the chart)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import (
    QAbstractButton,
    QComboBox,
    QLabel,
    QStyle,
    QStyleOptionComboBox,
    QWidget,
)

from gui.main_window import MainWindow
from tests.gui.conftest import open_window


def _clipped(win: MainWindow) -> list[str]:
    """Every visible widget whose one line of text is wider than the room it has."""
    out = []
    for w in win.findChildren(QWidget):
        if not w.isVisibleTo(win) or w.width() <= 1:
            continue
        fm = w.fontMetrics()
        if isinstance(w, QComboBox):
            opt = QStyleOptionComboBox()
            w.initStyleOption(opt)
            room = w.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                            QStyle.SubControl.SC_ComboBoxEditField, w).width()
            if fm.horizontalAdvance(w.currentText()) > room:
                out.append(f"combo {w.objectName() or w.currentText()!r}: {fm.horizontalAdvance(w.currentText())} > {room}")
        elif isinstance(w, QAbstractButton) and w.text():
            if w.sizeHint().width() > w.width() + 1:
                out.append(f"button {w.text()!r}: needs {w.sizeHint().width()}, has {w.width()}")
        elif (isinstance(w, QLabel) and not w.wordWrap() and w.text() and "<" not in w.text()
              and fm.horizontalAdvance(w.text()) > w.contentsRect().width() + 1):
            out.append(f"label {w.text()!r}: {fm.horizontalAdvance(w.text())} > {w.contentsRect().width()}")
    return out


@pytest.mark.parametrize("size", [(1366, 768), (1920, 1080)])
def test_nothing_is_cut_off_at_a_laptop_screen_and_a_desktop_one(qtbot, settings, scored_db: Path, size) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, scored_db)
    w.resize(*size)
    qtbot.waitUntil(lambda: w.width() == size[0], timeout=5000)
    qtbot.wait(50)
    for i in range(w.filters.sort.count()):  # every sort the menu offers, in turn
        w.filters.sort.setCurrentIndex(i)
        assert _clipped(w) == [], (size, w.filters.sort.currentText())
    w.tabs.setCurrentIndex(1)  # the Overview
    qtbot.wait(50)
    assert _clipped(w) == [], size
    for plot in (w.overview.hist, w.overview.per_class, w.overview.matrix, w.overview.found, w.detail.chart):
        assert plot.getPlotItem().legend is None  # no legend drawn over the bars
        assert plot.height() >= 120 or not plot.isVisibleTo(w), plot.height()
    w.close()

"""Issue 20: the dataset's issues in the app: the health box of the overview and the filter."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from scoring.store import Project
from tests.gui.conftest import fake_scored, open_window


def test_the_health_box_counts_each_issue_and_a_click_lists_its_images(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = fake_scored(tmp_path, 10, 3)
    with Project.open(db) as p:
        ids = [int(i) for i in p.images.scorable_ids()]
        p.issues.put_issues([(ids[0], "blurry", 4.0), (ids[1], "blurry", 5.5), (ids[2], "dark", 3.1)])
    w = open_window(qtbot, settings, db)
    w.tabs.setCurrentWidget(w.overview_tab)
    qtbot.waitUntil(lambda: w.overview.issue_buttons["blurry"].text() == "blurry: 2", timeout=5000)
    assert w.overview.issue_buttons["dark"].text() == "dark: 1"
    assert not w.overview.issue_buttons["outlier"].isEnabled()  # none found: nothing to list
    qtbot.mouseClick(w.overview.issue_buttons["blurry"], Qt.MouseButton.LeftButton)
    assert w.session.filter.issue == "blurry" and w.filters.f_issue.currentData() == "blurry"
    assert w.model.rowCount() == 2
    assert {w.model.row_at(r).id for r in range(2)} == {ids[0], ids[1]}
    w.filters.f_issue.setCurrentIndex(w.filters.f_issue.findData("dark"))  # the panel's own box
    assert w.model.rowCount() == 1 and w.model.row_at(0).id == ids[2]
    w.filters.clear()
    assert w.session.filter.issue is None and w.model.rowCount() == 30
    w.close()

"""The annotator's screen (issue 30): an empty view says why and shows no stale image; undo and
redo show the image they changed, after a restart too; the counts follow every edit; an
unscored project says how to start."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt

from scoring.store import Project, QueueFilter
from tests.gui.conftest import fake_scored, open_window


def test_an_empty_view_says_why_and_clears_the_detail_pane(qtbot, settings, scored_db: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, scored_db)
    assert w.detail.info.text()  # an image is shown
    w.filters.f_search.setText("no-such-file")
    w.filters.f_search.returnPressed.emit()
    assert w.model.rowCount() == 0
    assert "No image matches the filters" in w.view.empty_text
    assert w.detail.info.text() == "" and "No image matches" in w.detail.image.text()
    assert w.detail.image.pixmap().isNull() and w.detail.image.wordWrap()  # the reason wraps, never clipped
    assert w.detail.chart.getAxis("bottom")._tickLevels == [[]]  # no stale class names under the chart
    qtbot.keyClick(w.view, Qt.Key.Key_Delete)  # a review key on an empty view acts on nothing
    assert w.project.queue.stats()["removed"] == 0
    w.close()


def test_undo_after_a_restart_shows_the_image_far_down_the_queue(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = fake_scored(tmp_path, 150, 3)  # 450 images: more than one page of the queue
    with Project.open(db) as p:
        far = int(p.queue.ranked_ids(QueueFilter(), "label_issue")[-1])  # the last image of the label view
        p.edits.remove(far)
    w = open_window(qtbot, settings, db)
    assert w.model.index_of(far).isValid() is False  # not loaded: pages down
    qtbot.keyClick(w.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert w.project.images.image(far).status == "unreviewed"
    assert w.review.current_id() == far  # the cursor is on it, the detail pane shows it
    assert w.project.images.image(far).path in w.detail.info.text()
    assert "removed 0" in w.review.stats_label.text()
    w.close()


def test_the_match_count_follows_an_edit_under_a_status_filter(qtbot, settings, scored_db: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, scored_db)
    w.filters.toggle_status("unreviewed")
    n = w.model.total()
    qtbot.keyClick(w.view, Qt.Key.Key_Return)  # keep: one fewer unreviewed
    assert w.review.count_label.text() == f"{n - 1:,} images match"
    qtbot.keyClick(w.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert w.review.count_label.text() == f"{n:,} images match"
    qtbot.keyClick(w.view, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert w.review.count_label.text() == f"{n - 1:,} images match"
    w.close()


def test_an_unscored_project_says_how_to_start(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from scoring.io.formats import open_dataset
    from tests.scoring.tinypool import make_imagefolder

    data = make_imagefolder(tmp_path / "data", per_class=3, corrupt=False)
    Project.create(tmp_path / "u.triage.db", open_dataset(data)).close()
    w = open_window(qtbot, settings, tmp_path / "u.triage.db")
    assert "not scored yet: Scoring ▸ Score…" in w.review.stats_label.text()
    assert "Not scored yet" in w.detail.info.text()
    w.close()


def test_the_export_dialog_remembers_this_projects_last_choices(qtbot, settings, scored_db: Path, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gui.dialogs import ExportDialog

    seen: list[dict] = []
    answers = iter([True, False])

    def run(self):  # type: ignore[no-untyped-def]
        seen.append(self.options())
        if not seen[1:]:  # the first time the user picks a destination, a format and no audit
            self.dest.setText(str(tmp_path / "out"))
            self.fmt.setCurrentIndex(self.fmt.count() - 1)
            self.audit.setChecked(False)
            self.force.setChecked(True)
        return next(answers)

    monkeypatch.setattr(ExportDialog, "exec", run)
    monkeypatch.setattr("gui.tasks.Tasks.start_export", lambda self, dest, **opts: None)
    w = open_window(qtbot, settings, scored_db)
    w.tasks.export_dialog()
    w.tasks.export_dialog()
    first, second = seen
    assert second["dest"] == tmp_path / "out" and first["dest"] != second["dest"]
    assert second["audit"] is False and second["fmt"] != first["fmt"]
    assert second["force"] is False  # replacing an earlier export is asked each time, never remembered
    w.close()


def test_the_score_dialog_remembers_this_projects_device_batch_and_runtime(qtbot, settings, scored_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gui.dialogs import ScoreDialog

    seen: list[tuple[str, int, str]] = []
    chosen: list[str] = []

    def run(self):  # type: ignore[no-untyped-def]
        seen.append((self.device.currentText(), self.batch.value(), self.runtime.currentText()))
        if len(seen) == 1:  # the first time the user picks a device, a batch size and the last runtime
            self.device.setCurrentText("cpu")
            self.batch.setValue(17)
            self.runtime.setCurrentIndex(self.runtime.count() - 1)
            chosen.append(self.runtime.currentText())
        return True

    monkeypatch.setattr(ScoreDialog, "exec", run)
    monkeypatch.setattr("gui.tasks.Tasks.start_scoring", lambda self, specs, **kw: None)
    w = open_window(qtbot, settings, scored_db)
    for n in (1, 2):
        w.tasks.score_dialog()
        qtbot.waitUntil(lambda n=n: len(seen) == n, timeout=60_000)
    assert seen[0][:2] == ("auto", 64)
    assert seen[1] == ("cpu", 17, chosen[0])
    w.close()


def test_a_damaged_remembered_choice_is_ignored(qtbot, settings, scored_db: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gui.dialogs import ExportDialog
    from gui.view_state import ViewState

    seen: list[dict] = []
    monkeypatch.setattr(ExportDialog, "exec", lambda self: seen.append(self.options()) or False)
    w = open_window(qtbot, settings, scored_db)
    key = ViewState.key(w.project.path)
    for damaged in ("not json", "[1, 2]", '{"dest": 5, "fmt": [1], "audit": "no"}'):
        settings.setValue(f"{key}/export", damaged)
        w.tasks.export_dialog()
    assert len(seen) == 3 and all(o == seen[0] for o in seen) and seen[0]["audit"] is True
    w.close()

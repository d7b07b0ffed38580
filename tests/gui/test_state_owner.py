"""Issue 27: one owner for the cursor, the decisions and every job's result.

After every background job (scoring, duplicates, re-rank, export, the errors estimate) the very
first review key acts, with no other key pressed first; typing into a filter box never decides
anything; a job's result lands only in the project it was started for. The cursor itself is the
Qt-free session's (tested without Qt at the end).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication, QComboBox, QLineEdit, QMessageBox, QSpinBox

from gui.main_window import MainWindow
from scoring.io.formats import open_dataset
from scoring.store import Project, project_for
from scoring.tasks.review import ReviewSession
from tests.gui.conftest import fake_scored, open_window
from tests.scoring.tinypool import make_imagefolder

SPECS = [{"name": "s", "kind": "scratch", "arch": "tiny_mlp", "epochs": 1, "folds": 2, "seeds": [0],
          "preprocess": {"size": 8}}]


def _key_acts(qtbot, w: MainWindow, key: Qt.Key = Qt.Key.Key_Return) -> None:  # type: ignore[no-untyped-def]
    """Press one review key where the keyboard would send it, and check the project file got it."""
    before = len(w.project.edits.entries())
    target = QApplication.focusWidget() or w.focusWidget()
    assert target is not None and target.window() is w, f"the key would go to {target}"
    shown = w.review.current_id()
    assert shown is not None, f"no image under the cursor: {w.statusBar().currentMessage()}"
    qtbot.keyClick(target, key)
    with Project.open(w.project.path) as p:  # the file, read by another connection
        entries = p.edits.entries()
    assert len(entries) == before + 1 and entries[-1].image_id == shown, w.statusBar().currentMessage()


def _unscored(tmp_path: Path, name: str, per_class: int = 6) -> Path:
    data = make_imagefolder(tmp_path / name, per_class=per_class, corrupt=False)
    shutil.copy(data / "red" / "000.png", data / "blue" / "copy.png")  # a duplicate group to find
    db = tmp_path / f"{name}.triage.db"
    Project.create(db, open_dataset(data)).close()
    return db


def test_the_first_key_after_scoring_and_the_duplicate_search_acts(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, _unscored(tmp_path, "d"))
    assert w.tasks.start_scoring(SPECS, batch_size=4) is not None
    qtbot.waitUntil(lambda: not w.jobs.busy and w.project.dupes.duplicates_searched(), timeout=120_000)
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=60_000)  # the duplicate search that follows, then its reload
    _key_acts(qtbot, w)
    w.close()


@pytest.mark.parametrize("job", ["duplicates", "rerank", "export", "estimate"])
def test_the_first_key_after_each_job_acts(qtbot, settings, tmp_path: Path, job: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from scoring.engine.inference import score_project
    from scoring.progress import drain
    from tests.scoring.tinypool import head_pool

    data = make_imagefolder(tmp_path / "data", per_class=8, corrupt=False)
    db = project_for(data, tmp_path / "p.triage.db")
    drain(score_project(db, pool=head_pool(["blue", "green", "red"]), workers=0))
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: None)  # the export's report
    w = open_window(qtbot, settings, db)
    for _ in range(3):
        _key_acts(qtbot, w)
    w.review.select(w.model.index(5, 0))
    if job == "duplicates":
        assert w.tasks.start_duplicates() is not None
    elif job == "rerank":
        assert w.review.start_rerank() is not None
    elif job == "export":
        assert w.tasks.start_export(tmp_path / "out", fmt="imagefolder", link="copy", audit=True, force=False)
    if job == "estimate":
        with qtbot.waitSignal(w.review.estimates.ready, timeout=30_000):
            w.review._estimate_async()
    else:
        qtbot.waitUntil(lambda: not w.jobs.busy, timeout=120_000)
    qtbot.wait(50)  # the result's slots have run
    _key_acts(qtbot, w)
    w.close()


def test_typing_into_every_filter_box_never_decides(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    w = open_window(qtbot, settings, fake_scored(tmp_path, 6, 3))
    before = len(w.project.edits.entries())
    spins = [b for b in w.filters.findChildren(QSpinBox)] + [w.filters.f_min, w.filters.f_max]
    texts = [e for e in w.filters.findChildren(QLineEdit) if not isinstance(e.parent(), (QSpinBox, QComboBox))
             and e.isVisibleTo(w)]
    assert w.filters.f_search in texts and len(spins) >= 2
    for box in spins:
        box.setFocus()
        box.lineEdit().selectAll()
        qtbot.keyClicks(box, "1.2")
        qtbot.wait(30)
        assert len(w.project.edits.entries()) == before, f"typing into {box} decided an image"
        assert QApplication.focusWidget() in (box, box.lineEdit(), None) or w.focusWidget() is box
    for edit in texts:
        edit.setFocus()
        qtbot.keyClicks(edit, "blue 12")
        qtbot.wait(300)  # the search filters as you type, after 250 ms
        assert len(w.project.edits.entries()) == before, f"typing into {edit} decided an image"
        qtbot.keyClick(edit, Qt.Key.Key_Escape)  # the keys go back to the queue
    w.filters.clear()
    _key_acts(qtbot, w)  # and then the review keys act
    w.close()


def test_a_job_result_lands_only_in_its_own_project(qtbot, settings, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    a = _unscored(tmp_path, "a")
    b = fake_scored(tmp_path / "b", 4, 2)
    with Project.open(b) as p:
        b_scores = [(r.id, r.scores) for r in p.queue.page(limit=100)]
        b_edits = len(p.edits.entries())
    w = open_window(qtbot, settings, a)
    asked: list[str] = []

    def let_it_finish(self, box):  # type: ignore[no-untyped-def]
        asked.append(box.windowTitle())
        return next(btn for btn in box.buttons() if btn.text() == "Let it finish in its own file")

    monkeypatch.setattr(MainWindow, "_ask", let_it_finish)
    assert w.tasks.start_scoring(SPECS, batch_size=2) is not None
    assert w.open_project(b, ask_resume=False)
    assert asked == ["Scoring is running"] and w.project.path == b
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=120_000)
    qtbot.wait(100)
    assert w.project.path == b and not w.jobs.busy  # no duplicate search was started for b
    with Project.open(b) as p:
        assert [(r.id, r.scores) for r in p.queue.page(limit=100)] == b_scores
        assert not p.dupes.duplicates_searched() and len(p.edits.entries()) == b_edits
    with Project.open(a) as p:
        assert p.runs.history()[-1]["status"] == "done"
        assert all(r.scores["c_perplexity"] is not None for r in p.queue.page(limit=100))
    _key_acts(qtbot, w)
    w.close()


def test_staying_keeps_the_job_and_cancelling_stops_it(qtbot, settings, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import threading
    import time

    from scoring.progress import Progress

    a = fake_scored(tmp_path / "a", 4, 1)
    b = fake_scored(tmp_path / "b", 4, 2)
    w = open_window(qtbot, settings, a)
    answer = {"text": "Stay here"}
    monkeypatch.setattr(MainWindow, "_ask", lambda self, box: next(
        btn for btn in box.buttons() if btn.text() == answer["text"]))
    release, got = threading.Event(), []

    def job(cancel: threading.Event):  # type: ignore[no-untyped-def]
        while not release.is_set() and not cancel.is_set():
            yield Progress("score", 0, 1)
            time.sleep(0.01)
        return "result"

    w.jobs.run(job, "Scoring", got.append)
    assert not w.open_project(b, ask_resume=False) and w.project.path == a and w.jobs.busy
    answer["text"] = "Cancel it and open"
    assert w.open_project(b, ask_resume=False) and w.project.path == b
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=30_000)
    assert got == []  # cancelled, and in any case not b's
    release.set()
    w.close()


def test_closing_during_any_job_asks_and_a_cancel_is_no_failure(qtbot, settings, tmp_path: Path, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """Issue 30: closing during a re-rank asked nothing and printed a traceback (Cancelled)."""
    import threading
    import time

    from scoring.progress import Cancelled, Progress

    w = open_window(qtbot, settings, fake_scored(tmp_path, 4, 1))
    asked: list[str] = []
    answer = {"text": "Keep it running"}

    def ask(self, box):  # type: ignore[no-untyped-def]
        asked.append(box.windowTitle())
        return next(btn for btn in box.buttons() if btn.text() == answer["text"])

    monkeypatch.setattr(MainWindow, "_ask", ask)

    def job(cancel: threading.Event):  # type: ignore[no-untyped-def]
        while True:
            yield Progress("rerank", 0, 1)
            if cancel.is_set():
                raise Cancelled("cancelled")  # as the core's check_cancel does
            time.sleep(0.01)

    w.jobs.run(job, "Re-ranking", lambda _out: None)
    w.close()
    assert asked == ["Re-ranking is running"] and w.isVisible() and w.jobs.busy  # kept: nothing stopped
    answer["text"] = "Stop and close"
    w.close()
    assert not w.isVisible()
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=30_000)  # its thread has ended; the signal says so
    assert "worker failed" not in caplog.text


# ----------------------------------------------------------------------------- the cursor, without Qt


def test_the_session_owns_the_cursor_through_a_reload(tmp_path: Path) -> None:
    db = fake_scored(tmp_path, 4, 0)
    with Project.open(db) as p:
        s = ReviewSession(p)
        rows = s.page()
        s.move_to(rows[5].id, 5)
        shown = {r.id: n for n, r in enumerate(rows)}
        assert s.cursor_after_reload(shown.get, len(rows)) == 5  # still shown: the same image
        del shown[rows[5].id]
        assert s.cursor_after_reload(shown.get, len(rows) - 1) == 5  # gone: the next one, now on its row
        assert s.cursor_after_reload(lambda _i: None, 3) == 2  # fewer rows: the last
        assert s.cursor_after_reload(shown.get, 0) is None  # nothing shown
        assert s.current == rows[5].id  # a reload never loses it


def test_no_job_thread_or_quit_hook_outlives_its_job(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from PySide6.QtCore import SIGNAL

    from gui.worker import live_jobs
    from scoring.progress import Progress

    w = open_window(qtbot, settings, fake_scored(tmp_path, 4, 0))
    app = QApplication.instance()
    hooks = None
    def job(cancel):  # type: ignore[no-untyped-def]
        yield Progress("score", 0, 1)
        return "done"

    for _ in range(3):
        w.jobs.run(job, "Testing", lambda _v: None)
        qtbot.waitUntil(lambda: not w.jobs.busy, timeout=30_000)
        qtbot.waitUntil(lambda: live_jobs() == 0, timeout=10_000)  # the thread is gone with its job
        now = app.receivers(SIGNAL("aboutToQuit()"))
        hooks = now if hooks is None else hooks
        assert now == hooks  # one hook for all jobs, not one more per job
    w.close()


def test_the_score_dialog_reads_the_dataset_off_the_gui_thread(qtbot, settings, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from gui.dialogs import ScoreDialog

    shown: list[int] = []
    monkeypatch.setattr(ScoreDialog, "exec", lambda self: shown.append(self.builder.list.count()) or 0)
    w = open_window(qtbot, settings, _unscored(tmp_path, "d"))
    with qtbot.waitSignal(w.tasks._survey.done, timeout=60_000):
        w.tasks.score_dialog()
        assert "Reading" in w.statusBar().currentMessage() and not shown  # not yet: the walk runs elsewhere
    qtbot.waitUntil(lambda: bool(shown), timeout=10_000)
    assert shown[0] >= 1  # the dialog opened with the automatic pool
    _key_acts(qtbot, w)  # and the keys still act
    w.close()


def test_a_decision_moves_on_to_the_next_image_still_to_review(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue 30: after a re-rank decided images sit between the others, and the key after one
    removed an image already removed (the demo under Xvfb: image 870 removed twice). A decision
    skips the decided rows; the key after it acts on an image still to review."""
    w = open_window(qtbot, settings, fake_scored(tmp_path, 6, 3))
    ids = [w.model.row_at(n).id for n in range(4)]  # type: ignore[union-attr]
    w.project.edits.keep(ids[1])
    w.project.edits.remove(ids[2])  # decided elsewhere (another window, a merge): rows 1 and 2 are done
    w.model.reload()
    w.review.select(w.model.index(0, 0))
    _key_acts(qtbot, w)
    assert w.review.current_id() == ids[3] and w.session.current_row == 3
    _key_acts(qtbot, w, Qt.Key.Key_Delete)
    assert [e.image_id for e in w.project.edits.entries()][-2:] == [ids[0], ids[3]]


def test_the_session_says_where_a_decision_sends_the_cursor() -> None:
    statuses = ["kept", "unreviewed", "removed", "kept", "unreviewed"]

    def status_of(n: int) -> str | None:
        return statuses[n] if n < len(statuses) else None

    session = ReviewSession.__new__(ReviewSession)  # the rule reads nothing of the project
    assert session.row_after_decision(1, status_of) == 4  # past two decided rows
    assert session.row_after_decision(4, status_of) is None  # the end
    assert session.row_after_decision(1, status_of, look=2) == 2  # none within the look: the next row
    statuses[4] = "kept"
    assert session.row_after_decision(1, status_of) == 2  # none left to review: the next row


def test_ctrl_f_goes_to_the_search_and_what_is_typed_next_decides_nothing(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A keys-only trial pressed Ctrl+F (bound to nothing) and typed 12: two images relabelled."""
    from PySide6.QtCore import Qt

    w = open_window(qtbot, settings, fake_scored(tmp_path, 6, 3))
    w.view.setFocus()
    before = len(w.project.edits.entries())
    qtbot.keyClick(w.view, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: w.filters.f_search.hasFocus(), timeout=10_000)
    qtbot.keyClicks(w.filters.f_search, "12")
    qtbot.wait(30)
    assert w.filters.f_search.text() == "12" and len(w.project.edits.entries()) == before
    w.close()


def test_the_errors_left_number_shown_is_kept_across_a_restart(qtbot, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The window keeps the number it showed (in its settings, per project); reopened on the same
    scores it starts from it, so the model's higher number for the same decisions stays held."""
    from scoring.tasks.estimate import ErrorsLeft

    db = fake_scored(tmp_path, 6, 3)
    w = open_window(qtbot, settings, db)
    w.review._on_estimated((w.project.path, ErrorsLeft(30.0, 0, 0, 12.0, 5.0, 25.0, 3.0, unreviewed=18)))
    assert "about 12 (5-25) errors left" in w.review.stats_label.text()
    w.close()
    again = open_window(qtbot, settings, db)
    again.review._on_estimated((again.project.path, ErrorsLeft(30.0, 0, 0, 14.0, 6.0, 28.0, 3.0, unreviewed=18)))
    assert "about 12 (5-25) errors left" in again.review.stats_label.text()
    again.close()


@pytest.mark.parametrize("kept", ["not json", "[" * 100_000, '{"scores": 1}', "[1, 2]"])
def test_a_damaged_kept_number_is_ignored_and_the_models_is_shown(qtbot, settings, tmp_path: Path, kept: str) -> None:  # type: ignore[no-untyped-def]
    from gui.view_state import ViewState
    from scoring.tasks.estimate import ErrorsLeft

    db = fake_scored(tmp_path, 6, 3)
    settings.setValue(ViewState.key(db) + "/errors_left", kept)
    w = open_window(qtbot, settings, db)
    w.review._on_estimated((w.project.path, ErrorsLeft(30.0, 0, 0, 14.0, 6.0, 28.0, 3.0, unreviewed=18)))
    assert "about 14 (6-28) errors left" in w.review.stats_label.text()
    w.close()

"""The review controller: the annotator's decisions as calls into the core (scoring.tasks.review), and
what follows them: the selection and the detail pane, the status line, the errors-left estimate
and the re-ranking of the queue every few decisions. The window composes one and hands it what
it needs (the queue view, the detail pane, the jobs runner, a way to ask and to say)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QObject, QSettings, Signal
from PySide6.QtWidgets import QInputDialog, QLabel, QMessageBox, QWidget

from gui.detail import DetailPane
from gui.estimates import Estimates
from gui.jobs import Jobs
from gui.queue_model import ReviewQueueModel
from gui.queue_view import QueueView
from gui.view_state import ViewState
from gui.worker import imported_on_call
from scoring.errors import ImageTriageError
from scoring.store import Edit, Project
from scoring.tasks.estimate import ErrorsLeft
from scoring.tasks.review import ReviewSession

rerank = imported_on_call("scoring.tasks.rerank", "rerank")  # on the job's thread when a re-rank starts

log = logging.getLogger(__name__)

Ask = Callable[[QMessageBox], Any]  # modal question -> the button clicked
Say = Callable[[str, int], None]  # status bar message, milliseconds


class ReviewController(QObject):
    """Holds the open project's session and queue model; every key of the queue view lands here."""

    decided = Signal()  # a decision, an undo or an estimate: what the overview plots moves

    def __init__(self, window: QWidget, view: QueueView, detail: DetailPane, jobs: Jobs, settings: QSettings,
                 ask: Ask, say: Say):
        super().__init__(window)
        self.window, self.view, self.detail, self.jobs = window, view, detail, jobs
        self.settings, self.ask, self.say = settings, ask, say
        self.session: ReviewSession | None = None
        self.model: ReviewQueueModel | None = None
        self.members: list[dict[str, Any]] = []
        # suggest stopping when the next 100 images of the queue hold fewer expected errors than this
        self.stop_below = float(settings.value("stop_below", 1.0))  # type: ignore[arg-type]
        # re-rank the queue (refit the pool's heads on the decisions) after this many decisions; 0 = never
        self.rerank_every = int(settings.value("rerank_every", 20))  # type: ignore[call-overload]
        self.last_rerank: Any = None
        self.stats_label = QLabel()
        self.count_label = QLabel()
        self.estimates = Estimates(self)
        self.estimates.ready.connect(self._on_estimated)
        for signal, slot in ((view.relabelRequested, self._on_relabelRequested), (view.removeRequested, self.remove),
                             (view.keepRequested, self.keep), (view.pickRequested, self.pick),
                             (view.keepGroupRequested, self.keep_group), (view.undoRequested, self.undo),
                             (view.redoRequested, self.redo)):
            signal.connect(slot)

    @property
    def project(self) -> Project | None:
        """The open project: the session's."""
        return self.session.project if self.session is not None else None

    def attach(self, session: ReviewSession, model: ReviewQueueModel) -> None:
        """A newly opened project: its session and queue model."""
        self.session, self.model = session, model
        self.view.setModel(model)
        self.view.selectionModel().currentChanged.connect(self.on_current_changed)
        model.reloaded.connect(self._on_reloaded)

    def _resume_shown(self) -> None:
        """The first estimate of a session: start from the number shown before a restart (the
        session keeps it only for the scores the project has now)."""
        assert self.session is not None
        raw = self.settings.value(self._shown_key())
        try:
            self.session.resume_shown(json.loads(str(raw)) if raw else None)
        except (ValueError, RecursionError):  # another program's or a hand's edit of the settings
            log.info("the errors-left number kept for %s is not JSON: ignored", self.session.project.path)

    def _shown_key(self) -> str:
        assert self.session is not None
        return ViewState.key(self.session.project.path) + "/errors_left"

    def detach(self) -> None:
        self.session, self.model = None, None

    # --- the cursor: the session's; Qt's selection only shows it ------------------------------

    def select(self, index: QModelIndex) -> None:
        if index.isValid():
            self.view.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.view.scroll_to_current()

    def select_first_unreviewed(self) -> None:
        """The first image still to review in the current order (else the first)."""
        if self.model is not None:
            self.select(self.model.first_unreviewed())

    def current_id(self) -> int | None:
        """The image the keys act on: the session's cursor, when the queue shows it."""
        session, model = self.session, self.model
        if session is None or model is None or session.current is None:
            return None
        return session.current if model.index_of(session.current).isValid() else None

    def _on_reloaded(self) -> None:
        """A reload (a filter, a job's result, a re-rank) wiped Qt's current index: put the
        session's cursor back (the same image, else the next one in the order)."""
        session, model = self.session, self.model
        if session is None or model is None:
            return
        look = max(1000, session.current_row + 400)  # it was near its old row: no need to page through a million
        while model.rowCount() <= session.current_row and model.canFetchMore(QModelIndex()):
            model.fetchMore(QModelIndex())  # its old row is loaded, for when it left the view
        row = session.cursor_after_reload(lambda i: model.find(i, look), model.rowCount())
        self.view.empty_text = self.why_no_image() if model.rowCount() == 0 else ""
        if row is None:  # nothing to show: the pane says why, and no stale image stays in it
            session.move_to(None)
            self.detail.clear(self.view.empty_text or "No image selected")
            return
        self.select(model.index(row, 0))

    def on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self.model is None or self.project is None or self.session is None:
            return
        row = self.model.row_at(current.row())
        if row is None:  # a reset under way: the session keeps the cursor, the reload puts it back
            return
        self.session.move_to(row.id, current.row())
        self.detail.show_row(self.project, row, self.members)

    def why_no_image(self) -> str:
        """What the status bar says when a review key finds no image to act on."""
        if self.model is None or self.session is None:
            return "No project is open: File ▸ Open"
        if self.model.rowCount() == 0:
            return "No image matches the filters: Clear filters (or Ctrl+U) to see images"
        return "No image is selected: click one, or press Down"

    def selected_ids(self) -> list[int]:
        """The images selected with Shift/Ctrl+click (the current one alone when one is)."""
        if self.model is None:
            return []
        model = self.model
        rows = sorted({i.row() for i in self.view.selectionModel().selectedIndexes()})
        return [r.id for r in (model.row_at(n) for n in rows) if r is not None]

    # --- actions: every decision is a call into the core -----------------------------------

    def _act(self, do: Callable[[int], Edit], advance: bool = True) -> Edit | None:
        image_id = self.current_id()
        if self.model is None or image_id is None:
            self.say(f"That key did nothing. {self.why_no_image()}", 5000)
            return None
        try:
            edit = do(image_id)
        except (ImageTriageError, ValueError) as exc:
            QMessageBox.warning(self.window, "Not saved", str(exc))
            return None
        idx = self.model.refresh_row(image_id)
        self.update_status()  # after the row is re-read: the match count follows the edit
        if advance and self.session is not None:
            nxt = self.session.row_after_decision(idx.row(), self._status_at)
            if nxt is not None:
                self.select(self.model.index(nxt, 0))
                return edit
        self.on_current_changed(idx, idx)
        return edit

    def _status_at(self, n: int) -> str | None:
        """The status the queue shows at row ``n`` (fetching its page), None past the end."""
        model = self.model
        if model is None:
            return None
        while n >= model.rowCount() and model.canFetchMore(QModelIndex()):
            model.fetchMore(QModelIndex())
        row = model.row_at(n)
        return None if row is None else row.status

    def decide(self, action: str, label: int | None = None) -> Edit | None:
        """One key on the current image, or on every selected image as one decision (asked first)."""
        session, project, model = self.session, self.project, self.model
        if session is None or project is None or model is None:
            self.say(f"That key did nothing. {self.why_no_image()}", 5000)
            return None
        ids = self.selected_ids()
        if len(ids) <= 1:
            return self._act(lambda i: session.act(action, i, label))
        what = {"relabel": f"relabel as «{project.classes[label]}»" if label is not None else "relabel",
                "remove": "remove", "keep": "keep the labels of"}[action]
        many_question = QMessageBox(
            QMessageBox.Icon.Question, f"{what.capitalize()} {len(ids)} images?",
            f"{what.capitalize()} the {len(ids)} selected images? One decision: Ctrl+Z undoes it whole.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self.window)
        yes = many_question.button(QMessageBox.StandardButton.Yes)
        answer = self.ask(many_question)
        if answer is not yes:
            return None
        try:
            edit = project.edits.decide_many(action, ids, label)
        except (ImageTriageError, ValueError) as exc:
            QMessageBox.warning(self.window, "Not saved", str(exc))
            return None
        for i in ids:
            model.refresh_row(i)
        self.update_status()
        self.say(f"{what.capitalize()} {len(ids)} images (one decision: Ctrl+Z undoes it)", 5000)
        idx = model.index_of(ids[-1])
        if idx.isValid() and idx.row() + 1 < model.rowCount():
            self.select(model.index(idx.row() + 1, 0))
        return edit

    def relabel_current(self, label: int) -> Edit | None:
        return self.decide("relabel", label)

    def _on_relabelRequested(self, label: int) -> None:
        if self.project is not None and label < len(self.project.classes):
            self.relabel_current(label)

    def remove(self) -> None:
        self.decide("remove")

    def keep(self) -> None:
        self.decide("keep")

    def keep_group(self) -> None:
        """Keep this image, remove the rest of its duplicate group: one decision (one undo)."""
        current, project, session = self.current_id(), self.project, self.session
        if project is None or session is None or current is None:
            return
        group = project.dupes.group_of(current)
        if len(group) < 2:
            self.say("This image is in no duplicate group (Scoring ▸ Find duplicates)", 4000)
            return
        remove, why = project.edits.keep_group_plan(current)
        if not remove:  # issue 30: it offered to "remove 0 unreviewed image(s)"
            self.say(f"The other {len(group) - 1} of its group are already decided: nothing to remove "
                     "(Enter keeps this image)", 6000)
            return
        if why is not None:  # many at once, or a label the pool doubts: ask first
            keep_group_question = QMessageBox(
                QMessageBox.Icon.Question, "Keep this image and remove its duplicates?",
                f"Keep this image and remove {len(remove)} unreviewed image(s) of its group of {len(group)}?\n\n"
                f"Asked because {why}. Images you already decided are left as they are; Ctrl+Z undoes it all.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self.window)
            keep_group_question.setDefaultButton(QMessageBox.StandardButton.Cancel)
            yes = keep_group_question.button(QMessageBox.StandardButton.Yes)
            answer = self.ask(keep_group_question)
            if answer is not yes:
                self.say("Nothing removed", 3000)
                return
        edit = self._act(lambda i: session.act("keep_group", i))
        if edit is not None and self.model is not None:
            for other in group:
                self.model.refresh_row(other)
            self.say(f"Kept this image, removed {len(remove)} of its group of {len(group)} (Ctrl+Z undoes it all)", 4000)

    def restore(self) -> None:
        session = self.session
        if session is not None:
            self._act(lambda i: session.act("restore", i), advance=False)

    def pick(self) -> None:
        if self.project is None or not self.project.classes:
            return
        classes = self.project.classes
        row = self.model.row_at(self.view.currentIndex().row()) if self.model else None
        current = row.current_label if row is not None and row.current_label is not None else 0
        name, ok = QInputDialog.getItem(self.window, "Relabel", "Class (type to search):", classes, current, True)
        if ok and name in classes:
            self.relabel_current(classes.index(name))

    def _undo_redo(self, which: str) -> None:
        session, project, model = self.session, self.project, self.model
        if session is None or project is None or model is None:
            return
        edit = session.undo() if which == "undo" else session.redo()
        if edit is None:
            self.say(f"Nothing to {which}", 3000)
            return
        for other in project.edits.batch_images(edit.batch) if edit.batch is not None else ():
            model.refresh_row(other)  # a decision on several images: every one changed
        model.find(edit.image_id, max(5000, session.current_row + 400))  # after a restart it may be pages down
        idx = model.refresh_row(edit.image_id)
        path = project.images.image(edit.image_id).path
        if idx.isValid():  # the image it changed is shown, and the cursor goes to it
            self.select(idx)
            self.on_current_changed(idx, idx)
            self.say(f"{which.capitalize()}: {path}", 3000)
        else:  # outside this view's filters: shown in the detail pane all the same
            self.detail.show_row(project, project.queue.queue_row(edit.image_id), self.members)
            self.say(f"{which.capitalize()}: {path} (not in this view: Clear filters to find it in the queue)", 6000)
        self.update_status()

    def undo(self) -> None:
        self._undo_redo("undo")

    def redo(self) -> None:
        self._undo_redo("redo")

    def update_status(self) -> None:
        session = self.session
        if session is None:
            return
        text = session.status_text()  # counts kept by the store's triggers
        if session.estimate_due():
            self._estimate_async()
        est = session.estimate
        self.stats_label.setToolTip(est.detail() if est is not None else "")
        if est is not None:
            text += f" · {est.line()}"
            if est.suggests_stop(self.stop_below):
                text += f" · the next 100 hold about {est.next_100:.1f}: you could stop here"
        self.stats_label.setText(text)
        self.decided.emit()  # a decision or an estimate: the found-so-far plot moves
        if self.model is not None:
            self.count_label.setText(f"{self.model.total():,} images match")
        if session.rerank_due(self.rerank_every) and not self.jobs.busy:
            self.start_rerank()

    # --- the queue that learns --------------------------------------------------------------

    def review_settings(self) -> None:
        from gui.dialogs import ReviewSettingsDialog

        dlg = ReviewSettingsDialog(self.stop_below, self.rerank_every, self.window)
        if dlg.exec():
            self.set_review_settings(*dlg.values())

    def set_review_settings(self, stop_below: float, rerank_every: int) -> None:
        """Use and remember the stop threshold and the re-rank interval."""
        self.stop_below, self.rerank_every = float(stop_below), int(rerank_every)
        self.settings.setValue("stop_below", self.stop_below)
        self.settings.setValue("rerank_every", self.rerank_every)
        self.update_status()

    def start_rerank(self) -> Any:
        """Refit the pool's heads on the decisions so far and re-rank the unreviewed images."""
        if self.project is None or self.session is None or self.jobs.busy:
            return None
        self.session.reranked()  # not due again until the next batch of decisions
        path, sort = self.project.path, self.session.label_sort
        return self.jobs.run(lambda cancel: rerank(path, sort, cancel=cancel), "Re-ranking", self._on_rerank_returned,
                             self._on_rerank_errored)

    def _on_rerank_errored(self, exc: BaseException) -> None:
        """Not a dialog every 20 decisions: say it once in the status bar and stop re-ranking."""
        self.rerank_every = 0
        self.say(f"Re-ranking stopped: {exc} (Scoring ▸ Re-rank to try again)", 15_000)

    def _on_rerank_returned(self, out: Any) -> None:
        if self.session is None or self.model is None:
            return
        if not out.refitted:
            self.rerank_every = 0  # nothing to refit in this pool: stop asking
            self.say(out.line(), 8000)
            return
        self.session.rerank_finished(out.seconds)  # rest in proportion before the next automatic one
        # What the annotator has gone through (every row down to the cursor) stays where it is; the
        # new order continues below it. The cursor stays on the image on screen, or, when that one
        # is decided, goes to the next one still to review.
        self.model.reload_keeping(self.session.rows_to_keep())
        current = self.current_id()
        project = self.project
        if project is not None and (current is None or project.images.image(current).status != "unreviewed"):
            nxt = self.session.row_after_decision(self.session.current_row, self._status_at)
            if nxt is not None:
                self.select(self.model.index(nxt, 0))
        self.update_status()
        self.last_rerank = out
        self.say(out.line(), 10_000)

    def _estimate_async(self) -> None:
        """Recompute the errors-left estimate on a pool thread (it reads every score)."""
        if self.project is None or self.session is None:
            return
        self.session.estimate_requested()
        self.estimates.start(self.project.path, self.session.label_sort)

    def _on_estimated(self, result: tuple[Path, ErrorsLeft | None]) -> None:
        path, estimate = result
        if self.session is None or self.project is None or path != self.project.path:
            log.info("an errors-left estimate for %s arrived after it was closed: dropped", path)
            return
        if self.session.shown_state() is None:
            self._resume_shown()
        self.session.set_estimate(estimate)
        state = self.session.shown_state()
        if state is not None:
            self.settings.setValue(self._shown_key(), json.dumps(state))
        self.update_status()

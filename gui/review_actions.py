"""The annotator's decisions, as calls into the core (scoring.review), and what follows them:
the status line, the errors-left estimate and the re-ranking of the queue every few decisions.
A mixin of MainWindow, kept apart so each reads in a sitting."""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QModelIndex
from PySide6.QtWidgets import QInputDialog, QMessageBox

from gui.background import BackgroundJobs
from scoring.errors import ImageTriageError
from scoring.store import Edit

log = logging.getLogger(__name__)


class ReviewActions(BackgroundJobs):
    # --- actions: every decision is a call into the core -----------------------------------

    def _act(self, do: Any, advance: bool = True) -> Edit | None:
        if self.project is None or self.model is None:
            return None
        image_id = self.current_id()
        if image_id is None:
            return None
        try:
            edit = do(image_id)
        except (ImageTriageError, ValueError) as exc:
            QMessageBox.warning(self, "Not saved", str(exc))
            return None
        self._update_status()
        idx = self.model.refresh_row(image_id)
        if advance:
            nxt = idx.row() + 1
            if nxt >= self.model.rowCount() and self.model.canFetchMore(QModelIndex()):
                self.model.fetchMore(QModelIndex())
            if nxt < self.model.rowCount():
                self._select(self.model.index(nxt, 0))
                return edit
        self._on_currentChanged(idx, idx)
        return edit

    def selected_ids(self) -> list[int]:
        """The images selected with Shift/Ctrl+click (the current one alone when one is)."""
        if self.model is None:
            return []
        rows = sorted({i.row() for i in self.view.selectionModel().selectedIndexes()})
        return [r.id for r in (self.model.row_at(n) for n in rows) if r is not None]

    def _decide(self, action: str, label: int | None = None) -> Edit | None:
        """One key on the current image, or on every selected image as one decision (asked first)."""
        ids = self.selected_ids()
        if len(ids) <= 1 or self.project is None or self.model is None:
            return self._act(lambda i: self.session.act(action, i, label))
        what = {"relabel": f"relabel as «{self.project.classes[label]}»" if label is not None else "relabel",
                "remove": "remove", "keep": "keep the labels of"}[action]
        self.many_question = QMessageBox(
            QMessageBox.Icon.Question, f"{what.capitalize()} {len(ids)} images?",
            f"{what.capitalize()} the {len(ids)} selected images? One decision: Ctrl+Z undoes it whole.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
        yes = self.many_question.button(QMessageBox.StandardButton.Yes)
        answer = self._ask(self.many_question)
        self.many_question = None
        if answer is not yes:
            return None
        try:
            edit = self.project.decide_many(action, ids, label)
        except (ImageTriageError, ValueError) as exc:
            QMessageBox.warning(self, "Not saved", str(exc))
            return None
        for i in ids:
            self.model.refresh_row(i)
        self._update_status()
        self.statusBar().showMessage(f"{what.capitalize()} {len(ids)} images (one decision: Ctrl+Z undoes it)", 5000)
        idx = self.model.index_of(ids[-1])
        if idx.isValid() and idx.row() + 1 < self.model.rowCount():
            self._select(self.model.index(idx.row() + 1, 0))
        return edit

    def relabel_current(self, label: int) -> Edit | None:
        assert self.project is not None
        return self._decide("relabel", label)

    def _on_relabelRequested(self, label: int) -> None:
        if self.project is not None and label < len(self.project.classes):
            self.relabel_current(label)

    def _on_removeRequested(self) -> None:
        self._decide("remove")

    def _on_keepRequested(self) -> None:
        self._decide("keep")

    def _on_keepGroupRequested(self) -> None:
        """Keep this image, remove the rest of its duplicate group: one decision (one undo)."""
        if self.project is None or self.current_id() is None:
            return
        current = self.current_id()
        assert current is not None
        group = self.project.group_of(current)
        if len(group) < 2:
            self.statusBar().showMessage("This image is in no duplicate group (Scoring ▸ Find duplicates)", 4000)
            return
        remove, why = self.project.keep_group_plan(current)
        if why is not None:  # many at once, or a label the pool doubts: ask first
            self.keep_group_question = QMessageBox(
                QMessageBox.Icon.Question, "Keep this image and remove its duplicates?",
                f"Keep this image and remove {len(remove)} unreviewed image(s) of its group of {len(group)}?\n\n"
                f"Asked because {why}. Images you already decided are left as they are; Ctrl+Z undoes it all.",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel, self)
            self.keep_group_question.setDefaultButton(QMessageBox.StandardButton.Cancel)
            yes = self.keep_group_question.button(QMessageBox.StandardButton.Yes)
            answer = self._ask(self.keep_group_question)
            self.keep_group_question = None
            if answer is not yes:
                self.statusBar().showMessage("Nothing removed", 3000)
                return
        edit = self._act(lambda i: self.session.act("keep_group", i))
        if edit is not None and self.model is not None:
            for other in group:
                self.model.refresh_row(other)
            self.statusBar().showMessage(f"Kept this image, removed {len(remove)} of its group of {len(group)} "
                                         "(Ctrl+Z undoes it all)", 4000)

    def _on_restore(self) -> None:
        self._act(lambda i: self.session.act("restore", i), advance=False)

    def _on_pickRequested(self) -> None:
        if self.project is None or not self.project.classes:
            return
        row = self.model.row_at(self.view.currentIndex().row()) if self.model else None
        current = row.current_label if row is not None and row.current_label is not None else 0
        name, ok = QInputDialog.getItem(self, "Relabel", "Class (type to search):", self.project.classes, current, True)
        if ok and name in self.project.classes:
            self.relabel_current(self.project.classes.index(name))

    def _undo_redo(self, which: str) -> None:
        if self.project is None or self.model is None:
            return
        edit = getattr(self.session, which)()
        if edit is None:
            self.statusBar().showMessage(f"Nothing to {which}", 3000)
            return
        self._update_status()
        for other in self.project.batch_images(edit.batch) if edit.batch is not None else ():
            self.model.refresh_row(other)  # a decision on several images: every one changed
        idx = self.model.refresh_row(edit.image_id)
        if idx.isValid():
            self._select(idx)
            self._on_currentChanged(idx, idx)
        self.statusBar().showMessage(f"{which.capitalize()}: {self.project.image(edit.image_id).path}", 3000)

    def _on_undo(self) -> None:
        self._undo_redo("undo")

    def _on_redo(self) -> None:
        self._undo_redo("redo")

    def _update_status(self) -> None:
        if self.project is None:
            return
        text = self.session.status_text()  # counts kept by the store's triggers
        if self.session.estimate_due():
            self._estimate_async()
        est = self.session.estimate
        self.stats_label.setToolTip(est.detail() if est is not None else "")
        if est is not None:
            text += f" · {est.line()}"
            if est.suggests_stop(self.stop_below):
                text += f" · the next 100 hold about {est.next_100:.1f}: you could stop here"
        self.stats_label.setText(text)
        self._overview_stale = True  # a decision or an estimate: the found-so-far plot moves
        if self.model is not None:
            self.count_label.setText(f"{self.model.total():,} images match")
        if self.session.rerank_due(self.rerank_every) and not self.busy:
            self.start_rerank()

    # --- the queue that learns --------------------------------------------------------------

    def _on_review_settings(self) -> None:
        from gui.dialogs import ReviewSettingsDialog

        dlg = ReviewSettingsDialog(self.stop_below, self.rerank_every, self)
        if dlg.exec():
            self.set_review_settings(*dlg.values())

    def set_review_settings(self, stop_below: float, rerank_every: int) -> None:
        """Use and remember the stop threshold and the re-rank interval."""
        self.stop_below, self.rerank_every = float(stop_below), int(rerank_every)
        self.settings.setValue("stop_below", self.stop_below)
        self.settings.setValue("rerank_every", self.rerank_every)
        self._update_status()

    def start_rerank(self) -> Any:
        """Refit the pool's heads on the decisions so far and re-rank the unreviewed images."""
        if self.project is None or self.busy:
            return None
        from scoring.rerank import rerank

        self.session.reranked()  # not due again until the next batch of decisions
        path, sort = self.project.path, self.session.label_sort
        return self._run(lambda cancel: rerank(path, sort, cancel=cancel), "Re-ranking", self._on_rerank_returned,
                         self._on_rerank_errored)

    def _on_rerank_errored(self, exc: BaseException) -> None:
        """Not a dialog every 20 decisions: say it once in the status bar and stop re-ranking."""
        self.rerank_every = 0
        self.statusBar().showMessage(f"Re-ranking stopped: {exc} (Scoring ▸ Re-rank to try again)", 15_000)

    def _on_rerank_returned(self, out: Any) -> None:
        if self.project is None or self.model is None:
            return
        if not out.refitted:
            self.rerank_every = 0  # nothing to refit in this pool: stop asking
            self.statusBar().showMessage(out.line(), 8000)
            return
        self.session.rerank_finished(out.seconds)  # rest in proportion before the next automatic one
        self.model.reload()
        self._select_first_unreviewed()  # the new order: carry on where the work is (Ctrl+U: unreviewed only)
        self._update_status()
        self.last_rerank = out
        self.statusBar().showMessage(out.line(), 10_000)

    def _estimate_async(self) -> None:
        """Recompute the errors-left estimate on a pool thread (it reads every score)."""
        assert self.project is not None
        self.session.set_estimate(self.session.estimate)  # not due again until 20 more decisions
        self.estimates.start(self.project.path, self.session.label_sort)

    def _on_estimated(self, estimate: object) -> None:
        if self.project is not None:
            self.session.set_estimate(estimate)  # type: ignore[arg-type]
            self._update_status()


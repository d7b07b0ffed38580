"""Long work of the window (scoring, export) on a worker thread: progress, ETA, cancel, and a
clean shutdown that cancels and waits. A mixin of MainWindow, kept apart so each reads in a sitting."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtWidgets import QMainWindow, QMessageBox

from gui.dialogs import ExportDialog, ScoreDialog
from gui.worker import GeneratorWorker, start_worker
from scoring.errors import ImageTriageError
from scoring.progress import Progress

log = logging.getLogger(__name__)


class BackgroundJobs(QMainWindow):
    # --- background work ------------------------------------------------------------------

    def _ask(self, box: QMessageBox) -> Any:
        """Ask with ``box`` (modal) and return the button clicked: the one place the window
        waits for a yes or no (tests answer here)."""
        box.exec()
        return box.clickedButton()

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def _on_score(self) -> None:
        if self.project is None or self.busy:
            return
        from scoring.autopool import survey
        from scoring.device import pick_device

        try:
            facts = survey(self.project.dataset(), pick_device("auto"))
        except (ImageTriageError, OSError) as exc:
            QMessageBox.critical(self, "Cannot read the dataset", str(exc))
            return
        dlg = ScoreDialog(facts, self.project.last_pool_spec(), self)
        if dlg.exec():
            self.start_scoring(dlg.specs(), device=dlg.device.currentText(), batch_size=dlg.batch.value(),
                               runtime=dlg.runtime.currentText())

    def start_scoring(self, specs: list[dict[str, Any]], device: str = "auto", batch_size: int = 64,
                      runtime: str = "auto") -> GeneratorWorker | None:
        if self.project is None or self.busy:
            return None
        from scoring.inference import score_project

        path = self.project.path
        # workers=0: no forked decode processes from a multi-threaded Qt app; the command line
        # (`image-triage score`) decodes with worker processes for big jobs.
        return self._run(
            lambda cancel: score_project(path, specs, device=device, batch_size=batch_size, workers=0, cancel=cancel,
                                         runtime=runtime),
            "Scoring",
            self._on_scoring_returned,
        )

    def start_export(self, dest: Path, **options: Any) -> GeneratorWorker | None:
        if self.project is None or self.busy:
            return None
        from scoring.export import export_dataset

        path = self.project.path
        return self._run(lambda cancel: export_dataset(path, dest, cancel=cancel, **options), "Export", self._on_export_returned)

    def start_duplicates(self) -> GeneratorWorker | None:
        """Group exact and near-duplicates (after every scoring run, and from the Scoring menu)."""
        if self.project is None or self.busy:
            return None
        from scoring.duplicates import find_duplicates

        path = self.project.path
        return self._run(lambda cancel: find_duplicates(path, cancel=cancel), "Finding duplicates", self._on_duplicates_returned)

    def _on_duplicates_returned(self, groups: list[Any]) -> None:
        if self.project is None or self.model is None:
            return
        self.model.reload()
        conflicts = sum(1 for g in groups if g.conflict)
        self.statusBar().showMessage(
            f"{len(groups):,} duplicate groups, {conflicts:,} with conflicting labels "
            "(filters: in a duplicate group / conflicting labels; G keeps one of a group)", 10_000)

    def _run(self, factory: Any, title: str, on_returned: Any, on_errored: Any = None) -> GeneratorWorker:
        worker, thread = start_worker(factory, self, start=False)
        self._worker, self._thread = worker, thread
        self._job_title = title
        self._on_job_errored = on_errored
        # Bound methods of the window (a QObject of the GUI thread): queued into the GUI thread.
        # (Lambdas ran in the worker's thread and touched the status bar from there.)
        worker.yielded.connect(self._on_worker_yielded)
        worker.returned.connect(on_returned)
        worker.errored.connect(self._on_worker_errored)
        worker.aborted.connect(self._on_worker_aborted)
        worker.finished.connect(self._on_worker_finished)
        self.stage.setText(f"{title}…")
        self._show_progress(True)
        self.act_score.setEnabled(False)
        self.act_export.setEnabled(False)
        thread.start()  # only now: every signal above is connected
        return worker

    def _on_worker_errored(self, exc: BaseException) -> None:
        if self._on_job_errored is not None:
            self._on_job_errored(exc)
        else:
            QMessageBox.critical(self, f"{self._job_title} failed", str(exc))

    def _on_worker_aborted(self) -> None:
        self.statusBar().showMessage(f"{self._job_title} cancelled; stored results are kept", 5000)

    def _show_progress(self, on: bool) -> None:
        for w in (self.stage, self.progress, self.cancel_btn):
            w.setVisible(on)

    def _on_worker_yielded(self, p: Progress) -> None:
        self.progress.setMaximum(max(p.total, 1))
        self.progress.setValue(p.done)
        if p.eta is not None and (p.eta > 0 or p.done >= p.total):
            eta = f" · ETA {int(p.eta) // 60}:{int(p.eta) % 60:02d}"
        else:
            eta = " · estimating…" if p.done < p.total else ""
        unit = {"fit": "folds", "thumbs": "images", "infer": "images", "score": "images", "export": "images"}.get(
            p.stage, "items")
        rate = f" · {p.rate:,.0f} {unit}/s" if p.rate >= 1 else f" · {p.rate * 60:,.1f} {unit}/min" if p.rate > 0 else ""
        self.stage.setText(f"{p.stage} {p.done:,}/{p.total:,}{rate}{eta} {p.message}"[:110])

    def _on_scoring_returned(self, summary: dict[str, Any]) -> None:
        if self.project is not None:
            self._reload_after_scoring()
            if self.model is not None and self.model.rowCount():
                self._select(self.model.index(0, 0))
        if summary and summary.get("status") == "done":
            self.statusBar().showMessage(
                f"Scored {summary.get('scored', 0):,} images with {len(summary.get('members', []))} members "
                f"in {summary.get('seconds', 0):.0f}s", 8000
            )
            self._after_worker = self.start_duplicates  # duplicates are found after scoring

    def _on_export_returned(self, report: dict[str, Any]) -> None:
        QMessageBox.information(
            self, "Exported",
            f"Exported {report.get('exported', 0):,} images to {report.get('dest')}\n"
            f"left out: {report.get('removed', 0)} removed, {len(report.get('skipped', []))} changed/missing/unreadable",
        )

    def _on_worker_finished(self) -> None:
        if self._thread is not None:
            self._thread.wait(10_000)
        self._worker, self._thread = None, None
        self._show_progress(False)
        self._set_enabled(self.project is not None)
        follow, self._after_worker = self._after_worker, None
        if follow is not None:
            follow()

    def _on_cancel_clicked(self) -> None:
        if self._worker is not None:
            self.stage.setText("Cancelling…")
            self._worker.cancel()

    def wait_idle(self, msecs: int = 120_000) -> None:
        """Block until background work is done (tests, shutdown)."""
        if self._thread is not None:
            self._thread.wait(msecs)

    def _on_export(self) -> None:
        if self.project is None or self.busy:
            return
        dest = self.project.dataset_root.parent / f"{self.project.dataset_root.name}-cleaned"
        dlg = ExportDialog(dest, self)
        if dlg.exec():
            opts = dlg.options()
            self.start_export(opts.pop("dest"), **opts)

    def closeEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        scoring = self._worker is not None and self._job_title == "Scoring"
        if scoring:
            self.close_question = QMessageBox(
                QMessageBox.Icon.Question, "Scoring is running",
                "Scoring is still running. Stop it and close? What is scored is kept, and reopening the "
                "project offers to resume.", QMessageBox.StandardButton.NoButton, self)
            stop = self.close_question.addButton("Stop and close", QMessageBox.ButtonRole.AcceptRole)
            self.close_question.addButton("Keep scoring", QMessageBox.ButtonRole.RejectRole)
            clicked = self._ask(self.close_question)
            self.close_question = None
            if clicked is not stop:
                event.ignore()
                return
        if self._worker is not None:
            self._worker.cancel()
            if self._thread is not None:
                self._thread.quit()
                self._thread.wait(60_000)
        if scoring and self.project is not None:
            self.project.mark_interrupted()  # closed, not cancelled: reopening offers to resume
        self.thumbnails.clear()
        self.thumbnails.wait()
        self.detail.evidence.forget()
        if self.project is not None:
            self.project.close()
            self.project = None
        super().closeEvent(event)

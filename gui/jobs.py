"""Long work of the window (scoring, export, duplicates, re-ranking) on a worker thread, one at a
time: its progress, rate and ETA in the status bar, its cancel button, what follows it, and a
clean stop that cancels and waits. The window composes one and hands it what it needs."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread
from PySide6.QtWidgets import QLabel, QMessageBox, QProgressBar, QPushButton, QWidget

from gui import collector
from gui.worker import GeneratorFactory, GeneratorWorker, start_worker
from scoring.progress import Progress

log = logging.getLogger(__name__)

UNITS = {"fit": "folds", "thumbs": "images", "infer": "images", "score": "images", "export": "images", "dupes": "pairs"}


class Jobs(QObject):
    """One background job at a time. ``window`` parents the error boxes; ``busy_changed(on)``
    tells the window to disable what must not start meanwhile; ``message(text, ms)`` writes the
    status bar. The widgets (``stage``, ``progress``, ``cancel_btn``) are the window's to place."""

    def __init__(self, window: QWidget, busy_changed: Callable[[bool], None], message: Callable[[str, int], None],
                 current_project: Callable[[], Path | None] = lambda: None):
        super().__init__(window)
        self.window = window
        self.current_project = current_project  # the project open now: a result for another is dropped
        self.project: Path | None = None  # the project the running job was started for
        self.busy_changed = busy_changed
        self.message = message
        self.stage = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(260)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self.cancel)
        self.title = ""  # the job running (Scoring, Export, ...)
        self._worker: GeneratorWorker | None = None
        self._thread: QThread | None = None
        self._on_returned: Callable[[Any], None] | None = None
        self._on_errored: Callable[[BaseException], None] | None = None
        self._after: Callable[[], Any] | None = None  # what to start when the running job finishes
        self._show(False)

    @property
    def busy(self) -> bool:
        return self._thread is not None

    def run(self, factory: GeneratorFactory, title: str, on_returned: Callable[[Any], None],
            on_errored: Callable[[BaseException], None] | None = None) -> GeneratorWorker:
        worker, thread = start_worker(factory, self, start=False)
        collector.busy(True)  # no full collection on the window's thread while it runs
        self._worker, self._thread = worker, thread
        self.title = title
        self.project = self.current_project()
        self._on_returned, self._on_errored = on_returned, on_errored
        # Only bound methods of this QObject of the GUI thread, which then call the job's own
        # callbacks: queued into the GUI thread whatever the callbacks are. (A lambda, or a
        # method of a plain object, ran in the worker's thread and touched the store and the
        # status bar from there.)
        worker.yielded.connect(self._on_yielded)
        worker.returned.connect(self._on_returned_signal)
        worker.errored.connect(self._on_errored_signal)
        worker.aborted.connect(self._on_aborted)
        worker.finished.connect(self._on_finished)
        self.stage.setText(f"{title}…")
        self._show(True)
        self.busy_changed(True)
        thread.start()  # only now: every signal above is connected
        return worker

    def ask_to_leave(self, ask: Callable[[QMessageBox], Any], here: str, other: str) -> bool:
        """Another project is to be opened while this job runs for ``here``: ask whether to cancel
        the job or let it finish into its own file (its result then is not shown); False: stay."""
        box = QMessageBox(QMessageBox.Icon.Question, f"{self.title} is running",
                          f"{self.title} is running for {here}. Open {other} anyway?",
                          QMessageBox.StandardButton.NoButton, self.window)
        cancel = box.addButton("Cancel it and open", QMessageBox.ButtonRole.DestructiveRole)
        finish = box.addButton("Let it finish in its own file", QMessageBox.ButtonRole.AcceptRole)
        box.addButton("Stay here", QMessageBox.ButtonRole.RejectRole)
        clicked = ask(box)
        if clicked is cancel:
            self.cancel()
        return clicked in (cancel, finish)

    def then(self, follow: Callable[[], Any]) -> None:
        """Start ``follow`` when the running job has finished (duplicates after scoring)."""
        self._after = follow

    def cancel(self) -> None:
        if self._worker is not None:
            self.stage.setText("Cancelling…")
            self._worker.cancel()

    def wait_idle(self, msecs: int = 120_000) -> None:
        """Block until the running job is done (tests, shutdown)."""
        if self._thread is not None:
            self._thread.wait(msecs)

    def stop(self) -> None:
        """Cancel the running job and wait for its thread (closing the window)."""
        if self._worker is not None:
            self._worker.cancel()
            if self._thread is not None:
                self._thread.quit()
                self._thread.wait(60_000)

    def _show(self, on: bool) -> None:
        for w in (self.stage, self.progress, self.cancel_btn):
            w.setVisible(on)

    def _on_yielded(self, p: Progress) -> None:
        self.progress.setMaximum(max(p.total, 1))
        self.progress.setValue(p.done)
        if p.eta is not None and (p.eta > 0 or p.done >= p.total):
            eta = f" · ETA {int(p.eta) // 60}:{int(p.eta) % 60:02d}"
        else:
            eta = " · timing the first steps…" if p.done < p.total else ""  # not the errors-left estimate
        unit = UNITS.get(p.stage, "items")
        rate = f" · {p.rate:,.0f} {unit}/s" if p.rate >= 1 else f" · {p.rate * 60:,.1f} {unit}/min" if p.rate > 0 else ""
        self.stage.setText(f"{p.stage} {p.done:,}/{p.total:,}{rate}{eta} {p.message}"[:110])

    def mine(self) -> bool:
        """Whether the running job's project is the one open now (else its result is dropped:
        it is already in its own project file)."""
        if self.project == self.current_project():
            return True
        log.info("%s finished for %s, which is no longer open: its result stays in its file, not shown",
                 self.title, self.project)
        self.message(f"{self.title} finished for {self.project.name if self.project else 'a closed project'}; "
                     "its results are in that project's file", 8000)
        return False

    def _on_returned_signal(self, value: Any) -> None:
        if self._on_returned is not None and self.mine():
            self._on_returned(value)

    def _on_errored_signal(self, exc: BaseException) -> None:
        if not self.mine():
            return
        if self._on_errored is not None:
            self._on_errored(exc)
        else:
            QMessageBox.critical(self.window, f"{self.title} failed", str(exc))

    def _on_aborted(self) -> None:
        self.message(f"{self.title} cancelled; stored results are kept", 5000)

    def _on_finished(self) -> None:
        if self._thread is not None:
            self._thread.wait(10_000)
        self._worker, self._thread = None, None
        self._show(False)
        self.busy_changed(False)
        follow, self._after = self._after, None
        same = self.project == self.current_project()
        self.project = None
        if follow is not None and same:
            follow()
        if not self.busy:  # the chain is over: what its jobs imported is frozen out of later collections (gui.collector)
            collector.settle()
            collector.busy(False)

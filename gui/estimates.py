"""The errors-left estimate, computed on a pool thread: it reads every score of the project,
which at a million images would stall the keyboard if done on the GUI thread."""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from scoring.errors import ImageTriageError
from scoring.estimate import errors_left
from scoring.store import Project

log = logging.getLogger(__name__)


class _Signals(QObject):
    ready = Signal(object)  # ErrorsLeft | None


class _Task(QRunnable):
    def __init__(self, path: Path, sort: str, signals: _Signals):
        super().__init__()
        self.path, self.sort, self.signals = path, sort, signals

    def run(self) -> None:
        try:
            with Project.open(self.path) as project:  # this thread's own connection
                self.signals.ready.emit(errors_left(project, self.sort))
        except (ImageTriageError, ValueError) as exc:
            log.warning("errors-left estimate failed: %s", exc)


class Estimates(QObject):
    """``start(path, sort)`` computes in the background; ``ready`` carries the estimate."""

    ready = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._signals = _Signals()
        self._signals.ready.connect(self.ready)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)

    def start(self, path: Path, sort: str) -> None:
        self._pool.clear()  # only the latest request matters
        self._pool.start(_Task(path, sort, self._signals))

    def wait(self, msecs: int = 30_000) -> bool:
        return bool(self._pool.waitForDone(msecs))

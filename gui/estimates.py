"""The errors-left estimate, computed on a pool thread: it reads every score of the project,
which at a million images would stall the keyboard if done on the GUI thread."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, Signal

from gui.offthread import LatestOnly
from scoring.store import Project
from scoring.tasks.estimate import ErrorsLeft, errors_left


def _estimate(path: Path, sort: str) -> tuple[Path, ErrorsLeft | None]:
    with Project.open(path) as project:  # the pool thread's own connection
        return path, errors_left(project, sort)


class Estimates(LatestOnly):
    """``start(path, sort)`` computes in the background; ``ready`` carries (the project's path,
    the estimate), so a result for a project no longer open is dropped (a failure is logged and
    emits nothing)."""

    ready = Signal(object)

    def __init__(self, parent: QObject | None = None):
        super().__init__("errors-left estimate", parent)
        self.done.connect(self.ready)

    def start(self, path: Path, sort: str) -> None:
        self.submit(lambda: _estimate(path, sort))

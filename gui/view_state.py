"""What the annotator chose to see, remembered per project: the sort (and so the view), the
filters and the pane sizes. A small part the window composes; it holds what it needs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QSplitter

from gui.filter_panel import FilterPanel
from scoring.vocabulary import default_sort


class ViewState:
    """Reads and writes one project's view in the app's settings."""

    def __init__(self, settings: QSettings, filters: FilterPanel, split: QSplitter):
        self.settings, self.filters, self.split = settings, filters, split
        self.restoring = False  # while restoring, the panel's signals are not the annotator's choice

    @staticmethod
    def key(project_path: str | Path) -> str:
        return "projects/" + hashlib.sha1(str(Path(project_path).resolve()).encode()).hexdigest()[:16]

    def restore(self, project_path: str | Path, labelled: bool) -> None:
        """The sort, filters and pane sizes last used on this project; else the label view when it
        has labels (an annotator came for the label errors), the difficulty view when not."""
        key = self.key(project_path)
        raw = self.settings.value(f"{key}/view")
        try:
            state: Any = json.loads(str(raw)) if raw else None
        except ValueError:
            state = None
        self.restoring = True
        try:
            self.filters.restore(state if isinstance(state, dict) else {"sort": default_sort(labelled)})
        finally:
            self.restoring = False
        sizes = self.settings.value(f"{key}/panes")
        if isinstance(sizes, list) and len(sizes) == 3:
            self.split.setSizes([int(x) for x in sizes])

    def save(self, project_path: str | Path) -> None:
        if self.restoring:
            return
        key = self.key(project_path)
        self.settings.setValue(f"{key}/view", json.dumps(self.filters.state()))
        self.settings.setValue(f"{key}/panes", [int(x) for x in self.split.sizes()])

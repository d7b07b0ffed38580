"""The File menu's recent projects, remembered in the user's settings (newest first)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMenu

MAX_RECENT = 8


class RecentProjects:
    """Fills ``menu``; choosing an entry calls ``open_project(path)``."""

    def __init__(self, settings: QSettings, menu: QMenu, open_project: Callable[[str], Any]):
        self.settings, self.menu, self.open_project = settings, menu, open_project
        self.refresh()

    def paths(self) -> list[str]:
        stored = self.settings.value("recent", [])
        return [str(p) for p in stored] if isinstance(stored, list) else []

    def remember(self, path: Path) -> None:
        kept = [p for p in self.paths() if p != str(path)]
        self.settings.setValue("recent", [str(path), *kept][:MAX_RECENT])
        self.refresh()

    def refresh(self) -> None:
        self.menu.clear()
        for p in self.paths():
            act = self.menu.addAction(p)
            act.triggered.connect(lambda _=False, p=p: self.open_project(p))

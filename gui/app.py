"""Application entry points, called by ``scoring.cli.main`` (``image-triage``, ``open``, ``demo``)."""

from __future__ import annotations

import logging
import sys
from importlib import resources

from PySide6.QtWidgets import QApplication

from gui import collector
from gui.main_window import MainWindow

log = logging.getLogger(__name__)


def _app() -> QApplication:
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setApplicationName("Image Triage")
    app.setOrganizationName("image-triage")
    try:
        app.setStyleSheet(resources.files("resources").joinpath("style.qss").read_text())
    except OSError:
        log.warning("stylesheet missing; using the platform style")
    _collect_on_the_gui_thread(app)
    return app


def _collect_on_the_gui_thread(app: QApplication) -> None:
    """Collections on the window's thread, never on a worker's (gui.collector)."""
    collector.install(app)


def _show(win: MainWindow) -> None:
    """Shown, raised and asked to be the active window, so the first review key acts (under a
    window manager that does not focus new windows, the keys went nowhere until a shortcut)."""
    win.show()
    win.raise_()
    win.activateWindow()


def main(argv: list[str] | None = None) -> int:
    """Open the window, and the dataset or project given, if any."""
    app = _app()
    win = MainWindow()
    _show(win)
    if argv:
        win.open_path(argv[0])
    return app.exec()


def open_path(path: str) -> int:
    return main([path])


def run_demo(dest: str | None = None) -> int:
    """Build the demo dataset, create its project, open it and score it with the demo's pool."""
    from scoring.pool.spec import demo_specs
    from scoring.tasks.demo import demo_project

    app = _app()
    db = demo_project(dest)
    win = MainWindow()
    _show(win)
    win.open_project(db, ask_resume=False)
    assert win.project is not None
    if win.project.runs.active_pool() is None:
        win.tasks.start_scoring(win.project.runs.last_pool_spec() or demo_specs(len(win.project.images.scorable_ids())))
    return app.exec()

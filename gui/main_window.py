"""The main window: filters, the review queue, the detail pane, overview plots, scoring and export."""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFileDialog,
    QLabel,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.detail import DetailPane
from gui.estimates import Estimates
from gui.filter_panel import FilterPanel
from gui.overview import OverviewPanel
from gui.queue_model import ReviewQueueModel
from gui.queue_view import QueueView
from gui.review_actions import ReviewActions
from gui.review_keys import ReviewKeys, open_readme, show_full_image, show_keys
from gui.thumbnails import ThumbnailLoader
from gui.view_state import ViewState
from gui.worker import GeneratorWorker
from scoring.errors import ImageTriageError
from scoring.keymap import keymap_for
from scoring.review import ReviewSession
from scoring.store import Project, QueueFilter, project_for

log = logging.getLogger(__name__)

MAX_RECENT = 8


def _scrolling(widget: QWidget) -> QScrollArea:
    area = QScrollArea(widgetResizable=True, frameShape=QScrollArea.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    area.setMinimumWidth(widget.minimumWidth())
    return area


class MainWindow(ReviewActions):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("image-triage", "Image Triage")
        # suggest stopping when the next 100 images of the queue hold fewer expected errors than this
        self.stop_below = float(self.settings.value("stop_below", 1.0))
        # re-rank the queue (refit the pool's heads on the decisions) after this many decisions; 0 = never
        self.rerank_every = int(self.settings.value("rerank_every", 20))
        self.last_rerank: Any = None
        self.project: Project | None = None
        self.model: ReviewQueueModel | None = None
        self.members: list[dict[str, Any]] = []
        self.session: ReviewSession
        self._worker: GeneratorWorker | None = None
        self._thread: Any = None
        self._after_worker: Any = None  # what to start when the running work finishes
        self.keep_group_question: QMessageBox | None = None  # open while G asks (tests answer it)
        self.many_question: QMessageBox | None = None  # open while a key on several images asks
        self.close_question: QMessageBox | None = None  # open while closing during scoring asks
        self.resume_question: QMessageBox | None = None  # open while reopening offers to resume
        self.popups: list[QDialog] = []  # the key overlay and full-size views that are open
        self._job_title = ""  # the background job running (Scoring, Export, ...)
        self._on_job_errored: Any = None
        self.thumbnails = ThumbnailLoader(parent=self)
        self.estimates = Estimates(self)
        self.estimates.ready.connect(self._on_estimated)
        self.setWindowTitle("Image Triage")
        area = QApplication.primaryScreen().availableGeometry() if QApplication.primaryScreen() else None
        self.resize(min(1400, area.width()) if area else 1400, min(880, area.height() - 40) if area else 880)
        self._build_ui()
        self._build_menus()
        self._set_enabled(False)
        self.review_keys = ReviewKeys(self)  # the review keys work wherever the focus is in the window
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self.review_keys)

    # --- layout ---------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.view = QueueView()
        self.view.relabelRequested.connect(self._on_relabelRequested)
        self.view.removeRequested.connect(self._on_removeRequested)
        self.view.keepRequested.connect(self._on_keepRequested)
        self.view.pickRequested.connect(self._on_pickRequested)
        self.view.keepGroupRequested.connect(self._on_keepGroupRequested)
        self.view.undoRequested.connect(self._on_undo)
        self.view.redoRequested.connect(self._on_redo)
        self.view.helpRequested.connect(self.show_keys)
        self.view.fullImageRequested.connect(self.show_full_image)
        self.view.doubleClicked.connect(lambda _i: self.show_full_image())
        self.detail = DetailPane(self.thumbnails)
        self.detail.clear()
        self.overview = OverviewPanel()
        self.overview.filterRequested.connect(self._on_filterRequested)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.view, "Review queue")
        self.tabs.addTab(self.overview, "Overview")
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self._overview_stale = True

        self.filters = FilterPanel()
        self.filters.filterChanged.connect(self._on_filterChanged)
        self.legend = QLabel(textFormat=Qt.TextFormat.RichText, alignment=Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.legend.setObjectName("legend")
        self.count_label = QLabel()
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(self.filters)
        ll.addWidget(self.count_label)
        ll.addWidget(QLabel("<b>Keys</b>"))
        ll.addWidget(self.legend, 1)
        left.setMinimumWidth(250)
        left.setMaximumWidth(330)

        split = QSplitter()
        # The side panes scroll inside themselves: the window fits a 1280x720 screen and never
        # grows by itself (a long legend or a big duplicate group scrolls instead).
        split.addWidget(_scrolling(left))
        split.addWidget(self.tabs)
        split.addWidget(_scrolling(self.detail))
        split.setStretchFactor(1, 3)
        split.setStretchFactor(2, 2)
        split.setSizes([270, 680, 450])
        split.splitterMoved.connect(lambda *_: self._save_view_state())
        self.split = split
        self.view_state = ViewState(self.settings, self.filters, split)
        self.setCentralWidget(split)

        self.stage = QLabel()
        self.progress = QProgressBar(maximumWidth=260)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self._on_cancel_clicked)
        self.stats_label = QLabel()
        sb = self.statusBar()
        sb.addWidget(self.stats_label, 1)
        for w in (self.stage, self.progress, self.cancel_btn):
            sb.addPermanentWidget(w)
        self._show_progress(False)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        file = mb.addMenu("&File")
        self._add(file, "Open dataset &folder…", self._on_open_folder, QKeySequence.StandardKey.Open)
        self._add(file, "Open CSV &manifest…", self._on_open_csv)
        self._add(file, "Open &project…", self._on_open_project)
        self.recent_menu = file.addMenu("Recent projects")
        self._refresh_recent()
        file.addSeparator()
        self.act_export = self._add(file, "&Export cleaned dataset…", self._on_export, "Ctrl+E")
        file.addSeparator()
        self._add(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        edit = mb.addMenu("&Edit")
        self.act_undo = self._add(edit, "&Undo", self._on_undo, "Ctrl+Z")
        self.act_redo = self._add(edit, "&Redo", self._on_redo, "Ctrl+Shift+Z")
        edit.addSeparator()
        self._add(edit, "&Keep label (Enter / K)", self._on_keepRequested)
        self._add(edit, "&Remove image (Delete)", self._on_removeRequested)
        self._add(edit, "Re&store image", self._on_restore, "Ctrl+R")
        self._add(edit, "Relabel… (/ or L)", self._on_pickRequested)
        self._add(edit, "Keep this, remove its &duplicates (G)", self._on_keepGroupRequested, "Ctrl+G")
        scoring = mb.addMenu("&Scoring")
        self.act_score = self._add(scoring, "&Score…", self._on_score, "Ctrl+Return")
        self.act_rerank = self._add(scoring, "&Re-rank the queue from my decisions", self.start_rerank, "Ctrl+Shift+R")
        self.act_dupes = self._add(scoring, "Find &duplicates", self.start_duplicates, "Ctrl+Shift+D")
        scoring.addSeparator()
        self._add(scoring, "Review se&ttings… (when to stop, how often to re-rank)", self._on_review_settings)
        view = mb.addMenu("&View")
        self._add(view, "&Queue", lambda: self.tabs.setCurrentIndex(0), "Ctrl+1")
        self._add(view, "&Overview", lambda: self.tabs.setCurrentIndex(1), "Ctrl+2")
        self._add(view, "&Unreviewed only / all", lambda: self.filters.toggle_status("unreviewed"), "Ctrl+U")
        self._add(view, "The image &full size (Space, double-click)", self.show_full_image)
        for text, combo, key in (("&Sort by…", "sort", "S"), ("Filter by &given label…", "f_given", "L"),
                                 ("Filter by image &issue…", "f_issue", "I")):
            self._add(view, text, lambda _=False, c=combo: self.filters.pick(c), f"Ctrl+Shift+{key}")
        help_ = mb.addMenu("&Help")
        self._add(help_, "&Keys (F1 or ?)", self.show_keys, "F1")
        for title, anchor in (("What the two views find", "what-it-computes"), ("Datasets it reads", "datasets-it-reads"),
                              ("What Image Triage will never do", "what-image-triage-will-never-do"),
                              ("Export", "export")):
            self._add(help_, f"README: {title}", lambda _=False, a=anchor: open_readme(self, a))
        for m in (file, edit, scoring, view, help_):  # after a menu, the queue has the keys
            m.aboutToHide.connect(self._focus_queue)

    def _focus_queue(self) -> None:
        if QApplication.focusWidget() is not self.filters.f_search:
            self.view.setFocus()

    def show_keys(self) -> QDialog:
        """The key overlay: every key of this project and what it does (F1, ?)."""
        rows = self.view.keymap.legend(self.project.classes if self.project else [])
        dlg = show_keys(self, rows)
        self.popups = [p for p in self.popups if p.isVisible()] + [dlg]
        dlg.finished.connect(lambda _r: self._focus_queue())
        return dlg

    def show_full_image(self) -> QDialog | None:
        """The image under review at full size (zoom with the wheel, drag to pan)."""
        row = self.model.row_at(self.view.currentIndex().row()) if self.model is not None else None
        if row is None or self.project is None:
            return None
        dlg = show_full_image(self, self.project.abspath(row), row.path)
        if dlg is not None:
            self.popups = [p for p in self.popups if p.isVisible()] + [dlg]
            dlg.finished.connect(lambda _r: self._focus_queue())
        return dlg

    def _add(self, menu: Any, text: str, slot: Any, shortcut: Any = None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _set_enabled(self, on: bool) -> None:
        for a in (self.act_export, self.act_undo, self.act_redo, self.act_score, self.act_rerank, self.act_dupes):
            a.setEnabled(on)

    # --- opening --------------------------------------------------------------------------

    def open_path(self, path: str | Path) -> bool:
        """A project file, or a dataset (its project beside it is created or reopened)."""
        try:
            return self.open_project(project_for(path))
        except (ImageTriageError, OSError) as exc:
            QMessageBox.critical(self, "Cannot open", str(exc))
            return False

    def open_project(self, path: str | Path, ask_resume: bool = True) -> bool:
        try:
            project = Project.open(path)
        except ImageTriageError as exc:
            QMessageBox.critical(self, "Cannot open project", str(exc))
            return False
        if self.project is not None:
            self.detail.evidence.forget()
            self.project.close()
        self.project = project
        self.session = ReviewSession(project)
        self.thumbnails.clear()
        self.model = ReviewQueueModel(project, self.thumbnails, parent=self)
        self.view.setModel(self.model)
        self.view.selectionModel().currentChanged.connect(self._on_currentChanged)
        self._fill_class_filters()
        self._restore_view_state(project)
        self._reload_after_scoring()
        self.setWindowTitle(f"Image Triage — {project.source.name} ({path})")
        self._remember(Path(path))
        self._set_enabled(True)
        if self.model.rowCount() and not self.view.currentIndex().isValid():
            self._select(self.model.index(0, 0))
        run = project.interrupted_run()
        if ask_resume and run is not None and project.last_pool_spec():
            self.resume_question = QMessageBox(
                QMessageBox.Icon.Question, "Resume scoring?",
                "The last scoring run stopped before it finished (the app closed or crashed). "
                "Its stored results are kept. Resume it now?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
            yes = self.resume_question.button(QMessageBox.StandardButton.Yes)
            answer = self._ask(self.resume_question)
            self.resume_question = None
            if answer is yes:
                self.start_scoring(project.last_pool_spec() or [])
        self._focus_queue()
        return True

    def _restore_view_state(self, project: Project) -> None:
        self.view_state.restore(project.path, project.labelled())
        sort, filt = self.filters.value()
        self.session.set_view(sort, filt)
        assert self.model is not None
        self.model.sort_key = self.session.sort
        self.model.set_filter(self.session.filter)

    def _save_view_state(self) -> None:
        if self.project is not None:
            self.view_state.save(self.project.path)

    def _fill_class_filters(self) -> None:
        assert self.project is not None
        classes = self.project.classes
        self.filters.set_classes(classes)
        self.view.keymap = keymap_for(classes)
        rows = self.view.keymap.legend(classes)
        self.legend.setText(
            "<br>".join(f"<b>{html.escape(k)}</b> {html.escape(what)}" for k, what in rows)
            + "<br><b>Ctrl+Z</b> undo · <b>Ctrl+Shift+Z</b> redo"
        )

    def _reload_after_scoring(self) -> None:
        assert self.project is not None and self.model is not None
        self.members = self.project.active_members()
        self.detail.evidence.invalidate()  # new features may have come
        self.session.scores_changed()
        self.model.reload()
        self._overview_stale = True  # the plots scan every row: drawn when their tab is shown
        if self.tabs.currentWidget() is self.overview:
            self._on_tab_changed(self.tabs.currentIndex())
        self._update_status()

    def _on_tab_changed(self, _index: int) -> None:
        if self.tabs.currentWidget() is self.overview and self._overview_stale and self.project is not None:
            self.overview.refresh(self.project, self.session.estimate)
            self._overview_stale = False

    def _remember(self, path: Path) -> None:
        recent = [p for p in (self.settings.value("recent", []) or []) if p != str(path)]
        self.settings.setValue("recent", [str(path), *recent][:MAX_RECENT])
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.value("recent", []) or []:
            act = self.recent_menu.addAction(p)
            act.triggered.connect(lambda _=False, p=p: self.open_project(p))

    def _on_open_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a dataset folder")
        if path:
            self.open_path(path)

    def _on_open_csv(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a CSV manifest", "", "CSV (*.csv)")
        if path:
            self.open_path(path)

    def _on_open_project(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a project", "", "Image Triage projects (*.triage.db *.db)")
        if path:
            self.open_project(path)

    # --- selection and the detail pane ------------------------------------------------

    def _select(self, index: QModelIndex) -> None:
        if index.isValid():
            self.view.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
            self.view.scrollTo(index)

    def _select_first_unreviewed(self) -> None:
        """The first image still to review in the current order (else the first)."""
        assert self.model is not None
        self._select(self.model.first_unreviewed())

    def current_id(self) -> int | None:
        assert self.model is not None
        row = self.model.row_at(self.view.currentIndex().row())
        return row.id if row is not None else None

    def _on_currentChanged(self, current: QModelIndex, _previous: QModelIndex) -> None:
        if self.model is None or self.project is None:
            return
        row = self.model.row_at(current.row())
        if row is None:
            self.detail.clear()
        else:
            self.detail.show_row(self.project, row, self.members)

    # --- filters: the panel emits a value, the session holds it, the model shows it ------------

    def _on_filterChanged(self, sort: str, filt: QueueFilter) -> None:
        if self.model is None or self.project is None:
            return
        if self.view_state.restoring:
            return
        current = self.current_id() if sort == self.session.sort else None  # a new order starts at its head
        self.session.set_view(sort, filt)
        self.model.sort_key = self.session.sort
        self.model.set_filter(self.session.filter)
        self._update_status()
        self._save_view_state()
        idx = self.model.index_of(current) if current is not None else QModelIndex()
        if idx.isValid() and filt.status is None:
            self._select(idx)  # clearing filters keeps the image under review
        elif self.model.rowCount():
            self._select_first_unreviewed()
        else:
            self.detail.clear()
        self._focus_queue()

    def _on_filterRequested(self, filt: QueueFilter) -> None:
        """From the overview: show the filter in the panel (which applies it), then the queue."""
        self.filters.show_filter(filt)
        self.tabs.setCurrentIndex(0)


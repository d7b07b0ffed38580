"""The main window: filters, the review queue, the detail pane, overview plots, scoring and export."""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui import collector, files
from gui.detail import DetailPane, scrolling
from gui.filter_panel import FilterPanel
from gui.jobs import Jobs
from gui.overview import OverviewPanel
from gui.queue_model import ReviewQueueModel
from gui.queue_view import QueueView
from gui.recent import RecentProjects
from gui.review_actions import ReviewController
from gui.review_keys import TEXT_INPUTS, ReviewKeys, open_readme, show_full_image, show_keys
from gui.tasks import Tasks
from gui.thumbnails import ThumbnailLoader
from gui.view_state import ViewState
from scoring.errors import ImageTriageError
from scoring.keymap import keymap_for
from scoring.store import Project, QueueFilter, project_for
from scoring.tasks.review import ReviewSession

log = logging.getLogger(__name__)


class MainWindow(QMainWindow):
    """Composes the parts, each handed what it needs: ``review`` (the decisions, the selection, the
    status line; gui.review_actions), ``jobs`` (one job at a time; gui.jobs), ``tasks`` (gui.tasks)."""

    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        collector.settle()
        self.settings = settings or QSettings("image-triage", "Image Triage")
        self.popups: list[QDialog] = []  # the key overlay and full-size views that are open
        self.thumbnails = ThumbnailLoader(parent=self)
        self.setWindowTitle("Image Triage")
        area = QApplication.primaryScreen().availableGeometry() if QApplication.primaryScreen() else None
        self.resize(min(1400, area.width()) if area else 1400, min(880, area.height() - 40) if area else 880)
        say = self.statusBar().showMessage
        self.jobs = Jobs(self, self._on_busy, say, lambda: self.project.path.resolve() if self.project is not None else None)
        self._build_ui()
        # self._ask is looked up at each question, so a test's patch of MainWindow._ask answers it
        self.review = ReviewController(self, self.view, self.detail, self.jobs, self.settings,
                                       lambda box: self._ask(box), say)
        self.review.decided.connect(self._on_decided)
        self.tasks = Tasks(self, self.jobs, self.review, self._reload_after_scoring, say)
        self._build_status_bar()
        self._build_menus()
        self._set_enabled(False)
        self.review_keys = ReviewKeys(self, self.view)  # the review keys work wherever the focus is in the window
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self.review_keys)

    @property
    def project(self) -> Project | None:
        return self.review.project

    @property
    def model(self) -> ReviewQueueModel | None:
        return self.review.model

    @property
    def session(self) -> ReviewSession | None:
        return self.review.session

    def _ask(self, box: QMessageBox) -> Any:
        """Ask with ``box`` (modal) and return the button clicked: the one place the window
        waits for a yes or no (tests answer here)."""
        box.exec()
        return box.clickedButton()

    # --- layout ---------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.view = QueueView()
        self.view.helpRequested.connect(self.show_keys)
        self.view.fullImageRequested.connect(self.show_full_image)
        self.view.doubleClicked.connect(lambda _i: self.show_full_image())
        self.detail = DetailPane(self.thumbnails)
        self.detail.clear()
        self.overview = OverviewPanel()
        self.overview.filterRequested.connect(self._on_filterRequested)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.view, "Review queue")
        self.overview_tab = scrolling(self.overview)  # its plots keep a readable height on a small screen
        self.tabs.addTab(self.overview_tab, "Overview")
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self._overview_stale = True

        self.filters = FilterPanel()
        self.filters.filterChanged.connect(self._on_filterChanged)
        self.legend = QLabel(textFormat=Qt.TextFormat.RichText, alignment=Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.legend.setObjectName("legend")
        self.left = QWidget()
        ll = QVBoxLayout(self.left)
        ll.addWidget(self.filters)
        ll.addWidget(QLabel("<b>Keys</b>"))
        ll.addWidget(self.legend, 1)
        self.left.setMinimumWidth(250)
        self.left.setMaximumWidth(330)

        split = QSplitter()
        # The side panes scroll inside themselves: the window fits a 1280x720 screen and never
        # grows by itself (a long legend or a big duplicate group scrolls instead).
        split.addWidget(scrolling(self.left))
        split.addWidget(self.tabs)
        split.addWidget(scrolling(self.detail))
        split.setStretchFactor(1, 3)
        split.setStretchFactor(2, 2)
        split.setSizes([270, 680, 450])
        split.splitterMoved.connect(lambda *_: self._save_view_state())
        self.split = split
        self.view_state = ViewState(self.settings, self.filters, split)
        self.setCentralWidget(split)


    def _build_status_bar(self) -> None:
        layout = self.left.layout()
        assert isinstance(layout, QVBoxLayout)
        layout.insertWidget(1, self.review.count_label)
        sb = self.statusBar()
        sb.addWidget(self.review.stats_label, 1)
        for w in (self.jobs.stage, self.jobs.progress, self.jobs.cancel_btn):
            sb.addPermanentWidget(w)

    def _build_menus(self) -> None:
        mb = self.menuBar()
        file = mb.addMenu("&File")
        self._add(file, "Open dataset &folder…", self._on_open_folder, QKeySequence.StandardKey.Open)
        self._add(file, "Open CSV &manifest…", self._on_open_csv)
        self._add(file, "Open &project…", self._on_open_project)
        self.recent = RecentProjects(self.settings, file.addMenu("Recent projects"), self.open_project)
        file.addSeparator()
        self.act_export = self._add(file, "&Export cleaned dataset…", self.tasks.export_dialog, "Ctrl+E")
        self.act_merge = self._add(file, "Mer&ge review packages…", self.tasks.merge_dialog)
        file.addSeparator()
        self._add(file, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        edit = mb.addMenu("&Edit")
        review = self.review
        self.act_undo = self._add(edit, "&Undo", review.undo, "Ctrl+Z")
        self.act_redo = self._add(edit, "&Redo", review.redo, "Ctrl+Shift+Z")
        edit.addSeparator()
        self._add(edit, "&Keep label (Enter / K)", review.keep)
        self._add(edit, "&Remove image (Delete)", review.remove)
        self._add(edit, "Re&store image", review.restore, "Ctrl+R")
        self._add(edit, "Relabel… (/ or L)", review.pick)
        self._add(edit, "Keep this, remove its &duplicates (G)", review.keep_group, "Ctrl+G")
        scoring = mb.addMenu("&Scoring")
        self.act_score = self._add(scoring, "&Score…", self.tasks.score_dialog, "Ctrl+Return")
        self.act_rerank = self._add(scoring, "&Re-rank the queue from my decisions", review.start_rerank, "Ctrl+Shift+R")
        self.act_dupes = self._add(scoring, "Find &duplicates", self.tasks.start_duplicates, "Ctrl+Shift+D")
        scoring.addSeparator()
        self._add(scoring, "Review se&ttings… (when to stop, how often to re-rank)", review.review_settings)
        view = mb.addMenu("&View")
        self._add(view, "&Queue", lambda: self.tabs.setCurrentIndex(0), "Ctrl+1")
        self._add(view, "&Overview", lambda: self.tabs.setCurrentIndex(1), "Ctrl+2")
        self._add(view, "&Unreviewed only / all", lambda: self.filters.toggle_status("unreviewed"), "Ctrl+U")
        self._add(view, "&Disputed only / all (merged packages that disagree)", self.filters.toggle_disputed, "Ctrl+Shift+U")
        self._add(view, "The image &full size (Space, double-click)", self.show_full_image)
        for text, combo, key in (("&Sort by…", "sort", "S"), ("Filter by &given label…", "f_given", "L"),
                                 ("Filter by image &issue…", "f_issue", "I")):
            self._add(view, text, lambda _=False, c=combo: self.filters.pick(c), f"Ctrl+Shift+{key}")
        self._add(view, "Search &file names", self.filters.focus_search, QKeySequence.StandardKey.Find)
        help_ = mb.addMenu("&Help")
        self._add(help_, "&Keys (F1 or ?)", self.show_keys, "F1")
        for title, anchor in (("What the two views find", "what-it-computes"), ("Datasets it reads", "datasets-it-reads"),
                              ("What Image Triage will never do", "what-image-triage-will-never-do"),
                              ("Export", "export")):
            self._add(help_, f"README: {title}", lambda _=False, a=anchor: open_readme(self, a))
        for m in (file, edit, scoring, view, help_):  # after a menu, the queue has the keys
            m.aboutToHide.connect(self._focus_queue)

    def _focus_queue(self) -> None:
        """After a menu or a dialog closes, the queue has the keys, unless a text-taking widget
        (a line edit, a spin box, an editable combo box) has them: the one focus rule."""
        if not isinstance(QApplication.focusWidget(), TEXT_INPUTS):
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
        dlg = show_full_image(self, self.project.images.abspath(row), row.path)
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
        for a in (self.act_export, self.act_undo, self.act_redo, self.act_score, self.act_rerank, self.act_dupes, self.act_merge):
            a.setEnabled(on)

    def _on_busy(self, busy: bool) -> None:
        """While a job runs, no second scoring or export; review goes on (undo included)."""
        if busy:
            self.act_score.setEnabled(False)
            self.act_export.setEnabled(False)
            self.act_merge.setEnabled(False)
        else:
            self._set_enabled(self.project is not None)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 - Qt's name
        scoring = self.jobs.busy and self.jobs.title == "Scoring"
        if self.jobs.busy:  # any job asks (issue 30: closing during a re-rank asked nothing)
            title = self.jobs.title or "A job"
            text = ("Scoring is still running. Stop it and close? What is scored is kept; reopening offers to resume."
                    if scoring else f"{title} is still running. Stop it and close? Your decisions are all saved; "
                    f"{title.lower()} can be started again from the Scoring menu.")
            close_question = QMessageBox(QMessageBox.Icon.Question, f"{title} is running", text,
                                         QMessageBox.StandardButton.NoButton, self)
            stop = close_question.addButton("Stop and close", QMessageBox.ButtonRole.AcceptRole)
            close_question.addButton(f"Keep {'scoring' if scoring else 'it running'}", QMessageBox.ButtonRole.RejectRole)
            clicked = self._ask(close_question)
            if clicked is not stop:
                event.ignore()
                return
        self.jobs.stop()
        project = self.project
        if scoring and project is not None:
            project.runs.mark_interrupted()  # closed, not cancelled: reopening offers to resume
        self.thumbnails.clear()
        self.thumbnails.wait()
        self.detail.evidence.forget()
        if project is not None:
            project.close()
            self.review.detach()
        super().closeEvent(event)

    # --- opening --------------------------------------------------------------------------

    def open_path(self, path: str | Path) -> bool:
        """A project file, or a dataset (its project beside it is created or reopened)."""
        try:
            return self.open_project(project_for(path))
        except (ImageTriageError, OSError) as exc:
            QMessageBox.critical(self, "Cannot open", str(exc))
            return False

    def open_project(self, path: str | Path, ask_resume: bool = True) -> bool:
        if self.jobs.busy and self.project is not None and not self.jobs.ask_to_leave(
                lambda box: self._ask(box), self.project.source.name, Path(path).name):
            return False
        try:
            project = Project.open(path)
        except ImageTriageError as exc:
            QMessageBox.critical(self, "Cannot open project", str(exc))
            return False
        if self.project is not None:
            self.detail.evidence.forget()
            self.project.close()
        session = ReviewSession(project)
        self.thumbnails.clear()
        model = ReviewQueueModel(session, self.thumbnails, parent=self)
        self.review.attach(session, model)
        self._fill_class_filters()
        self._restore_view_state(project, session, model)
        self._reload_after_scoring()
        whose = f"{session.package.annotator}'s review package of " if session.package is not None else ""
        self.setWindowTitle(f"Image Triage — {whose}{project.source.name} ({path})")
        self.recent.remember(Path(path))
        self._set_enabled(True)
        if model.rowCount():  # a new session has no cursor: where the review left off (after a crash too), not on a decided image
            self.review.select_first_unreviewed()
        run = project.runs.interrupted_run()
        if ask_resume and run is not None and project.runs.last_pool_spec():
            resume_question = QMessageBox(
                QMessageBox.Icon.Question, "Resume scoring?",
                "The last scoring run stopped before it finished (the app closed or crashed). "
                "Its stored results are kept. Resume it now?",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
            yes = resume_question.button(QMessageBox.StandardButton.Yes)
            answer = self._ask(resume_question)
            if answer is yes:
                self.tasks.start_scoring(project.runs.last_pool_spec() or [])
        self._focus_queue()
        return True

    def _restore_view_state(self, project: Project, session: ReviewSession, model: ReviewQueueModel) -> None:
        self.view_state.restore(project.path, project.images.labelled())
        session.set_view(*self.filters.value())
        model.reload()

    def _save_view_state(self) -> None:
        if self.project is not None:
            self.view_state.save(self.project.path)

    def _fill_class_filters(self) -> None:
        assert self.project is not None
        classes = self.project.classes
        self.filters.set_classes(classes)
        self.filters.offer(self.project.queue.scored_keys())
        self.filters.set_team(self.project.team.has_team())
        self.view.keymap = keymap_for(classes)
        rows = self.view.keymap.legend(classes)
        self.legend.setText(
            "<br>".join(f"<b>{html.escape(k)}</b> {html.escape(what)}" for k, what in rows)
            + "<br><b>Ctrl+Z</b> undo · <b>Ctrl+Shift+Z</b> redo"
        )

    def _reload_after_scoring(self) -> None:
        project, session, model = self.project, self.session, self.model
        if project is None or session is None or model is None:
            return
        self.review.members = project.runs.active_members()
        self.detail.evidence.invalidate()  # new features may have come
        self.filters.offer(project.queue.scored_keys())  # a first scoring brings the sorts it made
        self.filters.set_team(project.team.has_team())  # a merge brings the disputed filter
        session.scores_changed()
        model.reload()
        self._on_decided()
        self.review.update_status()

    def _on_decided(self) -> None:
        """The plots scan every row: marked stale, drawn when their tab is shown."""
        self._overview_stale = True
        if self.tabs.currentWidget() is self.overview_tab:
            self._on_tab_changed(self.tabs.currentIndex())

    def _on_tab_changed(self, _index: int) -> None:
        if (self.tabs.currentWidget() is self.overview_tab and self._overview_stale and self.project is not None
                and self.session is not None):
            self.overview.refresh(self.project, self.session.estimate)
            self._overview_stale = False

    def _on_open_folder(self) -> None:
        path = files.existing_folder(self, "Open a dataset folder")
        if path:
            self.open_path(path)

    def _on_open_csv(self) -> None:
        path = files.open_file(self, "Open a CSV manifest", "", "CSV (*.csv)")
        if path:
            self.open_path(path)

    def _on_open_project(self) -> None:
        path = files.open_file(self, "Open a project", "", "Image Triage projects (*.triage.db *.db)")
        if path:
            self.open_project(path)

    # --- filters: the panel emits a value, the session holds it, the model shows it ------------

    def _on_filterChanged(self, sort: str, filt: QueueFilter) -> None:
        """A filter changes what is shown, never where the keys go: the widget being typed into
        keeps them (a number typed into a range box once relabelled an image). The reload keeps
        the session's cursor (the same image, else the next); a new order starts at its head."""
        session, model, review = self.session, self.model, self.review
        if session is None or model is None or self.view_state.restoring:
            return
        new_order = sort != session.sort
        session.set_view(sort, filt)
        if new_order:
            session.move_to(None, 0)
        model.reload()
        if new_order:
            review.select_first_unreviewed()
        review.update_status()
        self._save_view_state()

    def _on_filterRequested(self, filt: QueueFilter) -> None:
        """From the overview: show the filter in the panel (which applies it), then the queue."""
        self.filters.show_filter(filt)
        self.tabs.setCurrentIndex(0)


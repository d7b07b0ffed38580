"""The main window: filters, the review queue, the detail pane, overview plots, scoring and export."""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QItemSelectionModel, QModelIndex, QSettings, QSize, Qt, Signal
from PySide6.QtGui import QAction, QKeyEvent, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListView,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from gui.detail import DetailPane
from gui.dialogs import ExportDialog, ScoreDialog
from gui.overview import OverviewPanel
from gui.queue_model import ReviewQueueModel
from gui.thumbnails import ThumbnailLoader
from gui.worker import GeneratorWorker, start_worker
from scoring.errors import ImageTriageError
from scoring.keymap import DELETE, ENTER, SLASH, keymap_for
from scoring.progress import Progress
from scoring.store import Edit, Project, QueueFilter, project_for
from scoring.vocabulary import REASONS, SCORES, STATUSES

log = logging.getLogger(__name__)

SORTS = [(s.sort_label, s.key) for s in SCORES] + [("Path", "path")]
MAX_RECENT = 8


class QueueView(QListView):
    """Icon grid over the queue; keys become requests the window turns into core calls."""

    relabelRequested = Signal(int)
    removeRequested = Signal()
    keepRequested = Signal()
    pickRequested = Signal()
    undoRequested = Signal()
    redoRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setIconSize(QSize(96, 96))
        self.setGridSize(QSize(128, 146))  # icon + two lines: class, score
        self.setSpacing(4)
        self.setWordWrap(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.keymap = keymap_for([])

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key, mods = event.key(), event.modifiers()
        plain = not (mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier))
        action = self.keymap.action(_key_name(key)) if plain else None
        if action is not None:
            what, label = action
            if what == "relabel" and label is not None:
                self.relabelRequested.emit(label)
            else:
                {"keep": self.keepRequested, "pick": self.pickRequested, "remove": self.removeRequested}[what].emit()
        elif key == Qt.Key.Key_Z and mods & Qt.KeyboardModifier.ControlModifier:
            # Normally the Edit menu's shortcuts take these first; this serves when the window
            # is not the active one (no window manager), where shortcuts do not fire.
            if mods & Qt.KeyboardModifier.ShiftModifier:
                self.redoRequested.emit()
            else:
                self.undoRequested.emit()
        else:
            super().keyPressEvent(event)


def _key_name(key: int) -> str:
    """A Qt key as the key map names it: a digit, a lowercase letter, enter, /, delete, backspace."""
    if Qt.Key.Key_0 <= key <= Qt.Key.Key_9:
        return str(key - Qt.Key.Key_0)
    if Qt.Key.Key_A <= key <= Qt.Key.Key_Z:
        return chr(ord("a") + key - Qt.Key.Key_A)
    named = {Qt.Key.Key_Return: ENTER, Qt.Key.Key_Enter: ENTER, Qt.Key.Key_Slash: SLASH,
             Qt.Key.Key_Delete: DELETE, Qt.Key.Key_Backspace: "backspace"}
    return named.get(Qt.Key(key), "")


class MainWindow(QMainWindow):
    def __init__(self, settings: QSettings | None = None):
        super().__init__()
        self.settings = settings or QSettings("image-triage", "Image Triage")
        self.project: Project | None = None
        self.model: ReviewQueueModel | None = None
        self.members: list[dict[str, Any]] = []
        self._stats: dict[str, int] = {}
        self._worker: GeneratorWorker | None = None
        self._thread: Any = None
        self._after_run: Any = None
        self.thumbnails = ThumbnailLoader(parent=self)
        self.setWindowTitle("Image Triage")
        self.resize(1400, 880)
        self._build_ui()
        self._build_menus()
        self._set_enabled(False)

    # --- layout ---------------------------------------------------------------------------

    def _build_ui(self) -> None:
        self.view = QueueView()
        self.view.relabelRequested.connect(self._on_relabelRequested)
        self.view.removeRequested.connect(self._on_removeRequested)
        self.view.keepRequested.connect(self._on_keepRequested)
        self.view.pickRequested.connect(self._on_pickRequested)
        self.view.undoRequested.connect(self._on_undo)
        self.view.redoRequested.connect(self._on_redo)
        self.detail = DetailPane()
        self.detail.clear()
        self.overview = OverviewPanel()
        self.overview.filterRequested.connect(self._on_filterRequested)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.view, "Review queue")
        self.tabs.addTab(self.overview, "Overview")
        self.tabs.currentChanged.connect(self._on_tab_changed)
        self._overview_stale = True

        self.sort = QComboBox()
        for text, key in SORTS:
            self.sort.addItem(text, key)
        self.sort.currentIndexChanged.connect(self._on_filters_changed)
        self.f_given = QComboBox()
        self.f_consensus = QComboBox()
        self.f_reason = QComboBox()
        self.f_reason.addItem("any", None)
        for r in REASONS:
            self.f_reason.addItem(r, r)
        self.f_status = QComboBox()
        self.f_status.addItem("any", None)
        for s in STATUSES:
            self.f_status.addItem(s, s)
        self.f_min = QDoubleSpinBox(minimum=0, maximum=1e6, decimals=3, specialValueText="–")
        self.f_max = QDoubleSpinBox(minimum=0, maximum=1e6, decimals=3, specialValueText="–")
        self.f_disagree = QCheckBox("given label disagrees with the pool")
        self.f_search = QLineEdit(placeholderText="file name contains…")
        for w in (self.f_given, self.f_consensus, self.f_reason, self.f_status):
            w.currentIndexChanged.connect(self._on_filters_changed)
        for w in (self.f_min, self.f_max):
            w.valueChanged.connect(self._on_filters_changed)
        self.f_disagree.toggled.connect(self._on_filters_changed)
        self.f_search.returnPressed.connect(self._on_filters_changed)
        clear = QPushButton("Clear filters")
        clear.clicked.connect(self._on_clear_clicked)
        form = QFormLayout()
        form.addRow("Sort by", self.sort)
        form.addRow("Given label", self.f_given)
        form.addRow("Pool consensus", self.f_consensus)
        form.addRow("Triage reason", self.f_reason)
        form.addRow("Status", self.f_status)
        form.addRow("Score ≥", self.f_min)
        form.addRow("Score ≤", self.f_max)
        form.addRow(self.f_disagree)
        form.addRow("Search", self.f_search)
        form.addRow(clear)
        self.legend = QLabel(textFormat=Qt.TextFormat.RichText, alignment=Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.legend.setObjectName("legend")
        self.count_label = QLabel()
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addLayout(form)
        ll.addWidget(self.count_label)
        ll.addWidget(QLabel("<b>Keys</b>"))
        ll.addWidget(self.legend, 1)
        left.setMinimumWidth(250)
        left.setMaximumWidth(330)

        split = QSplitter()
        split.addWidget(left)
        split.addWidget(self.tabs)
        split.addWidget(self.detail)
        split.setStretchFactor(1, 3)
        split.setStretchFactor(2, 2)
        split.setSizes([270, 680, 450])
        self.setCentralWidget(split)

        self.stage = QLabel()
        self.progress = QProgressBar(maximumWidth=260)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.clicked.connect(self._on_cancel_clicked)
        self.stats_label = QLabel()
        sb = self.statusBar()
        sb.addWidget(self.stats_label, 1)
        sb.addPermanentWidget(self.stage)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.cancel_btn)
        self._show_progress(False)
        self.welcome = QLabel(
            "<h2>Image Triage</h2><p>Open a dataset folder (ImageFolder layout or a folder of images), "
            "a CSV manifest or a project from the File menu, or run <code>image-triage demo</code>.</p>",
            alignment=Qt.AlignmentFlag.AlignCenter,
        )

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
        scoring = mb.addMenu("&Scoring")
        self.act_score = self._add(scoring, "&Score…", self._on_score, "Ctrl+Return")
        view = mb.addMenu("&View")
        self._add(view, "&Queue", lambda: self.tabs.setCurrentIndex(0), "Ctrl+1")
        self._add(view, "&Overview", lambda: self.tabs.setCurrentIndex(1), "Ctrl+2")

    def _add(self, menu: Any, text: str, slot: Any, shortcut: Any = None) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _set_enabled(self, on: bool) -> None:
        for a in (self.act_export, self.act_undo, self.act_redo, self.act_score):
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
            self.project.close()
        self.project = project
        self.thumbnails.clear()
        self.model = ReviewQueueModel(project, self.thumbnails, parent=self)
        self.view.setModel(self.model)
        self.view.selectionModel().currentChanged.connect(self._on_currentChanged)
        self._fill_class_filters()
        self._reload_after_scoring()
        self.setWindowTitle(f"Image Triage — {project.source.name} ({path})")
        self._remember(Path(path))
        self._set_enabled(True)
        if self.model.rowCount() and not self.view.currentIndex().isValid():
            self._select(self.model.index(0, 0))
        run = project.interrupted_run()
        if ask_resume and run is not None and project.last_pool_spec():
            answer = QMessageBox.question(
                self, "Resume scoring?",
                "The last scoring run stopped before it finished (the app closed or crashed). "
                "Its stored results are kept. Resume it now?",
            )
            if answer == QMessageBox.StandardButton.Yes:
                self.start_scoring(project.last_pool_spec() or [])
        return True

    def _fill_class_filters(self) -> None:
        assert self.project is not None
        classes = self.project.classes
        for combo in (self.f_given, self.f_consensus):
            combo.blockSignals(True)
            combo.clear()
            combo.addItem("any", None)
            for i, c in enumerate(classes):
                combo.addItem(c, i)
            combo.blockSignals(False)
        self.view.keymap = keymap_for(classes)
        rows = self.view.keymap.legend(classes)
        self.legend.setText(
            "<br>".join(f"<b>{html.escape(k)}</b> {html.escape(what)}" for k, what in rows)
            + "<br><b>Ctrl+Z</b> undo · <b>Ctrl+Shift+Z</b> redo"
        )

    def _reload_after_scoring(self) -> None:
        assert self.project is not None and self.model is not None
        self.members = self.project.active_members()
        self._stats = self.project.stats()
        self.model.reload()
        self._overview_stale = True  # the plots scan every row: drawn when their tab is shown
        if self.tabs.currentWidget() is self.overview:
            self._on_tab_changed(self.tabs.currentIndex())
        self._update_status()

    def _on_tab_changed(self, _index: int) -> None:
        if self.tabs.currentWidget() is self.overview and self._overview_stale and self.project is not None:
            self.overview.refresh(self.project)
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

    # --- actions: every decision is a call into the core ---------------------------------

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
        self._count(edit)
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

    def relabel_current(self, label: int) -> Edit | None:
        assert self.project is not None
        return self._act(lambda i: self.project.relabel(i, label))  # type: ignore[union-attr]

    def _on_relabelRequested(self, label: int) -> None:
        if self.project is not None and label < len(self.project.classes):
            self.relabel_current(label)

    def _on_removeRequested(self) -> None:
        self._act(lambda i: self.project.remove(i))  # type: ignore[union-attr]

    def _on_keepRequested(self) -> None:
        self._act(lambda i: self.project.keep(i))  # type: ignore[union-attr]

    def _on_restore(self) -> None:
        self._act(lambda i: self.project.restore(i), advance=False)  # type: ignore[union-attr]

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
        edit = getattr(self.project, which)()
        if edit is None:
            self.statusBar().showMessage(f"Nothing to {which}", 3000)
            return
        self._count(edit)
        idx = self.model.refresh_row(edit.image_id)
        if idx.isValid():
            self._select(idx)
            self._on_currentChanged(idx, idx)
        self.statusBar().showMessage(f"{which.capitalize()}: {self.project.image(edit.image_id).path}", 3000)

    def _on_undo(self) -> None:
        self._undo_redo("undo")

    def _on_redo(self) -> None:
        self._undo_redo("redo")

    def _count(self, edit: Edit) -> None:
        """Keep the status-bar counts from the edit itself (no full-table count per keypress)."""
        if edit.old_status != edit.new_status and self._stats:
            self._stats[edit.old_status] -= 1
            self._stats[edit.new_status] += 1
            self._stats["reviewed"] = self._stats["total"] - self._stats["unreviewed"]
        self._update_status()

    def _update_status(self) -> None:
        s = self._stats
        if not s:
            return
        self.stats_label.setText(
            f"reviewed {s['reviewed']:,} / {s['total']:,} · kept {s['kept']:,} · relabelled {s['relabelled']:,}"
            f" · removed {s['removed']:,}" + (f" · {s['errors']} unreadable" if s.get("errors") else "")
        )
        if self.model is not None:
            self.count_label.setText(f"{self.model.total():,} images match")

    # --- filters --------------------------------------------------------------------------

    def current_filter(self) -> QueueFilter:
        return QueueFilter(
            given_label=self.f_given.currentData(),
            consensus=self.f_consensus.currentData(),
            reason=self.f_reason.currentData(),
            status=self.f_status.currentData(),
            score_min=self.f_min.value() or None,
            score_max=self.f_max.value() or None,
            score_key=self.sort.currentData() if self.sort.currentData() not in ("path",) else "c_perplexity",
            disagrees=self.f_disagree.isChecked(),
            search=self.f_search.text().strip() or None,
        )

    def _on_filters_changed(self, *_: Any) -> None:
        if self.model is None:
            return
        self.model.sort_key = self.sort.currentData()
        self.model.set_filter(self.current_filter())
        self._update_status()
        if self.model.rowCount():
            self._select(self.model.index(0, 0))
        else:
            self.detail.clear()

    def _on_filterRequested(self, filt: QueueFilter) -> None:
        """From the overview: set the matching widgets, then show the queue."""
        widgets = [self.f_given, self.f_consensus, self.f_min, self.f_max, self.sort]
        for w in widgets:
            w.blockSignals(True)
        self._clear_widgets()
        if filt.given_label is not None:
            self.f_given.setCurrentIndex(filt.given_label + 1)
        if filt.consensus is not None:
            self.f_consensus.setCurrentIndex(filt.consensus + 1)
        if filt.score_min is not None:
            self.sort.setCurrentIndex(0)
            self.f_min.setValue(filt.score_min)
            self.f_max.setValue(filt.score_max or 0)
        for w in widgets:
            w.blockSignals(False)
        self._on_filters_changed()
        self.tabs.setCurrentIndex(0)

    def _clear_widgets(self) -> None:
        for combo in (self.f_given, self.f_consensus, self.f_reason, self.f_status):
            combo.setCurrentIndex(0)
        self.f_min.setValue(0)
        self.f_max.setValue(0)
        self.f_disagree.setChecked(False)
        self.f_search.clear()

    def _on_clear_clicked(self) -> None:
        for w in (self.f_given, self.f_consensus, self.f_reason, self.f_status, self.f_min, self.f_max, self.f_disagree):
            w.blockSignals(True)
        self._clear_widgets()
        for w in (self.f_given, self.f_consensus, self.f_reason, self.f_status, self.f_min, self.f_max, self.f_disagree):
            w.blockSignals(False)
        self._on_filters_changed()

    # --- background work ------------------------------------------------------------------

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
            self.start_scoring(dlg.specs(), device=dlg.device.currentText(), batch_size=dlg.batch.value())

    def start_scoring(self, specs: list[dict[str, Any]], device: str = "auto", batch_size: int = 64) -> GeneratorWorker | None:
        if self.project is None or self.busy:
            return None
        from scoring.inference import score_project

        path = self.project.path
        # workers=0: no forked decode processes from a multi-threaded Qt app; the command line
        # (`image-triage score`) decodes with worker processes for big jobs.
        return self._run(
            lambda cancel: score_project(path, specs, device=device, batch_size=batch_size, workers=0, cancel=cancel),
            "Scoring",
            self._on_scoring_returned,
        )

    def start_export(self, dest: Path, **options: Any) -> GeneratorWorker | None:
        if self.project is None or self.busy:
            return None
        from scoring.export import export_dataset

        path = self.project.path
        return self._run(lambda cancel: export_dataset(path, dest, cancel=cancel, **options), "Export", self._on_export_returned)

    def _run(self, factory: Any, title: str, on_returned: Any) -> GeneratorWorker:
        worker, thread = start_worker(factory, self, start=False)
        self._worker, self._thread = worker, thread
        worker.yielded.connect(self._on_worker_yielded)
        worker.returned.connect(on_returned)
        worker.errored.connect(lambda exc: QMessageBox.critical(self, f"{title} failed", str(exc)))
        worker.aborted.connect(lambda: self.statusBar().showMessage(f"{title} cancelled; stored results are kept", 5000))
        worker.finished.connect(self._on_worker_finished)
        self.stage.setText(f"{title}…")
        self._show_progress(True)
        self.act_score.setEnabled(False)
        self.act_export.setEnabled(False)
        thread.start()  # only now: every signal above is connected
        return worker

    def _show_progress(self, on: bool) -> None:
        for w in (self.stage, self.progress, self.cancel_btn):
            w.setVisible(on)

    def _on_worker_yielded(self, p: Progress) -> None:
        self.progress.setMaximum(max(p.total, 1))
        self.progress.setValue(p.done)
        eta = "" if p.eta is None else f" · ETA {int(p.eta) // 60}:{int(p.eta) % 60:02d}"
        rate = f" · {p.rate:,.0f}/s" if p.rate >= 1 else ""
        self.stage.setText(f"{p.stage} {p.done:,}/{p.total:,}{rate}{eta} {p.message}"[:90])

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

    def closeEvent(self, event: Any) -> None:
        if self._worker is not None:
            self._worker.cancel()
            if self._thread is not None:
                self._thread.quit()
                self._thread.wait(60_000)
        self.thumbnails.clear()
        self.thumbnails.wait()
        if self.project is not None:
            self.project.close()
            self.project = None
        super().closeEvent(event)

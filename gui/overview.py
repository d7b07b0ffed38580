"""Overview: the dataset's health (its issues beyond labels, click one to filter), the C-perplexity histogram, mean difficulty per class, and the matrix of
given label against the pool's consensus (clicking a bar or cell filters the queue), and the label
errors found as the annotator reviews, against the estimated total."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGridLayout, QGroupBox, QLabel, QPushButton, QVBoxLayout, QWidget

from scoring.store import Project, QueueFilter
from scoring.tasks.estimate import ErrorsLeft
from scoring.vocabulary import DIFFICULTY_SORT, ISSUE_TEXT, ISSUES, score


class OverviewPanel(QWidget):
    """Emits ``filterRequested(QueueFilter)`` when the user clicks a bar or a cell."""

    filterRequested = Signal(object)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        pg.setConfigOptions(antialias=True)
        unsure = score(DIFFICULTY_SORT)
        self.hist = pg.PlotWidget(background="#1e2129", title=f"{unsure.words}: how many images (click a bar to filter)")
        self.hist.setToolTip(unsure.tooltip)
        self.per_class = pg.PlotWidget(background="#1e2129", title=f"{unsure.words}, on average per given class")
        self.per_class.setToolTip(f"the mean {unsure.label} of each given class: the hardest classes stand tall")
        self.matrix = pg.PlotWidget(background="#1e2129", title="Given label (rows) × the models' pick (columns)")
        self.matrix.setToolTip("how many images of each given label the models call each class (the pool's "
                               "consensus); off the diagonal are the disagreements")
        self.found = pg.PlotWidget(background="#1e2129", title="Label errors found as you review")
        self.found.setToolTip("each label fixed raises the line (a removed image does not: it says nothing about "
                              "its label); the dashed line is the estimated "
                              "total, the dotted one its upper end: when the line flattens toward it, few are left")
        for w in (self.hist, self.per_class, self.matrix, self.found):
            w.setMouseEnabled(False, False)
            w.hideButtons()
            w.setMinimumHeight(150)  # readable at 1366x768 (the panel scrolls rather than squash a plot)
        self.hint = QLabel("Click a histogram bar, a class bar or a matrix cell to filter the queue.")
        self.health = QGroupBox("Dataset health (click to list)")
        grid = QGridLayout(self.health)
        self.issue_buttons: dict[str, QPushButton] = {}
        for n, name in enumerate(ISSUES):
            b = QPushButton(flat=True)
            b.setToolTip(ISSUE_TEXT[name])
            b.clicked.connect(lambda _c=False, name=name: self.filterRequested.emit(QueueFilter(issue=name)))
            grid.addWidget(b, n // 4, n % 4)
            self.issue_buttons[name] = b
        self.team = QGroupBox("The team's agreement (over images two annotators reviewed)")
        team = QVBoxLayout(self.team)
        self.team_text = QLabel()
        self.team_text.setWordWrap(True)
        self.team_text.setToolTip("Cohen's kappa: agreement beyond chance for a pair (1 = always alike, 0 = as by "
                                  "chance); Fleiss' kappa: the same for everyone at once")
        self.disputed_btn = QPushButton(flat=True)
        self.disputed_btn.clicked.connect(lambda _c=False: self.filterRequested.emit(QueueFilter(disputed=True)))
        team.addWidget(self.team_text)
        team.addWidget(self.disputed_btn)
        self.team.setVisible(False)  # shown once packages were merged
        lay = QVBoxLayout(self)
        lay.addWidget(self.health)
        lay.addWidget(self.team)
        lay.addWidget(self.hint)
        lay.addWidget(self.hist, 1)
        lay.addWidget(self.per_class, 1)
        lay.addWidget(self.matrix, 2)
        lay.addWidget(self.found, 1)
        self._edges = np.array([])
        self._k = 0
        self.hist.scene().sigMouseClicked.connect(self._on_hist_clicked)
        self.per_class.scene().sigMouseClicked.connect(self._on_class_clicked)
        self.matrix.scene().sigMouseClicked.connect(self._on_matrix_clicked)

    def refresh(self, project: Project, estimate: ErrorsLeft | None = None) -> None:
        self._found_plot(project, estimate)
        self._team(project)
        flagged = project.issues.issue_counts()
        for name, button in self.issue_buttons.items():
            button.setText(f"{name.replace('_', ' ')}: {flagged.get(name, 0):,}")
            button.setEnabled(flagged.get(name, 0) > 0)
        classes = project.classes
        self._k = len(classes)
        values = project.queue.score_values(DIFFICULTY_SORT)
        self.hist.clear()
        if len(values):
            counts, edges = np.histogram(values, bins=30)
            self._edges = edges
            self.hist.addItem(pg.BarGraphItem(x0=edges[:-1], x1=edges[1:], height=counts, brush="#4fc3f7"))
            self.hist.setLabel("bottom", score(DIFFICULTY_SORT).words)
            self.hist.setLabel("left", "images")
        self.per_class.clear()
        if classes:
            means = np.nan_to_num(project.queue.class_difficulty(DIFFICULTY_SORT))
            self.per_class.addItem(pg.BarGraphItem(x=np.arange(len(classes)), height=means, width=0.7, brush="#ffb74d"))
            self.per_class.getAxis("bottom").setTicks([list(enumerate(classes))])
        self.matrix.clear()
        self.matrix.setMinimumHeight(min(520, max(150, 22 * len(classes) + 70)))  # a readable row per class
        if classes:
            cm = project.queue.confusion_matrix().astype(float)
            # log scale so the off-diagonal mistakes show beside the large diagonal
            img = pg.ImageItem(np.log1p(cm).T)  # ImageItem: axis 0 = x (consensus), axis 1 = y (given)
            img.setColorMap(pg.colormap.get("viridis"))
            self.matrix.addItem(img)
            for g in range(len(classes)):
                for c in range(len(classes)):
                    if cm[g, c]:
                        t = pg.TextItem(str(int(cm[g, c])), color="w" if cm[g, c] < cm.max() / 2 else "k", anchor=(0.5, 0.5))
                        t.setPos(c + 0.5, g + 0.5)
                        self.matrix.addItem(t)
            ticks = [(i + 0.5, n) for i, n in enumerate(classes)]
            self.matrix.getAxis("bottom").setTicks([ticks])
            self.matrix.getAxis("left").setTicks([ticks])
            self.matrix.getViewBox().invertY(True)
            self.matrix.setLabel("bottom", "the models' pick")
            self.matrix.setLabel("left", "given label")

    def _team(self, project: Project) -> None:
        merged = project.team.has_team()
        self.team.setVisible(merged)
        if not merged:
            return
        from scoring.tasks.merge import agreement

        self.team_text.setText("\n".join(agreement(project).lines()))
        disputed = len(project.team.disputed_ids())
        self.disputed_btn.setText(f"{disputed:,} disputed images to decide (click to list)" if disputed
                                  else "no dispute left to decide")
        self.disputed_btn.setEnabled(disputed > 0)

    def _found_plot(self, project: Project, estimate: ErrorsLeft | None) -> None:
        """Errors found against decisions made, and where the estimate says the total lies."""
        self.found.clear()
        hits = project.edits.review_order()
        self.found.setLabel("bottom", "images reviewed")
        self.found.setLabel("left", "errors found")
        if len(hits):
            x = np.arange(1, len(hits) + 1)
            self.found.plot(x, np.cumsum(hits), pen=pg.mkPen("#81c784", width=2))
        if estimate is not None:
            total = estimate.found + estimate.left
            for y, style in ((total, Qt.PenStyle.DashLine), (estimate.found + estimate.high, Qt.PenStyle.DotLine)):
                self.found.addItem(pg.InfiniteLine(pos=y, angle=0, pen=pg.mkPen("#ffb74d", style=style)))
            # Above both lines (never struck through by one), with room for it in the range.
            top = max(estimate.found + estimate.high, 1)
            label = pg.TextItem(f"found + {estimate.line()}", color="#ffb74d", anchor=(0, 1))
            label.setPos(0, top * 1.02)
            self.found.addItem(label)
            self.found.setYRange(0, top * 1.3)

    def _point(self, widget: pg.PlotWidget, event) -> tuple[float, float] | None:  # type: ignore[no-untyped-def]
        vb = widget.getViewBox()
        if not vb.sceneBoundingRect().contains(event.scenePos()):
            return None
        p = vb.mapSceneToView(event.scenePos())
        return p.x(), p.y()

    def _on_hist_clicked(self, event) -> None:  # type: ignore[no-untyped-def]
        pt = self._point(self.hist, event)
        if pt is None or len(self._edges) < 2:
            return
        i = int(np.searchsorted(self._edges, pt[0]) - 1)
        if 0 <= i < len(self._edges) - 1:
            self.filterRequested.emit(QueueFilter(score_min=float(self._edges[i]), score_max=float(self._edges[i + 1])))

    def _on_class_clicked(self, event) -> None:  # type: ignore[no-untyped-def]
        pt = self._point(self.per_class, event)
        if pt is None:
            return
        c = int(round(pt[0]))
        if 0 <= c < self._k:
            self.filterRequested.emit(QueueFilter(given_label=c))

    def _on_matrix_clicked(self, event) -> None:  # type: ignore[no-untyped-def]
        pt = self._point(self.matrix, event)
        if pt is None:
            return
        c, g = int(pt[0]), int(pt[1])
        if 0 <= c < self._k and 0 <= g < self._k:
            self.filterRequested.emit(QueueFilter(given_label=g, consensus=c))

"""The detail pane: the image large, its labels and scores, and why the pool finds it hard."""

from __future__ import annotations

import html
import logging
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from gui.evidence import EvidencePanel
from gui.thumbnails import ImageLoader, ThumbnailLoader
from scoring.store import Project, QueueRow
from scoring.tasks.explain import why_here
from scoring.vocabulary import REASON_TEXT, VIEWS, member_words, scores

log = logging.getLogger(__name__)
MEMBER_COLOURS = ["#4fc3f7", "#ffb74d", "#81c784", "#e57373", "#ba68c8", "#fff176", "#90a4ae", "#f06292"]


class _VerticalScroll(QScrollArea):
    """Tells its widget the width it has (``fit_width``), as the area or its scroll bar change it."""

    def viewportEvent(self, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Resize:
            fit = getattr(self.widget(), "fit_width", None)
            if fit is not None:
                fit(self.viewport().width())
        return super().viewportEvent(event)


def scrolling(widget: QWidget) -> QScrollArea:
    """``widget`` in a frameless area that scrolls up and down, never sideways; a widget with a
    ``fit_width(pixels)`` is told the width it has."""
    area = _VerticalScroll(widgetResizable=True)
    area.setFrameShape(QScrollArea.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    area.setMinimumWidth(widget.minimumWidth())
    return area


class DetailPane(QWidget):
    """Shows one queue row; ``show_row(project, row)`` refreshes it."""

    def __init__(self, thumbnails: ThumbnailLoader | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self._want: int | None = None
        self.loader = ImageLoader(self)
        self.loader.loaded.connect(self._on_loaded)
        self.image = QLabel(alignment=Qt.AlignmentFlag.AlignCenter, wordWrap=True)  # a reason, when no image
        self.image.setMinimumSize(160, 160)
        self.image.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.image_scroll = QScrollArea()
        self.image_scroll.setWidget(self.image)
        self.image_scroll.setWidgetResizable(True)
        self.image_scroll.setMinimumHeight(200)  # the image under review never shrinks to a sliver
        self.actual = QCheckBox("1:1 (actual pixels)")
        self.actual.toggled.connect(self._on_actual_toggled)
        self.info = QLabel(textFormat=Qt.TextFormat.RichText, wordWrap=True)
        self.info.setObjectName("detailInfo")
        # Every score, folded by default: the sentence above says why the image is here, and the
        # evidence below (duplicates, neighbours) stays on a 1366x768 screen without scrolling.
        self.more = QToolButton()
        self.more.setText("All scores")
        self.more.setCheckable(True)
        self.more.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.more.setArrowType(Qt.ArrowType.RightArrow)
        self.more.setAutoRaise(True)
        self.more.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # a click never takes the review keys
        self.scores_text = QLabel(textFormat=Qt.TextFormat.RichText, wordWrap=True)
        self.scores_text.setObjectName("detailScores")
        self.scores_text.setVisible(False)
        self.more.toggled.connect(self._on_more_toggled)
        self.chart = pg.PlotWidget(background="#1e2129")
        self.chart.setMinimumHeight(130)
        self.chart.setMaximumHeight(170)
        self.chart.setMouseEnabled(False, False)
        self.chart.hideButtons()
        self.chart.setLabel("left", "probability")
        self.chart.setYRange(0, 1)
        # The key sits under the chart, wrapped, never over its bars (seven members once hid them).
        self.chart_key = QLabel(textFormat=Qt.TextFormat.RichText, wordWrap=True)
        self.chart_key.setObjectName("chartKey")
        lay = QVBoxLayout(self)
        lay.addWidget(self.image_scroll, 3)
        lay.addWidget(self.actual)
        lay.addWidget(self.info)
        lay.addWidget(self.more)
        lay.addWidget(self.scores_text)
        self.evidence = EvidencePanel(thumbnails or ThumbnailLoader(size=64, parent=self))
        # The evidence (a duplicate group, look-alikes) before the chart: on a 1366x768 screen it
        # shows without scrolling. It scrolls inside itself: 35 duplicates never grow the window.
        self.evidence_scroll = scrolling(self.evidence)
        self.evidence_scroll.setMinimumHeight(150)
        lay.addWidget(self.evidence_scroll, 2)
        lay.addWidget(QLabel("<b>What each model says</b> (its top classes)"))
        lay.addWidget(self.chart, 2)
        lay.addWidget(self.chart_key)

    def clear(self, why: str = "No image selected") -> None:
        self._want, self._pixmap = None, None  # an image still decoding for the last row is not shown
        self.image.setText(why)
        self.info.setText("")
        self.scores_text.setText("")
        self.chart.clear()
        self.chart.getAxis("bottom").setTicks([[]])  # no stale class names under an empty chart
        self.chart_key.setText("")
        self.evidence.clear()

    def show_row(self, project: Project, row: QueueRow, members: list[dict[str, Any]] | None = None) -> None:
        """Scores and chart at once; the full-size image is decoded off the GUI thread."""
        self._want = row.id
        path = project.images.abspath(row.path)
        self.loader.request(row.id, path)
        self.info.setText(self._info_html(project.classes, row) + self._team_html(project, row))
        self.scores_text.setText(self._all_scores_html(project.classes, row))
        tip = "<br>".join(f"<b>{html.escape(s.words)}</b> = {html.escape(s.tooltip)}" for s in scores())
        self.info.setToolTip(tip)
        self.scores_text.setToolTip(tip)
        self._chart(project, row, members if members is not None else project.runs.active_members())
        self.evidence.show_row(project, row)

    def _name(self, classes: list[str], label: int | None) -> str:
        return html.escape(classes[label]) if label is not None and 0 <= label < len(classes) else "–"

    def _info_html(self, classes: list[str], r: QueueRow) -> str:
        def f(x: float | None, p: int = 3) -> str:
            return "–" if x is None else f"{x:.{p}f}"

        flag = f"<br><span style='color:#ef5350'>⚠ file {r.flag} since scoring</span>" if r.flag else ""
        reason = REASON_TEXT.get(r.reason or "", "–")
        return (
            f"<b>{html.escape(r.path)}</b>{flag}<br>"
            f"<span style='color:#ffb74d'>{html.escape(why_here(r, classes))}</span><br>"
            f"given <b>{self._name(classes, r.given_label)}</b> · now <b>{self._name(classes, r.current_label)}</b>"
            f" · <b>{r.status}</b><br>"
            f"the models pick <b>{self._name(classes, r.consensus)}</b> ({f(r.consensus_prob, 2)})"
            f" · <b>{reason}</b>"
        )

    def _team_html(self, project: Project, r: QueueRow) -> str:
        """The merged packages' decisions on this image, side by side (who, what, when); red
        while they disagree and nothing here settled them."""
        import time

        decided = project.team.decisions(r.id)
        if not decided:
            return ""
        parts = []
        for d in decided:
            what = ("removed it" if d.status == "removed" else
                    f"kept {self._name(project.classes, d.label)}" if d.status == "kept" else
                    f"relabelled it {self._name(project.classes, d.label)}")
            parts.append(f"<b>{html.escape(d.annotator)}</b> {what} "
                         f"<small>({time.strftime('%d %b %H:%M', time.localtime(d.time))})</small>")
        differ = len({d.category for d in decided}) > 1
        if differ and r.status == "unreviewed":
            head = "<span style='color:#ef5350'><b>disputed</b>: your key settles it</span>"
        elif differ:
            head = "<span style='color:#9e9e9e'>was disputed, settled here</span>"
        else:
            head = "<span style='color:#9e9e9e'>from the team's packages</span>"
        return f"<br>{head}: " + " · ".join(parts)

    def _all_scores_html(self, classes: list[str], r: QueueRow) -> str:
        confusing = ", ".join(f"{self._name(classes, c)} ({v:.2f})" for c, v in r.top_c) or "–"
        votes = ", ".join(f"{self._name(classes, c)} ×{v}" for c, v in r.top_x) or "–"
        return ("".join(self._scores_html(r, view) for view in VIEWS)
                + f"also looks like: {confusing}<br>models' top picks: {votes}")

    def _on_more_toggled(self, on: bool) -> None:
        self.more.setArrowType(Qt.ArrowType.DownArrow if on else Qt.ArrowType.RightArrow)
        self.scores_text.setVisible(on)

    @staticmethod
    def _scores_html(r: QueueRow, view: str) -> str:
        """One line per view: each score of the table that this image has, as the table formats it."""
        got = [f"{html.escape(s.words)} <b>{s.show(r.scores[s.key])}</b>" for s in scores()
               if s.view == view and r.scores.get(s.key) is not None]
        return f"<i>{VIEWS[view][0]}</i>: {' · '.join(got)}<br>" if got else ""

    def _chart(self, project: Project, row: QueueRow, members: list[dict[str, Any]]) -> None:
        self.chart.clear()
        self.chart_key.setText("")
        if not members or row.consensus is None:
            return
        try:
            probs = project.cache.get_probs([m["fingerprint"] for m in members], [row.id])[:, 0, :]
        except Exception:  # noqa: BLE001 - not scored by this pool yet
            return
        top = np.argsort(-probs.mean(0), kind="stable")[:5]
        n = len(members)
        width = 0.8 / n
        words = member_words(members)
        for i, _m in enumerate(members):
            x = np.arange(len(top)) - 0.4 + width * (i + 0.5)
            self.chart.addItem(pg.BarGraphItem(x=x, height=probs[i, top], width=width,
                                               brush=MEMBER_COLOURS[i % len(MEMBER_COLOURS)]))
        self.chart_key.setText("<small>" + " &nbsp; ".join(
            f"<span style='color:{MEMBER_COLOURS[i % len(MEMBER_COLOURS)]}'>■</span>&nbsp;{html.escape(w).replace(' ', '&nbsp;')}"
            for i, w in enumerate(words)) + "</small>")
        self.chart_key.setToolTip("<br>".join(f"{html.escape(w)}: {html.escape(m['name'])}"
                                              for w, m in zip(words, members, strict=True)))
        ax = self.chart.getAxis("bottom")
        ax.setTicks([[(j, project.classes[c]) for j, c in enumerate(top)]])
        self.chart.setYRange(0, 1)

    def _on_loaded(self, image_id: int, qimg: QImage, why: str) -> None:
        if image_id != self._want:
            return  # an earlier selection arriving late
        if qimg.isNull():
            self._pixmap = None
            self.image.setText(html.escape(why or "cannot decode this image"))
        else:
            self._pixmap = QPixmap.fromImage(qimg)
        self._fit()

    def _fit(self) -> None:
        if self._pixmap is None:
            return
        if self.actual.isChecked():
            self.image.setPixmap(self._pixmap)
            return
        area = self.image_scroll.viewport().size()
        side = max(64, min(area.width(), area.height()) - 8)
        self.image.setPixmap(
            self._pixmap.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.FastTransformation)
        )

    def _on_actual_toggled(self, _checked: bool) -> None:
        self._fit()

    def resizeEvent(self, event) -> None:  # type: ignore[no-untyped-def]
        super().resizeEvent(event)
        self._fit()

"""The filter panel: sort and filters as widgets; it emits one value, ``(sort key, QueueFilter)``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QWidget,
)

from scoring.store import QueueFilter
from scoring.vocabulary import BY_KEY, REASONS, SCORES, STATUSES

SORTS = [(s.sort_label, s.key) for s in SCORES] + [("Path", "path")]


class FilterPanel(QWidget):
    """Sort by, given label, consensus, reason, status, score range, disagreement, search."""

    filterChanged = Signal(str, object)  # sort key, QueueFilter

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.sort = QComboBox()
        for text, key in SORTS:
            self.sort.addItem(text, key)
            self.sort.setItemData(self.sort.count() - 1, text, Qt.ItemDataRole.ToolTipRole)
        self.view_hint = QLabel(wordWrap=True, objectName="hint")
        self.sort.currentIndexChanged.connect(self._on_sort_changed)
        self.f_given, self.f_consensus = QComboBox(), QComboBox()
        self.f_reason = self._choices(REASONS)
        self.f_status = self._choices(STATUSES)
        self.f_min = QDoubleSpinBox(minimum=0, maximum=1e6, decimals=3, specialValueText="–")
        self.f_max = QDoubleSpinBox(minimum=0, maximum=1e6, decimals=3, specialValueText="–")
        self.f_disagree = QCheckBox("given label disagrees with the pool")
        self.f_duplicate = QCheckBox("in a duplicate group")
        self.f_conflict = QCheckBox("duplicates with conflicting labels")
        self.f_search = QLineEdit(placeholderText="file name contains…")
        for w in (self.sort, self.f_given, self.f_consensus, self.f_reason, self.f_status):
            w.currentIndexChanged.connect(self._emit)
        for w in (self.f_min, self.f_max):
            w.valueChanged.connect(self._emit)
        for box in (self.f_disagree, self.f_duplicate, self.f_conflict):
            box.toggled.connect(self._emit)
        self.f_search.returnPressed.connect(self._emit)
        clear = QPushButton("Clear filters")
        clear.clicked.connect(self.clear)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Sort by", self.sort)
        form.addRow(self.view_hint)
        for label, w in (("Given label", self.f_given), ("Pool consensus", self.f_consensus),
                         ("Triage reason", self.f_reason), ("Status", self.f_status), ("Score ≥", self.f_min),
                         ("Score ≤", self.f_max)):
            form.addRow(label, w)
        form.addRow(self.f_disagree)
        form.addRow(self.f_duplicate)
        form.addRow(self.f_conflict)
        form.addRow("Search", self.f_search)
        form.addRow(clear)
        self._quiet = False
        self._on_sort_changed()

    def _on_sort_changed(self, *_: Any) -> None:
        """Say which view the sort is: difficulty (blind to the label) or label errors."""
        score = BY_KEY.get(str(self.sort.currentData()))
        self.view_hint.setText(
            "" if score is None else
            "<small>difficulty view: blind to the given label; ranks hard, ambiguous images</small>"
            if score.view == "difficulty" else
            "<small>label view: compares the pool with the given label; ranks likely label errors</small>"
        )

    @staticmethod
    def _choices(values: tuple[str, ...]) -> QComboBox:
        combo = QComboBox()
        combo.addItem("any", None)
        for v in values:
            combo.addItem(v, v)
        return combo

    def set_classes(self, classes: list[str]) -> None:
        with self._silenced():
            for combo in (self.f_given, self.f_consensus):
                combo.clear()
                combo.addItem("any", None)
                for i, c in enumerate(classes):
                    combo.addItem(c, i)

    def value(self) -> tuple[str, QueueFilter]:
        sort = str(self.sort.currentData())
        return sort, QueueFilter(
            given_label=self.f_given.currentData(),
            consensus=self.f_consensus.currentData(),
            reason=self.f_reason.currentData(),
            status=self.f_status.currentData(),
            score_min=self.f_min.value() or None,
            score_max=self.f_max.value() or None,
            score_key=sort if sort != "path" else "c_perplexity",
            disagrees=self.f_disagree.isChecked(),
            search=self.f_search.text().strip() or None,
            duplicate=self.f_duplicate.isChecked(),
            conflict=self.f_conflict.isChecked(),
        )

    def show_filter(self, filt: QueueFilter) -> None:
        """Set the widgets to ``filt`` (e.g. a click in the overview) and emit once."""
        with self._silenced():
            self._reset()
            if filt.given_label is not None:
                self.f_given.setCurrentIndex(filt.given_label + 1)
            if filt.consensus is not None:
                self.f_consensus.setCurrentIndex(filt.consensus + 1)
            for combo, value in ((self.f_reason, filt.reason), (self.f_status, filt.status)):
                if value is not None:
                    combo.setCurrentIndex(max(0, combo.findData(value)))
            if filt.score_min is not None or filt.score_max is not None:
                self.sort.setCurrentIndex(self.sort.findData(filt.score_key))
                self.f_min.setValue(filt.score_min or 0)
                self.f_max.setValue(filt.score_max or 0)
            self.f_disagree.setChecked(filt.disagrees)
            self.f_duplicate.setChecked(filt.duplicate)
            self.f_conflict.setChecked(filt.conflict)
            self.f_search.setText(filt.search or "")
        self._emit()

    def clear(self) -> None:
        with self._silenced():
            self._reset()
        self._emit()

    def _reset(self) -> None:
        for combo in (self.f_given, self.f_consensus, self.f_reason, self.f_status):
            combo.setCurrentIndex(0)
        self.f_min.setValue(0)
        self.f_max.setValue(0)
        for box in (self.f_disagree, self.f_duplicate, self.f_conflict):
            box.setChecked(False)
        self.f_search.clear()

    @contextlib.contextmanager
    def _silenced(self) -> Iterator[None]:
        """Change several widgets, then emit once (not once per widget)."""
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False

    def _emit(self, *_: Any) -> None:
        if not self._quiet:
            self.filterChanged.emit(*self.value())

"""The filter panel: the two views, sort and filters as widgets; it emits one value,
``(sort key, QueueFilter)``. Its state (view, sort, filters) is a plain dict the window
remembers per project."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict
from typing import Any, cast

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from scoring.store import QueueFilter
from scoring.vocabulary import (
    DIFFICULTY_SORT,
    ISSUE_TEXT,
    ISSUES,
    LABEL_SORT,
    REASON_TEXT,
    REASONS,
    STATUSES,
    VIEWS,
    is_score,
    score,
    scores,
)


def sorts() -> list[tuple[str, str]]:
    """The sort menu: (what it says, key) of every score in the table, then the path."""
    return [(s.sort_label, s.key) for s in scores()] + [("Path", "path")]

_UNSET = "–"


class RangeBox(QDoubleSpinBox):
    """A range box that shows "–" while unset: a click or Tab into it selects that mark, so the
    digits typed next replace it (they were refused: "–50" is no number, and a user clicking
    into the box and typing 50 saw nothing happen; seen under Xvfb)."""

    def focusInEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().focusInEvent(event)
        if self.value() <= self.minimum():
            QTimer.singleShot(0, self.selectAll)  # after Qt has placed the click's cursor

    def mousePressEvent(self, event: Any) -> None:  # noqa: N802 - Qt's name
        super().mousePressEvent(event)
        if self.value() <= self.minimum():
            self.selectAll()


def _short(key: str) -> str:
    """A sort's menu text in plain words, short enough for the panel (its tooltip gives the
    technical name, what it measures and which view it belongs to)."""
    return score(key).words if is_score(key) else "File name"


def _tip(key: str) -> str:
    if not is_score(key):
        return "in the order of the file names"
    s = score(key)
    first = "likely label errors first" if s.view == "label" else "hardest first"
    return f"{s.words}, {first}. {s.tooltip}"


class FilterPanel(QWidget):
    """Sort by, given label, consensus, reason, status, score range, disagreement, search."""

    filterChanged = Signal(str, object)  # sort key, QueueFilter

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._range_key: str | None = None  # a range on another score than the sort (a plot click)
        self.views = QButtonGroup(self)
        self.view_buttons: dict[str, QPushButton] = {}
        switch = QVBoxLayout()  # stacked: both titles read in full in a narrow panel
        switch.setSpacing(2)
        for view, (title, finds) in VIEWS.items():
            b = QPushButton(title)
            b.setCheckable(True)
            b.setObjectName(f"view_{view}")
            b.setToolTip(finds)
            self.views.addButton(b)
            self.view_buttons[view] = b
            switch.addWidget(b)
        self.views.buttonClicked.connect(self._on_view_clicked)
        self.sort = QComboBox()
        self.sort.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.sort.setMinimumContentsLength(16)
        self._fill_sorts(None)
        self.view_hint = QLabel(wordWrap=True)
        self.view_hint.setObjectName("hint")
        self.sort.currentIndexChanged.connect(self._on_sort_changed)
        self.f_given, self.f_consensus = QComboBox(), QComboBox()
        self.f_reason = self._choices(REASONS)
        for n, name in enumerate(REASONS, start=1):
            self.f_reason.setItemText(n, REASON_TEXT[name])
            self.f_reason.setItemData(n, f"triage reason '{name}'", Qt.ItemDataRole.ToolTipRole)
        self.f_status = self._choices(STATUSES)
        self.f_issue = self._choices(ISSUES)  # the dataset's issues beyond labels
        for n, name in enumerate(ISSUES, start=1):
            self.f_issue.setItemText(n, name.replace("_", " "))
            self.f_issue.setItemData(n, ISSUE_TEXT[name], Qt.ItemDataRole.ToolTipRole)
        self._scale = 1.0  # the range boxes show the score times this (100 for a chance, shown in percent)
        self.f_min = RangeBox(decimals=3, singleStep=0.05)
        self.f_max = RangeBox(decimals=3, singleStep=0.05)
        for box in (self.f_min, self.f_max):
            box.setSpecialValueText(_UNSET)
        self.range_label = QLabel()
        self.f_disagree = QCheckBox("label ≠ the models' pick")
        self.f_duplicate = QCheckBox("in a duplicate group")
        self.f_conflict = QCheckBox("duplicates with conflicting labels")
        self.f_disputed = QCheckBox("disputed: annotators decided differently")
        self.f_disputed.setToolTip("Images that two annotators' review packages decided differently and no one has "
                                   "settled here yet: your decision settles them (logged as adjudication)")
        self.f_disputed.setVisible(False)  # offered once packages with decisions were merged (set_team)
        self.f_search = QLineEdit(placeholderText="file name contains… (Esc: back to the queue)")
        self._search_timer = QTimer(self, singleShot=True, interval=250)  # filters as you type
        self._search_timer.timeout.connect(self._emit)
        for combo in (self.f_given, self.f_consensus, self.f_reason, self.f_status, self.f_issue):
            combo.currentIndexChanged.connect(self._emit)
        for box in (self.f_min, self.f_max):
            box.valueChanged.connect(self._emit)
        for check in (self.f_disagree, self.f_duplicate, self.f_conflict, self.f_disputed):
            check.toggled.connect(self._emit)
        self.f_search.textChanged.connect(lambda _t: self._search_timer.start())
        self.f_search.returnPressed.connect(self._emit)
        clear = QPushButton("Clear filters")
        clear.clicked.connect(self.clear)
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow(switch)
        form.addRow(self.view_hint)
        form.addRow(QLabel("Sort by"))
        form.addRow(self.sort)  # the whole panel's width: a sort's plain words read in full
        for label, w in (("Given label", self.f_given), ("Models' pick", self.f_consensus),
                         ("Why here", self.f_reason), ("Status", self.f_status), ("Image issue", self.f_issue)):
            form.addRow(label, w)
        form.addRow(self.range_label)
        form.addRow("≥", self.f_min)
        form.addRow("≤", self.f_max)
        form.addRow(self.f_disagree)
        form.addRow(self.f_duplicate)
        form.addRow(self.f_conflict)
        form.addRow(self.f_disputed)
        form.addRow("Search", self.f_search)
        form.addRow(clear)
        self._quiet = False
        with self._silenced():
            self.set_sort(LABEL_SORT)

    def _fill_sorts(self, offered: set[str] | None) -> None:
        """The sort menu: every score of the table (``offered``: only those), then the file name."""
        self.sort.clear()
        for _text, key in sorts():
            if offered is None or key in offered or not is_score(key):
                self.sort.addItem(_short(key), key)
                self.sort.setItemData(self.sort.count() - 1, _tip(key), Qt.ItemDataRole.ToolTipRole)

    def offer(self, keys: set[str]) -> None:
        """Offer only the sorts some image has a value of (``Queue.scored_keys``); an unscored
        project, which has none, is offered all. The sort stays when it is still offered."""
        current = str(self.sort.currentData())
        offered = keys or None
        with self._silenced():
            self._fill_sorts(offered)
            self.set_sort(current)  # or the view's default when it is no longer offered
        if str(self.sort.currentData()) != current:
            self._emit()  # the queue follows the sort shown

    def view(self) -> str:
        """``label`` or ``difficulty``: the view of the current sort (path counts as difficulty)."""
        key = str(self.sort.currentData())
        return score(key).view if is_score(key) else "difficulty"

    def set_sort(self, key: str) -> None:
        """Show ``key`` as the sort (its view's switch pressed, its range boxes set) and emit."""
        found = [i for i in (self.sort.findData(k) for k in (key, LABEL_SORT, DIFFICULTY_SORT)) if i >= 0]
        self.sort.setCurrentIndex(found[0] if found else 0)  # emits through _on_sort_changed

    def _on_view_clicked(self, button: QPushButton) -> None:
        view = next(v for v, b in self.view_buttons.items() if b is button)
        if view != self.view():
            self.set_sort(LABEL_SORT if view == "label" else DIFFICULTY_SORT)

    def _on_sort_changed(self, *_: Any) -> None:
        """Press the sort's view, say what it finds, and give the range boxes the sort's range."""
        view = self.view()
        self.view_buttons[view].setChecked(True)
        self.view_hint.setText(f"<small>{VIEWS[view][1]}</small>")
        self._range_key = None
        self._set_range_key(self._range_for())
        self._emit()

    def _range_for(self) -> str:
        sort = str(self.sort.currentData())
        return self._range_key or (sort if is_score(sort) else DIFFICULTY_SORT)

    def _set_range_key(self, key: str) -> None:
        """The range boxes measure ``key``: its range from the vocabulary, one step below it = unset."""
        s = score(key)
        self.range_label.setText(f"<small>{s.words} between</small>")
        self.range_label.setToolTip(s.tooltip)
        self._scale = 100.0 if s.fmt.endswith("%") else 1.0  # a chance is typed as it is shown: in percent
        step = 0.001 * self._scale
        for box in (self.f_min, self.f_max):
            was = self._quiet
            self._quiet = True
            box.setDecimals(1 if self._scale > 1 else 3)
            box.setSuffix(" %" if self._scale > 1 else "")
            box.setSingleStep(5.0 if self._scale > 1 else 0.05)
            box.setRange(s.lo * self._scale - step, s.hi * self._scale)
            box.setValue(s.lo * self._scale - step)
            self._quiet = was

    def _set(self, box: QDoubleSpinBox) -> float | None:
        return None if box.value() <= box.minimum() else float(box.value()) / self._scale

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
            score_min=self._set(self.f_min),
            score_max=self._set(self.f_max),
            score_key=self._range_for(),
            disagrees=self.f_disagree.isChecked(),
            search=self.f_search.text().strip() or None,
            duplicate=self.f_duplicate.isChecked(),
            conflict=self.f_conflict.isChecked(),
            issue=self.f_issue.currentData(),
            disputed=self.f_disputed.isChecked(),
        )

    def state(self) -> dict[str, Any]:
        """The panel as plain data (the window remembers it per project)."""
        sort, filt = self.value()
        return {"sort": sort, "filter": asdict(filt)}

    def restore(self, state: dict[str, Any]) -> None:
        """Set sort and filters from :meth:`state`'s output, then emit once."""
        with self._silenced():
            self.set_sort(str(state.get("sort") or LABEL_SORT))
        fields = {k: v for k, v in cast(dict[str, Any], state.get("filter") or {}).items() if k in QueueFilter.__dataclass_fields__}
        self.show_filter(QueueFilter(**fields))

    def show_filter(self, filt: QueueFilter) -> None:
        """Set the widgets to ``filt`` (e.g. a click in the overview) and emit once. The sort
        stays: a range on another score is shown as that score's range."""
        with self._silenced():
            self._reset()
            if filt.given_label is not None:
                self.f_given.setCurrentIndex(filt.given_label + 1)
            if filt.consensus is not None:
                self.f_consensus.setCurrentIndex(filt.consensus + 1)
            for combo, value in ((self.f_reason, filt.reason), (self.f_status, filt.status), (self.f_issue, filt.issue)):
                if value is not None:
                    combo.setCurrentIndex(max(0, combo.findData(value)))
            if (filt.score_min is not None or filt.score_max is not None) and is_score(filt.score_key):
                sort = str(self.sort.currentData())
                self._range_key = None if filt.score_key == sort else filt.score_key
                self._set_range_key(filt.score_key)
                if filt.score_min is not None:
                    self.f_min.setValue(filt.score_min * self._scale)
                if filt.score_max is not None:
                    self.f_max.setValue(filt.score_max * self._scale)
            self.f_disagree.setChecked(filt.disagrees)
            self.f_duplicate.setChecked(filt.duplicate)
            self.f_conflict.setChecked(filt.conflict)
            self.f_disputed.setChecked(filt.disputed)
            if filt.disputed:
                self.f_disputed.setVisible(True)
            self.f_search.setText(filt.search or "")
            self._search_timer.stop()
        self._emit()

    def set_team(self, merged: bool) -> None:
        """Offer the disputed filter only where packages were merged (no filter without data)."""
        self.f_disputed.setVisible(merged or self.f_disputed.isChecked())

    def toggle_disputed(self) -> None:
        """Only the disputed images (Ctrl+Shift+U), or all again."""
        _sort, filt = self.value()
        filt.disputed = not filt.disputed
        self.show_filter(filt)

    def toggle_status(self, status: str) -> None:
        """Only images of ``status`` (Ctrl+U: the unreviewed ones), or all again."""
        _sort, filt = self.value()
        filt.status = None if filt.status == status else status
        self.show_filter(filt)

    def pick(self, name: str) -> None:
        """Open one of the panel's lists from the keyboard (the View menu's Sort and Filter
        items): arrows choose, Enter applies, and the next review key goes back to the queue."""
        combo = getattr(self, name)
        combo.setFocus()
        combo.showPopup()

    def focus_search(self) -> None:
        """The file-name search from the keyboard (Ctrl+F, the View menu): what is typed next is a
        search, not a review key (typing "12" after a Ctrl+F that went nowhere relabelled two
        images in a keys-only trial); Esc goes back to the queue."""
        self.f_search.setFocus()
        self.f_search.selectAll()

    def clear(self) -> None:
        with self._silenced():
            self._reset()
        self._emit()

    def _reset(self) -> None:
        for combo in (self.f_given, self.f_consensus, self.f_reason, self.f_status, self.f_issue):
            combo.setCurrentIndex(0)
        self._range_key = None
        self._set_range_key(self._range_for())
        for box in (self.f_disagree, self.f_duplicate, self.f_conflict, self.f_disputed):
            box.setChecked(False)
        self.f_search.clear()
        self._search_timer.stop()

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

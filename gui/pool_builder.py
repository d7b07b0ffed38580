"""The Score dialog's pool builder: a list of members, each added, edited or removed with a form.

The automatic pool is preselected (or the last run's pool); each row shows the member and an
estimate of its time here; pools are saved to and loaded from TOML pool files. Every spec the
forms produce is checked by :func:`scoring.pool.kinds.validate_member`, like a pool file.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui import files
from gui.offthread import LatestOnly
from scoring.errors import ImageTriageError
from scoring.io.safewrite import replace_file
from scoring.pool.kinds import get_kind, kinds, validate_member
from scoring.pool.spec import dump_pool_toml, load_pool_file
from scoring.tasks.autopool import Facts, choose, estimate_seconds
from scoring.vocabulary import clock, member_words

SpecRole = Qt.ItemDataRole.UserRole
BUDGETS: tuple[tuple[str, float | None], ...] = (
    ("Any: the quick automatic pool", None), ("3 minutes", 180.0), ("10 minutes", 600.0), ("30 minutes", 1800.0),
    ("1 hour", 3600.0), ("A night (8 hours)", 28_800.0))


def _error_label() -> QLabel:
    label = QLabel(wordWrap=True)
    label.setStyleSheet("color: #ef5350")
    return label


_fmt = clock


class MemberForm(QDialog):
    """One member's keys as a form; ``spec()`` is the validated member."""

    def __init__(self, kind: str, spec: Mapping[str, Any] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        spec = dict(spec or {"kind": kind})
        self.kind = kind
        info = get_kind(kind)
        self.setWindowTitle(f"{kind} member")
        self.name = QLineEdit(str(spec.get("name", "")))
        self.arch = QComboBox(editable=True)
        for arch in info.archs:
            self.arch.addItem(self._arch_label(arch), arch)
        self.arch.setCurrentText(self._arch_label(str(spec.get("arch", (*info.archs, "")[0]))))
        self.path = QLineEdit(str(spec.get("path", "")))
        self.classes_file = QLineEdit(str(spec.get("classes_file", "")))
        self.input_size = QSpinBox(minimum=0, maximum=4096, value=int((spec.get("preprocess") or {}).get("size", 0)))
        self.epochs = QSpinBox(minimum=0, maximum=1000, value=int(spec.get("epochs", 0)))
        for box in (self.input_size, self.epochs):
            box.setSpecialValueText("default")
        self.error = _error_label()
        form = QFormLayout()
        form.addRow(QLabel(info.help, wordWrap=True))
        form.addRow("Name", self.name)
        if "arch" in info.keys:
            form.addRow("Architecture", self.arch)
        if "path" in info.keys:  # a model file of the user's: its weights and its class names
            form.addRow("Weights file", self._with_browse(self.path, "Checkpoint (*.pt *.pth *.th *.bin);;All files (*)"))
            form.addRow("Class names file", self._with_browse(self.classes_file, "Text (*.txt);;All files (*)"))
        form.addRow("Input size (px)", self.input_size)
        if "epochs" in info.keys:
            form.addRow("Epochs", self.epochs)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._on_accepted)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self._base = {k: v for k, v in spec.items() if k not in ("name", "arch", "path", "classes_file", "epochs")}
        self._spec: Mapping[str, Any] = {}

    @staticmethod
    def _arch_label(arch: str) -> str:
        from scoring.pool.weights import available

        where = available(arch)
        return arch if where == "missing" else f"{arch} ({where})"

    def _with_browse(self, line: QLineEdit, filt: str) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(line)
        b = QPushButton("Browse…")
        b.clicked.connect(lambda: self._browse(line, filt))
        row.addWidget(b)
        return w

    def _browse(self, line: QLineEdit, filt: str) -> None:
        path = files.open_file(self, "Choose a file", "", filt)
        if path:
            line.setText(path)

    def build(self) -> Mapping[str, Any]:
        spec = dict(self._base)
        spec["kind"] = self.kind
        if self.name.text().strip():
            spec["name"] = self.name.text().strip()
        if "arch" in get_kind(self.kind).keys:
            spec["arch"] = self.arch.currentText().split(" (")[0].strip()
        for key, line in (("path", self.path), ("classes_file", self.classes_file)):
            if line.text().strip():
                spec[key] = line.text().strip()
        pp = dict(spec.get("preprocess") or {})
        if self.input_size.value():
            pp["size"] = self.input_size.value()
        if pp:
            spec["preprocess"] = pp
        if self.epochs.value():
            spec["epochs"] = self.epochs.value()
        return validate_member(spec, f"{self.kind} member")

    def _on_accepted(self) -> None:
        try:
            self._spec = self.build()
        except ImageTriageError as exc:
            self.error.setText(str(exc))
            return
        self.accept()

    def spec(self) -> Mapping[str, Any]:
        return self._spec


def _time_member(spec: Mapping[str, Any], facts: Facts) -> tuple[float | None, str]:
    """(seconds, "") or (None, why): one member timed here (runs on a pool thread)."""
    import torch

    try:
        return estimate_seconds([spec], facts, torch.device("cuda" if facts.gpu else "cpu")), ""
    except ImageTriageError as exc:
        return None, str(exc)


class PoolBuilder(QWidget):
    """The list of members with Add / Edit / Remove / Load / Save / Automatic."""

    def __init__(self, facts: Facts, initial: Sequence[Mapping[str, Any]] | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.facts = facts
        self.list = QListWidget()
        self.list.itemDoubleClicked.connect(lambda _item: self.edit_current())
        self.total = QLabel()
        self.error = _error_label()
        adds = QHBoxLayout()
        for kind, info in kinds().items():
            b = QPushButton(f"Add {kind}…")
            b.setToolTip(info.help)
            b.clicked.connect(lambda _=False, k=kind: self.add_with_form(k))
            adds.addWidget(b)
        tools = QHBoxLayout()
        for text, slot in (("Edit…", self.edit_current), ("Remove", self.remove_current),
                           ("Automatic pool", self.reset_automatic), ("Load pool file…", self._on_load_clicked),
                           ("Save pool file…", self._on_save_clicked)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            tools.addWidget(b)
        # the time the user has (issue 34): the richest automatic pool whose measured time fits
        self.budget = QComboBox()
        for text, seconds in BUDGETS:
            self.budget.addItem(text, seconds)
        self.budget.setToolTip("Image Triage times each pool it could use on this machine and takes the richest whose "
                               "time fits (the command line's --budget); the list below stays yours to edit")
        self.budget.currentIndexChanged.connect(lambda _i: self.choose_for_budget())
        self.budget_note = QLabel(wordWrap=True)
        self._budgeter = LatestOnly("pool for the time budget", self)
        self._budgeter.done.connect(self._on_budget_chosen)
        self._budgeter.failed.connect(self.error.setText)
        have = QHBoxLayout()
        have_label = QLabel("&Time you have")  # Alt+T: keys only, as an annotator works
        have_label.setBuddy(self.budget)
        have.addWidget(have_label)
        have.addWidget(self.budget, 1)
        # where the list came from, kept true as it changes: it said "the pool of the last run"
        # after the time you have had replaced the list
        self.origin = QLabel(wordWrap=True)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.origin)
        lay.addLayout(have)
        lay.addWidget(self.budget_note)
        lay.addWidget(self.list)
        lay.addLayout(adds)
        lay.addLayout(tools)
        lay.addWidget(self.total)
        lay.addWidget(self.error)
        self.reasons: list[str] = []
        self._timer = LatestOnly("member timing", self)
        self._timer.done.connect(self._on_timed)
        self._timer.failed.connect(self.error.setText)
        # the estimate shows without a button (issue 29): timed when the builder is shown and
        # again a moment after each change of the list, on a pool thread
        self._soon = QTimer(self)
        self._soon.setSingleShot(True)
        self._soon.setInterval(400)
        self._soon.timeout.connect(self.estimate)
        if initial:
            self.set_specs(initial)
            self._set_origin("the pool of the last run")
        else:
            self.reset_automatic()

    # --- the list ------------------------------------------------------------------------

    def set_specs(self, specs: Sequence[Mapping[str, Any]], seconds: list[float | None] | None = None) -> None:
        self.list.clear()
        for i, spec in enumerate(specs):
            self._add_item(spec, None if seconds is None else seconds[i])
        self._changed()

    def _set_origin(self, heading: str, reasons: Sequence[str] = ()) -> None:
        self.reasons = list(reasons)
        why = "".join(f"<br>· {html.escape(r)}" for r in self.reasons)
        self.origin.setText(f"<b>Pool</b>: {html.escape(heading)}{why}")

    def _changed(self) -> None:
        self._update_total()
        if self.isVisible():
            self._soon.start()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 - Qt's name
        super().showEvent(event)
        if any(self.list.item(i).data(SpecRole + 1) is None for i in range(self.list.count())):
            self._soon.start()

    def _add_item(self, spec: Mapping[str, Any], seconds: float | None = None) -> None:
        item = QListWidgetItem()
        item.setData(SpecRole, dict(spec))
        self._label(item, seconds)
        self.list.addItem(item)
        self.list.setCurrentItem(item)

    def _label(self, item: QListWidgetItem, seconds: float | None) -> None:
        spec = item.data(SpecRole)
        where = spec.get("path", "").rsplit("/", 1)[-1]
        est = "" if seconds is None else f" · about {_fmt(seconds)}"
        words = member_words([{"name": spec.get("name", spec["kind"]), "kind": spec["kind"], "spec": spec}])[0]
        copies = len(spec.get("seeds") or [0]) * len(spec.get("fractions") or [1])
        many = f", {copies} of them" if copies > 1 else ""
        item.setText(f"{words}{many}{est}")  # plain words; the spec's own terms in the tooltip
        item.setToolTip(f"{spec.get('name', spec['kind'])}: {spec['kind']} {spec.get('arch', '')} {where}".strip())
        item.setData(SpecRole + 1, seconds)

    def specs(self) -> list[Mapping[str, Any]]:
        return [self.list.item(i).data(SpecRole) for i in range(self.list.count())]

    def add_with_form(self, kind: str) -> None:
        form = MemberForm(kind, parent=self)
        if form.exec():
            self._add_item(form.spec())
            self._set_origin("your own list")
            self._changed()

    def edit_current(self) -> None:
        item = self.list.currentItem()
        if item is None:
            return
        spec = item.data(SpecRole)
        form = MemberForm(spec["kind"], spec, parent=self)
        if form.exec():
            item.setData(SpecRole, form.spec())
            self._label(item, None)
            self._set_origin("your own list")
            self._changed()

    def remove_current(self) -> None:
        row = self.list.currentRow()
        if row >= 0:
            self.list.takeItem(row)
            self._set_origin("your own list")
            self._changed()

    def reset_automatic(self) -> None:
        try:
            choice = choose(self.facts)
        except ImageTriageError as exc:
            self.error.setText(str(exc))
            return
        self.set_specs(choice.specs)
        self._set_origin("chosen automatically for this dataset", choice.reasons)
        self.setToolTip("\n".join(choice.reasons))

    def choose_for_budget(self) -> None:
        """The richest automatic pool that fits the time chosen, timed on a pool thread (the
        window keeps its keys); "any" is the quick automatic pool, as with no --budget."""
        seconds = self.budget.currentData()
        if seconds is None:
            self.budget_note.clear()
            self.reset_automatic()
            return
        facts, shown = self.facts, self.specs()
        self.budget_note.setText(f"Timing the pools that could fit {self.budget.currentText().lower()} here…")

        def choose() -> tuple[float, list[Mapping[str, Any]], Any]:
            import torch

            from scoring.tasks.budget import choose_for_budget

            return seconds, shown, choose_for_budget(facts, seconds, torch.device("cuda" if facts.gpu else "cpu"))

        self._budgeter.submit(choose)

    def _on_budget_chosen(self, result: tuple[float, list[Mapping[str, Any]], Any]) -> None:
        seconds, shown, choice = result
        if seconds != self.budget.currentData() or shown != self.specs():
            return  # the time or the list changed meanwhile: the user's choice stands
        self.budget_note.setText(choice.reasons[0][:1].upper() + choice.reasons[0][1:])
        self.setToolTip("\n".join(choice.reasons))
        self.set_specs(choice.specs)
        self._set_origin(f"chosen for the time you have ({self.budget.currentText().lower()})", choice.reasons[1:])

    def _on_load_clicked(self) -> None:
        path = files.open_file(self, "Pool file", "", "Pool files (*.toml *.json)")
        if path:
            self.load(Path(path))

    def load(self, path: Path) -> None:
        try:
            self.set_specs(load_pool_file(path))
            self._set_origin(f"from {path.name}")
            self.error.clear()
        except ImageTriageError as exc:
            self.error.setText(str(exc))

    def _on_save_clicked(self) -> None:
        path = files.save_file(self, "Save pool file", "pool.toml", "Pool files (*.toml)")
        if path:
            self.save(Path(path))

    def save(self, path: Path) -> None:
        try:
            replace_file(path, dump_pool_toml(self.specs(), ["pool saved by Image Triage"]).encode())
        except (OSError, ImageTriageError) as exc:
            self.error.setText(f"{path}: not saved ({exc})")

    def estimate(self) -> None:
        """Each member's time here, from timing its network on one batch (as pool check does), on
        a pool thread: the window keeps taking keys and says that it is timing."""
        specs = [dict(self.list.item(i).data(SpecRole)) for i in range(self.list.count())]
        facts = self.facts
        self.total.setText(f"Timing each of the {len(specs)} members on a batch of images here…")
        self.error.setText("")
        self._timer.submit(lambda: (specs, [_time_member(spec, facts) for spec in specs]))

    def _on_timed(self, timed: tuple[list[dict[str, Any]], list[tuple[float | None, str]]]) -> None:
        specs, results = timed
        if specs != [self.list.item(i).data(SpecRole) for i in range(self.list.count())]:
            return  # the list changed meanwhile: its change timed it again
        for i, (seconds, why) in enumerate(results):
            self._label(self.list.item(i), seconds)
            if why:
                self.error.setText(why)
        self._update_total()

    def _update_total(self) -> None:
        times = [self.list.item(i).data(SpecRole + 1) for i in range(self.list.count())]
        known = [t for t in times if t is not None]
        n = self.list.count()
        text = f"{n} member spec{'s' if n != 1 else ''}"
        if known:
            from scoring.tasks.estimate_time import calibrate

            _, (lo, hi), note = calibrate(sum(known), None, self.facts.n_images)  # this machine's earlier runs correct the measurement
            text += f", {_fmt(lo)} to {_fmt(hi)} in all (measured here{note})" + (
                "" if len(known) == n else " (some not estimated)")
        self.total.setText(text)

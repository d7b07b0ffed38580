"""Dialogs: choose a pool and run scoring; export the cleaned dataset."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from gui import files
from scoring.device import DEVICES, RUNTIMES
from scoring.io.formats import export_formats
from scoring.pool.weights import is_offline, set_offline
from scoring.tasks.autopool import Facts
from scoring.tasks.export import LINKS


class ScoreDialog(QDialog):
    """Build the pool (the automatic one preselected, or the last run's), pick device and batch
    size; ``specs()`` gives the pool spec."""

    def __init__(self, facts: Facts, last_specs: Sequence[Mapping[str, Any]] | None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Score the dataset")
        self.resize(760, 480)
        # The pool's kinds and torch come with it: the survey's thread imported them first.
        from gui.pool_builder import PoolBuilder

        self.builder = PoolBuilder(facts, last_specs, self)
        self.device = QComboBox()
        self.device.addItems(list(DEVICES))
        self.batch = QSpinBox(minimum=1, maximum=4096, value=64)
        self.runtime = QComboBox()
        self.runtime.addItems(list(RUNTIMES))
        self.runtime.setToolTip("Where the frozen networks run: auto is ONNX Runtime on a CPU (several times faster "
                                "than torch there) when it is installed and gives torch's outputs, torch elsewhere")
        self.offline = QCheckBox("Never download weights (offline)")
        self.offline.setChecked(is_offline())
        form = QFormLayout()
        form.addRow("Device", self.device)
        form.addRow("Batch size", self.batch)
        form.addRow("Runtime", self.runtime)
        form.addRow("", self.offline)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Score")
        buttons.accepted.connect(self._on_accepted)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.builder, 1)
        lay.addLayout(form)
        lay.addWidget(buttons)
        self._specs: list[Mapping[str, Any]] = []

    def _on_accepted(self) -> None:
        specs = self.builder.specs()
        if not specs:
            self.builder.error.setText("add at least one member")
            return
        set_offline(self.offline.isChecked())
        self._specs = specs
        self.accept()

    def remembered(self) -> dict[str, Any]:
        """What the next scoring of this project starts from (the pool comes from its last run)."""
        return {"device": self.device.currentText(), "batch": self.batch.value(), "runtime": self.runtime.currentText()}

    def restore(self, values: dict[str, Any]) -> None:
        """Set the widgets from :meth:`remembered`'s output (unknown or bad values are ignored)."""
        for combo, name in ((self.device, "device"), (self.runtime, "runtime")):
            if combo.findText(str(values.get(name))) >= 0:
                combo.setCurrentText(str(values[name]))
        if isinstance(values.get("batch"), int):
            self.batch.setValue(values["batch"])

    def specs(self) -> list[Mapping[str, Any]]:
        return self._specs


class ExportDialog(QDialog):
    """Destination, format, link mode and audit options for ``scoring.tasks.export``."""

    def __init__(self, default_dest: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export the cleaned dataset")
        self.dest = QLineEdit(str(default_dest))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse_clicked)
        self.fmt = QComboBox()
        for f in export_formats().values():
            self.fmt.addItem(f.name)
            self.fmt.setItemData(self.fmt.count() - 1, f.writes or f.help, Qt.ItemDataRole.ToolTipRole)
        self.link = QComboBox()
        self.link.addItems(list(LINKS))
        self.audit = QCheckBox("List removed images (removed.csv) for audit")
        self.audit.setChecked(True)
        self.force = QCheckBox("Replace an earlier export in this folder (never any other folder)")
        self.drop_duplicates = QCheckBox("Keep one image per duplicate group (the one you kept, else the first not removed)")
        row = QHBoxLayout()
        row.addWidget(self.dest)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Destination", row)
        form.addRow("Format", self.fmt)
        form.addRow("Files", self.link)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Export")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Your original files are never modified. Relabels are applied; removed images are left out."))
        lay.addLayout(form)
        lay.addWidget(self.audit)
        lay.addWidget(self.drop_duplicates)
        lay.addWidget(self.force)
        lay.addWidget(buttons)

    def _on_browse_clicked(self) -> None:
        path = files.existing_folder(self, "Export into")
        if path:
            self.dest.setText(path)

    def options(self) -> dict[str, Any]:
        return {
            "dest": Path(self.dest.text().strip()),
            "fmt": self.fmt.currentText(),
            "link": self.link.currentText(),
            "audit": self.audit.isChecked(),
            "force": self.force.isChecked(),
            "drop_duplicates": self.drop_duplicates.isChecked(),
        }

    def remembered(self) -> dict[str, Any]:
        """What the next export of this project starts from: everything but "replace", which is
        asked each time (an earlier export is replaced only when the user says so now)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in self.options().items() if k != "force"}

    def restore(self, values: dict[str, Any]) -> None:
        """Set the widgets from :meth:`remembered`'s output (unknown or bad values are ignored)."""
        if isinstance(values.get("dest"), str) and values["dest"]:
            self.dest.setText(values["dest"])
        for combo, key in ((self.fmt, "fmt"), (self.link, "link")):
            if combo.findText(str(values.get(key))) >= 0:
                combo.setCurrentText(str(values[key]))
        for box, key in ((self.audit, "audit"), (self.drop_duplicates, "drop_duplicates")):
            if isinstance(values.get(key), bool):
                box.setChecked(values[key])


class ReviewSettingsDialog(QDialog):
    """When to suggest stopping, and how often the queue re-ranks itself from the decisions."""

    def __init__(self, stop_below: float, rerank_every: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Review settings")
        self.setMinimumWidth(440)
        self.stop_below = QDoubleSpinBox(minimum=0.0, maximum=100.0, singleStep=0.5, decimals=1, value=stop_below)
        self.rerank_every = QSpinBox(minimum=0, maximum=10_000, value=rerank_every)
        self.rerank_every.setSpecialValueText("never")
        form = QFormLayout(self)
        form.addRow(QLabel("Suggest stopping when the next 100 images of the queue are expected to hold "
                           "fewer label errors than:", wordWrap=True))
        form.addRow("errors", self.stop_below)
        form.addRow(QLabel("Refit the pool's heads on your decisions and re-rank the rest of the queue after "
                           "every this many decisions (Scoring ▸ Re-rank does it at once):", wordWrap=True))
        form.addRow("decisions", self.rerank_every)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> tuple[float, int]:
        return float(self.stop_below.value()), int(self.rerank_every.value())

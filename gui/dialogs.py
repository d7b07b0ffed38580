"""Dialogs: choose a pool and run scoring; export the cleaned dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from scoring.pool import PoolError
from scoring.poolspec import default_scratch_specs, load_pool_file, parse_member_arg


class ScoreDialog(QDialog):
    """Choose pool members, device and batch size; ``specs()`` gives the pool spec."""

    def __init__(self, last_specs: list[dict[str, Any]] | None, n_images: int, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Score the dataset")
        self.n_images = n_images
        self.last_specs = last_specs
        self.use_last = QRadioButton("The pool of the last run")
        self.use_last.setEnabled(bool(last_specs))
        self.use_scratch = QRadioButton("Built-in: small networks trained from scratch (5-fold cross-fitted)")
        self.use_file = QRadioButton("A pool file (TOML or JSON):")
        self.pool_file = QLineEdit()
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse_clicked)
        self.use_members = QRadioButton("Members, one per line (kind:key=value,…):")
        self.members = QPlainTextEdit()
        self.members.setPlaceholderText(
            "checkpoint:path=/models/r20.th,arch=cifar_resnet20,classes_file=/models/classes.txt,size=32\n"
            "backbone:arch=resnet18,fractions=0.25/0.5/1.0\nscratch:arch=small_cnn,seeds=0/1,size=28,grayscale=true"
        )
        self.members.setMaximumHeight(90)
        (self.use_last if last_specs else self.use_scratch).setChecked(True)
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda", "mps"])
        self.batch = QSpinBox(minimum=1, maximum=4096, value=64)
        self.error = QLabel(styleSheet="color: #ef5350")
        row = QHBoxLayout()
        row.addWidget(self.pool_file)
        row.addWidget(browse)
        form = QFormLayout()
        form.addRow("Device", self.device)
        form.addRow("Batch size", self.batch)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Score")
        buttons.accepted.connect(self._on_accepted)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("<b>Pool</b>"))
        for w in (self.use_last, self.use_scratch, self.use_file):
            lay.addWidget(w)
        lay.addLayout(row)
        lay.addWidget(self.use_members)
        lay.addWidget(self.members)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)
        self._specs: list[dict[str, Any]] = []

    def _on_browse_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Pool file", "", "Pool files (*.toml *.json)")
        if path:
            self.pool_file.setText(path)
            self.use_file.setChecked(True)

    def _on_accepted(self) -> None:
        try:
            self._specs = self._build()
        except (PoolError, OSError) as exc:
            self.error.setText(str(exc))
            return
        self.accept()

    def _build(self) -> list[dict[str, Any]]:
        if self.use_last.isChecked() and self.last_specs:
            return list(self.last_specs)
        if self.use_scratch.isChecked():
            return default_scratch_specs(self.n_images)
        if self.use_file.isChecked():
            return load_pool_file(self.pool_file.text().strip())
        lines = [ln.strip() for ln in self.members.toPlainText().splitlines() if ln.strip()]
        if not lines:
            raise PoolError("write at least one member line")
        return [parse_member_arg(ln) for ln in lines]

    def specs(self) -> list[dict[str, Any]]:
        return self._specs


class ExportDialog(QDialog):
    """Destination, format, link mode and audit options for ``scoring.export``."""

    def __init__(self, default_dest: Path, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Export the cleaned dataset")
        self.dest = QLineEdit(str(default_dest))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._on_browse_clicked)
        self.fmt = QComboBox()
        self.fmt.addItems(["imagefolder", "csv", "json"])
        self.link = QComboBox()
        self.link.addItems(["hardlink", "copy", "symlink"])
        self.audit = QCheckBox("List removed images (removed.csv) for audit", checked=True)
        self.force = QCheckBox("Replace an earlier export in this folder (never any other folder)")
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
        lay.addWidget(self.force)
        lay.addWidget(buttons)

    def _on_browse_clicked(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export into")
        if path:
            self.dest.setText(path)

    def options(self) -> dict[str, Any]:
        return {
            "dest": Path(self.dest.text().strip()),
            "fmt": self.fmt.currentText(),
            "link": self.link.currentText(),
            "audit": self.audit.isChecked(),
            "force": self.force.isChecked(),
        }

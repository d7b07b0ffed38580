"""The app's file dialogs, all through one rule: a dialog never reads a file's content.

Qt's file dialog asks its icon provider for each entry's type, and the default provider sniffs
the content (QMimeDatabase) of every file without a known extension: it opens and closes the
project's ``.triage.db``, ``-wal`` and ``-shm`` read-only. On Linux and macOS closing *any*
descriptor of a file drops every POSIX lock this process holds on it, SQLite's included; the
next process to close its connection to the project then believes it is the last, checkpoints
and deletes the WAL while the app still writes into it, and the app's decisions go into an
unlinked file (seen under Xvfb: a merge's dialog in the project's folder, then a key whose edit
no other process could see). SQLite's own documentation names this hazard ("How To Corrupt An
SQLite Database File", section 2.2). So every dialog here is Qt's own (a platform dialog may
sniff the same way, in this process) with an icon provider that looks at names only.
"""

from __future__ import annotations

from PySide6.QtCore import QFileInfo
from PySide6.QtGui import QAbstractFileIconProvider, QIcon
from PySide6.QtWidgets import QFileDialog, QWidget


class NamesOnly(QAbstractFileIconProvider):
    """Types and icons from the entry's kind (folder or file), never from its content."""

    def type(self, info: QFileInfo) -> str:  # noqa: A003 - Qt's name
        return "Folder" if info.isDir() else "File"

    def icon(self, _what: object) -> QIcon:
        return QIcon()


class SafeFileDialog(QFileDialog):
    """Qt's own file dialog with the names-only icon provider (kept alive with the dialog)."""

    def __init__(self, parent: QWidget | None, title: str, folder: str, filt: str) -> None:
        super().__init__(parent, title, folder, filt)
        self.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        self._provider = NamesOnly()
        self.setIconProvider(self._provider)


def dialog(parent: QWidget | None, title: str, folder: str = "", filt: str = "",
           mode: QFileDialog.FileMode = QFileDialog.FileMode.ExistingFile, save: bool = False) -> QFileDialog:
    """A file dialog that reads no file (see the module's docstring); shown by the caller."""
    dlg = SafeFileDialog(parent, title, folder, filt)
    dlg.setFileMode(mode)
    if mode == QFileDialog.FileMode.Directory:
        dlg.setOption(QFileDialog.Option.ShowDirsOnly, True)
    if save:
        dlg.setAcceptMode(QFileDialog.AcceptMode.AcceptSave)
    return dlg


def _run(dlg: QFileDialog) -> list[str]:
    return list(dlg.selectedFiles()) if dlg.exec() else []


def open_file(parent: QWidget | None, title: str, folder: str = "", filt: str = "") -> str:
    got = _run(dialog(parent, title, folder, filt))
    return got[0] if got else ""


def open_files(parent: QWidget | None, title: str, folder: str = "", filt: str = "") -> list[str]:
    return _run(dialog(parent, title, folder, filt, QFileDialog.FileMode.ExistingFiles))


def existing_folder(parent: QWidget | None, title: str, folder: str = "") -> str:
    got = _run(dialog(parent, title, folder, "", QFileDialog.FileMode.Directory))
    return got[0] if got else ""


def save_file(parent: QWidget | None, title: str, name: str = "", filt: str = "") -> str:
    got = _run(dialog(parent, title, name, filt, QFileDialog.FileMode.AnyFile, save=True))
    return got[0] if got else ""

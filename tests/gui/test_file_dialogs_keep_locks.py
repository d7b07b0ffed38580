"""A file dialog in the project's folder must not cancel SQLite's locks (seen under Xvfb: after
File ▸ Merge review packages, another process's close deleted the WAL the app was writing, and
the next decision was visible to no one else). Qt's default dialog sniffs each file's content,
opening and closing the project's files; on Linux closing any descriptor of a file drops every
POSIX lock the process holds on it. Every dialog of the app goes through ``gui.files``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication
from PySide6.QtWidgets import QFileDialog

from gui import files
from scoring.store import Project
from tests.gui.conftest import fake_scored

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads Linux's /proc/locks")


def held(path: Path) -> set[str]:
    """Which of the project's files this process holds a POSIX lock on ('' for the database)."""
    inodes = {os.stat(f"{path}{s}").st_ino: s for s in ("", "-shm") if os.path.exists(f"{path}{s}")}
    out = set()
    for line in Path("/proc/locks").read_text().splitlines():
        parts = line.split()
        if len(parts) > 5 and parts[4] == str(os.getpid()):
            ino = int(parts[5].split(":")[-1])
            if ino in inodes:
                out.add(inodes[ino])
    return out


def show_a_while(dlg: QFileDialog) -> None:
    dlg.show()
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)
    dlg.close()


def test_no_dialog_of_the_app_drops_sqlites_locks(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    db = fake_scored(tmp_path, per_class=3, seed=0)
    project = Project.open(db)
    try:
        project._q("SELECT count(*) FROM images")
        before = held(db)
        assert "-shm" in before  # SQLite's lock that says this process uses the WAL
        for mode in (QFileDialog.FileMode.ExistingFile, QFileDialog.FileMode.ExistingFiles,
                     QFileDialog.FileMode.Directory, QFileDialog.FileMode.AnyFile):
            show_a_while(files.dialog(None, "t", str(tmp_path), "", mode))
            assert held(db) == before, mode
        # the consequence, end to end: another process opens and closes the project; the WAL
        # stays, and a decision made here afterwards is seen there
        code = ("import sys; from scoring.store import Project; p = Project.open(sys.argv[1]); "
                "print(len(p.edits.entries())); p.close()")
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        subprocess.run([sys.executable, "-c", code, str(db)], check=True, env=env, capture_output=True)
        assert Path(f"{db}-wal").exists()
        project.edits.keep(int(project.images.scorable_ids()[0]))
        seen = subprocess.run([sys.executable, "-c", code, str(db)], check=True, env=env, capture_output=True,
                              text=True).stdout.strip()
        assert seen == "1"
    finally:
        project.close()


def test_qt_s_own_dialog_would_drop_them_which_is_why_none_is_used(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The cause, kept measured: a plain QFileDialog in the folder cancels the locks."""
    db = fake_scored(tmp_path, per_class=3, seed=0)
    with Project.open(db) as project:
        project._q("SELECT count(*) FROM images")
        before = held(db)
        dlg = QFileDialog(None, "t", str(tmp_path))
        dlg.setOption(QFileDialog.Option.DontUseNativeDialog, True)
        show_a_while(dlg)
        assert held(db) != before


def test_the_app_makes_every_file_dialog_through_gui_files() -> None:
    offenders = []
    for path in sorted((ROOT / "gui").glob("*.py")):
        if path.name == "files.py":
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"QFileDialog\s*[.(]", line):
                offenders.append(f"{path.name}:{n}: {line.strip()}")
    assert offenders == []

"""Issue 31: the laptop that only reviews never waits for torch. The window opens a scored
project, shows the queue, the detail pane with its neighbours and duplicates, takes review
keys and exports, all without importing torch (3.5 s of import here; the whole package on a
machine that need not have it). Checked in a fresh interpreter, as a user starts the app."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from scoring.engine.inference import score_project
from scoring.io.datasets import open_dataset
from scoring.progress import drain
from scoring.store import Project
from scoring.tasks.duplicates import find_duplicates
from tests.scoring.tinypool import make_imagefolder, tiny_pool

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, sys, time
from pathlib import Path
from PySide6.QtCore import QCoreApplication, QSettings, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox
from gui.app import _app

QMessageBox.information = staticmethod(lambda *a, **k: None)  # the export's report: no one to press OK
from gui.main_window import MainWindow

db, ini, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
app = _app()
win = MainWindow(QSettings(ini, QSettings.Format.IniFormat))
win.resize(1366, 768)
win.show()
win.open_project(db, ask_resume=False)

def pump(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)

pump(2.0)
shown = [win.review.current_id()]
for key in (Qt.Key.Key_Return, Qt.Key.Key_Delete, Qt.Key.Key_Return):
    target = QApplication.focusWidget() or win
    QTest.keyClick(target, key)
    pump(0.5)
    shown.append(win.review.current_id())
win.detail.evidence.wait(60_000)
pump(1.0)
neighbours = win.detail.evidence.index is not None
win.jobs.wait_idle(60_000)
edits = len(win.project.edits.entries())
win.tasks.start_export(out)
pump(1.0)
win.jobs.wait_idle(60_000)
pump(1.0)
print(json.dumps({"torch": "torch" in sys.modules, "edits": edits, "shown": shown, "neighbours": neighbours,
                  "exported": out.is_dir() and any(out.rglob("*.png"))}), flush=True)
"""


def test_a_scored_project_is_reviewed_and_exported_without_importing_torch(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=6, corrupt=False)
    shutil.copy(data / "red" / "000.png", data / "blue" / "copy.png")  # a duplicate group in the pane
    db = tmp_path / "p.triage.db"
    Project.create(db, open_dataset(data)).close()
    with Project.open(db) as p:
        classes = list(p.classes)
    drain(score_project(db, pool=tiny_pool(classes), workers=0, runtime="torch"))
    drain(find_duplicates(db))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, str(db), str(tmp_path / "s.ini"), str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=240, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert lines, done.stderr[-3000:]
    got = json.loads(lines[-1])
    assert got["edits"] == 3 and None not in got["shown"], got  # three keys, three decisions
    assert got["exported"] and got["neighbours"], got  # the pane's look-alikes were found, numpy only
    assert got["torch"] is False, "the review window imported torch"

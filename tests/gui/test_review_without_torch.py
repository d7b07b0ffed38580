"""Issue 31: the laptop that only reviews never waits for torch, and reviewing works where the
scoring stack is broken. In a fresh interpreter where ``import torch``, ``torchvision`` and
``onnxruntime`` fail on purpose, the window opens a review package and takes keys, then opens
the scored project, merges the package, shows the queue, the detail pane with its neighbours
and duplicates, undoes and exports; and headless the same path runs through the core."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from scoring.engine.inference import score_project
from scoring.io.formats import open_dataset
from scoring.progress import drain
from scoring.store import Project
from scoring.tasks.duplicates import find_duplicates
from scoring.tasks.share import share_project
from tests.scoring.tinypool import make_imagefolder, tiny_pool

ROOT = Path(__file__).resolve().parents[2]

BLOCK = r"""
import importlib.abc, sys
tried = []
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision", "onnxruntime"):
            tried.append(name)
            raise ImportError(f"{name} is blocked on purpose: reviewing must not need it")
        return None
sys.meta_path.insert(0, _Block())
"""

CHILD = BLOCK + r"""
import json, sys, time
from pathlib import Path
from PySide6.QtCore import QCoreApplication, QSettings, Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QMessageBox
from gui.app import _app

QMessageBox.information = staticmethod(lambda *a, **k: None)  # the export's report: no one to press OK
from gui.main_window import MainWindow

db, ini, out, package = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
app = _app()
win = MainWindow(QSettings(ini, QSettings.Format.IniFormat))
win.resize(1366, 768)
win.show()

def pump(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QCoreApplication.processEvents()
        time.sleep(0.01)

win.open_project(package, ask_resume=False)  # the annotator's package: two keys
pump(1.0)
for key in (Qt.Key.Key_Return, Qt.Key.Key_Delete):
    QTest.keyClick(QApplication.focusWidget() or win, key)
    pump(0.3)
in_package = len(win.project.edits.entries())
win.open_project(db, ask_resume=False)
win.tasks.start_merge([package])
end = time.monotonic() + 60
while win.jobs.busy and time.monotonic() < end:  # the job's end is delivered by this thread's loop
    pump(0.05)
merged = win.project._q("SELECT count(*) FROM edits WHERE via='merge' AND annotator='ana'")[0][0]
before = len(win.project.edits.entries())
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
edits = len(win.project.edits.entries()) - before
win.review.undo()
pump(0.3)
undone = len(win.project.edits.entries()) == before + edits + 1
win.tasks.start_export(out)
pump(1.0)
win.jobs.wait_idle(60_000)
pump(1.0)
print(json.dumps({"torch": "torch" in sys.modules, "tried": tried, "edits": edits, "shown": shown,
                  "neighbours": neighbours, "in_package": in_package, "merged": merged, "undone": undone,
                  "exported": out.is_dir() and any(out.rglob("*.png"))}), flush=True)
"""

HEADLESS = BLOCK + r"""
import json, sys
from pathlib import Path
from scoring.progress import drain
from scoring.store import Project
from scoring.tasks.estimate import errors_left
from scoring.tasks.export import export_dataset
from scoring.tasks.merge import agreement, merge_packages
from scoring.tasks.share import share_project

db, out, to = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
made = share_project(db, to, ["ben", "chloe"], overlap=1.0)
for m in made:
    with Project.open(m.path) as pkg:
        first = int(pkg.images.scorable_ids()[0])
        (pkg.edits.keep if m.annotator == "ben" else pkg.edits.remove)(first)
        pkg.edits.relabel(int(pkg.images.scorable_ids()[1]), 0)
        pkg.edits.undo()
merge_packages(db, [m.path for m in made])
with Project.open(db) as p:
    i = int(p.images.scorable_ids()[-1])
    p.edits.relabel(i, 1)
    p.edits.undo()
    groups = p.dupes.duplicate_groups()
    est = errors_left(p)
    disputed = p.team.disputed_ids()
    figures = agreement(p)
report = drain(export_dataset(db, out))
print(json.dumps({"torch": "torch" in sys.modules, "tried": tried, "groups": len(groups), "estimate": est is not None,
                  "disputed": len(disputed), "pairs": len(figures.pairs), "exported": report.get("exported", 0)}))
"""


def test_review_share_merge_and_export_work_where_torch_cannot_be_imported(tmp_path: Path) -> None:
    data = make_imagefolder(tmp_path / "data", per_class=6, corrupt=False)
    shutil.copy(data / "red" / "000.png", data / "blue" / "copy.png")  # a duplicate group in the pane
    db = tmp_path / "p.triage.db"
    Project.create(db, open_dataset(data)).close()
    with Project.open(db) as p:
        classes = list(p.classes)
    drain(score_project(db, pool=tiny_pool(classes), workers=0, runtime="torch"))
    drain(find_duplicates(db))
    (package,) = share_project(db, tmp_path / "share", ["ana"])
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    headless = subprocess.run([sys.executable, "-c", HEADLESS, str(db), str(tmp_path / "out-headless"),
                               str(tmp_path / "share-headless")],
                              capture_output=True, text=True, env=env, cwd=ROOT, timeout=240, check=False)
    lines = [ln for ln in headless.stdout.splitlines() if ln.startswith("{")]
    assert lines, headless.stderr[-3000:]
    got = json.loads(lines[-1])
    assert got["torch"] is False and got["tried"] == [], got
    assert got["groups"] >= 1 and got["estimate"] and got["disputed"] == 1 and got["pairs"] == 1, got
    assert got["exported"] > 0, got
    done = subprocess.run([sys.executable, "-c", CHILD, str(db), str(tmp_path / "s.ini"), str(tmp_path / "out"),
                           str(package.path)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=240, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    assert lines, done.stderr[-3000:]
    got = json.loads(lines[-1])
    assert got["in_package"] == 2 and got["merged"] >= 1, got  # the package's keys, merged in the window
    assert got["undone"] and got["tried"] == [], got
    assert got["edits"] == 3 and None not in got["shown"], got  # three keys, three decisions
    assert got["exported"] and got["neighbours"], got  # the pane's look-alikes were found, numpy only
    assert got["torch"] is False, "the review window imported torch"

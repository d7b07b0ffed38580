"""Nothing long runs on the GUI thread (issue 30: after a re-score the window once took no key
for about 70 s). Every long call the window makes (scoring, the duplicate search, the re-rank,
the errors-left estimate, the export, the dataset survey behind the Score dialog, the
neighbour index) is wrapped here to note the thread it runs on; the window's whole path on a
small project must call each one, and on a worker thread, never the GUI's.

This is the stall watchdog without a clock: a timed check (any gap over 200 ms) went red on a
busy machine with nothing wrong, so the test checks the cause, where the work runs;
``benchmarks/bench_stalls.py`` measures the longest gap of the event loop itself."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt

from scoring.io.formats import open_dataset
from scoring.store import Project
from tests.gui.conftest import open_window
from tests.scoring.tinypool import make_imagefolder

LONG_CALLS = {  # where the window looks each up -> name
    ("scoring.engine.inference", "score_project"): "scoring",
    ("scoring.tasks.duplicates", "find_duplicates"): "duplicates",
    ("scoring.tasks.rerank", "rerank"): "re-rank",
    ("gui.estimates", "errors_left"): "estimate",
    ("scoring.tasks.export", "export_dataset"): "export",
    ("gui.tasks", "_survey"): "survey",
    ("gui.evidence", "_build_index"): "neighbour index",
}


def _noting(calls: list[tuple[str, bool]], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        out = fn(*args, **kwargs)
        if inspect.isgenerator(out):  # a generator's work runs where it is drained
            def drained() -> Any:
                calls.append((name, threading.current_thread() is threading.main_thread()))
                return (yield from out)
            return drained()
        calls.append((name, threading.current_thread() is threading.main_thread()))
        return out
    return wrapped


def test_every_long_call_of_the_window_runs_off_the_gui_thread(qtbot, settings, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import importlib

    calls: list[tuple[str, bool]] = []
    for (module, attr), name in LONG_CALLS.items():
        mod = importlib.import_module(module)
        monkeypatch.setattr(mod, attr, _noting(calls, name, getattr(mod, attr)))
    from gui.dialogs import ScoreDialog

    monkeypatch.setattr(ScoreDialog, "exec", lambda self: False)  # the survey's dialog, answered "cancel"
    said: list[str] = []
    monkeypatch.setattr("gui.tasks.QMessageBox.information", lambda _w, title, text: said.append(f"{title}: {text}"))
    data = make_imagefolder(tmp_path / "data", per_class=8, corrupt=False)
    Project.create(tmp_path / "p.triage.db", open_dataset(data)).close()
    w = open_window(qtbot, settings, tmp_path / "p.triage.db")
    w.tasks.score_dialog()  # the survey, then the dialog
    qtbot.waitUntil(lambda: any(n == "survey" for n, _ in calls), timeout=60_000)
    spec = {"name": "mlp", "kind": "scratch", "arch": "tiny_mlp", "epochs": 2, "folds": 2, "seeds": [0],
            "preprocess": {"size": 8}}
    w.tasks.start_scoring([spec])
    qtbot.waitUntil(lambda: any(n == "duplicates" for n, _ in calls) and not w.jobs.busy, timeout=180_000)
    for _ in range(3):  # decisions: the estimate follows each
        qtbot.keyClick(w.view, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: any(n == "estimate" for n, _ in calls), timeout=60_000)
    qtbot.waitUntil(lambda: not w.jobs.busy, timeout=60_000)
    w.review.start_rerank()
    qtbot.waitUntil(lambda: any(n == "re-rank" for n, _ in calls) and not w.jobs.busy, timeout=60_000)
    w.tasks.start_export(tmp_path / "out")
    qtbot.waitUntil(lambda: any(n == "export" for n, _ in calls) and not w.jobs.busy, timeout=60_000)
    qtbot.waitUntil(lambda: any(n == "neighbour index" for n, _ in calls), timeout=60_000)
    w.jobs.wait_idle()
    w.close()
    assert said and said[-1].startswith("Exported")
    assert {n for n, _ in calls} == set(LONG_CALLS.values())  # the path called every one
    on_gui = sorted({n for n, main in calls if main})
    assert on_gui == [], f"run on the GUI thread: {on_gui}"


def test_the_collectors_long_passes_are_kept_off_the_event_loop(qtbot, settings, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A full collection holds the interpreter lock for as long as it walks every object (281 ms
    with torch and Qt imported, measured): the window freezes what lives as long as the app when
    it is built and after each job, so a pool thread's collection walks only what is new."""
    import gc

    import gui.collector

    settled: list[int] = []
    real = gui.collector.settle
    monkeypatch.setattr(gui.collector, "settle", lambda: (real(), settled.append(gc.get_freeze_count()))[0])
    data = make_imagefolder(tmp_path / "data", per_class=4, corrupt=False)
    db = tmp_path / "p.triage.db"
    Project.create(db, open_dataset(data)).close()
    w = open_window(qtbot, settings, db)
    assert settled and settled[0] > 10_000  # the modules and classes of torch, numpy and Qt at least
    before = len(settled)
    w.tasks.start_duplicates()
    qtbot.waitUntil(lambda: not w.jobs.busy and len(settled) > before, timeout=120_000)
    assert gc.get_freeze_count() >= settled[0]


def test_the_full_collection_waits_while_a_job_runs_and_runs_on_the_windows_thread(qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """In the app the collector runs from a timer on the window's thread; its full pass walked the
    first scoring's fresh imports there (a stall). While a job runs only the young generations
    are collected; the chain's end settles, then full passes are due again."""
    import gc
    import threading

    from PySide6.QtWidgets import QApplication

    import gui.collector
    from gui.app import _app

    assert _app() is QApplication.instance() and gui.collector._installed is not None and not gc.isenabled()
    done: list[tuple[int, bool]] = []
    monkeypatch.setattr(gc, "get_count", lambda: (10**6, 10**6, 10**6))  # every generation due
    monkeypatch.setattr(gc, "collect", lambda gen=2: done.append((gen, threading.current_thread() is threading.main_thread())) or 0)
    c = gui.collector._installed
    gui.collector.busy(True)
    c.check()
    assert done == [(0, True), (1, True)]
    gui.collector.busy(False)
    c.check()
    assert done[2:] == [(0, True), (1, True), (2, True)]
    qtbot.waitUntil(lambda: len(done) > 5, timeout=5_000)  # and the timer calls it on its own


def test_worker_threads_run_below_the_windows_thread(qtbot) -> None:  # type: ignore[no-untyped-def]
    """On Linux a pool thread and a job's thread lower their own priority (per-thread niceness):
    the window's thread wins a core when the end of a scoring run starts three jobs at once."""
    import os
    import sys

    import pytest

    from gui.offthread import BACKGROUND_NICE, OffThread
    from gui.worker import start_worker

    if sys.platform != "linux":
        pytest.skip("per-thread niceness is Linux's")

    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    mine = niceness()
    got: list[int] = []
    pool = OffThread("niceness")
    pool.done.connect(got.append)
    pool.submit(niceness)
    qtbot.waitUntil(lambda: len(got) == 1, timeout=10_000)

    def job(cancel: threading.Event):  # type: ignore[no-untyped-def]
        got.append(niceness())
        yield from ()

    start_worker(job)
    qtbot.waitUntil(lambda: len(got) == 2, timeout=10_000)
    assert got == [max(mine, BACKGROUND_NICE)] * 2 and niceness() == mine


_STARTS = r'''
import sys, threading
from pathlib import Path
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
from gui.main_window import MainWindow
from scoring.io.formats import open_dataset
from scoring.store import Project
from tests.scoring.tinypool import make_imagefolder

tmp = Path(sys.argv[1])
app = QApplication([])
data = make_imagefolder(tmp / "data", per_class=4, corrupt=False)
Project.create(tmp / "p.triage.db", open_dataset(data)).close()
win = MainWindow(QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
win.show()
assert win.open_project(tmp / "p.triage.db", ask_resume=False)
factories = []
win.jobs.run = lambda factory, *a, **k: factories.append(factory)  # started, never run
imported = []
sys.addaudithook(lambda event, args: event == "import" and threading.current_thread() is threading.main_thread()
                 and imported.append(args[0]))
win.tasks.start_scoring([{"name": "mlp", "kind": "scratch", "arch": "tiny_mlp"}])
win.tasks.start_duplicates()
win.tasks.start_export(tmp / "out")
win.tasks.start_merge([tmp / "nothing.triage.db"])
win.review.start_rerank()
print(len(factories), sorted(set(imported)))
'''


def test_starting_a_job_imports_nothing_on_the_windows_thread(tmp_path: Path) -> None:
    """The first 0.2 s of every scoring run froze the window (bench_stalls.py: 175 ms): the
    window's thread imported the job's core module, and with it torch, before handing the job to
    its thread. In a fresh interpreter, starting each job imports nothing on the window's thread."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", _STARTS, str(tmp_path)], capture_output=True, text=True, env=env,
                         cwd=root, timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "5 []"

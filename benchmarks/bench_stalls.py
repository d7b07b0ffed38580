"""Benchmark: the longest the app's event loop went without turning, per job, on the built-in
demo (1,797 digits) with its own pool: scoring, the duplicate search after it, decisions with
the errors-left estimate, a re-rank and an export. A 10 ms timer notes every gap; the target is
no gap over 200 ms (issue 30: once the window took no key for about 70 s after a re-score).

The test suite checks the cause without a clock (tests/gui/test_gui_thread.py: every long call
runs on a worker thread); this measures the effect, on this machine, now.

Usage: python benchmarks/bench_stalls.py [--quick] [--why]   (QT_QPA_PLATFORM=offscreen is fine)
  --quick: a 60-image project and one tiny member instead of the demo (a minute)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _major_faults() -> int:
    """The process's major page faults so far (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/stat") as fh:  # noqa: PTH123 - the kernel's counters, not a user's file
            return int(fh.read().rsplit(")", 1)[1].split()[9])
    except (OSError, IndexError, ValueError):
        return 0


def _stack(frame):  # type: ignore[no-untyped-def]
    """A thread's frames, oldest first, without reading source lines: linecache's first read of a
    file holds the interpreter lock, and the watcher must not make the stalls it measures."""
    import traceback

    stack = traceback.StackSummary.extract(traceback.walk_stack(frame), lookup_lines=False)
    stack.reverse()
    return stack


class Gaps:
    """The event loop's gaps, measured by a 10 ms timer, kept per phase; a watcher thread notes
    where the GUI thread was whenever it has not ticked for 150 ms (what --why prints)."""

    def __init__(self) -> None:
        import sys
        import threading

        from PySide6.QtCore import QTimer

        self.phase, self.worst, self.last = "start", {}, time.perf_counter()
        self.where: dict[str, int] = {}
        self.others: dict[str, int] = {}
        self.when: list[tuple[str, float, float, str]] = []  # (phase, at s, gap s, the job's last message)
        self.t0, self.message = time.perf_counter(), ""
        # the first tick's use is measured from here too (a getattr default once made it 0 ms, and
        # the first 0.2 s of scoring looked like a stall with nothing running)
        self.cpu, self.proc, self.faults = time.thread_time(), time.process_time(), _major_faults()
        self.timer = QTimer(interval=10)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        main = threading.main_thread().ident

        spy = os.environ.get("STALLS_PYSPY")  # a py-spy binary: `dump --native` at each stall, into stalls-spy-N.txt

        def watch() -> None:
            spied = 0
            while True:
                time.sleep(0.05)
                if spy and time.perf_counter() - self.last > 0.12 and spied < 12:
                    spied += 1
                    import subprocess

                    with open(f"stalls-spy-{spied}.txt", "w") as out:
                        subprocess.Popen([spy, "dump", "--native", "--pid", str(os.getpid())], stdout=out,
                                         stderr=subprocess.STDOUT)
                    time.sleep(0.3)
                if time.perf_counter() - self.last > 0.15:
                    frame = sys._current_frames().get(main)
                    if frame is not None:
                        stack = _stack(frame)
                        ours = [f for f in stack if "/gui/" in f.filename or "/scoring/" in f.filename][-3:]
                        ours = ours or stack[-2:]  # in none of ours: the frames Qt or the loop was in
                        key = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(ours))
                        self.where[key] = self.where.get(key, 0) + 1
                    for ident, other in sys._current_frames().items():  # who ran meanwhile
                        if ident == main or ident == threading.get_ident():
                            continue
                        top = _stack(other)[-2:]
                        key = " < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(top))
                        self.others[key] = self.others.get(key, 0) + 1

        threading.Thread(target=watch, daemon=True).start()

    def _tick(self) -> None:
        now = time.perf_counter()
        gap = now - self.last - 0.010
        cpu, proc = time.thread_time(), time.process_time()  # was the window's thread working, or waiting?
        on_cpu, all_cpu = cpu - self.cpu, proc - self.proc
        self.cpu, self.proc = cpu, proc
        faults = _major_faults()  # pages read from disk meanwhile (a fault holds the address space's lock)
        majors = faults - self.faults
        self.faults = faults
        if gap > 0.15:  # the thread that held the interpreter meanwhile has only just let it go
            import sys
            import threading

            others = []
            for ident, frame in sys._current_frames().items():
                if ident != threading.get_ident():
                    top = _stack(frame)[-3:]
                    others.append(" < ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(top)))
            use = (f"\n      the window's thread ran {1000 * on_cpu:.0f} ms of it, the process {1000 * all_cpu:.0f} ms of CPU; "
                   f"{majors} major page faults")
            self.when.append((self.phase, now - self.t0, gap,
                              self.message + use + "\n      threads: " + "\n        ".join(others)))
        self.worst[self.phase] = max(self.worst.get(self.phase, 0.0), gap)
        self.last = now


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--why", action="store_true", help="where the GUI thread was during each stall")
    ap.add_argument("--switch", type=float, default=0.0, help="the interpreter's switch interval in seconds (a trial)")
    args = ap.parse_args()
    if args.switch:
        import sys

        sys.setswitchinterval(args.switch)
    from PySide6.QtCore import QCoreApplication, QSettings, Qt, QTimer
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QMessageBox

    from gui.app import _app
    from gui.main_window import MainWindow
    from scoring.io.formats import open_dataset
    from scoring.pool.spec import demo_specs
    from scoring.store import Project
    from scoring.tasks.demo import demo_project

    app = _app()  # as the app makes it: its style, and the garbage collector on the window's thread
    QMessageBox.information = staticmethod(lambda *a, **k: None)  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            import sys

            sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
            from tests.scoring.tinypool import make_imagefolder

            data = make_imagefolder(Path(tmp) / "data", per_class=20, corrupt=False)
            db = Path(tmp) / "p.triage.db"
            Project.create(db, open_dataset(data)).close()
            specs = [{"name": "mlp", "kind": "scratch", "arch": "tiny_mlp", "epochs": 2, "folds": 2, "seeds": [0],
                      "preprocess": {"size": 8}}]
        else:
            db = demo_project(str(Path(tmp) / "demo"))
            specs = demo_specs(1797)
        win = MainWindow(QSettings(str(Path(tmp) / "s.ini"), QSettings.Format.IniFormat))
        win.resize(1366, 768)
        win.show()
        win.open_project(db, ask_resume=False)
        settle = time.perf_counter()  # the window's first paint, as a user sees it before pressing a key:
        while time.perf_counter() - settle < 2.0:  # not a stall of the scoring that follows (it was: 100 ms)
            QCoreApplication.processEvents()
            time.sleep(0.01)
        gaps = Gaps()
        said = QTimer(interval=20)  # what the job's status line said last, for --why
        said.timeout.connect(lambda: setattr(gaps, "message", win.jobs.stage.text()[:80]))
        said.start()

        def run(phase: str, start: object, limit_s: float = 3600) -> float:
            gaps.phase, t0 = phase, time.perf_counter()
            while win.jobs.busy and time.perf_counter() - t0 < limit_s:
                QCoreApplication.processEvents()
                time.sleep(0.002)
            return time.perf_counter() - t0

        gaps.phase = "scoring + duplicates"
        win.tasks.start_scoring(specs)
        took = {"scoring + duplicates": run("scoring + duplicates", None)}  # the search follows the run
        gaps.phase = "decisions + estimate"
        t0 = time.perf_counter()
        for _ in range(20):
            QTest.keyClick(win.view, Qt.Key.Key_Return)
            QTest.qWait(50)
        QTest.qWait(3000)
        took["decisions + estimate"] = time.perf_counter() - t0
        gaps.phase = "re-rank"
        win.review.start_rerank()
        took["re-rank"] = run("re-rank", None)
        gaps.phase = "export"
        win.tasks.start_export(Path(tmp) / "out")
        took["export"] = run("export", None)
        win.close()
        app.processEvents()
    print(f"{'phase':<22} {'seconds':>8} {'longest gap (ms)':>17}")
    for phase, s in took.items():
        print(f"{phase:<22} {s:8.1f} {1000 * gaps.worst.get(phase, 0.0):17.0f}")
    worst = max(gaps.worst.get(p, 0.0) for p in took)
    print(f"longest gap over every job: {1000 * worst:.0f} ms (target < 200 ms)")
    if args.why:
        for key, n in sorted(gaps.where.items(), key=lambda kv: -kv[1])[:10]:
            print(f"  stalled {n * 50} ms in {key}")
        for phase, at, gap, said in gaps.when:
            print(f"  {phase}: {1000 * gap:.0f} ms at {at:.1f} s, after the job said {said}")
        for key, n in sorted(gaps.others.items(), key=lambda kv: -kv[1])[:12]:
            print(f"  meanwhile another thread, {n * 50} ms in {key}")


if __name__ == "__main__":
    main()

"""The interpreter's garbage collector kept out of the window's way.

A full collection walks every container object the process holds while it holds the interpreter
lock, whichever thread it runs on: after torch, torchvision and Qt are imported that is hundreds
of thousands of objects, and one collection started by a pool thread's allocation stalled the
event loop for 280-1030 ms at the end of the demo's scoring (seen with ``py-spy dump --native``
from benchmarks/bench_stalls.py: the window's thread waiting for the lock, the holder in
``gc_collect_main``; a full collection took 281 ms here with torch, torchvision, onnxruntime and
Qt imported, 0 ms once they were frozen). :func:`settle` collects, then freezes what survives
(``gc.freeze``: modules, classes, widgets, what lives as long as the app) so later collections walk
only what was made since. The window settles while it is being built (the one long collection,
before the first key) and when a chain of jobs ends (scoring, then its duplicate search): the
first scoring's imports (onnxruntime, faiss, torchvision: 208,000 objects, 151 ms to walk) are
walked once, when nothing else competes, and never again. Settling between the jobs of a chain
put that walk beside the next job's start (271 ms; 175-193 ms at the chain's end).

Automatic collection is off: :class:`WindowCollector` collects from a timer on the window's
thread, so a window's cycles are never finalised on a worker thread, where Qt objects must not
be touched (seen as "QBasicTimer::start: Timers cannot be started from another thread" and a
window deleted under the keys, once, under load). The young generations are collected when due;
the full collection never while a job runs (:func:`busy`): during the first scoring it walked the
job's fresh imports on the window's thread. The chain's end settles instead.
"""

from __future__ import annotations

import gc

from PySide6.QtCore import QObject, QTimer

_installed: WindowCollector | None = None


class WindowCollector(QObject):
    """The interpreter's collections, run from a timer on the thread that makes this (the window's)."""

    def __init__(self, parent: QObject | None = None, interval_ms: int = 1000) -> None:
        super().__init__(parent)
        self.threshold = gc.get_threshold()
        self.busy = False
        gc.disable()
        self.timer = QTimer(self, interval=interval_ms)
        self.timer.timeout.connect(self.check)
        self.timer.start()

    def check(self) -> None:
        """Each generation when due (the interpreter's own thresholds); the oldest not while a job runs."""
        young, middle, old = gc.get_count()
        if young > self.threshold[0]:
            gc.collect(0)
            if middle > self.threshold[1]:
                gc.collect(1)
                if old > self.threshold[2] and not self.busy:
                    gc.collect(2)


def install(parent: QObject) -> WindowCollector:
    """Collect on this thread's timer from now on (once per process: the app calls it)."""
    global _installed
    if _installed is None:
        _installed = WindowCollector(parent)
    return _installed


def busy(running: bool) -> None:
    """A job started (True) or its chain ended (False): full collections wait meanwhile."""
    if _installed is not None:
        _installed.busy = running


def settle() -> None:
    """Collect, then freeze the survivors out of every later collection."""
    gc.collect()
    gc.freeze()

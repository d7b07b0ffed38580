"""Short calls off the GUI thread, on a pool of its own, their results delivered on the GUI
thread: the one runner of short work (thumbnails, the image under review, the newest estimate,
the open project's neighbour index). Long jobs with progress and cancel run on gui.worker."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


BACKGROUND_NICE = 10  # how much lower than the window's thread every worker thread runs (Linux)


def background() -> None:
    """Run the calling thread below the window's: on a 2-core laptop the end of a scoring run
    starts the duplicate search, the neighbour index and the estimate together, and the event
    loop waited 362 ms for a core (benchmarks/bench_stalls.py). Linux niceness is per thread (a
    thread's own id); elsewhere, and where it is refused, nothing changes. Thread pools a worker
    starts (torch's, faiss's) inherit it."""
    if sys.platform != "linux":
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, max(os.getpriority(os.PRIO_PROCESS, tid), BACKGROUND_NICE))
    except OSError as exc:
        log.debug("could not lower a worker thread's priority: %s", exc)


class _Relay(QObject):
    """Lives on the GUI thread: signals emitted from the pool thread reach slots there."""

    done = Signal(object)
    failed = Signal(str)


class _Call(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay, what: str):
        super().__init__()
        self.fn, self.relay, self.what = fn, relay, what

    def run(self) -> None:
        background()
        try:
            result = self.fn()
        except Exception as exc:  # noqa: BLE001 - a pool thread must report, never die silently
            log.warning("%s failed: %s", self.what, exc)
            self._say(self.relay.failed, str(exc))
            return
        self._say(self.relay.done, result)

    def _say(self, signal: Any, value: Any) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the window closed while this ran: nobody is left to tell
            log.info("%s finished after its window closed; result dropped", self.what)


class OffThread(QObject):
    """``submit(fn)`` runs ``fn`` on one of ``threads`` pool threads; ``done`` carries its result
    on the GUI thread, ``failed`` the error's message. With ``latest_only``, a submit drops the
    requests still queued (only the newest matters)."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, what: str, parent: QObject | None = None, *, threads: int = 1, latest_only: bool = True):
        super().__init__(parent)
        self.what, self.latest_only = what, latest_only
        self._relay = _Relay()
        self._relay.done.connect(self.done)
        self._relay.failed.connect(self.failed)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)

    def submit(self, fn: Callable[[], Any]) -> None:
        if self.latest_only:
            self._pool.clear()
        self._pool.start(_Call(fn, self._relay, self.what))

    def clear(self) -> None:
        self._pool.clear()

    def wait(self, msecs: int = 30_000) -> bool:
        return bool(self._pool.waitForDone(msecs))


class LatestOnly(OffThread):
    """One call at a time, only the newest request kept."""

    def __init__(self, what: str, parent: QObject | None = None):
        super().__init__(what, parent, threads=1, latest_only=True)

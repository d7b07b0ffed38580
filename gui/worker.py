"""Run a core generator on a QThread, after superqt's GeneratorWorker."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Generator
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot
from PySide6.QtWidgets import QApplication

from gui.offthread import background
from scoring.progress import Cancelled, drain

log = logging.getLogger(__name__)

GeneratorFactory = Callable[[threading.Event], Generator[Any, None, Any]]


def imported_on_call(module: str, name: str) -> Callable[..., Any]:
    """``module.name``, imported when first called: on the job's thread, never the window's.

    A job's core module can bring torch with it (scoring's 1.5 s the first time), and an
    import on the window's thread is a stall, or a wait on the import lock while a worker
    imports the same module (issue 30: the first 0.2 s of every scoring). Looked up on each
    call, so a test that patches the module's attribute still sees its calls."""
    import importlib

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__qualname__ = call.__name__ = f"{name} (imported on call)"
    return call


class GeneratorWorker(QObject):
    """Drives a generator made *inside* the thread (SQLite connections belong to their thread).

    Signals: started, yielded(record), returned(value), errored(exception), aborted, and
    finished, always last. Cancel sets a ``threading.Event`` that the factory hands to the core
    generator, which checks it between batches and stops itself cleanly.
    """

    started = Signal()
    yielded = Signal(object)
    returned = Signal(object)
    errored = Signal(object)
    aborted = Signal()
    finished = Signal()

    def __init__(self, factory: GeneratorFactory):
        super().__init__()
        self._factory = factory
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask the generator to stop at its next check (between batches)."""
        self._cancel.set()

    @Slot()
    def run(self) -> None:
        background()  # below the window's thread: the keys come first
        self.started.emit()
        try:
            value = drain(self._factory(self._cancel), self.yielded.emit)
            if self._cancel.is_set():
                self.aborted.emit()
            else:
                self.returned.emit(value)
        except Cancelled:
            if not self._cancel.is_set():
                raise  # a Cancelled nobody asked for is a defect: let it show
            self.aborted.emit()  # the user's own cancel (or the window closing): not a failure, no traceback
        except Exception as exc:  # noqa: BLE001 - every error reaches the GUI, never lost
            log.exception("worker failed")
            self.errored.emit(exc)
        finally:
            _LIVE.pop(self, None)  # here, not through a signal: a busy GUI thread cannot delay it
            self.finished.emit()


_LIVE: dict[GeneratorWorker, QThread] = {}  # the running jobs' workers and their threads
_HELD: set[tuple[GeneratorWorker, QThread]] = set()  # kept alive until their thread has finished
_QUIT_HOOKED = False


def start_worker(
    factory: GeneratorFactory, parent: QObject | None = None, *, start: bool = True
) -> tuple[GeneratorWorker, QThread]:
    """Move a new worker to a new QThread and start it; both are deleted when it finishes, and
    one ``aboutToQuit`` hook (installed once) cancels and waits for whatever still runs, so no
    QThread and no hook outlives its job.

    Pass ``start=False`` to connect signals first, then call ``thread.start()``: a short job
    can otherwise finish before its signals are connected.

    (superqt's GeneratorWorker was measured as the alternative: its ``run`` swaps
    ``warnings.showwarning`` process-wide from the worker thread, and a handler the GUI thread
    set while a job ran was gone after it; and it does not close a generator it aborts.)
    """
    global _QUIT_HOOKED
    thread = QThread(parent)
    worker = GeneratorWorker(factory)
    worker.moveToThread(thread)
    _LIVE[worker] = thread
    pair = (worker, thread)
    _HELD.add(pair)  # a thread without a parent is Python's: never collected while it still runs
    thread.started.connect(worker.run)
    worker.finished.connect(thread.quit)
    thread.finished.connect(worker.deleteLater)
    thread.finished.connect(lambda: _HELD.discard(pair))
    thread.finished.connect(thread.deleteLater)
    app = QApplication.instance()
    if app is not None and not _QUIT_HOOKED:
        app.aboutToQuit.connect(stop_all)
        _QUIT_HOOKED = True
    if start:
        thread.start()
    return worker, thread


def live_jobs() -> int:
    """How many job threads are alive (tests: none outlives its job)."""
    return len(_LIVE)


def stop_all() -> None:
    """Cancel every running job and wait for its thread (the app is quitting)."""
    for worker, thread in list(_LIVE.items()):
        try:
            if thread.isRunning():
                worker.cancel()
                thread.quit()
                thread.wait(60_000)
        except RuntimeError:  # already deleted
            pass
        _LIVE.pop(worker, None)

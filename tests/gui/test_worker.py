"""The QThread worker: signal order, results, cancel, errors."""

from __future__ import annotations

import threading
import time
from collections.abc import Generator

from gui.worker import live_jobs, start_worker


def _collect(worker) -> list[str]:  # type: ignore[no-untyped-def]
    seen: list[str] = []
    for name in ("started", "yielded", "returned", "errored", "aborted", "finished"):
        getattr(worker, name).connect(lambda *a, n=name: seen.append(n))
    return seen


def test_yields_then_returns_then_finishes(qtbot) -> None:  # type: ignore[no-untyped-def]
    def gen(cancel: threading.Event) -> Generator[int, None, str]:
        yield from range(3)
        return "ok"

    values: list[object] = []
    worker, thread = start_worker(gen, start=False)
    seen = _collect(worker)
    worker.yielded.connect(values.append)
    worker.returned.connect(values.append)
    thread.start()  # waitSignal's blocker would be stopped from the worker's thread (a Qt warning)
    qtbot.waitUntil(lambda: "finished" in seen, timeout=5000)
    qtbot.waitUntil(lambda: live_jobs() == 0, timeout=5000)  # the thread is deleted with its job
    assert values == [0, 1, 2, "ok"]
    assert seen[-1] == "finished" and "returned" in seen and "errored" not in seen


def test_cancel_stops_between_batches(qtbot) -> None:  # type: ignore[no-untyped-def]
    steps: list[int] = []

    def gen(cancel: threading.Event) -> Generator[int, None, None]:
        for i in range(1000):
            if cancel.is_set():
                return
            steps.append(i)
            time.sleep(0.005)
            yield i

    worker, thread = start_worker(gen, start=False)
    seen = _collect(worker)
    thread.start()
    qtbot.waitUntil(lambda: len(steps) >= 3, timeout=5000)
    worker.cancel()
    qtbot.waitUntil(lambda: "finished" in seen, timeout=5000)
    qtbot.waitUntil(lambda: live_jobs() == 0, timeout=5000)  # the thread is deleted with its job
    assert "aborted" in seen and "returned" not in seen and seen[-1] == "finished"
    assert len(steps) < 1000


def test_an_exception_is_emitted_not_lost(qtbot) -> None:  # type: ignore[no-untyped-def]
    def gen(cancel: threading.Event) -> Generator[int, None, None]:
        yield 1
        raise ValueError("bad checkpoint /x/y.pth")

    errors: list[BaseException] = []
    worker, thread = start_worker(gen, start=False)
    seen = _collect(worker)
    worker.errored.connect(errors.append)
    thread.start()
    qtbot.waitUntil(lambda: "finished" in seen, timeout=5000)
    qtbot.waitUntil(lambda: live_jobs() == 0, timeout=5000)  # the thread is deleted with its job
    assert isinstance(errors[0], ValueError) and "y.pth" in str(errors[0])
    assert seen[-1] == "finished" and "returned" not in seen


def test_the_generator_is_made_inside_the_worker_thread(qtbot) -> None:  # type: ignore[no-untyped-def]
    made_in: list[int] = []

    def factory(cancel: threading.Event) -> Generator[int, None, None]:
        made_in.append(threading.get_ident())
        yield 0

    worker, thread = start_worker(factory, start=False)
    seen = _collect(worker)
    thread.start()
    qtbot.waitUntil(lambda: "finished" in seen, timeout=5000)
    qtbot.waitUntil(lambda: live_jobs() == 0, timeout=5000)  # the thread is deleted with its job
    assert made_in and made_in[0] != threading.get_ident()


def test_a_jobs_callbacks_run_on_the_gui_thread_whatever_they_are(qtbot) -> None:  # type: ignore[no-untyped-def]
    """A job's callbacks may be lambdas or methods of plain objects (gui.tasks.Tasks): Jobs calls
    them from its own slots, so they run on the GUI thread, never the worker's (a plain method
    connected straight to the worker ran in the worker's thread and touched SQLite from there)."""
    from PySide6.QtWidgets import QWidget

    from gui.jobs import Jobs
    from scoring.progress import Progress

    class Plain:
        def __init__(self) -> None:
            self.threads: list[int] = []

        def returned(self, _value: object) -> None:
            self.threads.append(threading.get_ident())

    def work(cancel: threading.Event) -> Generator[Progress, None, str]:
        yield Progress("infer", 1, 2, message="half")
        raise_or_return = "done"
        return raise_or_return

    window = QWidget()
    qtbot.addWidget(window)
    busy: list[bool] = []
    said: list[str] = []
    jobs = Jobs(window, busy.append, lambda text, ms: said.append(text))
    plain = Plain()
    jobs.run(work, "Testing", plain.returned)
    qtbot.waitUntil(lambda: not jobs.busy, timeout=5000)
    assert plain.threads == [threading.get_ident()] and busy == [True, False]
    jobs.run(lambda cancel: (_ for _ in ()).throw(ValueError("boom")), "Failing", plain.returned,
             lambda exc: said.append(f"{threading.get_ident() == threading.main_thread().ident}: {exc}"))
    qtbot.waitUntil(lambda: not jobs.busy, timeout=5000)
    assert said == ["True: boom"] and len(plain.threads) == 1

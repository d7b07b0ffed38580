"""Progress records yielded by long-running core generators (scoring, export).

The GUI's worker relays each record as a Qt signal; the command line draws a bar from it.
Cancel is a ``threading.Event`` passed to the generator and checked between batches.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One step of long work: ``done`` of ``total`` items in ``stage``.

    ``rate`` is items per second over the stage so far (or since the part now running began:
    ``RateMeter.restart``); ``eta`` seconds left (None if unknown).
    """

    stage: str
    done: int
    total: int
    rate: float = 0.0
    eta: float | None = None
    message: str = ""

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.done / self.total)


@dataclass
class RateMeter:
    """Turns (done, total) counts into Progress records with a rate and an ETA."""

    stage: str
    total: int
    start_done: float = 0
    _t0: float = field(default_factory=time.perf_counter)

    def record(self, done: float, message: str = "") -> Progress:
        """``done`` may be fractional (a fold's epochs): the rate and ETA use it, the record
        shows whole items."""
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rate = max(done - self.start_done, 0) / elapsed
        eta = (self.total - done) / rate if rate > 0 else None
        return Progress(self.stage, int(done), self.total, rate, eta, message)

    def restart(self, done: float) -> None:
        """Measure the rate from here on: work whose parts differ in cost (a fitting stage's
        heads take seconds a fold, a fine-tuned network minutes) gets its ETA from the part now
        running. Measured: after the heads and a CNN, the first fold of a fine-tuned encoder
        said "ETA 0:42" for 20 minutes of work."""
        self._t0, self.start_done = time.perf_counter(), done


class Cancelled(Exception):
    """Raised inside core work when its cancel event is set; the generator stops cleanly."""


class StageTimes:
    """Seconds spent per stage of a run (decode, forward, store, metrics, fit), for ``--profile``:
    ``with times("decode"): ...`` adds the block's wall time to that stage."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t0


def drain(gen: Generator[Progress, None, T], on_progress: Callable[[Progress], object] | None = None) -> T:
    """Run a core generator to its end, handing each Progress to ``on_progress``; its result.

    The one loop over progress generators: the command line's bar, the GUI's worker and the
    tests all drain through here."""
    while True:
        try:
            record = next(gen)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        if on_progress is not None:
            on_progress(record)


def check_cancel(cancel: threading.Event) -> None:
    """Raise Cancelled when ``cancel`` is set: the check long work makes between batches."""
    if cancel.is_set():
        raise Cancelled()

"""One piece of work at a time off the GUI thread, where only the latest request matters (the
image under review, the newest estimate, the open project's neighbour index)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)


class _Relay(QObject):
    """Lives on the GUI thread: signals emitted from the pool thread reach slots there."""

    done = Signal(object)
    failed = Signal(str)


class _Call(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay, what: str):
        super().__init__()
        self.fn, self.relay, self.what = fn, relay, what

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:  # noqa: BLE001 - a pool thread must report, never die silently
            log.warning("%s failed: %s", self.what, exc)
            self.relay.failed.emit(str(exc))
            return
        self.relay.done.emit(result)


class LatestOnly(QObject):
    """``submit(fn)`` runs ``fn`` on a pool thread of one, dropping requests still queued;
    ``done`` carries its result on the GUI thread, ``failed`` the error's message."""

    done = Signal(object)
    failed = Signal(str)

    def __init__(self, what: str, parent: QObject | None = None):
        super().__init__(parent)
        self.what = what
        self._relay = _Relay()
        self._relay.done.connect(self.done)
        self._relay.failed.connect(self.failed)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)

    def submit(self, fn: Callable[[], Any]) -> None:
        self._pool.clear()  # only the latest request matters
        self._pool.start(_Call(fn, self._relay, self.what))

    def clear(self) -> None:
        self._pool.clear()

    def wait(self, msecs: int = 30_000) -> bool:
        return bool(self._pool.waitForDone(msecs))

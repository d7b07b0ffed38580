"""Decode thumbnails off the GUI thread, with an LRU cache."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap

from scoring.datasets import ImageDecodeError, load_image

log = logging.getLogger(__name__)


def pil_to_qimage(img: object) -> QImage:
    """An RGB PIL image -> a QImage that owns its bytes."""
    data = img.tobytes("raw", "RGB")  # type: ignore[attr-defined]
    w, h = img.size  # type: ignore[attr-defined]
    return QImage(data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class _Signals(QObject):
    done = Signal(int, QImage)


class _Task(QRunnable):
    def __init__(self, image_id: int, path: Path, size: int, signals: _Signals):
        super().__init__()
        self.image_id, self.path, self.size, self.signals = image_id, path, size, signals

    def run(self) -> None:
        try:
            img = load_image(self.path)
            img.thumbnail((self.size, self.size))
            if max(img.size) < self.size // 2:  # tiny images (digits, CIFAR): scale up to be seen
                factor = max(1, self.size // max(img.size))
                img = img.resize((img.width * factor, img.height * factor), 0)
            qimg = pil_to_qimage(img)
        except (ImageDecodeError, OSError) as exc:
            log.debug("thumbnail failed: %s", exc)
            qimg = QImage()
        self.signals.done.emit(self.image_id, qimg)


class ThumbnailLoader(QObject):
    """``get(id, path)`` returns a cached pixmap or None and queues a decode; emits
    ``thumbnailReady(id)`` when one arrives."""

    thumbnailReady = Signal(int)

    def __init__(self, size: int = 96, capacity: int = 3000, parent: QObject | None = None):
        super().__init__(parent)
        self.size = size
        self.capacity = capacity
        self._cache: OrderedDict[int, QPixmap] = OrderedDict()
        self._pending: set[int] = set()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(2)
        self._signals = _Signals()
        self._signals.done.connect(self._on_done)
        self.placeholder = self._make_placeholder(QColor("#3a3f4b"))
        self.broken = self._make_placeholder(QColor("#7a2e2e"))

    def _make_placeholder(self, colour: QColor) -> QPixmap:
        pm = QPixmap(self.size, self.size)
        pm.fill(QColor("#262a33"))
        p = QPainter(pm)
        p.fillRect(self.size // 4, self.size // 4, self.size // 2, self.size // 2, colour)
        p.end()
        return pm

    def get(self, image_id: int, path: Path) -> QPixmap | None:
        pm = self._cache.get(image_id)
        if pm is not None:
            self._cache.move_to_end(image_id)
            return pm
        if image_id not in self._pending:
            self._pending.add(image_id)
            self._pool.start(_Task(image_id, path, self.size, self._signals))
        return None

    def _on_done(self, image_id: int, qimg: QImage) -> None:
        self._pending.discard(image_id)
        self._cache[image_id] = QPixmap.fromImage(qimg) if not qimg.isNull() else self.broken
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        self.thumbnailReady.emit(image_id)

    def clear(self) -> None:
        self._pool.clear()
        self._cache.clear()
        self._pending.clear()

    def wait(self, msecs: int = 10_000) -> bool:
        return self._pool.waitForDone(msecs)

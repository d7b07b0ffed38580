"""Decode images off the GUI thread: thumbnails (with an LRU cache) and the full-size image of
the detail pane."""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPixmap

from gui.offthread import LatestOnly, OffThread
from scoring.io.decoding import ImageDecodeError, load_image

log = logging.getLogger(__name__)


def pil_to_qimage(img: object) -> QImage:
    """An RGB PIL image -> a QImage that owns its bytes."""
    data = img.tobytes("raw", "RGB")  # type: ignore[attr-defined]
    w, h = img.size  # type: ignore[attr-defined]
    return QImage(data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def decode_qimage(path: Path | str, size: int | None) -> tuple[QImage, str]:
    """(the image, "") or (a null image, why it failed); ``size`` None keeps the full image,
    else a thumbnail of at most ``size`` pixels (tiny images scaled up to be seen)."""
    try:
        img = load_image(path)
        if size is not None:
            img.thumbnail((size, size))
            if max(img.size) < size // 2:  # tiny images (digits, CIFAR): scale up to be seen
                factor = max(1, size // max(img.size))
                img = img.resize((img.width * factor, img.height * factor), 0)
        return pil_to_qimage(img), ""
    except (ImageDecodeError, OSError) as exc:
        log.debug("decode failed: %s", exc)
        return QImage(), str(exc)


class ImageLoader(LatestOnly):
    """Full-size images for the detail pane, decoded in a pool thread; ``loaded`` carries the
    image id, the image (null on failure) and the reason it failed."""

    loaded = Signal(int, QImage, str)

    def __init__(self, parent: QObject | None = None):
        super().__init__("image decode", parent)
        self.done.connect(self._on_done)

    def request(self, image_id: int, path: Path | str) -> None:
        self.submit(lambda: (image_id, *decode_qimage(path, None)))

    def _on_done(self, result: tuple[int, QImage, str]) -> None:
        self.loaded.emit(*result)


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
        self._generation = 0  # bumped by clear(): a decode for an earlier project is dropped (ids repeat)
        self._decoder = OffThread("thumbnail decode", self, threads=2, latest_only=False)
        self._decoder.done.connect(self._on_decoded)
        self.placeholder = self._make_placeholder(QColor("#3a3f4b"))
        self.broken = self._make_placeholder(QColor("#7a2e2e"))

    def _make_placeholder(self, colour: QColor) -> QPixmap:
        pm = QPixmap(self.size, self.size)
        pm.fill(QColor("#262a33"))
        p = QPainter(pm)
        p.fillRect(self.size // 4, self.size // 4, self.size // 2, self.size // 2, colour)
        p.end()
        return pm

    def get(self, image_id: int, path: Path | str) -> QPixmap | None:
        pm = self._cache.get(image_id)
        if pm is not None:
            self._cache.move_to_end(image_id)
            return pm
        if image_id not in self._pending:
            self._pending.add(image_id)
            size, gen = self.size, self._generation
            self._decoder.submit(lambda: (gen, image_id, *decode_qimage(path, size)))
        return None

    def _on_decoded(self, result: tuple[int, int, QImage, str]) -> None:
        gen, image_id, qimg, _why = result
        if gen != self._generation:
            return  # decoded for the project open before: its ids mean other images now
        self._pending.discard(image_id)
        self._cache[image_id] = QPixmap.fromImage(qimg) if not qimg.isNull() else self.broken
        while len(self._cache) > self.capacity:
            self._cache.popitem(last=False)
        self.thumbnailReady.emit(image_id)

    def clear(self) -> None:
        self._generation += 1
        self._decoder.clear()
        self._cache.clear()
        self._pending.clear()

    def wait(self, msecs: int = 10_000) -> bool:
        return self._decoder.wait(msecs)

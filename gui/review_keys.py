"""Keys that always work: the review keys belong to the window, not to whichever widget has the
focus. An application event filter hands every key press in the main window to the queue's key
map, except while a text field is being typed in (the field says so; Esc hands the keys back).
Also the key overlay (F1 or ?) and the full-size view (double-click, Space)."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QKeyEvent, QPainter, QPixmap, QWheelEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QDialog,
    QDialogButtonBox,
    QGraphicsPixmapItem,
    QGraphicsScene,
    QGraphicsView,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPlainTextEdit,
    QTextEdit,
    QVBoxLayout,
    QWidget,
)

from gui.queue_view import QueueView

TEXT_INPUTS = (QLineEdit, QAbstractSpinBox, QTextEdit, QPlainTextEdit)
NAVIGATION = {Qt.Key.Key_Up, Qt.Key.Key_Down, Qt.Key.Key_Left, Qt.Key.Key_Right, Qt.Key.Key_PageUp,
              Qt.Key.Key_PageDown, Qt.Key.Key_Home, Qt.Key.Key_End}


class ReviewKeys(QObject):
    """Installed on the application: key presses anywhere in ``window`` go to its queue view."""

    def __init__(self, window: QMainWindow, view: QueueView):
        super().__init__(window)
        self.window, self.view = window, view

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind == QEvent.Type.FocusIn and isinstance(obj, QLineEdit) and self._ours(obj):
            self.window.statusBar().showMessage("Typing in a text field: review keys are paused (Esc gives them back)",
                                                4000)
            return False
        if kind != QEvent.Type.KeyPress or not isinstance(event, QKeyEvent):
            return False
        if QApplication.activeModalWidget() is not None or QApplication.activePopupWidget() is not None:
            return False  # a dialog or an open menu / combo list has the keys
        focus = QApplication.focusWidget() or self.window.focusWidget()  # the window's, while it is not active
        if focus is None or not self._ours(focus) or not self._ours(obj):
            return False
        view = self.view
        if isinstance(focus, TEXT_INPUTS):
            if event.key() == Qt.Key.Key_Escape:
                view.setFocus()
                self.window.statusBar().showMessage("Review keys are back on the queue", 2000)
                return True
            return False
        if focus is view:
            return False  # the view's own keyPressEvent handles it
        if view.review_action(event) or event.key() in NAVIGATION:
            view.setFocus()  # a combo box, a checkbox, a button held the focus: the queue takes it back
            view.keyPressEvent(event)
            return True
        return False

    def _ours(self, widget: QObject) -> bool:
        return isinstance(widget, QWidget) and widget.window() is self.window


def open_readme(parent: QMainWindow, anchor: str) -> None:
    """The README beside the package (a source install), at ``anchor`` as the status bar says."""
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if readme.is_file():
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(readme)))
        parent.statusBar().showMessage(f"README.md, section «{anchor.replace('-', ' ')}»", 5000)
    else:
        parent.statusBar().showMessage("The README is not installed with this copy; see the project's page", 5000)


def show_keys(parent: QWidget, rows: list[tuple[str, str]]) -> QDialog:
    """The key overlay (F1 or ?): every key of this project and what it does."""
    dlg = QDialog(parent)
    dlg.setWindowTitle("Keys")
    lay = QVBoxLayout(dlg)
    extra = [("Ctrl+Z / Ctrl+Shift+Z", "undo / redo"), ("Double-click or Space", "the image full size (wheel zooms)"),
             ("Shift/Ctrl+click", "select several; a key then decides them all (one undo)"),
             ("Ctrl+U", "unreviewed only / all"), ("Ctrl+1 / Ctrl+2", "queue / overview"),
             ("Esc", "in a text field: give the keys back to the queue"), ("F1 or ?", "this list")]
    body = "".join(f"<tr><td><b>{html.escape(k)}</b></td><td>&nbsp;&nbsp;{html.escape(v)}</td></tr>"
                   for k, v in [*rows, *extra])
    lay.addWidget(QLabel(f"<table>{body}</table>", textFormat=Qt.TextFormat.RichText))
    buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
    buttons.rejected.connect(dlg.reject)
    lay.addWidget(buttons)
    dlg.setModal(False)
    dlg.show()
    return dlg


class FullImageView(QGraphicsView):
    """The image at full size: the wheel zooms, dragging pans, 0 fits, Esc closes."""

    def __init__(self, pixmap: QPixmap, parent: QWidget | None = None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.item = QGraphicsPixmapItem(pixmap)
        self.item.setTransformationMode(Qt.TransformationMode.FastTransformation)  # pixels stay pixels
        self.scene().addItem(self.item)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)

    def wheelEvent(self, event: QWheelEvent) -> None:  # noqa: N802 - Qt's name
        self.zoom(1.25 if event.angleDelta().y() > 0 else 0.8)

    def zoom(self, factor: float) -> None:
        self.scale(factor, factor)

    def fit(self) -> None:
        self.fitInView(self.item, Qt.AspectRatioMode.KeepAspectRatio)


def show_full_image(parent: QWidget, path: object, name: str) -> QDialog | None:
    """A window with the image at ``path`` full size (zoom and pan), closed by Esc; decoded by
    the safe reader as every image. None (and a status message) when it cannot be read."""
    from gui.thumbnails import decode_qimage

    img, why = decode_qimage(path, None)  # type: ignore[arg-type]
    if img.isNull():
        status = getattr(parent, "statusBar", None)
        if status is not None:
            status().showMessage(f"{name}: {why}", 5000)
        return None
    pixmap = QPixmap.fromImage(img)
    dlg = QDialog(parent)
    dlg.setWindowTitle(f"{name} ({img.width()}×{img.height()})")
    lay = QVBoxLayout(dlg)
    view = FullImageView(pixmap, dlg)
    lay.addWidget(view)
    lay.addWidget(QLabel("<small>wheel: zoom · drag: pan · Esc: close</small>"))
    screen = parent.screen().availableGeometry() if parent.screen() else None
    side = min(900, int(min(screen.width(), screen.height()) * 0.8)) if screen else 800
    dlg.resize(side, side)
    dlg.setModal(False)
    dlg.show()
    view.fit()
    if max(pixmap.width(), pixmap.height()) < side // 4:
        view.resetTransform()
        view.zoom(max(1.0, (side * 0.6) / max(pixmap.width(), pixmap.height(), 1)))
    dlg.view = view  # type: ignore[attr-defined]
    return dlg

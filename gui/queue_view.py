"""The review queue's view: an icon grid whose keys become requests (the key map decides which)."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QPainter, QPalette
from PySide6.QtWidgets import QAbstractItemView, QListView, QWidget

from scoring.keymap import DELETE, ENTER, SLASH, keymap_for


class QueueView(QListView):
    """Icon grid over the queue; keys become requests the window turns into core calls."""

    relabelRequested = Signal(int)
    removeRequested = Signal()
    keepRequested = Signal()
    pickRequested = Signal()
    keepGroupRequested = Signal()
    undoRequested = Signal()
    redoRequested = Signal()
    helpRequested = Signal()
    fullImageRequested = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(200)
        self.setIconSize(QSize(96, 96))
        self.setGridSize(QSize(128, 146))  # icon + two lines: class, score
        self.setSpacing(4)
        self.setWordWrap(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)  # Shift/Ctrl+click: several
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.keymap = keymap_for([])
        self.empty_text = ""  # what an empty queue says instead of a blank grid (the window sets it)

    def paintEvent(self, event) -> None:  # type: ignore[no-untyped-def]  # noqa: N802 - Qt's name
        super().paintEvent(event)
        model = self.model()
        if model is not None and model.rowCount() == 0 and self.empty_text:
            painter = QPainter(self.viewport())
            painter.setPen(self.palette().color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.viewport().rect().adjusted(20, 20, -20, -20),
                             int(Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap), self.empty_text)
            painter.end()

    def scroll_to_current(self, tries: int = 100) -> None:
        """Bring the current image into view. The grid lays its items out in batches (200 per pass
        of the event loop), and a scroll to one not laid out yet does nothing: after the search
        was cleared, the image under review, far down the queue, stayed in the pane but out of
        the grid. So it tries again each pass until the item has its place (at most ``tries``)."""
        index = self.currentIndex()
        if not index.isValid():
            return
        if self.visualRect(index).isValid():
            self.scrollTo(index)
        elif tries > 0:
            QTimer.singleShot(0, lambda: self.scroll_to_current(tries - 1))

    def review_action(self, event: QKeyEvent) -> tuple[str, int | None] | None:
        """The key map's action for this key press (no Ctrl/Alt/Meta), or None."""
        mods = event.modifiers()
        plain = not (mods & (Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier | Qt.KeyboardModifier.MetaModifier))
        if event.key() in (Qt.Key.Key_Question, Qt.Key.Key_F1, Qt.Key.Key_Space):
            return ("help" if event.key() != Qt.Key.Key_Space else "full", None)
        return self.keymap.action(_key_name(event.key())) if plain else None

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 - Qt's name
        key, mods = event.key(), event.modifiers()
        action = self.review_action(event)
        if action is not None:
            what, label = action
            if what == "relabel" and label is not None:
                self.relabelRequested.emit(label)
            else:
                {"keep": self.keepRequested, "pick": self.pickRequested, "remove": self.removeRequested,
                 "keep_group": self.keepGroupRequested, "help": self.helpRequested,
                 "full": self.fullImageRequested}[what].emit()
        elif key == Qt.Key.Key_Z and mods & Qt.KeyboardModifier.ControlModifier:
            # Normally the Edit menu's shortcuts take these first; this serves when the window
            # is not the active one (no window manager), where shortcuts do not fire.
            if mods & Qt.KeyboardModifier.ShiftModifier:
                self.redoRequested.emit()
            else:
                self.undoRequested.emit()
        else:
            super().keyPressEvent(event)


def _key_name(key: int) -> str:
    """A Qt key as the key map names it: a digit, a lowercase letter, enter, /, delete, backspace."""
    if Qt.Key.Key_0 <= key <= Qt.Key.Key_9:
        return str(key - Qt.Key.Key_0)
    if Qt.Key.Key_A <= key <= Qt.Key.Key_Z:
        return chr(ord("a") + key - Qt.Key.Key_A)
    named = {Qt.Key.Key_Return: ENTER, Qt.Key.Key_Enter: ENTER, Qt.Key.Key_Slash: SLASH,
             Qt.Key.Key_Delete: DELETE, Qt.Key.Key_Backspace: "backspace"}
    return named.get(Qt.Key(key), "")

"""The review queue as a Qt list model: a thin adapter over a Qt-free ``ReviewSession``
(napari-style), which owns the sort and the filters and reads the pages; the model only shows
them and asks for the next page."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, Qt, Signal
from PySide6.QtGui import QBrush, QColor

from gui.thumbnails import ThumbnailLoader
from scoring.store import QueueRow
from scoring.tasks.review import ReviewSession
from scoring.vocabulary import DIFFICULTY_SORT, LABEL_SORT, is_score, score

IdRole = Qt.ItemDataRole.UserRole
ScoreRole = IdRole + 1
RowRole = IdRole + 2
StatusRole = IdRole + 3

STATUS_COLOURS = {
    "unreviewed": None,
    "kept": QColor("#2e7d32"),
    "relabelled": QColor("#f9a825"),
    "removed": QColor("#c62828"),
}
STATUS_MARKS = {"kept": "✓ ", "relabelled": "✎ ", "removed": "✕ "}  # not by colour alone
ModelIndex = QModelIndex | QPersistentModelIndex


class ReviewQueueModel(QAbstractListModel):
    """Rows come from SQLite a page at a time (canFetchMore/fetchMore, keyset paging)."""

    reloaded = Signal()  # after every reload: the session's cursor is put back

    def __init__(self, session: ReviewSession, thumbnails: ThumbnailLoader, page_size: int = 200, parent: Any = None):
        super().__init__(parent)
        self.session = session
        self.thumbnails = thumbnails
        self.page_size = page_size
        self._rows: list[QueueRow] = []
        self._row_of: dict[int, int] = {}
        self._exhausted = False
        self._total: int | None = None
        self._after: tuple[Any, int] | None = None  # the keyset of the last row read from the store
        thumbnails.thumbnailReady.connect(self._on_thumbnailReady)
        self._fetch()

    # --- Qt model API ---------------------------------------------------------------------

    def rowCount(self, parent: ModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def canFetchMore(self, parent: ModelIndex) -> bool:
        return not parent.isValid() and not self._exhausted

    def fetchMore(self, parent: ModelIndex) -> None:
        if not parent.isValid():
            self._fetch()

    def data(self, index: ModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            key = self.session.sort
            value = score(key).show(row.scores.get(key)) if is_score(key) else ""
            mark = STATUS_MARKS.get(row.status, "") + ("⚠ " if row.flag else "")
            return f"{mark}{self.class_name(row.current_label)}\n{value}"
        if role == Qt.ItemDataRole.DecorationRole:
            pm = self.thumbnails.get(row.id, self.session.project.images.abspath(row.path))
            return pm if pm is not None else self.thumbnails.placeholder
        if role == Qt.ItemDataRole.ToolTipRole:
            return (
                f"{row.path}\ngiven: {self.class_name(row.given_label)}  the models pick: {self.class_name(row.consensus)}\n"
                + "\n".join(f"{s.words}: {s.show(row.scores.get(s.key))}" for s in (score(LABEL_SORT), score(DIFFICULTY_SORT)))
                + f"\nstatus: {row.status}"
                + (f"\nflag: {row.flag}" if row.flag else "")
            )
        if role == Qt.ItemDataRole.ForegroundRole:
            colour = STATUS_COLOURS.get(row.status)
            return QBrush(colour) if colour is not None else None
        if role == IdRole:
            return row.id
        if role == ScoreRole:
            return row.sort_value(self.session.sort)
        if role == RowRole:
            return row
        if role == StatusRole:
            return row.status
        return None

    def flags(self, index: ModelIndex) -> Qt.ItemFlag:
        if not index.isValid():
            return Qt.ItemFlag.NoItemFlags
        return Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemNeverHasChildren

    # --- ours -----------------------------------------------------------------------------

    def class_name(self, label: int | None) -> str:
        classes = self.session.classes
        return classes[label] if label is not None and 0 <= label < len(classes) else "-"

    def _fetch(self) -> None:
        if self._exhausted:
            return
        raw = self.session.page(self._after, self.page_size)
        if len(raw) < self.page_size:
            self._exhausted = True
        if raw:
            self._after = (raw[-1].sort_value(self.session.sort), raw[-1].id)
        page = [r for r in raw if r.id not in self._row_of]  # kept rows (a re-rank's) are not read twice
        if not page:
            return
        first = len(self._rows)
        self.beginInsertRows(QModelIndex(), first, first + len(page) - 1)
        for r in page:
            self._row_of[r.id] = len(self._rows)
            self._rows.append(r)
        self.endInsertRows()

    def reload(self) -> None:
        """Re-read the queue; ``reloaded`` then lets the cursor's owner put the cursor back."""
        self.reload_keeping(0)

    def reload_keeping(self, keep: int) -> None:
        """Re-read the queue but keep its first ``keep`` rows where they are (re-read, in place):
        after a re-rank, what the annotator has gone through stays put and the new order
        continues below it. ``reloaded`` then lets the cursor's owner put the cursor back."""
        kept = [self.session.row(r.id) for r in self._rows[:max(0, keep)]]
        self.beginResetModel()
        self._rows, self._exhausted, self._total, self._after = kept, False, None, None
        self._row_of = {r.id: n for n, r in enumerate(kept)}
        self.endResetModel()
        self._fetch()
        self.reloaded.emit()

    def find(self, image_id: int, look: int = 5000) -> int | None:
        """The row of ``image_id``, fetching pages up to ``look`` rows; None when not shown there."""
        while image_id not in self._row_of and self.rowCount() < look and self.canFetchMore(QModelIndex()):
            self.fetchMore(QModelIndex())
        return self._row_of.get(image_id)

    def total(self) -> int:
        """Rows matching the filter (all pages)."""
        if self._total is None:
            self._total = self.session.matching()
        return self._total

    def first_unreviewed(self, look: int = 2000) -> QModelIndex:
        """The first row still to review in this order (fetching pages up to ``look`` rows), else
        the first row (an invalid index when there is none)."""
        n = 0
        while True:
            while n < self.rowCount():
                row = self.row_at(n)
                if row is not None and row.status == "unreviewed":
                    return self.index(n, 0)
                n += 1
            if n >= look or not self.canFetchMore(QModelIndex()):
                break
            self.fetchMore(QModelIndex())
        return self.index(0, 0)

    def row_at(self, row: int) -> QueueRow | None:
        return self._rows[row] if 0 <= row < len(self._rows) else None

    def index_of(self, image_id: int) -> QModelIndex:
        row = self._row_of.get(image_id)
        return self.index(row, 0) if row is not None else QModelIndex()

    def refresh_row(self, image_id: int) -> QModelIndex:
        """Re-read one image from the store after an edit; it keeps its place in the queue."""
        row = self._row_of.get(image_id)
        if row is None:
            return QModelIndex()
        self._rows[row] = self.session.row(image_id)
        self._total = None  # an edit can change how many match a status filter: recounted when asked
        idx = self.index(row, 0)
        self.dataChanged.emit(idx, idx)
        return idx

    def _on_thumbnailReady(self, image_id: int) -> None:
        row = self._row_of.get(image_id)
        if row is not None:
            idx = self.index(row, 0)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])


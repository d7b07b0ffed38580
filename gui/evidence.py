"""Evidence beside the image: its duplicate group side by side, and its nearest neighbours among
the images of its given label and of the pool's label (scoring.evidence.neighbours)."""

from __future__ import annotations

import html
import logging
from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtWidgets import QGridLayout, QLabel, QToolButton, QVBoxLayout, QWidget

from gui.offthread import LatestOnly
from gui.thumbnails import ThumbnailLoader
from scoring.evidence.neighbours import NeighbourIndex
from scoring.store import Project, QueueRow
from scoring.tasks.explain import neighbour_words
from scoring.vocabulary import embedding_words

log = logging.getLogger(__name__)
TILE = 64
PER_ROW = 6


def _build_index(path: Path) -> tuple[NeighbourIndex | None, str]:
    """The project's neighbour index, and what the label-issue sort rests on, in words."""
    with Project.open(path) as project:  # the pool thread's own connection
        words = neighbour_words(project.queue.neighbour_weight(), project.queue.label_noise())
        return NeighbourIndex.build(project), words


def _in_conflict(states: dict[int, tuple[int | None, str]]) -> frozenset[int]:
    """The images of a duplicate group whose label is not the group's most common one (every
    labelled one when no label is the most common): the labels in conflict, shown red."""
    labels = [lab for lab, st in states.values() if st != "removed" and lab is not None]
    counts = {lab: labels.count(lab) for lab in set(labels)}
    top = max(counts.values(), default=0)
    common = [lab for lab, n in counts.items() if n == top]
    keep = common[0] if len(common) == 1 else None
    return frozenset(i for i, (lab, st) in states.items() if st != "removed" and lab is not None and lab != keep)


class _Strip(QWidget):
    """A titled row of thumbnails with captions; a tile's tooltip names the file."""

    def __init__(self, thumbnails: ThumbnailLoader, parent: QWidget | None = None):
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.title = QLabel(textFormat=Qt.TextFormat.RichText, wordWrap=True)
        self.grid = QGridLayout()
        self.grid.setSpacing(2)
        self.grid.setAlignment(Qt.AlignmentFlag.AlignLeft)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 2, 0, 2)
        lay.addWidget(self.title)
        lay.addLayout(self.grid)
        self.tiles: dict[int, QToolButton] = {}
        self._paths: dict[int, Path | str] = {}
        self.per_row = PER_ROW  # as many as the width shows (EvidencePanel.fit_width)

    def reflow(self, per_row: int) -> None:
        """Place the tiles ``per_row`` to a row: a strip wider than the pane showed its last tile
        cut off and pushed the note's last words under the scroll bar at 1366x768."""
        if per_row == self.per_row:
            return
        self.per_row = per_row
        for n, b in enumerate(self.tiles.values()):
            self.grid.removeWidget(b)
            self.grid.addWidget(b, n // per_row, n % per_row)

    def show_tiles(self, title: str, project: Project, tiles: list[tuple[int, str, str]],
                   red: frozenset[int] = frozenset()) -> None:
        """``tiles``: (image id, caption, tooltip); the ``red`` ones' captions in red (a label in conflict)."""
        while self.grid.count():
            item = self.grid.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.tiles, self._paths = {}, {}
        self.title.setText(title)
        paths = dict(zip((t[0] for t in tiles), project.images.paths_of([t[0] for t in tiles]), strict=True))
        for n, (image_id, caption, tip) in enumerate(tiles):
            b = QToolButton()
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            b.setIconSize(QSize(TILE, TILE))
            b.setText(caption)
            b.setToolTip(f"{paths[image_id]}\n{tip}")
            b.setAutoRaise(True)
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with the queue
            if image_id in red:
                b.setStyleSheet("color: #ef5350; font-weight: bold")
            self._paths[image_id] = project.images.abspath(paths[image_id])
            pm = self.thumbnails.get(image_id, self._paths[image_id])
            b.setIcon(pm if pm is not None else self.thumbnails.placeholder)
            self.grid.addWidget(b, n // self.per_row, n % self.per_row)
            self.tiles[image_id] = b
        self.setVisible(bool(tiles) or bool(title))

    def refresh(self, image_id: int) -> None:
        b = self.tiles.get(image_id)
        if b is not None:
            pm = self.thumbnails.get(image_id, self._paths[image_id])
            if pm is not None:
                b.setIcon(pm)


class EvidencePanel(QWidget):
    """``show_row(project, row)`` fills the duplicate group and the two neighbour strips; the
    neighbour index is built once per project on a pool thread (``invalidate()`` after new scores)."""

    def __init__(self, thumbnails: ThumbnailLoader, parent: QWidget | None = None):
        super().__init__(parent)
        self.thumbnails = thumbnails
        self.group = _Strip(thumbnails)
        self.given = _Strip(thumbnails)
        self.pool_label = _Strip(thumbnails)
        self.note = QLabel(wordWrap=True)
        self.note.setObjectName("evidenceNote")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        for w in (self.group, self.given, self.pool_label, self.note):
            lay.addWidget(w)
        self.index: NeighbourIndex | None = None
        self._index_for: str | None = None
        self._words = ""  # what the label-issue sort rests on (the neighbours' weight, the kind of errors)
        self._building: str | None = None  # the project path an index is being built for
        self._project: Project | None = None
        self._row: QueueRow | None = None
        self._builder = LatestOnly("neighbour index", self)
        self._builder.done.connect(self._on_built)
        self._builder.failed.connect(lambda _why: self._on_built((None, "")))  # the pane must hear back
        thumbnails.thumbnailReady.connect(self._on_thumbnailReady)

    def invalidate(self) -> None:
        self.index, self._index_for = None, None

    def fit_width(self, width: int) -> None:
        """Tiles per row for ``width`` pixels (the scroll area's viewport, told on each resize)."""
        shown = [b.sizeHint().width() for s in (self.group, self.given, self.pool_label) for b in s.tiles.values()]
        if not shown:  # nothing shown yet: a tile like theirs
            probe = QToolButton()
            probe.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextUnderIcon)
            probe.setIconSize(QSize(TILE, TILE))
            probe.setIcon(self.thumbnails.placeholder)
            probe.setText("-0.00")
            probe.setAutoRaise(True)
            shown = [probe.sizeHint().width()]
        tile = max(shown) + self.group.grid.spacing()
        per_row = max(1, min(PER_ROW, (width + self.group.grid.spacing()) // max(tile, 1)))
        for strip in (self.group, self.given, self.pool_label):
            strip.reflow(per_row)

    def forget(self) -> None:
        """The project is closing: drop it, its index and what is shown."""
        self._builder.clear()
        self.wait()
        self.clear()
        self._project = None
        self.invalidate()

    def wait(self, msecs: int = 30_000) -> bool:
        return self._builder.wait(msecs)

    def clear(self) -> None:
        self._row = None
        for s in (self.group, self.given, self.pool_label):
            s.show_tiles("", self._project, []) if self._project is not None else s.setVisible(False)
        self.note.setText("")

    def show_row(self, project: Project, row: QueueRow) -> None:
        self._project, self._row = project, row
        self._show_group(project, row)
        if self._index_for != str(project.path):
            self._request_index(project)
            self.given.setVisible(False)
            self.pool_label.setVisible(False)
            self.note.setText("finding neighbours…")
            return
        self._show_neighbours(project, row)

    def _name(self, project: Project, label: int | None) -> str:
        return project.classes[label] if label is not None and 0 <= label < len(project.classes) else "–"

    def _show_group(self, project: Project, row: QueueRow) -> None:
        group = project.dupes.group_of(row.id)
        if len(group) < 2:
            self.group.show_tiles("", project, [])
            self.group.setVisible(False)
            return
        states = {i: (lab, st) for i, lab, st in project.images.label_states(group)}
        conflict = " <span style='color:#ef5350'>conflicting labels</span>" if project.dupes.in_conflict(row.id) else ""
        tiles = [(i, ("▶ " if i == row.id else "") + self._name(project, states[i][0])
                  + (" ✕" if states[i][1] == "removed" else ""), states[i][1]) for i in group]
        self.group.show_tiles(f"<b>Duplicate group</b> ({len(group)}){conflict} · <b>G</b> keeps ▶, removes the rest",
                              project, tiles, _in_conflict(states) if conflict else frozenset())

    def _show_neighbours(self, project: Project, row: QueueRow) -> None:
        if self.index is None:
            self.given.setVisible(False)
            self.pool_label.setVisible(False)
            self.note.setText("no neighbours: score the dataset first")
            return
        strips = [(self.given, row.current_label, "its label"), (self.pool_label, row.consensus, "the models' pick")]
        if row.consensus == row.current_label:
            strips = strips[:1]
            self.pool_label.setVisible(False)
        for strip, label, what in strips:
            if label is None:
                strip.setVisible(False)
                continue
            near = self.index.near(project, row.id, label)
            tiles = [(n.id, f"{n.similarity:.2f}", f"cosine {n.similarity:.3f}") for n in near]
            strip.show_tiles(f"<b>Most like it among «{html.escape(self._name(project, label))}»</b> ({what})",
                             project, tiles)
        self.note.setText(f"Look-alikes by {embedding_words(self.index.embedding)}. {self._words}".strip())
        self.note.setToolTip(self.index.embedding)

    def _request_index(self, project: Project) -> None:
        if self._building is None:
            self._building = path = str(project.path)
            self._builder.submit(lambda: _build_index(Path(path)))

    def _on_built(self, built: tuple[NeighbourIndex | None, str]) -> None:
        index, self._words = built
        path, self._building = self._building, None
        if self._project is None:
            return
        if str(self._project.path) != path:  # built for a project closed since: build this one's
            self._request_index(self._project)
            return
        self.index, self._index_for = index, path
        if self._row is not None:
            self._show_neighbours(self._project, self._row)

    def _on_thumbnailReady(self, image_id: int) -> None:
        for s in (self.group, self.given, self.pool_label):
            s.refresh(image_id)

"""The edit log room of the store: relabel, remove, restore, keep as append-only log entries; undo and redo derived from the log, so they work in any process and after a restart.

Several entries written in one transaction with one ``batch`` number (the first entry's id) are
one decision: "keep this one, remove the rest of its duplicate group" is undone and redone whole.
"""

from __future__ import annotations

import logging
import sqlite3
import time

import numpy as np

from scoring.store.connection import ProjectBase
from scoring.store.dupes import Duplicates
from scoring.store.images import Images
from scoring.store.queue import Queue
from scoring.store.rows import (
    DISPUTED_SQL,
    Edit,
    ProjectValueError,
)

log = logging.getLogger(__name__)

_DO_ACTIONS = ("relabel", "remove", "restore", "keep")
_COLS = "id, image_id, action, old_label, new_label, old_status, new_status, time, target, batch, annotator, via"



def decided(label: int | None, given: int | None) -> str:
    """The status a decision on a label gives: "kept" when it is the given label, else
    "relabelled" (the one rule: relabel, keep, a batch and a duplicate group's keep use it)."""
    return "kept" if label == given else "relabelled"

class EditLog:
    """The append-only edit log: relabel, keep, remove, restore; undo and redo derived from it."""

    def __init__(self, store: ProjectBase, images: Images, dupes: Duplicates, queue: Queue) -> None:
        self.store = store
        self.images = images
        self.dupes = dupes
        self.queue = queue
        self.annotator: str | None = None  # who presses the keys here: set by the project at open
        self._stacks: tuple[int, list[list[int]], list[list[int]]] | None = None

    # --- edits ---------------------------------------------------------------------------

    def _apply(self, image_id: int, action: str, new_label: int | None, new_status: str, target: int | None = None) -> Edit:
        with self.store._tx() as c:
            return self._apply_in(c, image_id, action, new_label, new_status, target)

    def _apply_in(self, c: sqlite3.Connection, image_id: int, action: str, new_label: int | None, new_status: str,
                  target: int | None = None, batch: int | None = None, *, annotator: str | None = None,
                  via: str | None = None, when: float | None = None) -> Edit:
        """One log entry and its image update, inside the caller's transaction. A key pressed here
        on an image with an open dispute (two annotators' packages decided it differently) is
        logged as its adjudication."""
        row = c.execute("SELECT current_label, status FROM images WHERE id=?", (int(image_id),)).fetchone()
        if row is None:
            raise ProjectValueError(f"no image with id {image_id} in {self.store.path}")
        old_label, old_status = row
        if new_label is None and action in ("remove", "restore", "keep"):
            new_label = old_label
        if via is None and old_status == "unreviewed" and c.execute(
                f"SELECT 1 FROM ({DISPUTED_SQL}) WHERE image_id=?", (int(image_id),)).fetchone():
            via = "adjudication"
        t = time.time() if when is None else float(when)
        who = annotator if annotator is not None else self.annotator
        cur = c.execute(
            "INSERT INTO edits(image_id, action, old_label, new_label, old_status, new_status, time, target, batch, "
            "annotator, via) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (int(image_id), action, old_label, new_label, old_status, new_status, t, target, batch, who, via),
        )
        eid = int(cur.lastrowid or 0)
        if batch == -1:  # the first entry of a batch numbers it
            batch = eid
            c.execute("UPDATE edits SET batch=? WHERE id=?", (eid, eid))
        c.execute("UPDATE images SET current_label=?, status=? WHERE id=?", (new_label, new_status, int(image_id)))
        return Edit(eid, int(image_id), action, old_label, new_label, old_status, new_status, t, target, batch, who, via)

    def relabel(self, image_id: int, label: int) -> Edit:
        """Give an image a new label (status 'relabelled', or 'kept' if it is the given one)."""
        label = int(label)
        if not 0 <= label < len(self.store.classes):
            raise ProjectValueError(f"label {label} is out of range: the project has {len(self.store.classes)} classes {self.store.classes}")
        given = self.images.image(image_id).given_label
        return self._apply(image_id, "relabel", label, decided(label, given))

    def keep(self, image_id: int) -> Edit:
        """Confirm the image's current label."""
        row = self.images.image(image_id)
        return self._apply(image_id, "keep", None, decided(row.current_label, row.given_label))

    def remove(self, image_id: int) -> Edit:
        return self._apply(image_id, "remove", None, "removed")

    def restore(self, image_id: int) -> Edit:
        """Bring a removed image back, with the status it had before its last removal."""
        rows = self.store._q(
            "SELECT old_status FROM edits WHERE image_id=? AND new_status='removed' AND old_status != 'removed' ORDER BY id DESC LIMIT 1",
            (int(image_id),),
        )
        before = rows[0][0] if rows else "unreviewed"
        return self._apply(image_id, "restore", None, before)

    def decide_many(self, action: str, ids: list[int], label: int | None = None) -> Edit:
        """``relabel`` (to ``label``), ``remove`` or ``keep`` several images as one decision (one
        batch: undone and redone whole). Returns the first entry."""
        if action not in ("relabel", "remove", "keep") or not ids:
            raise ProjectValueError(f"decide_many takes relabel, remove or keep and some images, got {action!r}")
        if action == "relabel" and (label is None or not 0 <= int(label) < len(self.store.classes)):
            raise ProjectValueError(f"label {label} is out of range: the project has {len(self.store.classes)} classes")
        with self.store._tx() as c:
            first: Edit | None = None
            for image_id in ids:
                row = c.execute("SELECT given_label, current_label FROM images WHERE id=?", (int(image_id),)).fetchone()
                if row is None:
                    raise ProjectValueError(f"no image with id {image_id} in {self.store.path}")
                given, current = row
                new = int(label) if action == "relabel" else current  # type: ignore[arg-type]
                status = "removed" if action == "remove" else decided(new, given)
                e = self._apply_in(c, image_id, action, new if action == "relabel" else None, status,
                                   batch=-1 if first is None else first.batch)
                first = first or e
            assert first is not None
            return first

    def batch_images(self, batch: int | None) -> list[int]:
        """The images one decision (a batch of entries) touched."""
        if batch is None:
            return []
        return [int(r[0]) for r in self.store._q("SELECT DISTINCT image_id FROM edits WHERE batch=? OR id=?",
                                           (int(batch), int(batch)))]

    def keep_only(self, image_id: int, others: list[int]) -> Edit:
        """Keep ``image_id`` and remove each of ``others`` not reviewed yet: one decision, undone
        and redone whole (the duplicate group's key). An image already decided (kept, relabelled,
        removed) is never overridden. Returns the keep entry."""
        row = self.images.image(image_id)
        status = decided(row.current_label, row.given_label)
        with self.store._tx() as c:
            first = self._apply_in(c, image_id, "keep", None, status, batch=-1)
            for other in others:
                if int(other) == int(image_id):
                    continue
                st = c.execute("SELECT status FROM images WHERE id=?", (int(other),)).fetchone()
                if st is None:
                    raise ProjectValueError(f"no image with id {other} in {self.store.path}")
                if st[0] == "unreviewed":  # never override a decision already made
                    self._apply_in(c, other, "remove", None, "removed", batch=first.batch)
            return first

    def entries(self) -> list[Edit]:
        return [Edit(*r) for r in self.store._q(f"SELECT {_COLS} FROM edits ORDER BY id")]

    def review_order(self) -> np.ndarray:
        """(R,) bool, one per reviewed image in the order of their latest decision: True where
        it was a label error (relabelled; a removal says nothing about the label). For the
        found-along-the-way plot."""
        rows = self.store._q(
            "SELECT i.status FROM images AS i JOIN (SELECT image_id, max(id) AS last FROM edits GROUP BY image_id) AS e "
            "ON e.image_id = i.id WHERE i.status != 'unreviewed' ORDER BY e.last")
        return np.array([r[0] == "relabelled" for r in rows], dtype=bool)

    def last_edit_id(self) -> int:
        return int(self.store._q("SELECT COALESCE(max(id), 0) FROM edits")[0][0])

    def edited_since(self, edit_id: int) -> list[tuple[int, int | None, str]]:
        """(image id, current label, status) of every image with a log entry after ``edit_id``."""
        return [(int(i), lab, st) for i, lab, st in self.store._q(
            "SELECT id, current_label, status FROM images WHERE id IN (SELECT image_id FROM edits WHERE id > ?)",
            (int(edit_id),))]

    def _derive_stacks(self, c: sqlite3.Connection | None = None) -> tuple[list[list[int]], list[list[int]]]:
        """Undo and redo stacks of decisions (each a list of edit ids: one, or a batch's), replayed
        from the log; cached until another write appears. ``c``: the open write transaction an
        undo or redo derives them in, so no other process's edit can come between."""
        q = (lambda sql: c.execute(sql).fetchall()) if c is not None else self.store._q
        max_id = q("SELECT COALESCE(max(id), 0) FROM edits")[0][0]
        if self._stacks is not None and self._stacks[0] == max_id:
            return self._stacks[1], self._stacks[2]
        undo: list[list[int]] = []
        redo: list[list[int]] = []
        for eid, action, target, batch in q("SELECT id, action, target, batch FROM edits ORDER BY id"):
            if action in _DO_ACTIONS:
                if batch is not None and batch != eid and undo and undo[-1][0] == batch:
                    undo[-1].append(eid)  # a later entry of the same batch
                else:
                    undo.append([eid])
                redo.clear()
            elif action == "undo" and undo and target in undo[-1]:
                redo.append(undo.pop())
            elif action == "redo" and redo and target in redo[-1]:
                undo.append(redo.pop())
            # the other entries of a batch's undo/redo target the decision just moved: nothing to do
        self._stacks = (max_id, undo, redo)
        return undo, redo

    def _revert(self, action: str) -> Edit | None:
        """Undo (back to old) or redo (on to new) the newest decision on that stack, its entries in
        one transaction, the stack derived inside it; returns the entry of its first image (the
        one the annotator acted on), or None when the stack is empty."""
        with self.store._tx() as c:
            undo, redo = self._derive_stacks(c)
            stack = undo if action == "undo" else redo
            if not stack:
                return None
            edits = [Edit(*c.execute(f"SELECT {_COLS} FROM edits WHERE id=?", (i,)).fetchone()) for i in stack[-1]]
            batch = -1 if len(edits) > 1 else None
            out: list[Edit] = []
            for e in (reversed(edits) if action == "undo" else edits):
                label, status = (e.old_label, e.old_status) if action == "undo" else (e.new_label, e.new_status)
                got = self._apply_in(c, e.image_id, action, label, status, target=e.id, batch=batch)
                if batch == -1:
                    batch = got.batch
                out.append(got)
        return next(o for o in out if o.image_id == edits[0].image_id)

    def undo(self) -> Edit | None:
        """Revert the newest edit not yet undone; appends an 'undo' entry. None if nothing to undo."""
        return self._revert("undo")

    def redo(self) -> Edit | None:
        """Re-apply the newest undone edit; appends a 'redo' entry. None if nothing to redo."""
        return self._revert("redo")

    def keep_group(self, image_id: int) -> Edit:
        """Keep ``image_id`` and remove the rest of its duplicate group: one decision (keep_only)."""
        group = self.dupes.group_of(image_id)
        if len(group) < 2:
            raise ProjectValueError(f"{self.images.image(image_id).path} is in no duplicate group; "
                                    f"find duplicates first (`image-triage duplicates --db {self.store.path}`)")
        return self.keep_only(image_id, group)

    def keep_group_plan(self, image_id: int) -> tuple[list[int], str | None]:
        """What keep_group would do: the images it would remove (the group's unreviewed ones),
        and a reason to ask first (None when nothing calls for it): more than one removal, or a
        kept label that the pool's consensus disagrees with."""
        group = self.dupes.group_of(image_id)
        remove = [i for i, _lab, st in self.images.label_states(group) if i != int(image_id) and st == "unreviewed"]
        row = self.queue.queue_row(image_id)
        why = []
        if len(remove) > 1:
            why.append(f"it removes {len(remove)} images")
        if row.consensus is not None and row.current_label is not None and row.consensus != row.current_label:
            why.append(f"the pool says {self.store.classes[row.consensus]!r}, not the kept label "
                       f"{self.store.classes[row.current_label]!r}")
        return remove, ("; ".join(why) or None)

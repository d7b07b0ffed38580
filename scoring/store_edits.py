"""The edit log room of the store: relabel, remove, restore, keep as append-only log entries; undo and redo derived from the log, so they work in any process and after a restart."""

from __future__ import annotations

import logging
import time

from scoring.store_images import Images
from scoring.store_rows import (
    Edit,
    ProjectValueError,
)

log = logging.getLogger(__name__)

_DO_ACTIONS = ("relabel", "remove", "restore", "keep")


class EditLog(Images):
    # --- edits ---------------------------------------------------------------------------

    def _apply(self, image_id: int, action: str, new_label: int | None, new_status: str, target: int | None = None) -> Edit:
        with self._tx() as c:
            row = c.execute("SELECT current_label, status FROM images WHERE id=?", (int(image_id),)).fetchone()
            if row is None:
                raise ProjectValueError(f"no image with id {image_id} in {self.path}")
            old_label, old_status = row
            if new_label is None and action in ("remove", "restore", "keep"):
                new_label = old_label
            t = time.time()
            cur = c.execute(
                "INSERT INTO edits(image_id, action, old_label, new_label, old_status, new_status, time, target) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (int(image_id), action, old_label, new_label, old_status, new_status, t, target),
            )
            c.execute("UPDATE images SET current_label=?, status=? WHERE id=?", (new_label, new_status, int(image_id)))
            return Edit(int(cur.lastrowid or 0), int(image_id), action, old_label, new_label, old_status, new_status, t, target)

    def relabel(self, image_id: int, label: int) -> Edit:
        """Give an image a new label (status 'relabelled', or 'kept' if it is the given one)."""
        label = int(label)
        if not 0 <= label < len(self.classes):
            raise ProjectValueError(f"label {label} is out of range: the project has {len(self.classes)} classes {self.classes}")
        given = self.image(image_id).given_label
        return self._apply(image_id, "relabel", label, "kept" if label == given else "relabelled")

    def keep(self, image_id: int) -> Edit:
        """Confirm the image's current label."""
        row = self.image(image_id)
        status = "relabelled" if row.current_label != row.given_label else "kept"
        return self._apply(image_id, "keep", None, status)

    def remove(self, image_id: int) -> Edit:
        return self._apply(image_id, "remove", None, "removed")

    def restore(self, image_id: int) -> Edit:
        """Bring a removed image back, with the status it had before its last removal."""
        rows = self._q(
            "SELECT old_status FROM edits WHERE image_id=? AND new_status='removed' AND old_status != 'removed' ORDER BY id DESC LIMIT 1",
            (int(image_id),),
        )
        before = rows[0][0] if rows else "unreviewed"
        return self._apply(image_id, "restore", None, before)

    def edits(self) -> list[Edit]:
        return [Edit(*r) for r in self._q("SELECT id, image_id, action, old_label, new_label, old_status, new_status, time, target FROM edits ORDER BY id")]

    def _derive_stacks(self) -> tuple[list[int], list[int]]:
        """Undo and redo stacks replayed from the log; cached until another write appears."""
        max_id = self._q("SELECT COALESCE(max(id), 0) FROM edits")[0][0]
        if self._stacks is not None and self._stacks[0] == max_id:
            return self._stacks[1], self._stacks[2]
        undo: list[int] = []
        redo: list[int] = []
        for eid, action, target in self._q("SELECT id, action, target FROM edits ORDER BY id"):
            if action in _DO_ACTIONS:
                undo.append(eid)
                redo.clear()
            elif action == "undo" and undo and undo[-1] == target:
                redo.append(undo.pop())
            elif action == "redo" and redo and redo[-1] == target:
                undo.append(redo.pop())
        self._stacks = (max_id, undo, redo)
        return undo, redo

    def can_undo(self) -> bool:
        return bool(self._derive_stacks()[0])

    def can_redo(self) -> bool:
        return bool(self._derive_stacks()[1])

    def _edit(self, edit_id: int) -> Edit:
        return Edit(*self._q("SELECT id, image_id, action, old_label, new_label, old_status, new_status, time, target FROM edits WHERE id=?", (edit_id,))[0])

    def undo(self) -> Edit | None:
        """Revert the newest edit not yet undone; appends an 'undo' entry. None if nothing to undo."""
        undo, _ = self._derive_stacks()
        if not undo:
            return None
        e = self._edit(undo[-1])
        return self._apply(e.image_id, "undo", e.old_label, e.old_status, target=e.id)

    def redo(self) -> Edit | None:
        """Re-apply the newest undone edit; appends a 'redo' entry. None if nothing to redo."""
        _, redo = self._derive_stacks()
        if not redo:
            return None
        e = self._edit(redo[-1])
        return self._apply(e.image_id, "redo", e.new_label, e.new_status, target=e.id)

"""The duplicates room of the store: groups of exact and near-duplicate images (found by
scoring.tasks.duplicates), replaced whole each time they are found."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import numpy as np

from scoring.store.connection import ProjectBase

# The one rule of a label conflict: a duplicate group whose images that are not removed carry
# more than one label (removing the wrong copy resolves it). The queue's filter, the duplicate
# list and the app's pane all read it here.
CONFLICT_GROUPS_SQL = (
    "SELECT d.group_id FROM duplicates d JOIN images i ON i.id = d.image_id "
    "WHERE i.status != 'removed' AND i.current_label IS NOT NULL "
    "GROUP BY d.group_id HAVING count(DISTINCT i.current_label) > 1"
)


class Duplicates:
    """Duplicate groups and the one label-conflict rule (keeping one of a group is an edit: EditLog.keep_group)."""

    def __init__(self, store: ProjectBase) -> None:
        self.store = store

    def conflict_groups(self) -> set[int]:
        """The ids of the groups in label conflict (see CONFLICT_GROUPS_SQL)."""
        return {int(r[0]) for r in self.store._q(CONFLICT_GROUPS_SQL)}

    def in_conflict(self, image_id: int) -> bool:
        """Whether ``image_id``'s group is in label conflict."""
        return bool(self.store._q(f"SELECT 1 FROM duplicates WHERE image_id = ? AND group_id IN ({CONFLICT_GROUPS_SQL})",
                            (int(image_id),)))

    def put_duplicate_groups(self, rows: Sequence[tuple[int, int]]) -> None:
        """Replace the stored groups with ``(image_id, group_id)`` rows, in one transaction."""
        with self.store._tx() as c:
            c.execute("DELETE FROM duplicates")
            c.executemany("INSERT INTO duplicates(image_id, group_id) VALUES (?, ?)", [(int(i), int(g)) for i, g in rows])
            self.store._set_meta(duplicates_searched=str(time.time()))

    def duplicates_searched(self) -> bool:
        """Whether a duplicate search has stored its groups (none found is still a search)."""
        return self.store._meta("duplicates_searched") is not None or bool(self.store._q("SELECT 1 FROM duplicates LIMIT 1"))

    def duplicate_groups(self) -> dict[int, list[int]]:
        """group id -> image ids, as last found."""
        out: dict[int, list[int]] = {}
        for image_id, group in self.store._q("SELECT image_id, group_id FROM duplicates ORDER BY group_id, image_id"):
            out.setdefault(int(group), []).append(int(image_id))
        return out

    def group_of(self, image_id: int) -> list[int]:
        """The image ids of ``image_id``'s duplicate group (empty when it has none)."""
        rows = self.store._q("SELECT d2.image_id FROM duplicates d1 JOIN duplicates d2 ON d1.group_id = d2.group_id "
                       "WHERE d1.image_id = ? ORDER BY d2.image_id", (int(image_id),))
        return [int(r[0]) for r in rows]

    def sha1s(self, ids: Sequence[int] | np.ndarray) -> list[str | None]:
        """The content hashes of ``ids`` (None where not read yet), in order."""
        found = dict(self.store._q("SELECT j.value, i.sha1 FROM json_each(?) AS j JOIN images AS i ON i.id = j.value",
                             (json.dumps([int(i) for i in ids]),)))
        return [found.get(int(i)) for i in ids]

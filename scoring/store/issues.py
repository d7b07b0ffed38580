"""The issues room of the store: the dataset's issues beyond labels (scoring.evidence.image_issues), one
row per flagged image and issue with its severity, replaced whole each time they are found."""

from __future__ import annotations

from collections.abc import Sequence

from scoring.store.connection import ProjectBase

# The queue's filter, the counts and the export all read an issue through this clause.
ISSUE_IDS_SQL = "SELECT image_id FROM issues WHERE name = ?"


class Issues:
    """The dataset's issues beyond labels, replaced whole each time they are found."""

    def __init__(self, store: ProjectBase) -> None:
        self.store = store

    def put_issues(self, rows: Sequence[tuple[int, str, float]]) -> None:
        """Replace the stored issues with ``(image_id, issue, severity)`` rows, in one transaction."""
        with self.store._tx() as c:
            c.execute("DELETE FROM issues")
            c.executemany("INSERT INTO issues(image_id, name, severity) VALUES (?, ?, ?)",
                          [(int(i), str(n), float(s)) for i, n, s in rows])

    def issue_counts(self) -> dict[str, int]:
        """Readable images flagged per issue (issues not found are left out)."""
        return {str(n): int(k) for n, k in self.store._q(
            "SELECT name, count(*) FROM issues JOIN images ON images.id = issues.image_id "
            "WHERE images.error IS NULL GROUP BY name ORDER BY name")}

    def issues_of(self, image_id: int) -> list[tuple[str, float]]:
        """(issue, severity) of one image, the most severe first."""
        return [(str(n), float(s)) for n, s in self.store._q(
            "SELECT name, severity FROM issues WHERE image_id = ? ORDER BY severity DESC, name", (int(image_id),))]

    def issues_by_image(self) -> dict[int, list[str]]:
        """Every flagged image's issues (for the export's report)."""
        out: dict[int, list[str]] = {}
        for i, n in self.store._q("SELECT image_id, name FROM issues ORDER BY image_id, name"):
            out.setdefault(int(i), []).append(str(n))
        return out

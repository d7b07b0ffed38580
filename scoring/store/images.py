"""The images room of the store: sync with the dataset on disk, rows, paths, labels, decode errors."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scoring.errors import ImageTriageError
from scoring.io.datasets import Dataset, is_uri
from scoring.io.decoding import file_sha1
from scoring.metrics import vote_scores
from scoring.store.connection import ProjectBase
from scoring.store.rows import (
    IMAGE_COLS,
    ImageRow,
    ProjectError,
    ProjectValueError,
    SyncReport,
)

log = logging.getLogger(__name__)


class Images:
    """The project's images: sync with the dataset, rows, paths, labels, decode errors."""

    def __init__(self, store: ProjectBase) -> None:
        self.store = store

    # --- images --------------------------------------------------------------------------

    def sync(self, dataset: Dataset, *, verify: bool = False) -> SyncReport:
        """Add new images; flag changed and missing ones. The content hash decides "changed":
        size, mtime and ctime only say when to re-hash cheaply (an edit that restores size and
        mtime still moves ctime); ``verify`` re-hashes every image (the export does). An image
        whose content is back to the hash scored is accepted again."""
        unknown = sorted({r.label for r in dataset.records if r.label is not None} - set(self.store.classes))
        if unknown:
            raise ProjectError(
                f"{dataset.source} has classes the project {self.store.path} does not know: {unknown}; "
                f"the project's classes are {self.store.classes}. Create a new project for this dataset."
            )
        stored = {r[0]: r[1:] for r in self.store._q("SELECT path, id, size_bytes, mtime, ctime, sha1, flag FROM images")}
        now_paths = set()
        root = str(dataset.root)
        new_rows: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        stats: list[tuple[Any, ...]] = []
        for rec in dataset.records:
            now_paths.add(rec.path)
            if rec.error is not None:  # a special file or a name that is not UTF-8: never opened
                if rec.path not in stored:
                    label = None if rec.label is None else self.store.classes.index(rec.label)
                    new_rows.append((rec.path, label, label, "unreviewed", None, None, None, None, rec.error))
                continue
            uri = is_uri(rec.path)
            full = rec.path if uri else os.path.join(root, rec.path)  # a string: pathlib per image cost 0.03 s a 2,000
            try:
                # Object-storage URIs are not listed here (one request each); scoring reads them.
                st = None if uri else os.stat(full)
                size, mtime, ctime = (st.st_size, st.st_mtime, st.st_ctime) if st is not None else (None, None, None)
            except OSError:
                size, mtime, ctime = None, None, None
            if rec.path not in stored:
                label = dataset.label_index(rec.label)
                label = None if label is None else self.store.classes.index(rec.label)  # type: ignore[arg-type]
                flag = None if size is not None or uri else "missing"
                new_rows.append((rec.path, label, label, "unreviewed", size, mtime, ctime, flag, None))
                continue
            image_id, old_size, old_mtime, old_ctime, sha1, flag = stored[rec.path]
            new_flag = flag
            if uri:
                pass
            elif size is None:
                new_flag = "missing"
            elif verify or flag is not None or (size, mtime, ctime) != (old_size, old_mtime, old_ctime):
                now = _sha1_or_none(full) if sha1 is not None else None
                new_flag = "changed" if sha1 is not None and now != sha1 else None
                if new_flag is None:
                    stats.append((size, mtime, ctime, image_id))
            if new_flag != flag:
                updates.append((new_flag, image_id))
        for path, (image_id, *_rest) in stored.items():
            if path not in now_paths and _rest[-1] != "missing":
                updates.append(("missing", image_id))
        with self.store._tx() as c:
            c.executemany(
                "INSERT INTO images(path, given_label, current_label, status, size_bytes, mtime, ctime, flag, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                new_rows,
            )
            c.executemany("UPDATE images SET flag=? WHERE id=?", updates)
            c.executemany("UPDATE images SET size_bytes=?, mtime=?, ctime=? WHERE id=?", stats)
            if any(r.votes for r in dataset.records):
                self._put_votes(c, dataset)
        counts = dict(self.store._q("SELECT COALESCE(flag, ''), count(*) FROM images GROUP BY flag"))
        errors = self.store._q("SELECT count(*) FROM images WHERE error IS NOT NULL")[0][0]
        total = sum(counts.values())
        return SyncReport(total, len(new_rows), int(counts.get("changed", 0)), int(counts.get("missing", 0)), errors)

    def _put_votes(self, c: Any, dataset: Dataset) -> None:
        """The people's votes of every image (replaced), and their two scores
        (:func:`scoring.metrics.vote_scores`)."""
        ids = dict(c.execute("SELECT path, id FROM images").fetchall())
        rows: list[tuple[int, str, int]] = []
        scores: list[tuple[float | None, float | None, int]] = []
        for rec in dataset.records:
            image_id = ids.get(rec.path)
            if image_id is None:
                continue
            labels = [self.store.classes.index(lab) for _, lab in rec.votes if lab in self.store.classes]
            rows += [(image_id, who, self.store.classes.index(lab)) for who, lab in rec.votes if lab in self.store.classes]
            given = None if rec.label is None else self.store.classes.index(rec.label)
            scores.append((*vote_scores(labels, given), image_id))
        c.execute("DELETE FROM votes")
        c.executemany("INSERT INTO votes(image_id, annotator, label) VALUES (?, ?, ?)", rows)
        c.executemany("UPDATE images SET annotator_agreement=?, annotator_entropy=? WHERE id=?", scores)

    def votes_of(self, image_id: int) -> list[tuple[str, int]]:
        """(annotator, label) of each person's label of one image (a Label Studio export's)."""
        return [(str(a), int(b)) for a, b in self.store._q(
            "SELECT annotator, label FROM votes WHERE image_id = ? ORDER BY rowid", (int(image_id),))]

    def _row(self, r: Sequence[Any]) -> ImageRow:
        return ImageRow(*r[: len(IMAGE_COLS)])

    def paths_of(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The stored paths of ``ids``, in their order (one query, not one per image)."""
        if len(ids) == 0:
            return []
        found = dict(self.store._q("SELECT i.id, i.path FROM json_each(?) AS j JOIN images AS i ON i.id = j.value",
                             (json.dumps([int(i) for i in ids]),)))
        return [found[int(i)] for i in ids]

    def sizes(self, ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(widths, heights) of ``ids`` in their order, 0 where not known yet."""
        if len(ids) == 0:
            return np.zeros(0), np.zeros(0)
        found = {int(i): (w or 0, h or 0) for i, w, h in self.store._q(
            "SELECT i.id, i.width, i.height FROM json_each(?) AS j JOIN images AS i ON i.id = j.value",
            (json.dumps([int(i) for i in ids]),))}
        wh = np.array([found.get(int(i), (0, 0)) for i in ids], dtype=np.float64)
        return wh[:, 0], wh[:, 1]

    def image_paths(self) -> Iterator[str]:
        """Every image path the project lists (relative to the dataset root, or a URI), by id."""
        cur = self.store.conn.execute("SELECT path FROM images ORDER BY id")
        while rows := cur.fetchmany(10_000):
            yield from (r[0] for r in rows)

    def image(self, image_id: int) -> ImageRow:
        rows = self.store._q(f"SELECT {', '.join(IMAGE_COLS)} FROM images WHERE id=?", (int(image_id),))
        if not rows:
            raise ProjectValueError(f"no image with id {image_id} in {self.store.path}")
        return self._row(rows[0])

    def find_image(self, path: str) -> int | None:
        rows = self.store._q("SELECT id FROM images WHERE path=?", (path,))
        return int(rows[0][0]) if rows else None

    def abspath(self, row_or_path: ImageRow | str) -> Path | str:
        """A path under the dataset root, or the URI itself for images on object storage."""
        rel = row_or_path.path if isinstance(row_or_path, ImageRow) else row_or_path
        return rel if is_uri(rel) else self.store.dataset_root / rel

    def abspaths(self, rels: Sequence[str]) -> list[str]:
        """:meth:`abspath` of many, as strings: a million pathlib joins cost a minute (issue 35:
        0.14 s of a 2.3 s run on 2,000 images went to building the paths)."""
        root = str(self.store.dataset_root)
        return [rel if is_uri(rel) else os.path.join(root, rel) for rel in rels]

    def scorable_ids(self) -> np.ndarray:
        rows = self.store._q("SELECT id FROM images WHERE error IS NULL AND (flag IS NULL OR flag != 'missing') ORDER BY id")
        return np.array([r[0] for r in rows], dtype=np.int64)

    def label_states(self, ids: Sequence[int] | np.ndarray) -> list[tuple[int, int | None, str]]:
        """(id, current label, status) of ``ids``, in order."""
        got = {int(i): (lab, st) for i, lab, st in self.store._q(
            "SELECT j.value, i.current_label, i.status FROM json_each(?) AS j JOIN images AS i ON i.id = j.value",
            (json.dumps([int(i) for i in ids]),))}
        return [(int(i), *got[int(i)]) for i in ids if int(i) in got]

    def labelled(self) -> bool:
        """Whether any image carries a given label (the queue then opens on the label view)."""
        return bool(self.store._q("SELECT 1 FROM images WHERE given_label IS NOT NULL LIMIT 1"))

    def given_labels(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        lookup = dict(self.store._q("SELECT j.value, i.given_label FROM json_each(?) AS j JOIN images AS i ON i.id = j.value",
                              (json.dumps([int(i) for i in ids]),)))
        return np.array([-1 if lookup.get(int(i)) is None else lookup[int(i)] for i in ids], dtype=np.int64)

    def record_error(self, image_id: int, message: str) -> None:
        with self.store._tx() as c:
            c.execute("UPDATE images SET error=? WHERE id=?", (message, int(image_id)))

    def clear_error(self, image_id: int) -> None:
        with self.store._tx() as c:
            c.execute("UPDATE images SET error=NULL WHERE id=?", (int(image_id),))

    def errors(self) -> list[ImageRow]:
        return [self._row(r) for r in self.store._q(f"SELECT {', '.join(IMAGE_COLS)} FROM images WHERE error IS NOT NULL ORDER BY id")]

    def set_image_info(
        self,
        ids: Sequence[int] | np.ndarray,
        widths: Sequence[int],
        heights: Sequence[int],
        sha1s: Sequence[str | None] | None = None,
    ) -> None:
        sha = list(sha1s) if sha1s is not None else [None] * len(widths)
        with self.store._tx() as c:
            c.executemany(
                "UPDATE images SET width=?, height=?, sha1=COALESCE(?, sha1) WHERE id=?",
                [(int(w), int(h), s, int(i)) for i, w, h, s in zip(ids, widths, heights, sha, strict=True)],
            )


def _sha1_or_none(path: Path | str) -> str | None:
    """The file's hash, or None when it can no longer be read as a regular file (-> flagged changed)."""
    try:
        return file_sha1(path)
    except (OSError, ImageTriageError):
        return None



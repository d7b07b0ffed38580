"""The project store: one SQLite file per project (sqlite-utils over sqlite3, WAL).

What it holds: the dataset's description, its images (path, size, hash, given and current
label, status, decode error, changed/missing flag, and the active pool's scores on the same
row so the review queue is one indexed scan), the pool's members, runs, cached encoder outputs
(features/logits, float16), per-image per-member probabilities (float16), and an append-only
edits log from which undo and redo are derived in any process and after a restart.

One ``Project`` per thread: SQLite connections belong to the thread that made them. Every
write is one transaction, so a kill at any moment loses at most the batch in flight and never
half-applies an edit. Two processes may open one project: WAL lets readers run beside a
writer, writers wait up to ``BUSY_TIMEOUT_S`` for each other, and the undo stacks are
re-derived from the log whenever another process has appended to it.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import sqlite_utils

from scoring.datasets import Dataset, file_sha1, is_uri, open_dataset
from scoring.errors import ImageTriageError
from scoring.vocabulary import HARDEST_DESC, SCORE_COLUMNS, SORT_KEYS, STATUSES

__all__ = ["SCORE_COLUMNS", "SORT_KEYS", "STATUSES"]  # re-exported: the store's vocabulary

log = logging.getLogger(__name__)

APPLICATION_ID = 0x49545247  # "ITRG"
BUSY_TIMEOUT_S = 5.0
_HARDEST_DESC = HARDEST_DESC
TOPK_STORE_THRESHOLD = 1000  # above this many classes, keep each member's top-100 only
TOPK_KEEP = 100
_DO_ACTIONS = ("relabel", "remove", "restore", "keep")


class ProjectError(ImageTriageError):
    """A project file problem; the message names the file and what to do."""


class NotAProjectError(ProjectError):
    """The file is not an Image Triage project (or is corrupt)."""


class ProjectLockedError(ProjectError):
    """Another process holds the write lock for longer than the busy timeout."""


class ProjectValueError(ProjectError, ValueError):
    """A request the project cannot answer: an image id it does not have, a label out of range."""


class IncompleteProjectError(NotAProjectError):
    """A project file whose creation was interrupted (empty, or without its dataset); it holds
    nothing of the user's and :func:`project_for` recreates it."""


@dataclass(frozen=True)
class ImageRow:
    id: int
    path: str
    given_label: int | None
    current_label: int | None
    status: str
    error: str | None
    flag: str | None
    width: int | None
    height: int | None
    size_bytes: int | None
    sha1: str | None


@dataclass(frozen=True)
class QueueRow(ImageRow):
    c_perplexity: float | None
    x_perplexity: float | None
    entropy_of_mean: float | None
    mutual_info: float | None
    consensus: int | None
    consensus_prob: float | None
    self_confidence: float | None
    margin: float | None
    reason: str | None
    top_c: list[tuple[int, float]] = field(default_factory=list)
    top_x: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class QueueFilter:
    given_label: int | None = None
    consensus: int | None = None
    reason: str | None = None
    status: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    score_key: str = "c_perplexity"
    disagrees: bool = False
    search: str | None = None
    flagged: bool | None = None


@dataclass(frozen=True)
class Edit:
    id: int
    image_id: int
    action: str
    old_label: int | None
    new_label: int | None
    old_status: str
    new_status: str
    time: float
    target: int | None


@dataclass(frozen=True)
class SyncReport:
    total: int
    added: int
    changed: int
    missing: int
    errors: int


_IMAGE_COLS = [f.name for f in fields(ImageRow)]
_QUEUE_COLS = _IMAGE_COLS + list(SCORE_COLUMNS) + ["top_c", "top_x"]


# ----------------------------------------------------------------------------- migrations


def _script(conn: sqlite3.Connection, sql: str) -> None:
    """Run ;-separated DDL inside the current transaction (executescript would commit it)."""
    for stmt in sql.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def _m1_base(conn: sqlite3.Connection) -> None:
    _script(
        conn,
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
        CREATE TABLE images (
            id INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE,
            given_label INTEGER, current_label INTEGER,
            status TEXT NOT NULL DEFAULT 'unreviewed', error TEXT, flag TEXT,
            width INTEGER, height INTEGER, size_bytes INTEGER, mtime REAL, sha1 TEXT,
            c_perplexity REAL, x_perplexity REAL, entropy_mean REAL, mutual_info REAL,
            consensus INTEGER, consensus_prob REAL, self_confidence REAL, margin REAL,
            reason TEXT, top_c TEXT, top_x TEXT
        );
        CREATE TABLE members (
            fingerprint TEXT PRIMARY KEY, name TEXT, kind TEXT, classes TEXT, spec TEXT, created REAL
        );
        CREATE TABLE runs (
            id INTEGER PRIMARY KEY, pool_fingerprint TEXT, config TEXT, device TEXT,
            started REAL, ended REAL, status TEXT, error TEXT
        );
        CREATE TABLE features (
            encoder_key TEXT NOT NULL, image_id INTEGER NOT NULL, data BLOB NOT NULL,
            PRIMARY KEY (encoder_key, image_id)
        ) WITHOUT ROWID;
        CREATE TABLE probs (
            member_fp TEXT NOT NULL, image_id INTEGER NOT NULL, data BLOB NOT NULL,
            PRIMARY KEY (member_fp, image_id)
        ) WITHOUT ROWID;
        CREATE TABLE edits (
            id INTEGER PRIMARY KEY AUTOINCREMENT, image_id INTEGER NOT NULL REFERENCES images(id),
            action TEXT NOT NULL, old_label INTEGER, new_label INTEGER,
            old_status TEXT NOT NULL, new_status TEXT NOT NULL, time REAL NOT NULL
        );
        """
    )


def _m2_undo_targets_and_queue_indexes(conn: sqlite3.Connection) -> None:
    """Undo/redo entries point at the edit they revert; each sort key gets its own index,
    so the first page of a 1,000,000-image queue is an index scan, not a sort."""
    conn.execute("ALTER TABLE edits ADD COLUMN target INTEGER")
    conn.execute("ALTER TABLE runs ADD COLUMN pid INTEGER")
    conn.execute("ALTER TABLE runs ADD COLUMN host TEXT")
    for key, order in (("c_perplexity", "DESC"), ("x_perplexity", "DESC"), ("entropy_mean", "DESC"),
                       ("mutual_info", "DESC"), ("self_confidence", "ASC"), ("margin", "ASC"),
                       ("consensus_prob", "ASC"), ("path", "ASC")):  # frozen: the sort keys of schema 2
        conn.execute(f"CREATE INDEX IF NOT EXISTS ix_images_{key} ON images ({key} {order}, id)")
    conn.execute("CREATE INDEX IF NOT EXISTS ix_edits_image ON edits (image_id)")


_COUNT_KEYS = "CASE WHEN {r}.error IS NOT NULL THEN 'errors' ELSE {r}.status END"


def _m3_counts_kept_by_triggers(conn: sqlite3.Connection) -> None:
    """Counts per status, of unreadable and of flagged images, kept current by triggers in the
    same transaction as every insert and update, so stats() and the unfiltered queue count are
    one small read at any size (they scanned every row: 0.9 s at 1,000,000 images)."""
    conn.execute("CREATE TABLE counts (key TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID")
    keys = [*STATUSES, "errors", "flagged"]
    conn.executemany("INSERT INTO counts(key, n) VALUES (?, 0)", [(k,) for k in keys])
    conn.execute(
        f"UPDATE counts SET n = (SELECT count(*) FROM images WHERE {_COUNT_KEYS.format(r='images')} = counts.key) "
        "WHERE key != 'flagged'"
    )
    conn.execute("UPDATE counts SET n = (SELECT count(*) FROM images WHERE flag IS NOT NULL) WHERE key = 'flagged'")
    add = f"UPDATE counts SET n = n + 1 WHERE key = {_COUNT_KEYS.format(r='NEW')};" \
          "UPDATE counts SET n = n + (NEW.flag IS NOT NULL) WHERE key = 'flagged';"
    sub = f"UPDATE counts SET n = n - 1 WHERE key = {_COUNT_KEYS.format(r='OLD')};" \
          "UPDATE counts SET n = n - (OLD.flag IS NOT NULL) WHERE key = 'flagged';"
    conn.execute(f"CREATE TRIGGER counts_insert AFTER INSERT ON images BEGIN {add} END")
    conn.execute(f"CREATE TRIGGER counts_delete AFTER DELETE ON images BEGIN {sub} END")
    conn.execute(f"CREATE TRIGGER counts_update AFTER UPDATE OF status, error, flag ON images BEGIN {sub} {add} END")


def _m4_entropy_of_mean_and_indexes_from_the_vocabulary(conn: sqlite3.Connection) -> None:
    """The column holding the entropy *of* the pool mean was called entropy_mean, which reads as
    the mean of entropies (a different score); renamed. Each sort key of scoring.vocabulary
    gets its index, the hardest end first."""
    conn.execute("ALTER TABLE images RENAME COLUMN entropy_mean TO entropy_of_mean")
    conn.execute("DROP INDEX IF EXISTS ix_images_entropy_mean")
    for key in SORT_KEYS:
        if key != "id":
            order = "DESC" if key in HARDEST_DESC else "ASC"
            conn.execute(f"CREATE INDEX IF NOT EXISTS ix_images_{key} ON images ({key} {order}, id)")


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _m1_base, _m2_undo_targets_and_queue_indexes, _m3_counts_kept_by_triggers,
    _m4_entropy_of_mean_and_indexes_from_the_vocabulary,
]
SCHEMA_VERSION = len(MIGRATIONS)


# ----------------------------------------------------------------------------- encoding


def _encode_probs(p: np.ndarray) -> bytes:
    """(K,) probabilities -> blob. K <= 1000: float16 of all K (2 bytes/class). Larger K: the
    top-100 as int32 indices + float16 values; at 21,000 classes a full row would be 42 kB per
    model per image, and the tail below the top 100 carries almost no mass."""
    k = p.shape[0]
    if k <= TOPK_STORE_THRESHOLD:
        return p.astype(np.float16).tobytes()
    top = np.argsort(-p, kind="stable")[:TOPK_KEEP].astype(np.int32)
    return b"T" + top.tobytes() + p[top].astype(np.float16).tobytes()


def _decode_probs(blob: bytes, k: int) -> np.ndarray:
    """Inverse of _encode_probs; a top-k row spreads the missing mass evenly over the rest."""
    if k <= TOPK_STORE_THRESHOLD:
        out = np.frombuffer(blob, dtype=np.float16).astype(np.float32)
    else:
        top = np.frombuffer(blob[1 : 1 + 4 * TOPK_KEEP], dtype=np.int32)
        vals = np.frombuffer(blob[1 + 4 * TOPK_KEEP :], dtype=np.float16).astype(np.float32)
        out = np.full(k, max(0.0, 1.0 - float(vals.sum())) / max(k - len(top), 1), dtype=np.float32)
        out[top] = vals
    s = out.sum()
    return out / s if s > 0 else out


def _none_if_nan(x: Any) -> Any:
    if x is None:
        return None
    if isinstance(x, float | np.floating):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    return x


# ----------------------------------------------------------------------------- the project


class Project:
    """An open project file. Use one per thread; close it (or use ``with``) when done."""

    def __init__(self, path: str | Path, _create: bool = False):
        self.path = Path(path)
        if not _create and not self.path.exists():
            raise ProjectError(f"{self.path}: no such project file")
        try:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise ProjectError(f"{self.path}: cannot open ({exc}); check the folder exists and is writable") from exc
        self.conn = conn
        self.db = sqlite_utils.Database(conn)
        self._stacks: tuple[int, list[int], list[int]] | None = None
        try:
            self._prepare(_create)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise self._translate(exc) from exc
        except ProjectError:
            conn.close()
            raise
        self._load_meta()
        if not _create and self._meta("dataset_root") is None:
            conn.close()
            raise IncompleteProjectError(
                f"{self.path} has no dataset (its creation was stopped part-way); open the dataset again to recreate it"
            )

    # --- opening -----------------------------------------------------------------------

    def _translate(self, exc: sqlite3.Error) -> ProjectError:
        msg = str(exc)
        if "locked" in msg or "busy" in msg:
            return ProjectLockedError(
                f"{self.path} is locked: another Image Triage process is writing to it; close it or wait"
            )
        if "disk is full" in msg or "disk I/O" in msg:
            return ProjectError(
                f"{self.path}: the disk is full or failing ({msg}); nothing was half-written. "
                "Free space and run again: scoring resumes where it stopped"
            )
        if "readonly" in msg or "read-only" in msg:
            return ProjectError(f"{self.path} is read-only ({msg}); copy it somewhere writable or fix its permissions")
        if "not a database" in msg or "malformed" in msg or "encrypted" in msg:
            return NotAProjectError(
                f"{self.path} is not an Image Triage project or is corrupt ({msg}); "
                "open a .triage.db made by image-triage, or create a new one by opening the dataset"
            )
        return ProjectError(f"{self.path}: {msg}")

    def _prepare(self, create: bool) -> None:
        c = self.conn
        app_id = c.execute("PRAGMA application_id").fetchone()[0]
        version = c.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if create:
            if tables:
                raise ProjectError(f"{self.path} already holds a database; pick a new file name")
        elif not tables:
            raise IncompleteProjectError(
                f"{self.path} is an empty project file (its creation was stopped part-way); "
                "open the dataset again to recreate it"
            )
        elif app_id != APPLICATION_ID:
            what = "an SQLite database of another program"
            raise NotAProjectError(
                f"{self.path} is not an Image Triage project ({what}); open a .triage.db made by "
                "image-triage, or open the dataset to create one"
            )
        if version > SCHEMA_VERSION:
            raise ProjectError(
                f"{self.path} was written by a newer Image Triage (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade image-triage to open it"
            )
        if create:  # a rollback journal until the file is complete: no WAL left to checkpoint on close
            c.execute("PRAGMA journal_mode=DELETE")
        elif c.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            log.warning("%s: WAL mode unavailable; concurrent readers will wait", self.path)
        c.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across an app kill
        c.execute("PRAGMA foreign_keys=ON")
        if version < SCHEMA_VERSION:
            self._migrate(version)

    def _migrate(self, version: int, upto: int | None = None) -> None:
        upto = SCHEMA_VERSION if upto is None else upto
        with self._tx():
            for n in range(version, upto):
                log.info("%s: applying migration %d (%s)", self.path, n + 1, MIGRATIONS[n].__name__)
                MIGRATIONS[n](self.conn)
            self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version={upto}")

    @classmethod
    def create(cls, path: str | Path, dataset: Dataset, *, follow_symlinks: bool = False) -> Project:
        """A new project file for ``dataset`` (its images synced in).

        The schema, the dataset's description and its images are committed in a hidden file
        beside ``path`` that is then linked into place, so a kill at any moment leaves either no
        project or a complete one, never an empty file. An existing file is never replaced.
        """
        p = Path(path).absolute()
        if p.exists() or p.is_symlink():
            raise ProjectError(f"{p} already exists; open it, or choose another file name")
        _check_project_location(p, dataset)
        p.parent.mkdir(parents=True, exist_ok=True)
        _remove_creation_leftovers(p)
        tmp = p.parent / f".{p.name}.creating-{uuid.uuid4().hex[:8]}"
        try:
            proj = cls(tmp, _create=True)
            try:
                with proj._tx():
                    proj._set_meta(
                        dataset_root=str(dataset.root.resolve()),
                        layout=dataset.layout,
                        source=str(dataset.source.resolve()),
                        classes=json.dumps(dataset.classes),
                        follow_symlinks=json.dumps(bool(follow_symlinks)),
                        created=str(time.time()),
                    )
                proj._load_meta()
                proj.sync(dataset)
            finally:
                proj.close()
            _link_new(tmp, p)
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        return cls(p)

    @classmethod
    def open(cls, path: str | Path) -> Project:
        return cls(path)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group several writes (puts of one chunk) into one transaction: all or none is stored."""
        with self._tx():
            yield

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: take the write lock up front); inside
        :meth:`transaction`, writes join the open one."""
        if self.conn.in_transaction:
            yield self.conn
            return
        try:
            self.conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._translate(exc) from exc
        try:
            yield self.conn
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise self._translate(exc) from exc
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                self.conn.execute("ROLLBACK")
            raise
        else:
            try:
                self.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):  # SQLite may have rolled back already
                    self.conn.execute("ROLLBACK")
                raise self._translate(exc) from exc

    def _q(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise self._translate(exc) from exc

    # --- meta ----------------------------------------------------------------------------

    def _set_meta(self, **kv: str) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", list(kv.items()))

    def _meta(self, key: str) -> str | None:
        row = self._q("SELECT value FROM meta WHERE key=?", (key,))
        return row[0][0] if row else None

    def _load_meta(self) -> None:
        root = self._meta("dataset_root")
        if root is None:
            self.dataset_root, self.layout, self.source, self.classes = Path("."), "flat", Path("."), []
            return
        self.dataset_root = Path(root)
        self.layout = self._meta("layout") or "imagefolder"
        self.source = Path(self._meta("source") or root)
        self.classes = list(json.loads(self._meta("classes") or "[]"))

    def adopt_classes(self, classes: list[str]) -> None:
        """Give an unlabelled project (a flat folder) the pool's class names, once."""
        if self.classes:
            raise ProjectError(f"{self.path} already has classes {self.classes}")
        with self._tx():
            self._set_meta(classes=json.dumps(list(classes)))
        self.classes = list(classes)

    def dataset(self) -> Dataset:
        """Re-read the dataset from disk (its layout and symlink policy as stored)."""
        follow = json.loads(self._meta("follow_symlinks") or "false") is True
        return open_dataset(self.source, layout=self.layout, follow_symlinks=follow)

    # --- images --------------------------------------------------------------------------

    def sync(self, dataset: Dataset) -> SyncReport:
        """Add new images; flag changed (content hash differs) and missing ones."""
        unknown = sorted({r.label for r in dataset.records if r.label is not None} - set(self.classes))
        if unknown:
            raise ProjectError(
                f"{dataset.source} has classes the project {self.path} does not know: {unknown}; "
                f"the project's classes are {self.classes}. Create a new project for this dataset."
            )
        stored = {r[0]: r[1:] for r in self._q("SELECT path, id, size_bytes, mtime, sha1, flag FROM images")}
        now_paths = set()
        new_rows: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        changed = 0
        for rec in dataset.records:
            now_paths.add(rec.path)
            if rec.error is not None:  # a special file or a name that is not UTF-8: never opened
                if rec.path not in stored:
                    label = None if rec.label is None else self.classes.index(rec.label)
                    new_rows.append((rec.path, label, label, "unreviewed", None, None, None, rec.error))
                continue
            full = dataset.abspath(rec.path)
            uri = isinstance(full, str)
            try:
                # Object-storage URIs are not listed here (one request each); scoring reads them.
                st = None if uri else full.stat()  # type: ignore[union-attr]
                size, mtime = (st.st_size, st.st_mtime) if st is not None else (None, None)
            except OSError:
                size, mtime = None, None
            if rec.path not in stored:
                label = dataset.label_index(rec.label)
                label = None if label is None else self.classes.index(rec.label)  # type: ignore[arg-type]
                flag = None if size is not None or uri else "missing"
                new_rows.append((rec.path, label, label, "unreviewed", size, mtime, flag, None))
                continue
            image_id, old_size, old_mtime, sha1, flag = stored[rec.path]
            new_flag = flag
            if uri:
                pass
            elif size is None:
                new_flag = "missing"
            elif (size, mtime) != (old_size, old_mtime):
                if sha1 is not None and _sha1_or_none(full) != sha1:
                    new_flag = "changed"
                elif flag == "missing":
                    new_flag = None
            elif flag == "missing":
                new_flag = None
            if new_flag != flag:
                changed += new_flag == "changed"
                updates.append((new_flag, image_id))
        for path, (image_id, *_rest) in stored.items():
            if path not in now_paths and _rest[-1] != "missing":
                updates.append(("missing", image_id))
        with self._tx() as c:
            c.executemany(
                "INSERT INTO images(path, given_label, current_label, status, size_bytes, mtime, flag, error) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                new_rows,
            )
            c.executemany("UPDATE images SET flag=? WHERE id=?", updates)
        counts = dict(self._q("SELECT COALESCE(flag, ''), count(*) FROM images GROUP BY flag"))
        errors = self._q("SELECT count(*) FROM images WHERE error IS NOT NULL")[0][0]
        total = sum(counts.values())
        return SyncReport(total, len(new_rows), int(counts.get("changed", 0)), int(counts.get("missing", 0)), errors)

    def _row(self, r: Sequence[Any]) -> ImageRow:
        return ImageRow(*r[: len(_IMAGE_COLS)])

    def paths_of(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """The stored paths of ``ids``, in their order (one query, not one per image)."""
        if len(ids) == 0:
            return []
        found = dict(self._q("SELECT i.id, i.path FROM json_each(?) AS j JOIN images AS i ON i.id = j.value",
                             (json.dumps([int(i) for i in ids]),)))
        return [found[int(i)] for i in ids]

    def image_paths(self) -> Iterator[str]:
        """Every image path the project lists (relative to the dataset root, or a URI), by id."""
        cur = self.conn.execute("SELECT path FROM images ORDER BY id")
        while rows := cur.fetchmany(10_000):
            yield from (r[0] for r in rows)

    def image(self, image_id: int) -> ImageRow:
        rows = self._q(f"SELECT {', '.join(_IMAGE_COLS)} FROM images WHERE id=?", (int(image_id),))
        if not rows:
            raise ProjectValueError(f"no image with id {image_id} in {self.path}")
        return self._row(rows[0])

    def queue_row(self, image_id: int) -> QueueRow:
        rows = self._q(f"SELECT {', '.join(_QUEUE_COLS)} FROM images WHERE id=?", (int(image_id),))
        if not rows:
            raise ProjectValueError(f"no image with id {image_id} in {self.path}")
        return self._queue_row(rows[0])

    def find_image(self, path: str) -> int | None:
        rows = self._q("SELECT id FROM images WHERE path=?", (path,))
        return int(rows[0][0]) if rows else None

    def abspath(self, row_or_path: ImageRow | str) -> Path | str:
        """A path under the dataset root, or the URI itself for images on object storage."""
        rel = row_or_path.path if isinstance(row_or_path, ImageRow) else row_or_path
        return rel if is_uri(rel) else self.dataset_root / rel

    def scorable_ids(self) -> np.ndarray:
        rows = self._q("SELECT id FROM images WHERE error IS NULL AND (flag IS NULL OR flag != 'missing') ORDER BY id")
        return np.array([r[0] for r in rows], dtype=np.int64)

    def given_labels(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        lookup = dict(self._q("SELECT j.value, i.given_label FROM json_each(?) AS j JOIN images AS i ON i.id = j.value",
                              (json.dumps([int(i) for i in ids]),)))
        return np.array([-1 if lookup.get(int(i)) is None else lookup[int(i)] for i in ids], dtype=np.int64)

    def record_error(self, image_id: int, message: str) -> None:
        with self._tx() as c:
            c.execute("UPDATE images SET error=? WHERE id=?", (message, int(image_id)))

    def clear_error(self, image_id: int) -> None:
        with self._tx() as c:
            c.execute("UPDATE images SET error=NULL WHERE id=?", (int(image_id),))

    def errors(self) -> list[ImageRow]:
        return [self._row(r) for r in self._q(f"SELECT {', '.join(_IMAGE_COLS)} FROM images WHERE error IS NOT NULL ORDER BY id")]

    def set_image_info(
        self,
        ids: Sequence[int] | np.ndarray,
        widths: Sequence[int],
        heights: Sequence[int],
        sha1s: Sequence[str | None] | None = None,
    ) -> None:
        sha = list(sha1s) if sha1s is not None else [None] * len(widths)
        with self._tx() as c:
            c.executemany(
                "UPDATE images SET width=?, height=?, sha1=COALESCE(?, sha1) WHERE id=?",
                [(int(w), int(h), s, int(i)) for i, w, h, s in zip(ids, widths, heights, sha, strict=True)],
            )

    # --- members and runs ----------------------------------------------------------------

    def save_members(self, pool: Any) -> None:
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO members(fingerprint, name, kind, classes, spec, created) VALUES (?,?,?,?,?,?)",
                [
                    (m.fingerprint, m.name, m.kind, json.dumps(list(m.classes)), json.dumps(m.spec, default=str), time.time())
                    for m in pool.members
                ],
            )

    def members(self) -> list[dict[str, Any]]:
        return [
            {"fingerprint": r[0], "name": r[1], "kind": r[2], "classes": json.loads(r[3]), "spec": json.loads(r[4])}
            for r in self._q("SELECT fingerprint, name, kind, classes, spec FROM members ORDER BY created")
        ]

    def start_run(self, pool: Any, config: dict[str, Any], device: str) -> int:
        with self._tx() as c:
            self._mark_dead_runs(c)
            cur = c.execute(
                "INSERT INTO runs(pool_fingerprint, config, device, started, status, pid, host) VALUES (?,?,?,?,?,?,?)",
                (pool.fingerprint, json.dumps(config, default=str), device, time.time(), "running", os.getpid(), socket.gethostname()),
            )
            return int(cur.lastrowid or 0)

    def _mark_dead_runs(self, c: sqlite3.Connection) -> None:
        for run_id, pid, host in c.execute("SELECT id, pid, host FROM runs WHERE status='running'").fetchall():
            if not _alive(pid, host):
                c.execute("UPDATE runs SET status='interrupted' WHERE id=?", (run_id,))

    def finish_run(self, run_id: int, status: str, error: str | None = None) -> None:
        with self._tx() as c:
            c.execute("UPDATE runs SET status=?, ended=?, error=? WHERE id=?", (status, time.time(), error, run_id))
            if status == "done":
                fp = c.execute("SELECT pool_fingerprint FROM runs WHERE id=?", (run_id,)).fetchone()[0]
                self._set_meta(active_pool=fp)

    def runs(self) -> list[dict[str, Any]]:
        cols = ["id", "pool_fingerprint", "config", "device", "started", "ended", "status", "error", "pid", "host"]
        out = []
        for r in self._q(f"SELECT {', '.join(cols)} FROM runs ORDER BY id"):
            d = dict(zip(cols, r, strict=True))
            d["config"] = json.loads(d["config"] or "{}")
            out.append(d)
        return out

    def interrupted_run(self) -> dict[str, Any] | None:
        """The newest run that stopped without finishing (crash, kill), if nothing ran since."""
        runs = self.runs()
        if not runs:
            return None
        last = runs[-1]
        if last["status"] == "interrupted" or (last["status"] == "running" and not _alive(last["pid"], last["host"])):
            return last
        return None

    def last_pool_spec(self) -> list[dict[str, Any]] | None:
        for r in reversed(self.runs()):
            spec = r["config"].get("pool")
            if spec:
                return list(spec)
        return None

    def active_pool(self) -> str | None:
        return self._meta("active_pool")

    def active_members(self) -> list[dict[str, Any]]:
        """Members of the pool whose scores the queue shows, in pool order."""
        fp = self.active_pool()
        for r in reversed(self.runs()):
            if r["pool_fingerprint"] == fp:
                wanted = r["config"].get("member_fingerprints") or []
                by_fp = {m["fingerprint"]: m for m in self.members()}
                return [by_fp[f] for f in wanted if f in by_fp]
        return []

    # --- cached outputs and probabilities ------------------------------------------------

    def _stored_ids(self, table: str, keycol: str, key: str) -> set[int]:
        return {r[0] for r in self._q(f"SELECT image_id FROM {table} WHERE {keycol}=?", (key,))}

    def missing_features(self, encoder_key: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        have = self._stored_ids("features", "encoder_key", encoder_key)
        return np.array([i for i in ids if int(i) not in have], dtype=np.int64)

    def put_features(self, encoder_key: str, ids: Sequence[int] | np.ndarray, feats: np.ndarray) -> None:
        data = np.asarray(feats, dtype=np.float16)
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO features(encoder_key, image_id, data) VALUES (?,?,?)",
                [(encoder_key, int(i), data[n].tobytes()) for n, i in enumerate(ids)],
            )

    def _blobs(self, table: str, keycol: str, key: str, ids: Sequence[int] | np.ndarray) -> dict[int, bytes]:
        """The stored blobs of ``ids`` only, through the (key, image_id) primary key: a contiguous
        run of ids is one range scan, others one indexed lookup each, never the whole table."""
        if len(ids) == 0:
            return {}
        arr = np.asarray(ids, dtype=np.int64)
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo + 1 <= 2 * len(arr):  # dense: a range scan reads little more than asked
            rows = self._q(f"SELECT image_id, data FROM {table} WHERE {keycol}=? AND image_id BETWEEN ? AND ?", (key, lo, hi))
        else:
            rows = self._q(
                f"SELECT t.image_id, t.data FROM json_each(?) AS j JOIN {table} AS t "
                f"ON t.{keycol}=? AND t.image_id=j.value", (json.dumps(arr.tolist()), key),
            )
        return dict(rows)

    def get_features(self, encoder_key: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        stored = self._blobs("features", "encoder_key", encoder_key, ids)
        missing = [int(i) for i in ids if int(i) not in stored]
        if missing:
            raise ProjectError(f"{self.path}: no stored features of encoder {encoder_key} for images {missing[:5]}")
        return np.stack([np.frombuffer(stored[int(i)], dtype=np.float16) for i in ids]).astype(np.float32) if len(ids) else np.zeros((0, 0), np.float32)

    def missing_probs(self, member_fp: str, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        have = self._stored_ids("probs", "member_fp", member_fp)
        return np.array([i for i in ids if int(i) not in have], dtype=np.int64)

    def put_probs(self, member_fp: str, ids: Sequence[int] | np.ndarray, probs: np.ndarray) -> None:
        p = np.asarray(probs, dtype=np.float32)
        if p.ndim != 2 or p.shape[1] != len(self.classes):
            raise ValueError(f"probs must have shape (images, {len(self.classes)}), got {p.shape}")
        with self._tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO probs(member_fp, image_id, data) VALUES (?,?,?)",
                [(member_fp, int(i), _encode_probs(p[n])) for n, i in enumerate(ids)],
            )

    def get_probs(self, member_fps: Sequence[str], ids: Sequence[int] | np.ndarray) -> np.ndarray:
        k = len(self.classes)
        out = np.zeros((len(member_fps), len(ids), k), dtype=np.float32)
        for m, fp in enumerate(member_fps):
            stored = self._blobs("probs", "member_fp", fp, ids)
            for n, i in enumerate(ids):
                blob = stored.get(int(i))
                if blob is None:
                    raise ProjectError(f"{self.path}: no stored probabilities of member {fp} for image {int(i)}; score again")
                out[m, n] = _decode_probs(blob, k)
        return out

    # --- scores and the queue ------------------------------------------------------------

    def put_scores(self, pool_fp: str, ids: Sequence[int] | np.ndarray, scores: dict[str, np.ndarray]) -> None:
        rows = []
        for n, i in enumerate(ids):
            vals = [_none_if_nan(scores[c][n]) for c in SCORE_COLUMNS]
            top_c = [[int(a), round(float(b), 4)] for a, b in zip(scores["top_c_idx"][n], scores["top_c_val"][n], strict=True)]
            top_x = [[int(a), int(b)] for a, b in zip(scores["top_x_idx"][n], scores["top_x_val"][n], strict=True) if b > 0]
            rows.append((*vals, json.dumps(top_c), json.dumps(top_x), int(i)))
        sets = ", ".join(f"{c}=?" for c in (*SCORE_COLUMNS, "top_c", "top_x"))
        with self._tx() as c:
            c.executemany(f"UPDATE images SET {sets} WHERE id=?", rows)
            self._set_meta(scored_pool=pool_fp)

    @staticmethod
    def hardest_first(sort: str) -> bool:
        """True when the hardest images come first in descending order of ``sort``."""
        return sort in _HARDEST_DESC

    def _where(self, filt: QueueFilter | None) -> tuple[list[str], list[Any]]:
        f = filt or QueueFilter()
        where: list[str] = ["error IS NULL"]
        params: list[Any] = []
        if f.given_label is not None:
            where.append("given_label=?")
            params.append(f.given_label)
        if f.consensus is not None:
            where.append("consensus=?")
            params.append(f.consensus)
        if f.reason is not None:
            where.append("reason=?")
            params.append(f.reason)
        if f.status is not None:
            if f.status not in STATUSES:
                raise ProjectValueError(f"unknown status {f.status!r}; use one of {STATUSES}")
            where.append("status=?")
            params.append(f.status)
        if f.score_min is not None or f.score_max is not None:
            if f.score_key not in SORT_KEYS or f.score_key in ("path", "id"):
                raise ProjectValueError(f"cannot filter on {f.score_key!r}")
            if f.score_min is not None:
                where.append(f"{f.score_key}>=?")
                params.append(f.score_min)
            if f.score_max is not None:
                where.append(f"{f.score_key}<=?")
                params.append(f.score_max)
        if f.disagrees:
            where.append("consensus IS NOT NULL AND current_label IS NOT NULL AND consensus != current_label")
        if f.search:
            where.append("path LIKE ? ESCAPE '\\'")
            params.append("%" + f.search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if f.flagged is True:
            where.append("flag IS NOT NULL")
        elif f.flagged is False:
            where.append("flag IS NULL")
        return where, params

    def queue(
        self,
        filt: QueueFilter | None = None,
        sort: str = "c_perplexity",
        descending: bool | None = None,
        limit: int = 200,
        after: tuple[Any, int] | None = None,
    ) -> list[QueueRow]:
        """A page of the review queue, hardest first by default; unscored images come last.

        Keyset paging: ``after`` is ``(sort value, id)`` of the previous page's last row.
        """
        if sort not in SORT_KEYS:
            raise ProjectValueError(f"unknown sort key {sort!r}; use one of {', '.join(SORT_KEYS)}")
        desc = self.hardest_first(sort) if descending is None else descending
        where, params = self._where(filt)
        cols = ", ".join(_QUEUE_COLS)
        order = f"{sort} {'DESC' if desc else 'ASC'}, id ASC" if sort != "id" else "id ASC"
        rows: list[tuple[Any, ...]] = []
        if after is None or after[0] is not None:
            w, p = [*where, f"{sort} IS NOT NULL"], list(params)
            if after is not None:
                op = "<" if desc else ">"
                w.append(f"({sort} {op} ? OR ({sort} = ? AND id > ?))")
                p += [after[0], after[0], after[1]]
            rows = self._q(f"SELECT {cols} FROM images WHERE {' AND '.join(w)} ORDER BY {order} LIMIT ?", (*p, limit))
        if len(rows) < limit and sort not in ("id", "path"):
            w, p = [*where, f"{sort} IS NULL"], list(params)
            if after is not None and after[0] is None:
                w.append("id > ?")
                p.append(after[1])
            rows += self._q(f"SELECT {cols} FROM images WHERE {' AND '.join(w)} ORDER BY id LIMIT ?", (*p, limit - len(rows)))
        return [self._queue_row(r) for r in rows]

    def _queue_row(self, r: Sequence[Any]) -> QueueRow:
        n = len(_IMAGE_COLS) + len(SCORE_COLUMNS)
        top_c = [tuple(x) for x in json.loads(r[n])] if r[n] else []
        top_x = [tuple(x) for x in json.loads(r[n + 1])] if r[n + 1] else []
        return QueueRow(**dict(zip(_QUEUE_COLS[:n], r[:n], strict=True)), top_c=top_c, top_x=top_x)  # type: ignore[arg-type]

    def queue_count(self, filt: QueueFilter | None = None) -> int:
        where, params = self._where(filt)
        if where == ["error IS NULL"]:  # no filter: every readable image, from the counts table
            return self.stats()["total"]
        return int(self._q(f"SELECT count(*) FROM images WHERE {' AND '.join(where)}", params)[0][0])

    def score_values(self, key: str = "c_perplexity") -> np.ndarray:
        if key not in SORT_KEYS or key in ("path", "id"):
            raise ProjectValueError(f"unknown score {key!r}")
        return np.array([r[0] for r in self._q(f"SELECT {key} FROM images WHERE {key} IS NOT NULL AND error IS NULL")], dtype=np.float64)

    def class_difficulty(self, key: str = "c_perplexity") -> np.ndarray:
        if key not in SORT_KEYS or key in ("path", "id"):
            raise ProjectValueError(f"unknown score {key!r}")
        out = np.full(len(self.classes), np.nan)
        for label, mean in self._q(f"SELECT given_label, avg({key}) FROM images WHERE given_label IS NOT NULL AND {key} IS NOT NULL GROUP BY given_label"):
            out[label] = mean
        return out

    def confusion_matrix(self) -> np.ndarray:
        k = len(self.classes)
        out = np.zeros((k, k), dtype=np.int64)
        for g, c, n in self._q("SELECT given_label, consensus, count(*) FROM images WHERE given_label IS NOT NULL AND consensus IS NOT NULL GROUP BY given_label, consensus"):
            out[g, c] = n
        return out

    def stats(self) -> dict[str, int]:
        """Counts per status (readable images), ``total``, ``reviewed``, ``errors``, ``flagged``:
        read from the trigger-kept counts table, the same cost at any size."""
        counts = {k: int(n) for k, n in self._q("SELECT key, n FROM counts")}
        out = {s: counts.get(s, 0) for s in STATUSES}
        out["total"] = sum(out.values())
        out["reviewed"] = out["total"] - out["unreviewed"]
        out["errors"] = counts.get("errors", 0)
        out["flagged"] = counts.get("flagged", 0)
        return out

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


def _alive(pid: int | None, host: str | None) -> bool:
    """Whether the process that started a run is still running (on this host)."""
    if pid is None:
        return False
    if host != socket.gethostname():
        return True  # a run on another machine sharing the file: assume it is alive
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def project_for(
    source: str | Path, db: str | Path | None = None, layout: str | None = None, *, follow_symlinks: bool = False
) -> Path:
    """The project file for a dataset folder, CSV manifest or project file; created if missing.

    ``db`` overrides the default location (beside the dataset, see
    :func:`scoring.locations.default_project_path`). The command line and the app both open
    datasets through this, so they always agree on where a dataset's project lives. An existing
    project of another dataset is refused (naming both); one whose creation was stopped part-way
    (empty, no dataset) is recreated.
    """
    from scoring.locations import default_project_path, is_project_path

    src = Path(source).expanduser()
    if src.is_file() and is_project_path(src):
        return src
    path = Path(db) if db else default_project_path(src)
    if path.exists():
        try:
            with Project.open(path) as existing:
                stored = existing.source
        except IncompleteProjectError as exc:
            log.warning("%s; recreating it", exc)
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        else:
            if src.exists() and src.resolve() != stored:
                raise ProjectError(
                    f"{path} is the project of {stored}, not of {src.resolve()}; give --db a new file "
                    f"to score {src}, or score {stored}"
                )
            return path
    Project.create(path, open_dataset(src, layout=layout, follow_symlinks=follow_symlinks),
                   follow_symlinks=follow_symlinks).close()
    return path


def _sha1_or_none(path: Path | str) -> str | None:
    """The file's hash, or None when it can no longer be read as a regular file (-> flagged changed)."""
    try:
        return file_sha1(path)
    except (OSError, ImageTriageError):
        return None


def _check_project_location(path: Path, dataset: Dataset) -> None:
    """A project file never goes inside the dataset (its root, or a folder holding its images)."""
    from scoring.safewrite import Guard

    images = [dataset.root / r.path for r in dataset.records if r.error is None and not is_uri(r.path)]
    roots = [] if dataset.layout == "csv" else [dataset.root]
    guard = Guard.build(images, None, roots)
    try:
        guard.check_file(path, what="project file")
    except ImageTriageError as exc:
        raise ProjectError(f"{exc} (--db)") from exc


def _remove_creation_leftovers(path: Path) -> None:
    """Hidden files of creations that were killed before they were linked into place."""
    prefix = f".{path.name}.creating-"
    for leftover in path.parent.glob(f"{glob.escape(prefix)}*"):
        if leftover.is_file() and not leftover.is_symlink():
            leftover.unlink(missing_ok=True)


def _link_new(tmp: Path, dest: Path) -> None:
    """Put ``tmp`` at ``dest`` only if ``dest`` does not exist (a hard link fails rather than replace)."""
    try:
        os.link(tmp, dest)
    except FileExistsError as exc:
        raise ProjectError(f"{dest} appeared while the project was being created; open it instead") from exc
    except OSError:  # a file system without hard links
        if dest.exists():
            raise ProjectError(f"{dest} appeared while the project was being created; open it instead") from None
        os.rename(tmp, dest)

"""The connection room of the store: open or create the SQLite file, migrate it, translate
SQLite's errors into sentences, run transactions, keep the dataset's description (meta)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import sqlite_utils
from sqlite_utils.db import DescIndex

from scoring.errors import UnsafePathError
from scoring.io.datasets import Dataset
from scoring.io.formats import open_dataset
from scoring.io.safeio import read_head, require_regular
from scoring.store.migrations import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from scoring.store.rows import (
    IncompleteProjectError,
    NotAProjectError,
    ProjectError,
    ProjectLockedError,
)
from scoring.vocabulary import scores, scores_generation

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0
# A new project's SQLite pages: a row of a WITHOUT ROWID table over about a quarter of a page
# spills into overflow pages of its own, and at 4 KiB every stored thumbnail (1,536 bytes) and
# backbone embedding (1,024-2,560) did: 2,000 thumbnails took 8 MB and 30 ms to write, 3 MB and
# 5 ms at 16 KiB (issue 35). Older files keep the pages they were made with.
PAGE_SIZE = 16384
_P = TypeVar("_P", bound="ProjectBase")


def check_is_project(path: Path) -> None:
    """Raise unless ``path`` can be an Image Triage project: a regular file that is not empty
    (``stat`` only: a FIFO or a device is never opened). Its SQLite application id is checked
    next, by :meth:`ProjectBase._prepare`, before anything is written. A file of ours is never
    empty (a project is linked into place complete), so an empty file is someone else's: it is
    named and left alone, never replaced. (The header is not read here with a file descriptor of
    our own: closing one would cancel the POSIX locks SQLite holds on the file in this process.)"""
    if not path.exists() and not path.is_symlink():
        raise ProjectError(f"{path}: no such project file")
    try:
        st = require_regular(path, what="project file")
    except UnsafePathError as exc:
        raise NotAProjectError(f"{exc}; give --db a new file name or an Image Triage project") from exc
    except OSError as exc:
        raise ProjectError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if st.st_size == 0:
        raise NotAProjectError(
            f"{path} is an empty file, not an Image Triage project; Image Triage never replaces a file it did not "
            "create: give --db a new file name, or open a .triage.db made by image-triage"
        )
    if (st.st_dev, st.st_ino) not in _OPEN:
        _check_header(path)


def read_only_connection(path: Path) -> sqlite3.Connection:
    """A connection that can never write to ``path`` (another annotator's package is read, never
    changed), after :func:`check_is_project` and its header check. A file closed cleanly (no
    ``-wal`` or ``-shm`` beside it) is opened ``immutable``: SQLite then creates nothing beside
    it (``mode=ro`` alone makes an empty ``-wal`` and ``-shm`` next to a WAL-mode file); one that
    is open elsewhere, or was not closed cleanly, is read through its WAL with ``mode=ro``."""
    import urllib.parse

    check_is_project(path)
    live = any(os.path.lexists(f"{path}{suffix}") for suffix in ("-wal", "-shm"))
    mode = "mode=ro" if live else "mode=ro&immutable=1"
    try:
        return sqlite3.connect(f"file:{urllib.parse.quote(str(path.absolute()))}?{mode}", uri=True,
                               timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise ProjectError(f"{path}: cannot open it to read ({exc})") from exc


_OPEN: dict[tuple[int, int], int] = {}  # project files this process has open (device, inode): how many times
_OPEN_LOCK = threading.Lock()
_MAGIC = b"SQLite format 3\x00"


def _check_header(path: Path) -> None:
    """Read the file's 100-byte SQLite header before anything opens it for writing: a connection
    that may write would merge another program's WAL or roll back its hot journal on its first
    read, changing a file that is not ours before we could refuse it. The application id is at
    offset 68. Only done when this process has no connection to the file: closing a descriptor
    of our own would drop the POSIX locks such a connection holds."""
    try:
        head = read_head(path, 100, what="project file")
    except OSError as exc:
        raise ProjectError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if len(head) < 100 or not head.startswith(_MAGIC):
        raise NotAProjectError(f"{path} is not an Image Triage project (not an SQLite database); it is left as it is: "
                               "give --db a new file name, or open a .triage.db made by image-triage")
    if int.from_bytes(head[68:72], "big", signed=True) != APPLICATION_ID:
        raise NotAProjectError(
            f"{path} is not an Image Triage project (an SQLite database of another program); it is left "
            "as it is: give --db a new file name, or open a .triage.db made by image-triage"
        )


def _count_open(key: tuple[int, int] | None, delta: int) -> None:
    if key is None:
        return
    with _OPEN_LOCK:
        n = _OPEN.get(key, 0) + delta
        if n > 0:
            _OPEN[key] = n
        else:
            _OPEN.pop(key, None)


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class ProjectBase:
    """An open project file. Use one per thread; close it (or use ``with``) when done."""

    def __init__(self, path: str | Path, _create: bool = False):
        self.path = Path(path)
        if not _create:
            check_is_project(self.path)
        try:
            conn = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as exc:
            raise ProjectError(f"{self.path}: cannot open ({exc}); check the folder exists and is writable") from exc
        self.conn = conn
        self._key = _file_key(self.path)
        _count_open(self._key, +1)
        self.db = sqlite_utils.Database(conn)
        try:
            self._prepare(_create)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self._translate(exc) from exc
        except ProjectError:
            self.close()
            raise
        self._load_meta()
        if not _create and self.layout == "huggingface" and not self.dataset_root.exists():
            try:  # the unpacked images were removed (a cache) or replaced: unpack again, follow them
                self.dataset()
            except (ValueError, OSError) as exc:
                log.warning("%s: the Hugging Face images could not be unpacked again (%s)", self.path, exc)
        if not _create and self._meta("dataset_root") is None:
            self.close()
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
        """Check (or, ``create``, start) the file: its owner, schema version, journal and pages."""
        c = self.conn
        app_id = c.execute("PRAGMA application_id").fetchone()[0]
        version = c.execute("PRAGMA user_version").fetchone()[0]
        tables = set(self.db.table_names())  # sqlite-utils: introspection (writes stay in our transactions)
        if create:
            if tables:
                raise ProjectError(f"{self.path} already holds a database; pick a new file name")
        elif app_id != APPLICATION_ID:  # first: another program's database is never migrated or replaced
            raise NotAProjectError(
                f"{self.path} is not an Image Triage project (an SQLite database of another program); it is left "
                "as it is: give --db a new file name, or open a .triage.db made by image-triage"
            )
        elif not tables:
            raise IncompleteProjectError(
                f"{self.path} is an empty project file (its creation was stopped part-way); "
                "open the dataset again to recreate it"
            )
        if version > SCHEMA_VERSION:
            raise ProjectError(
                f"{self.path} was written by a newer Image Triage (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade image-triage to open it"
            )
        if create:  # a hidden file until complete, thrown away if killed or on any error (Project.create):
            # no journal at all, so none left behind, and no copy of each page in it (10,000 images:
            # 0.30 s with MEMORY at 4 KiB pages, 0.49 at 16 KiB, 0.21 with none at either)
            c.execute(f"PRAGMA page_size={PAGE_SIZE}")  # before the first table: fixed from then on
            c.execute("PRAGMA journal_mode=OFF")
        elif c.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower() != "wal":
            log.warning("%s: WAL mode unavailable; concurrent readers will wait", self.path)
        c.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across an app kill
        c.execute("PRAGMA foreign_keys=ON")
        if version < SCHEMA_VERSION:
            self._migrate(version)
        self._add_score_columns()

    def _migrate(self, version: int, upto: int | None = None) -> None:
        upto = SCHEMA_VERSION if upto is None else upto
        with self._tx():
            for n in range(version, upto):
                log.info("%s: applying migration %d (%s)", self.path, n + 1, MIGRATIONS[n].__name__)
                MIGRATIONS[n](self.conn)
            self.conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self.conn.execute(f"PRAGMA user_version={upto}")

    _score_generation: int | None = None  # the score table this file's columns were checked against

    def _late_scores(self) -> None:
        """A score registered since this file was opened (a plugin loaded late, a test): its column
        before the next query or write reads it (it was "no such column" in the queue's page)."""
        if (self._score_generation is not None and self._score_generation != scores_generation()
                and not self.conn.in_transaction):
            self._add_score_columns()

    def _add_score_columns(self) -> None:
        """The one generic step for scores: a score of the vocabulary's table that this file has
        no column for (one registered after the file was made, or after it was opened) gets its
        column and its index, the hardest end first. The numbered migrations never read the table."""
        self._score_generation = scores_generation()
        images = self.db.table("images")  # sqlite-utils: the table's columns, a column and an index each
        missing = [s for s in scores() if s.key not in images.columns_dict]
        if not missing:
            return
        with self._tx():
            for s in missing:
                log.info("%s: adding a column for the score %s", self.path, s.key)
                images.add_column(s.key, float)
                images.create_index([DescIndex(s.key) if s.higher_is_harder else s.key, "id"],
                                    index_name=f"ix_images_{s.key}", if_not_exists=True)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self.conn.close()
        _count_open(self._key, -1)
        self._key = None

    def __enter__(self: _P) -> _P:
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
        self._late_scores()
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
        self._late_scores()
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
        """Re-read the dataset from disk (its layout and symlink policy as stored). A Hugging Face
        dataset's images live in a cache folder made from it: when that folder was removed, or the
        dataset's files changed (a new unpack), the project follows the folder the read gives, so
        it never depends on a cache it cannot rebuild."""
        follow = json.loads(self._meta("follow_symlinks") or "false") is True
        ds = open_dataset(self.source, layout=self.layout, follow_symlinks=follow)
        if self.layout == "huggingface" and ds.root.resolve() != self.dataset_root:
            log.info("%s: the Hugging Face images are now in %s (was %s)", self.path, ds.root, self.dataset_root)
            with self._tx():
                self._set_meta(dataset_root=str(ds.root.resolve()))
            self.dataset_root = ds.root.resolve()
        return ds

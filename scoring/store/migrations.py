"""The project file's schema as numbered migrations, applied in order at open (``PRAGMA
user_version`` counts them); each name says what it changes. A migration is history: it never
changes once released."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable

log = logging.getLogger(__name__)


APPLICATION_ID = 0x49545247  # "ITRG"


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


_M3_STATUSES = ("unreviewed", "kept", "relabelled", "removed")  # frozen: the statuses when migration 3 was written


def _m3_counts_kept_by_triggers(conn: sqlite3.Connection) -> None:
    """Counts per status, of unreadable and of flagged images, kept current by triggers in the
    same transaction as every insert and update, so stats() and the unfiltered queue count are
    one small read at any size (they scanned every row: 0.9 s at 1,000,000 images)."""
    conn.execute("CREATE TABLE counts (key TEXT PRIMARY KEY, n INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID")
    keys = [*_M3_STATUSES, "errors", "flagged"]
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
    the mean of entropies (a different score); renamed. Each sort key of schema 4 gets its
    index, the hardest end first (frozen: it once read the live vocabulary, so a new score
    changed what this migration did)."""
    conn.execute("ALTER TABLE images RENAME COLUMN entropy_mean TO entropy_of_mean")
    conn.execute("DROP INDEX IF EXISTS ix_images_entropy_mean")
    for key, order in (("c_perplexity", "DESC"), ("margin", "ASC"), ("self_confidence", "ASC"),
                       ("x_perplexity", "DESC"), ("mutual_info", "DESC"), ("entropy_of_mean", "DESC"),
                       ("consensus_prob", "ASC"), ("path", "ASC")):
        conn.execute(f"CREATE INDEX IF NOT EXISTS ix_images_{key} ON images ({key} {order}, id)")


def _m5_duplicate_groups(conn: sqlite3.Connection) -> None:
    """Groups of exact and near-duplicate images (scoring.tasks.duplicates), for the queue's filters."""
    conn.execute(
        "CREATE TABLE duplicates (image_id INTEGER PRIMARY KEY REFERENCES images(id), group_id INTEGER NOT NULL)"
    )
    conn.execute("CREATE INDEX ix_duplicates_group ON duplicates (group_id)")


def _m6_edit_batches(conn: sqlite3.Connection) -> None:
    """Entries of one decision (keep one of a duplicate group, remove the others) share a batch
    number, so undo and redo take the decision whole."""
    conn.execute("ALTER TABLE edits ADD COLUMN batch INTEGER")


def _m7_ctime_for_the_change_check(conn: sqlite3.Connection) -> None:
    """The inode change time beside size and mtime: an edit that restores size and mtime still
    moves ctime, so the sync knows to re-hash (the hash decides; the times only say when)."""
    conn.execute("ALTER TABLE images ADD COLUMN ctime REAL")


def _m8_neighbour_agreement_and_label_issue(conn: sqlite3.Connection) -> None:
    """Two label scores of the whole dataset (scoring.evidence.label_evidence): the agreement of each
    image's nearest images with its label, and the label-issue score that adds their votes to
    the pool; each with its index, the likely errors first."""
    conn.execute("ALTER TABLE images ADD COLUMN neighbour_agreement REAL")
    conn.execute("ALTER TABLE images ADD COLUMN label_issue REAL")
    for key, order in (("neighbour_agreement", "ASC"), ("label_issue", "DESC")):
        conn.execute(f"CREATE INDEX IF NOT EXISTS ix_images_{key} ON images ({key} {order}, id)")


def _m9_dataset_issues(conn: sqlite3.Connection) -> None:
    """The dataset's issues beyond labels (scoring.evidence.image_issues): one row per flagged image and
    issue, with its severity; the queue filters by issue."""
    conn.execute(
        "CREATE TABLE issues (image_id INTEGER NOT NULL REFERENCES images(id), name TEXT NOT NULL, "
        "severity REAL NOT NULL, PRIMARY KEY (image_id, name)) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX ix_issues_name ON issues (name, image_id)")


def _m10_annotator_votes(conn: sqlite3.Connection) -> None:
    """Each person's label where the dataset carries several (a Label Studio export), and two
    scores of them: the share agreeing with the given label, and the entropy of the votes."""
    conn.execute(
        "CREATE TABLE votes (image_id INTEGER NOT NULL REFERENCES images(id), annotator TEXT NOT NULL, "
        "label INTEGER NOT NULL)"
    )
    conn.execute("CREATE INDEX ix_votes_image ON votes (image_id)")
    conn.execute("ALTER TABLE images ADD COLUMN annotator_agreement REAL")
    conn.execute("ALTER TABLE images ADD COLUMN annotator_entropy REAL")
    for key, order in (("annotator_agreement", "ASC"), ("annotator_entropy", "DESC")):
        conn.execute(f"CREATE INDEX IF NOT EXISTS ix_images_{key} ON images ({key} {order}, id)")


def _m11_team_review(conn: sqlite3.Connection) -> None:
    """Review as a team: every edit names its annotator and how it came (``via``: NULL for a key
    pressed here, 'merge' for a package's decision, 'adjudication' for a key that settled a
    dispute); ``team_log`` keeps every step of every merged package's log, ``team_decisions`` each
    annotator's final decision per image, ``merges`` how far each package has been merged."""
    conn.execute("ALTER TABLE edits ADD COLUMN annotator TEXT")
    conn.execute("ALTER TABLE edits ADD COLUMN via TEXT")
    _script(
        conn,
        """
        CREATE TABLE team_log (
            package TEXT NOT NULL, edit_id INTEGER NOT NULL, image_id INTEGER NOT NULL REFERENCES images(id),
            annotator TEXT NOT NULL, action TEXT NOT NULL, old_label INTEGER, new_label INTEGER,
            old_status TEXT NOT NULL, new_status TEXT NOT NULL, time REAL NOT NULL,
            PRIMARY KEY (package, edit_id)
        ) WITHOUT ROWID;
        CREATE TABLE team_decisions (
            image_id INTEGER NOT NULL REFERENCES images(id), annotator TEXT NOT NULL, package TEXT NOT NULL,
            label INTEGER, status TEXT NOT NULL, time REAL NOT NULL, PRIMARY KEY (image_id, annotator)
        ) WITHOUT ROWID;
        CREATE TABLE merges (
            package TEXT PRIMARY KEY, annotator TEXT NOT NULL, path TEXT NOT NULL, last_edit INTEGER NOT NULL,
            merged REAL NOT NULL
        )
        """,
    )


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _m1_base, _m2_undo_targets_and_queue_indexes, _m3_counts_kept_by_triggers,
    _m4_entropy_of_mean_and_indexes_from_the_vocabulary, _m5_duplicate_groups, _m6_edit_batches,
    _m7_ctime_for_the_change_check, _m8_neighbour_agreement_and_label_issue,
    _m9_dataset_issues, _m10_annotator_votes, _m11_team_review,
]
SCHEMA_VERSION = len(MIGRATIONS)

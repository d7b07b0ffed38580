"""The project store: one SQLite file per project. ``Project`` (``project``) is the connection
(``connection``, ``migrations``) composed with its parts: ``images``, ``queue``, ``edits``,
``runs``, ``cache``, ``dupes``, ``issues``, ``team`` (packages merged back); records and errors in ``rows``. May import
``scoring.io``, the vocabulary and the base modules; never the pool, the engines or anything
above. The public API is re-exported here (docs/STORE_API.md)."""

from scoring.store.project import (
    APPLICATION_ID,
    BUSY_TIMEOUT_S,
    MIGRATIONS,
    SCHEMA_VERSION,
    STATUSES,
    Cache,
    Duplicates,
    Edit,
    EditLog,
    ImageRow,
    Images,
    IncompleteProjectError,
    Issues,
    NotAProjectError,
    PackageInfo,
    PoolLike,
    Project,
    ProjectBase,
    ProjectError,
    ProjectLockedError,
    ProjectValueError,
    Queue,
    QueueFilter,
    QueueRow,
    RunConfig,
    Runs,
    SyncReport,
    Team,
    local_annotator,
    project_for,
)

__all__ = [
    "APPLICATION_ID", "BUSY_TIMEOUT_S", "MIGRATIONS", "SCHEMA_VERSION", "STATUSES",
    "Cache", "Duplicates", "Edit", "EditLog", "ImageRow", "Images", "IncompleteProjectError", "Issues",
    "NotAProjectError", "PackageInfo", "PoolLike", "Project", "ProjectBase", "ProjectError", "ProjectLockedError",
    "ProjectValueError", "Queue", "QueueFilter", "QueueRow", "RunConfig", "Runs", "SyncReport", "Team",
    "local_annotator", "project_for",
]

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

``Project`` is the connection composed with parts that have one job each, in the manner of
sqlite-utils' ``Database`` and its ``Table`` objects: ``scoring.store.connection.ProjectBase``
(open, migrate, transactions, meta) is the connection; ``project.images`` (sync, rows), ``project.runs``
(members, runs), ``project.cache`` (features, probabilities), ``project.queue`` (scores, queue,
counts), ``project.dupes`` (groups, the label-conflict rule), ``project.issues`` and
``project.edits`` (the edit log, undo, redo) are the parts, each holding the shared connection
and given the other parts it reads. Records and errors are in ``scoring.store.rows``; the
schema's history is ``scoring.store.migrations``.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import time
import uuid
from pathlib import Path

from scoring.errors import ImageTriageError
from scoring.io.datasets import MANIFESTS, Dataset, is_uri
from scoring.io.formats import open_dataset
from scoring.io.safeio import read_head
from scoring.store.cache import Cache
from scoring.store.connection import BUSY_TIMEOUT_S, ProjectBase
from scoring.store.dupes import Duplicates
from scoring.store.edits import EditLog
from scoring.store.images import Images
from scoring.store.issues import Issues
from scoring.store.migrations import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION
from scoring.store.queue import Queue
from scoring.store.rows import (
    Edit,
    ImageRow,
    IncompleteProjectError,
    NotAProjectError,
    ProjectError,
    ProjectLockedError,
    ProjectValueError,
    QueueFilter,
    QueueRow,
    SyncReport,
)
from scoring.store.runs import PoolLike, RunConfig, Runs
from scoring.store.team import PackageInfo, Team
from scoring.vocabulary import STATUSES

log = logging.getLogger(__name__)

__all__ = [
    "APPLICATION_ID", "BUSY_TIMEOUT_S", "MIGRATIONS", "SCHEMA_VERSION", "STATUSES",
    "Cache", "Duplicates", "Edit", "EditLog", "ImageRow", "Images", "IncompleteProjectError", "Issues",
    "NotAProjectError", "PackageInfo", "PoolLike", "Project", "ProjectBase", "Queue", "RunConfig", "Runs",
    "ProjectError", "ProjectLockedError", "ProjectValueError", "QueueFilter", "QueueRow", "SyncReport", "Team",
    "local_annotator", "project_for",
]


class Project(ProjectBase):
    """An open project file: the connection (``ProjectBase``: open, migrate, transactions, the
    dataset's description) and its parts, each a small class holding the shared connection and
    owning its rule. Callers name the part they use: ``project.images``, ``project.edits``,
    ``project.queue``, ``project.runs``, ``project.cache``, ``project.dupes``, ``project.issues``.
    Use one per thread; close it (or use ``with``) when done."""

    def __init__(self, path: str | Path, _create: bool = False):
        super().__init__(path, _create)
        self.images = Images(self)
        self.issues = Issues(self)
        self.cache = Cache(self)
        self.runs = Runs(self)
        self.queue = Queue(self)
        self.dupes = Duplicates(self)
        self.edits = EditLog(self, self.images, self.dupes, self.queue)
        self.team = Team(self, self.edits)
        package = self.team.package() if not _create else None
        self.edits.annotator = package.annotator if package else local_annotator()

    @classmethod
    def create(
        cls, path: str | Path, dataset: Dataset, *, follow_symlinks: bool = False, replace_incomplete: bool = False
    ) -> Project:
        """A new project file for ``dataset`` (its images synced in).

        The schema, the dataset's description and its images are committed in a hidden file
        beside ``path`` that is then linked into place, so a kill at any moment leaves either no
        project or a complete one, never an empty file. An existing file is never replaced,
        except, with ``replace_incomplete``, a project of ours whose creation stopped part-way
        (checked again here by its header and its missing dataset).
        """
        p = Path(path).absolute()
        if (p.exists() or p.is_symlink()) and not (replace_incomplete and _is_incomplete_project(p)):
            raise ProjectError(f"{p} already exists; open it, or choose another file name")
        stray = [] if replace_incomplete else [
            f"{p}{suffix}" for suffix in ("-wal", "-shm", "-journal") if os.path.lexists(f"{p}{suffix}")]
        if stray:  # SQLite would read (and may delete) them as this new file's journal: not ours to risk
            raise ProjectError(f"{stray[0]} exists beside {p} and is not Image Triage's; move it, or give --db "
                               "another file name")
        _check_project_location(p, dataset)
        p.parent.mkdir(parents=True, exist_ok=True)
        _remove_creation_leftovers(p)
        tmp = p.parent / f".{p.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}"
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
                proj.images.sync(dataset)
            finally:
                proj.close()
            if replace_incomplete and p.exists():
                os.replace(tmp, p)  # ours, checked above; SQLite closed it cleanly (no journal left)
            else:
                link_new(tmp, p)
        finally:
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)
        return cls(p)

    @classmethod
    def open(cls, path: str | Path) -> Project:
        return cls(path)

def local_annotator() -> str:
    """Who presses the keys on this machine: ``IMAGE_TRIAGE_ANNOTATOR``, else the login name."""
    name = os.environ.get("IMAGE_TRIAGE_ANNOTATOR", "").strip()
    if name:
        return name[:64]
    try:
        import getpass

        return getpass.getuser()[:64] or "unknown"
    except (KeyError, OSError, ImportError):  # no login name (a container without a passwd entry)
        return "unknown"


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
        _remove_creation_leftovers(path)  # a kill after the link, before the hidden name went
        try:
            with Project.open(path) as existing:
                stored = existing.source
        except IncompleteProjectError as exc:  # ours by its header, its creation stopped part-way
            log.warning("%s; recreating it", exc)
            Project.create(path, open_dataset(src, layout=layout, follow_symlinks=follow_symlinks),
                           follow_symlinks=follow_symlinks, replace_incomplete=True).close()
            return path
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


def _check_project_location(path: Path, dataset: Dataset) -> None:
    """A project file never goes inside the dataset (its root, or a folder holding its images)."""
    from scoring.io.safewrite import Guard

    images = [dataset.root / r.path for r in dataset.records if r.error is None and not is_uri(r.path)]
    roots = [] if dataset.layout in MANIFESTS else [dataset.root]
    guard = Guard.build(images, None, roots)
    try:
        guard.check_file(path, what="project file")
    except ImageTriageError as exc:
        raise ProjectError(f"{exc} (--db)") from exc


def _is_incomplete_project(path: Path) -> bool:
    """An Image Triage project (by its header) that has no dataset: a creation stopped part-way."""
    try:
        Project.open(path).close()
    except IncompleteProjectError:
        return True
    except ImageTriageError:
        return False
    return False


_LEFTOVER = re.compile(r"creating-(?:(?P<pid>[0-9]+)-)?[0-9a-f]{8}")


def _remove_creation_leftovers(path: Path) -> None:
    """Hidden files of creations that were killed before they were linked into place (or after,
    before their hidden name was removed). Only those that are ours: named as we name them, made
    by a process that is gone, and holding our SQLite application id or nothing at all (a kill
    before the first commit; an empty file loses nothing). Anything else of that name is left."""
    prefix = f".{path.name}."
    for leftover in path.parent.glob(f"{glob.escape(prefix)}creating-*"):
        m = _LEFTOVER.fullmatch(leftover.name[len(prefix):])
        if m is None or (m["pid"] is not None and _alive(int(m["pid"]))):
            continue
        try:
            head = read_head(leftover, 100, what="leftover of a project creation")
        except (ImageTriageError, OSError):
            continue
        ours = len(head) == 100 and head[:16] == b"SQLite format 3\0" and int.from_bytes(head[68:72], "big") == APPLICATION_ID
        if not ours and not (head == b"" and m["pid"] is not None):
            continue
        for suffix in ("-journal", "-wal", "-shm", ""):  # SQLite's files of it (older versions), then it
            extra = Path(f"{leftover}{suffix}")
            if suffix == "" or (extra.is_file() and not extra.is_symlink()):
                extra.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # another thread of ours may be creating it now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's live process
    return True


def link_new(tmp: Path, dest: Path) -> None:
    """Put ``tmp`` at ``dest`` only if ``dest`` does not exist (a hard link fails rather than replace)."""
    try:
        os.link(tmp, dest)
    except FileExistsError as exc:
        raise ProjectError(f"{dest} appeared while the project was being created; open it instead") from exc
    except OSError:  # a file system without hard links
        if dest.exists():
            raise ProjectError(f"{dest} appeared while the project was being created; open it instead") from None
        os.rename(tmp, dest)

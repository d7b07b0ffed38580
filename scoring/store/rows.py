"""The store's records and errors: what a project row, a queue row, an edit and a filter are."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from scoring.errors import ImageTriageError
from scoring.vocabulary import DIFFICULTY_SORT, score_columns


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
    consensus: int | None
    reason: str | None
    scores: dict[str, float | None]  # every score of scoring.vocabulary by key (None: not scored)
    top_c: list[tuple[int, float]] = field(default_factory=list)
    top_x: list[tuple[int, int]] = field(default_factory=list)

    @property
    def consensus_prob(self) -> float | None:
        return self.scores.get("consensus_prob")

    def sort_value(self, key: str) -> Any:
        """This row's value of a sort key (a score, ``path`` or ``id``): the queue's keyset
        paging continues after it."""
        return self.scores[key] if key in self.scores else getattr(self, key)


@dataclass
class QueueFilter:
    given_label: int | None = None
    consensus: int | None = None
    reason: str | None = None
    status: str | None = None
    score_min: float | None = None
    score_max: float | None = None
    score_key: str = DIFFICULTY_SORT
    disagrees: bool = False
    search: str | None = None
    flagged: bool | None = None
    duplicate: bool = False  # only images in a duplicate group
    conflict: bool = False  # only images whose duplicate group carries different labels
    issue: str | None = None  # only images with this dataset issue (scoring.vocabulary.ISSUES)
    disputed: bool = False  # only images two annotators decided differently, not yet settled


# A decision as one value: the label kept or given, or -1 for a removal. Two annotators agree when
# their categories are equal.
DECISION_SQL = "CASE WHEN status='removed' THEN -1 ELSE label END"
# Images with an open dispute: merged packages decided them differently and no one here has
# settled it (the image is still unreviewed in the project).
DISPUTED_SQL = (f"SELECT image_id FROM team_decisions GROUP BY image_id HAVING count(DISTINCT {DECISION_SQL}) > 1")


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
    batch: int | None = None  # entries of one decision share it (see EditLog.keep_only)
    annotator: str | None = None  # who made it (a package's annotator, or this machine's user)
    via: str | None = None  # None: a key pressed here; 'merge': a package's decision; 'adjudication'


@dataclass(frozen=True)
class SyncReport:
    total: int
    added: int
    changed: int
    missing: int
    errors: int


IMAGE_COLS = [f.name for f in fields(ImageRow)]


def queue_cols() -> list[str]:
    """The image row's columns, then every score's (the table may grow at run time), then the
    consensus, the reason and the top classes."""
    return IMAGE_COLS + list(score_columns()) + ["top_c", "top_x"]

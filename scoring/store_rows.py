"""The store's records and errors: what a project row, a queue row, an edit and a filter are."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from scoring.errors import ImageTriageError
from scoring.vocabulary import DIFFICULTY_SORT, SCORE_COLUMNS


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
    label_issue: float | None
    neighbour_agreement: float | None
    annotator_agreement: float | None
    annotator_entropy: float | None
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
    score_key: str = DIFFICULTY_SORT
    disagrees: bool = False
    search: str | None = None
    flagged: bool | None = None
    duplicate: bool = False  # only images in a duplicate group
    conflict: bool = False  # only images whose duplicate group carries different labels
    issue: str | None = None  # only images with this dataset issue (scoring.image_issues.ISSUES)


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


@dataclass(frozen=True)
class SyncReport:
    total: int
    added: int
    changed: int
    missing: int
    errors: int


IMAGE_COLS = [f.name for f in fields(ImageRow)]
QUEUE_COLS = IMAGE_COLS + list(SCORE_COLUMNS) + ["top_c", "top_x"]

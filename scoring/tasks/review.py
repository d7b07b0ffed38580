"""A review session, Qt-free: what the annotator is looking at (sort, filter) and what they do
(relabel, remove, keep, restore, undo, redo), with the counts the status bar shows.

The app's window drives one; tests drive one without Qt. Every action is one call into the
project (one transaction, durable when it returns); counts are read from the project's
trigger-kept counts table after each action, never patched by hand.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from scoring.store import Edit, PackageInfo, Project, QueueFilter, QueueRow
from scoring.tasks.estimate import ErrorsLeft, steady
from scoring.vocabulary import DIFFICULTY_SORT, LABEL_SORT, is_score, label_sorts

RERANK_REST = 3.0  # after a re-rank of s seconds, none for 3 s: background work <= 1/4 of the time

ACTIONS: dict[str, Callable[..., Edit]] = {
    "relabel": lambda p, i, label: p.edits.relabel(i, label),
    "remove": lambda p, i, _label=None: p.edits.remove(i),
    "keep": lambda p, i, _label=None: p.edits.keep(i),
    "restore": lambda p, i, _label=None: p.edits.restore(i),
    "keep_group": lambda p, i, _label=None: p.edits.keep_group(i),
}


@dataclass
class ReviewSession:
    project: Project
    sort: str = DIFFICULTY_SORT
    filter: QueueFilter = field(default_factory=QueueFilter)
    _estimate: ErrorsLeft | None = field(default=None, init=False, repr=False)
    _estimate_at: tuple[int, ...] | None = field(default=None, init=False, repr=False)
    # what the status bar showed since the scores last changed, one per estimate (scoring.tasks.estimate.steady)
    _shown: list[ErrorsLeft] = field(default_factory=list, init=False, repr=False)
    _reranked: bool = field(default=False, init=False, repr=False)  # the next estimate reads new scores
    _rerank_at: int | None = field(default=None, init=False, repr=False)
    _rerank_rest_until: float = field(default=0.0, init=False, repr=False)
    # The cursor: the image under review and its place in the order when it was chosen. The
    # session owns it, not Qt's selection model (which a reload wipes): every reload puts it back.
    current: int | None = field(default=None, init=False)
    current_row: int = field(default=0, init=False)
    # A review package (one annotator's slice, scoring.tasks.share) or None: said in the status
    # line; its queue is not re-ranked (a slice is too small to refit the pool on; the project
    # learns from the merged decisions).
    package: PackageInfo | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.package = self.project.team.package()

    def move_to(self, image_id: int | None, row: int | None = None) -> None:
        """The image under review (``row``: its place in the shown order, kept as a hint for when
        it leaves the view). None only when nothing is shown; a reload never calls it with None."""
        self.current = image_id
        if row is not None:
            self.current_row = max(0, int(row))

    def cursor_after_reload(self, shown: Callable[[int], int | None], count: int) -> int | None:
        """Where the cursor goes after the view was re-read: the row of the same image when it is
        still shown (``shown(image_id)`` -> row or None), else the row it was on (now the next image
        in the order), else None when nothing is shown."""
        if count <= 0:
            return None
        if self.current is not None:
            row = shown(self.current)
            if row is not None:
                return row
        return min(self.current_row, count - 1)

    def row_after_decision(self, row: int, status_of: Callable[[int], str | None], look: int = 500) -> int | None:
        """Where a decision on ``row`` sends the cursor: the next image still to review after it
        (``status_of(n)`` -> the status shown at row n, None past the end), within ``look`` rows,
        else the next row, else None. A re-rank interleaves decided images with the rest, and
        the key after one once removed an image already removed (issue 30)."""
        first = status_of(row + 1)
        if first is None:
            return None
        for n in range(row + 1, row + 1 + look):
            status = first if n == row + 1 else status_of(n)
            if status is None:
                break
            if status == "unreviewed":
                return n
        return row + 1

    def rows_to_keep(self) -> int:
        """How many rows of the queue a re-rank leaves in place: every row down to the cursor's
        (what the annotator has gone through, and the image on screen)."""
        return self.current_row + 1 if self.current is not None else 0

    def set_view(self, sort: str, filt: QueueFilter) -> None:
        """Sort and filter together; a score range applies to the sorted score (C-perplexity for path)."""
        self.sort = sort
        self.filter = replace(filt, score_key=sort if is_score(sort) else DIFFICULTY_SORT)

    def page(self, after: tuple[Any, int] | None = None, limit: int = 200) -> list[QueueRow]:
        return self.project.queue.page(self.filter, sort=self.sort, limit=limit, after=after)

    def matching(self) -> int:
        return self.project.queue.queue_count(self.filter)

    def row(self, image_id: int) -> QueueRow:
        """One image as the queue shows it, re-read after an edit."""
        return self.project.queue.queue_row(image_id)

    @property
    def classes(self) -> list[str]:
        return self.project.classes

    def act(self, action: str, image_id: int, label: int | None = None) -> Edit:
        """``relabel`` (with ``label``), ``remove``, ``keep`` or ``restore`` one image; ``keep_group``
        keeps it and removes the rest of its duplicate group (one decision for undo)."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        return ACTIONS[action](self.project, image_id, label)

    def undo(self) -> Edit | None:
        return self.project.edits.undo()

    def redo(self) -> Edit | None:
        return self.project.edits.redo()

    @property
    def stats(self) -> dict[str, int]:
        return self.project.queue.stats()

    def estimate_due(self) -> bool:
        """True when a decision has changed since the last errors-left estimate (issue 29: after
        every decision, not every 20; the pool's part is computed once per scoring or re-rank, so
        each costs a read of the statuses). scoring.tasks.estimate.errors_left still reads every
        image's status: the app runs it on a pool thread and hands the result to :meth:`set_estimate`.
        Never in a review package: its slice is the riskiest part of the queue, not a sample of the
        dataset, and the count was never measured there (the project's, after the merge, is)."""
        if self.package is not None:
            return False
        return self._estimate_at is None or self._estimate_at != self._decisions()

    def _decisions(self) -> tuple[int, ...]:
        s = self.stats
        return (s["reviewed"], s["kept"], s["relabelled"], s["removed"])

    def rerank_due(self, every: int = 20, now: float | None = None) -> bool:
        """True when ``every`` decisions have been made since the queue was last re-ranked (or
        since the session began): the app then refits the heads (scoring.tasks.rerank) in the background
        and calls :meth:`reranked`. ``every`` <= 0 turns it off. A re-rank that took ``s`` seconds
        is not followed by another for ``RERANK_REST * s`` seconds, so on a big project (minutes
        each) the background work takes at most a quarter of the machine."""
        if self.package is not None:
            return False
        reviewed = self.stats["reviewed"]
        if self._rerank_at is None:
            self._rerank_at = reviewed
        rested = (time.monotonic() if now is None else now) >= self._rerank_rest_until
        return every > 0 and reviewed - self._rerank_at >= every and rested

    def reranked(self) -> None:
        """A re-rank starts: not due again until ``every`` more decisions."""
        self._rerank_at = self.stats["reviewed"]
        self._estimate_at = None  # new scores: the estimate too
        self._reranked = True

    def rerank_finished(self, seconds: float, now: float | None = None) -> None:
        """It took ``seconds``: rest RERANK_REST times as long before the next automatic one."""
        self._rerank_rest_until = (time.monotonic() if now is None else now) + RERANK_REST * seconds
        self._estimate_at = None
        self._reranked = True

    @property
    def label_sort(self) -> str:
        return self.sort if self.sort in label_sorts() else LABEL_SORT

    def scores_changed(self) -> None:
        """New scores (a run finished): the estimate is due at once, and starts afresh."""
        self._estimate_at = None
        self._shown.clear()
        self._reranked = False

    def estimate_requested(self) -> None:
        """An estimate of the present decisions is on its way: not due again until the next one."""
        self._estimate_at = self._decisions()

    def set_estimate(self, estimate: ErrorsLeft | None) -> None:
        """A new estimate, as it is shown: held where :func:`steady` holds it against what was shown
        for fewer decisions (a fix the pool expected does not raise the count), and against what was
        shown before a re-rank (the queue's own refit, every 20 decisions: not news the annotator
        asked for); after an undo, what was shown for the decisions it returns to. A new run
        (:meth:`scores_changed`) starts afresh."""
        if estimate is not None and self._reranked and self._shown:
            self._reranked = False
            self._shown[:] = [steady(self._shown[-1], estimate, rescored=True)]  # the walk starts again here
            estimate = self._shown[-1]
        elif estimate is not None:
            key = (estimate.reviewed, estimate.found, estimate.removed)
            while self._shown and (self._shown[-1].reviewed, self._shown[-1].found) > key[:2]:
                self._shown.pop()  # an undo: back along the walk
            back = self._shown and (self._shown[-1].reviewed, self._shown[-1].found, self._shown[-1].removed) == key
            if back:
                estimate = self._shown[-1]
            else:
                self._shown.append(steady(self._shown[-1] if self._shown else None, estimate))
                del self._shown[:-10_000]
                estimate = self._shown[-1]
        self._estimate, self._estimate_at = estimate, self._decisions()

    @property
    def estimate(self) -> ErrorsLeft | None:
        return self._estimate

    def shown_state(self) -> dict[str, Any] | None:
        """What the status bar shows now, with the scores it was read from: kept by the window
        across a restart (a kill -9 and a restart had taken "about 8" to "about 11" with no fix)."""
        if not self._shown:
            return None
        return {"scores": self.project.queue.scores_stamp(), **asdict(self._shown[-1])}

    def resume_shown(self, state: Any) -> bool:
        """Start from what was shown before a restart, when it was read from the scores the project
        has now; anything else (other scores, a hand-edited or damaged settings file) is ignored."""
        if self._shown or not isinstance(state, dict) or state.get("scores") != self.project.queue.scores_stamp():
            return False
        names = [f.name for f in fields(ErrorsLeft)]
        values = {k: state.get(k) for k in names}
        numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
                      for k, v in values.items() if not (k == "model_left" and v is None))
        if not numbers or any(not isinstance(values[k], int) for k in ("reviewed", "found", "unreviewed", "removed", "flagged", "disagree")):
            return False
        self._shown.append(ErrorsLeft(**values))  # type: ignore[arg-type]
        return True

    def status_text(self) -> str:
        s = self.stats
        start = "" if self.project.runs.active_pool() else "not scored yet: Scoring ▸ Score… (Ctrl+Enter) rates every image · "
        if self.package is not None:
            start = f"{self.package.annotator}'s review package · " + start
        return start + (
            f"reviewed {s['reviewed']:,} / {s['total']:,} · kept {s['kept']:,} · relabelled {s['relabelled']:,}"
            f" · removed {s['removed']:,}" + (f" · {s['errors']} unreadable" if s.get("errors") else "")
        )

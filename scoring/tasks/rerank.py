"""A queue that learns from the annotator: refit the pool's cross-fitted heads on the labels as
corrected so far, rescore, and re-rank what is left to review.

Every decision is evidence about the rest of the dataset. A relabel corrects one training label
of every head that learnt from it, a removal takes an image out of training, a keep confirms
one. The heads are logistic regressions over stored features, so a refit is seconds, not the
minutes of a fine-tune: scratch and fine-tuned members are refitted only when the user asks
(``networks=True``, ``image-triage rerank --networks``), checkpoint members never.

Training labels: the current label of every reviewed image (kept or relabelled), none for a
removed one (-1: predicted, not trained on), the given label of every image not yet reviewed.
Suspects left out (``prune``, on by default): the unreviewed images at the head of the label
queue, as many as the confident joint estimates errors are left, are not trained on either - the
prune-and-refit of confident learning (Northcutt et al. 2021), so the heads do not learn the very
flips the annotator is looking for. Scores stay measured against the given labels, as in a run, so a re-ranked queue and a fresh
run's queue mean the same thing. Reviewed images keep their decisions: only the order of the
unreviewed part changes, and the summary says by how much.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from scoring.device import pick_device
from scoring.engine.fitting import fit_members
from scoring.engine.score_pass import write_scores
from scoring.pool.base import Pool
from scoring.pool.kinds import refits, refits_member
from scoring.progress import Progress, check_cancel
from scoring.store import Project, ProjectValueError, QueueFilter
from scoring.trust import grant
from scoring.vocabulary import LABEL_SORT, label_sorts

log = logging.getLogger(__name__)
TOP = 100


@dataclass(frozen=True)
class Reranked:
    refitted: list[str]  # names of the members refitted
    decisions: int  # reviewed images whose decisions the heads learnt from
    unreviewed: int
    moved: int  # unreviewed images whose position changed
    mean_shift: float  # mean |position change| over the unreviewed
    new_in_top: int  # of the next 100 to review, how many were not there before
    seconds: float
    pruned: int = 0  # unreviewed suspects left out of training

    def line(self) -> str:
        if not self.refitted:
            return "re-rank: the pool has no cross-fitted heads to refit (add a backbone member)"
        return (f"re-sorted {self.unreviewed:,} unreviewed images using your {self.decisions:,} decisions "
                f"({len(self.refitted)} models retrained, {self.seconds:.1f} s): {self.moved:,} moved, "
                f"{self.mean_shift:.0f} places on average; {self.new_in_top} new in the next {TOP}"
                + (f"; {self.pruned:,} images that look mislabelled were kept out of the retraining"
                   if self.pruned else ""))


def training_labels(project: Project, ids: np.ndarray) -> tuple[np.ndarray, int]:
    """(labels the heads learn from, number of reviewed images among ``ids``); see the module text."""
    states = {i: (lab, st) for i, lab, st in project.images.label_states(ids)}
    labels = project.images.given_labels(ids).copy()
    decisions = 0
    for n, i in enumerate(ids):
        lab, st = states.get(int(i), (None, "unreviewed"))
        if st == "removed":
            labels[n], decisions = -1, decisions + 1
        elif st != "unreviewed":
            labels[n], decisions = (-1 if lab is None else int(lab)), decisions + 1
    return labels, decisions


def _suspects(project: Project, pool: Pool, ids: np.ndarray, labels: np.ndarray, queue: np.ndarray) -> np.ndarray:
    """The head of the label queue (unreviewed), as long as the errors the confident joint
    estimates among the images still trained on."""
    from scoring.tasks.estimate import CHUNK, estimated_errors

    fps = [m.fingerprint for m in pool.members]
    mean = np.concatenate([project.cache.get_probs(fps, ids[s : s + CHUNK]).mean(axis=0) for s in range(0, len(ids), CHUNK)])
    # Never more than half of what is trained on: a weak pool (a tiny dataset, one epoch) estimates
    # every label wrong, and pruning them all left nothing to refit on ("the dataset has no labels").
    n = min(int(round(estimated_errors(mean, labels))), int((labels >= 0).sum()) // 2)
    return queue[: max(0, n)]


def active_pool(project: Project, *, networks: bool = False, trust: bool = False) -> Pool | None:
    """The pool whose scores the queue shows, rebuilt from its run's spec; None if it was never
    scored or has no member re-ranking would refit (no model is loaded then). The stored spec
    carries no trust (scoring.trust): a checkpoint that runs code loads only with ``trust``, the
    user's ``--trust-checkpoint`` now, and is otherwise refused naming the member."""
    from scoring.pool.spec import build_pool

    run = project.runs.active_run()
    spec = [dict(m) for m in run["config"].pool] if run is not None else None
    if not spec or not any(isinstance(m, dict) and refits(m, networks) for m in spec):
        return None
    return build_pool([grant(m) if trust else m for m in spec if isinstance(m, dict)], project.classes)


def rerank(
    path: str | Path,
    sort: str = LABEL_SORT,
    cancel: threading.Event | None = None,
    pool: Pool | None = None,
    device: torch.device | None = None,
    prune: bool = True,
    networks: bool = False,
    trust: bool = False,
) -> Generator[Progress, None, Reranked]:
    """Refit the active pool's heads on the corrected labels, rescore, re-rank (see module text).
    ``sort`` is the queue order whose movement is reported. ``networks``: refit the trained
    networks too (scratch, finetune: minutes, asked for by the user, never automatic)."""
    cancel = cancel or threading.Event()
    t0 = time.perf_counter()
    with Project.open(path) as project, project.runs.scoring_writer("re-rank") as writer:  # never with a run
        pool = pool or active_pool(project, networks=networks, trust=trust)
        ids = project.images.scorable_ids()
        refit = [m for m in (pool.members if pool else []) if refits_member(m, networks)]  # the kind's rule
        unreviewed = QueueFilter(status="unreviewed")
        if pool is None or not refit:
            return Reranked([], 0, project.queue.queue_count(unreviewed), 0, 0.0, 0, time.perf_counter() - t0)
        before = project.queue.ranked_ids(unreviewed, sort)
        labels, decisions = training_labels(project, ids)
        if len(ids) and not (labels >= 0).any() and (project.images.given_labels(ids) >= 0).any():
            raise ProjectValueError(f"{path}: every image is removed, so there is nothing to refit on; "
                                    "restore some (undo) before re-ranking")
        pruned = _suspects(project, pool, ids, labels, before if sort in label_sorts() else
                           project.queue.ranked_ids(unreviewed, LABEL_SORT)) if prune else np.zeros(0, np.int64)
        labels[np.isin(ids, pruned)] = -1
        yield Progress("rerank", 0, 1, message=f"refitting {len(refit)} members on {decisions:,} decisions")
        yield from writer.beating(fit_members(project, pool, ids, labels, cancel, device or pick_device("auto"),
                                              refit=refit, keep_folds=False))
        check_cancel(cancel)
        yield from write_scores(project, pool, ids, project.images.given_labels(ids), cancel)
        after = project.queue.ranked_ids(unreviewed, sort)
    pos = {int(i): n for n, i in enumerate(before)}
    shift = np.array([abs(n - pos[int(i)]) for n, i in enumerate(after) if int(i) in pos], dtype=np.float64)
    new_top = len(set(after[:TOP].tolist()) - set(before[:TOP].tolist()))
    out = Reranked([m.name for m in refit], decisions, len(after), int((shift > 0).sum()),
                   float(shift.mean()) if len(shift) else 0.0, new_top, time.perf_counter() - t0, len(pruned))
    log.info(out.line())
    return out

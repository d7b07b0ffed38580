"""The fitting stage of a run: each fitted member (backbone heads, scratch and fine-tuned
networks) cross-fitted over the stored features, on a helper thread that reports each fold as
it finishes; finished folds are kept in the project so a killed run resumes at the next fold."""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
from collections.abc import Generator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from scoring.pool.base import Member, Pool, PoolError, stable_hash
from scoring.progress import Progress, RateMeter, StageTimes, check_cancel
from scoring.store import Project
from scoring.vocabulary import member_words

log = logging.getLogger(__name__)



def fit_members(
    project: Project,
    pool: Pool,
    ids: np.ndarray,
    labels: np.ndarray,
    cancel: threading.Event,
    device: torch.device | None = None,
    refit: Sequence[Member] | None = None,
    keep_folds: bool = True,
    times: StageTimes | None = None,
) -> Generator[Progress, None, None]:
    """Cross-fit the pool's fitted members whose probabilities are missing (or the ``refit``
    ones, whatever is stored) on ``labels`` (-1 = left out of training) and store them.
    ``keep_folds``: store each finished fold so a killed fit resumes (a re-rank, which is redone
    with new labels each time, does not: it would add a copy of the predictions per re-rank).
    ``times`` gets each member's seconds as ``fit <name>`` (``--profile``)."""
    times = times or StageTimes()
    fitted = list(refit) if refit is not None else [
        m for m in pool.members if m.fitted and len(project.cache.missing_probs(m.fingerprint, ids))]
    if not fitted:
        return
    if not (labels >= 0).any():
        raise PoolError(
            f"members {[m.name for m in fitted]} are fitted on the dataset's labels, but "
            f"{project.source} has none; use checkpoint members for an unlabelled dataset"
        )
    # Progress in folds, the unit people read ("fit 3/15"); epochs show in the message, and each
    # member as a person reads it ("ImageNet features (EfficientNet-Lite0), head 2 of 4"), not
    # its code name ("effnet-lite0-f100-s0" was on the status bar during every re-rank).
    words = dict(zip([m.name for m in pool.members],
                     member_words([{"name": m.name, "kind": m.kind, "spec": m.spec} for m in pool.members]), strict=True))
    weights = [int(getattr(m, "folds", 1)) for m in fitted]
    meter = RateMeter("fit", sum(weights))
    features_by_key: dict[str, np.ndarray] = {}
    done = 0
    for member, weight in zip(fitted, weights, strict=True):
        check_cancel(cancel)
        key = member.encoder.key
        if key not in features_by_key:
            features_by_key = {key: project.cache.get_features(key, ids)}  # keep one encoder's at a time
        if hasattr(member, "device"):
            member.device = device
        word = words.get(member.name, member.name)
        meter.restart(done)  # each member's ETA from its own folds' pace
        yield meter.record(done, f"fitting {word}")  # short: the status bar's job area is narrow at 1366 px
        with times(f"fit {member.name}"):
            probs = yield from _fit_one(member, features_by_key[key], labels, project, ids, keep_folds, cancel,
                                        meter, done, weight, word)
        project.cache.put_probs(member.fingerprint, ids, probs)
        done += weight
        yield meter.record(done, f"fitted {word}")


def _fit_one(member: Member, features: np.ndarray, labels: np.ndarray, project: Project, ids: np.ndarray,
             keep_folds: bool, cancel: threading.Event, meter: RateMeter, done: int, weight: int, word: str = ""
             ) -> Generator[Progress, None, np.ndarray]:
    """One member's cross-fitted probabilities, fitted on a helper thread that reports each fold
    (its messages name the member as ``word`` says, where given)."""
    cache = ProjectFoldCache(project, member.fingerprint, ids, labels) if keep_folds else None
    # Fit on a helper thread so this generator can report each fold as it finishes. Whatever
    # stops this generator (Ctrl+C, close, an error) sets ``cancel`` before waiting for the
    # thread, which checks it every batch: the wait is one batch, never the whole fit.
    reports: queue.SimpleQueue[tuple[int, int, str]] = queue.SimpleQueue()
    pool_thread = ThreadPoolExecutor(max_workers=1)
    try:
        future = pool_thread.submit(
            member.fit_predict, features, labels,
            lambda d, t, msg, _r=reports: _r.put((d, t, msg)), cancel.is_set, cache,  # type: ignore[misc]
        )
        while not (future.done() and reports.empty()):
            try:
                d, t, msg = reports.get(timeout=0.2)
            except queue.Empty:
                continue
            yield meter.record(done + weight * d / max(t, 1), msg.replace(member.name, word, 1) if word else msg)
        probs = future.result()
    except BaseException:
        cancel.set()
        raise
    finally:
        pool_thread.shutdown(wait=True)
    check_cancel(cancel)
    return probs


class ProjectFoldCache:
    """Each finished fold's predictions, kept in the project (its feature cache) under a key of
    the member, the images and their labels: a changed label means new folds, not stale ones."""

    def __init__(self, project: Project, member_fp: str, ids: np.ndarray, labels: np.ndarray):
        self.path, self.ids = project.path, ids  # called from the fitting thread: own connection
        digest = hashlib.sha1(ids.astype(np.int64).tobytes() + labels.astype(np.int64).tobytes()).hexdigest()
        self.key = stable_hash("folds", member_fp, digest)

    def _fold_key(self, fold: int, folds: int) -> str:
        return f"{self.key}:{fold}/{folds}"

    def load(self, fold: int, folds: int, rows: np.ndarray) -> np.ndarray | None:
        key, ids = self._fold_key(fold, folds), self.ids[rows]
        if len(ids) == 0:
            return None
        with Project.open(self.path) as project:
            if len(project.cache.missing_features(key, ids)):
                return None
            return project.cache.get_features(key, ids).astype(np.float64)

    def save(self, fold: int, folds: int, rows: np.ndarray, probs: np.ndarray) -> None:
        if len(rows):
            with Project.open(self.path) as project:
                project.cache.put_features(self._fold_key(fold, folds), self.ids[rows], probs.astype(np.float32))



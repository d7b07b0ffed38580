"""The scoring passes after inference: each image's scores from the pool's stored predictions,
chunk by chunk, then the scores of the whole dataset (the neighbours' label evidence,
:mod:`scoring.evidence.label_evidence`). The scoring run and the re-rank both end here."""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator

import numpy as np

from scoring.engine.batches import decode_missing
from scoring.evidence import image_issues, label_evidence
from scoring.evidence.neighbours import NeighbourIndex
from scoring.pool.base import Pool
from scoring.progress import Progress, RateMeter, StageTimes, check_cancel
from scoring.store import Project
from scoring.vocabulary import compute_scores

log = logging.getLogger(__name__)

SCORE_CHUNK = 50_000


def write_scores(
    project: Project,
    pool: Pool,
    ids: np.ndarray,
    labels: np.ndarray,
    cancel: threading.Event,
    times: StageTimes | None = None,
) -> Generator[Progress, None, int]:
    times = times or StageTimes()
    fps = [m.fingerprint for m in pool.members]
    meter = RateMeter("score", len(ids))
    for start in range(0, len(ids), SCORE_CHUNK):
        check_cancel(cancel)
        chunk = ids[start : start + SCORE_CHUNK]
        with times("score store"):
            probs = project.cache.get_probs(fps, chunk)
        with times("metrics"):
            scores = compute_scores(probs, labels[start : start + SCORE_CHUNK])
        with times("score store"):
            project.queue.put_scores(pool.fingerprint, chunk, scores)
        yield meter.record(start + len(chunk))
    with times("neighbours"):
        index = yield from write_label_evidence(project, fps, ids, labels, cancel)
    with times("issues"):
        yield from write_dataset_issues(project, ids, cancel, index)
    return len(ids)


def write_label_evidence(project: Project, fps: list[str], ids: np.ndarray, labels: np.ndarray,
                         cancel: threading.Event) -> Generator[Progress, None, NeighbourIndex | None]:
    """neighbour_agreement and label_issue of every scored image, from the project's neighbour
    embedding (none stored yet: both stay empty and the label view sorts by margin's order);
    returns the neighbour index it built (the outlier check reads it too)."""
    meter = RateMeter("neighbours", 3)
    yield meter.record(0, "reading features")
    index = NeighbourIndex.build(project)
    if index is None or len(index.ids) < 2:
        return index
    check_cancel(cancel)
    order = np.argsort(index.ids)
    have = index.ids[order]
    unit = index.feats[order]
    voters = np.where(index.removed[order], -1, index.labels[order])
    by_id = np.argsort(ids, kind="stable")  # ids need not come sorted
    pos = np.searchsorted(ids[by_id], have)
    ok = (pos < len(ids)) & (ids[by_id[np.minimum(pos, len(ids) - 1)]] == have)
    have, unit, voters, at = have[ok], unit[ok], voters[ok], by_id[pos[ok]]
    yield meter.record(1, "finding the nearest images")
    sims, rows = label_evidence.nearest(unit)
    check_cancel(cancel)
    yield meter.record(2, "weighing the votes")
    mean = np.concatenate([project.cache.get_probs(fps, have[s : s + SCORE_CHUNK]).mean(axis=0)
                           for s in range(0, len(have), SCORE_CHUNK)])
    own = labels[at]
    v = label_evidence.votes(sims, rows, voters, mean.shape[1])
    weight = label_evidence.stack_weight(mean, v, own, len(fps))
    agreement, issue, noise = label_evidence.scores(mean, v, own, weight, len(fps), corrections(project, have, own))
    project.queue.put_label_evidence(have, agreement, issue, weight, noise.as_dict())
    log.info("%s: neighbours' votes count for %.2g members in label_issue; labels fitted as %.0f %% look-alike "
             "errors at rate %.2g", project.path, weight, 100 * noise.look_alike, noise.rate)
    yield meter.record(3)
    return index


def corrections(project: Project, ids: np.ndarray, given: np.ndarray) -> label_evidence.Corrections:
    """(rows of ``ids``, the class chosen) of the images annotators relabelled away from their
    given label ``given``: what the noise fit learns the kind of error from (a re-rank after
    review; none at the first scoring)."""
    state = {i: (lab, status) for i, lab, status in project.images.label_states(ids)}
    rows, true = [], []
    for n, i in enumerate(ids.tolist()):
        lab, status = state.get(i, (None, ""))
        if status == "relabelled" and lab is not None and lab != given[n]:
            rows.append(n)
            true.append(lab)
    return np.array(rows, dtype=np.int64), np.array(true, dtype=np.int64)


def write_dataset_issues(project: Project, ids: np.ndarray, cancel: threading.Event,
                         index: NeighbourIndex | None = None) -> Generator[Progress, None, dict[str, int]]:
    """Find and store the dataset's issues beyond labels (scoring.evidence.image_issues); returns the
    counts. Statistics the engine did not store (an older project, the Ray engine) are made
    here in one decode pass; outliers need the neighbour index (none: no outlier check)."""
    yield from decode_missing(project, image_issues.STATS_KEY, image_issues.STATS, ids, "stats", cancel)
    have = np.setdiff1d(ids, project.cache.missing_features(image_issues.STATS_KEY, ids))
    if len(have) == 0:
        return {}
    meter = RateMeter("issues", 1)
    yield meter.record(0, "looking for blurry, dark, odd and outlying images")
    stats = np.concatenate([project.cache.get_features(image_issues.STATS_KEY, have[s : s + SCORE_CHUNK])
                            for s in range(0, len(have), SCORE_CHUNK)])
    widths, heights = project.images.sizes(have)
    centre = None
    if index is not None and len(index.ids):
        rows = {int(i): r for r, i in enumerate(index.ids)}
        labels = np.where(index.removed, -1, index.labels)
        cos = image_issues.centre_cosines(index.feats, labels)
        centre = np.array([cos[rows[int(i)]] if int(i) in rows else np.nan for i in have])
        centre = np.where(np.isnan(centre), np.nanmedian(centre) if np.isfinite(centre).any() else 0.0, centre)
    found = image_issues.detect(stats, widths, heights, centre)
    project.issues.put_issues(image_issues.as_rows(have, found))
    yield meter.record(1)
    return project.issues.issue_counts()

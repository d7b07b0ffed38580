"""The scoring engine: one decode per image, every pool encoder per batch, results committed
batch by batch so a killed run resumes where it stopped.

Stages (each yields :class:`~scoring.progress.Progress` records):

1. ``index``  - sync the dataset's files into the project (new, changed, missing images).
2. ``infer``  - a DataLoader decodes each image once (worker processes), applies each distinct
   preprocessing, and every distinct encoder of the pool runs on the batch under
   ``torch.inference_mode`` (autocast float16 on CUDA). Checkpoint members' probabilities and
   fitted members' features are committed per batch; what is stored is never recomputed.
3. ``fit``    - fitted members (backbone heads, scratch networks) cross-fit on stored features.
4. ``score``  - metrics over the pool's (M, N, K) probabilities, written to the images' rows.

Cancel is a ``threading.Event`` checked between batches (and between folds when fitting).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from scoring.device import RUNTIMES, pick_device
from scoring.engine.batches import thumbnail_encoder
from scoring.engine.engines import Engine
from scoring.engine.fitting import fit_members
from scoring.engine.registry import make_engine
from scoring.engine.runtime import summary as runtime_summary
from scoring.engine.score_pass import write_scores
from scoring.pool.base import Pool, PoolError
from scoring.pool.members import Pixels
from scoring.progress import Cancelled, Progress, StageTimes
from scoring.store import Project, RunConfig

log = logging.getLogger(__name__)



@dataclass
class RunSummary:
    """What a scoring run did: returned by :func:`score_project`, said by the command line (a
    line, or ``--json``) and in the app's status bar."""

    status: str  # done | cancelled
    run_id: int
    device: str
    scored: int = 0
    errors: int = 0  # images that could not be read
    pool_fingerprint: str = ""
    members: list[str] = field(default_factory=list)
    labelled: bool | None = None  # None: the run stopped before it knew
    issues: dict[str, int] | None = None  # images per dataset issue (scoring.evidence.image_issues)
    runtime: str = ""  # where the encoders ran, in one phrase
    profile: dict[str, float] = field(default_factory=dict)  # seconds per stage
    seconds: float = 0.0
    duplicates: dict[str, int] | None = None  # groups, label_conflicts: the search a caller ran after it

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def score_project(
    project_path: str | Path,
    pool_specs: Sequence[Mapping[str, Any]] | None = None,
    *,
    pool: Pool | None = None,
    device: str = "auto",
    batch_size: int = 64,
    workers: int | None = None,
    cancel: threading.Event | None = None,
    engine: str = "local",
    engine_options: dict[str, Any] | None = None,
    runtime: str = "auto",
) -> Generator[Progress, None, RunSummary]:
    """Score a project's images with a pool; yields Progress, returns its :class:`RunSummary`.

    ``runtime`` says where the frozen encoders run (scoring.engine.runtime: ``auto`` is ONNX Runtime
    on a CPU where it is installed and its check passes, torch elsewhere).

    ``engine`` names a registered engine (scoring.engine.registry: ``local`` in scoring.engine.engines, or
    ``ray`` in scoring.engine.ray, which runs the
    inference stage as Ray Data ``map_batches`` with ``workers`` actors), ``engine_options`` its
    own options (ray: ``address``, ``gpus_per_worker``); everything else is the same code.

    Give either ``pool_specs`` (built with :func:`scoring.pool.spec.build_pool`) or a ready
    ``pool`` (tests, benchmarks). Opens its own :class:`Project` in the calling thread, as
    SQLite connections belong to the thread that made them.
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    cancel = cancel or threading.Event()
    t_start = time.perf_counter()
    project = Project.open(project_path)
    try:
        if runtime not in RUNTIMES:
            raise ValueError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
        runner = make_engine(engine, device, runtime, engine_options)
        with project.runs.scoring_writer("scoring run") as writer:  # one pool writes scores at a time
            summary = yield from writer.beating(_score(project, pool_specs, pool, device, batch_size, workers, cancel,
                                                       runner, engine, runtime))
    finally:
        project.close()
    summary.seconds = round(time.perf_counter() - t_start, 3)
    return summary


def _score(
    project: Project,
    pool_specs: Sequence[Mapping[str, Any]] | None,
    pool: Pool | None,
    device: str,
    batch_size: int,
    workers: int | None,
    cancel: threading.Event,
    engine: Engine,
    engine_name: str,
    runtime: str = "auto",
) -> Generator[Progress, None, RunSummary]:
    yield Progress("index", 0, 1, message=f"reading {project.source}")
    dataset = project.dataset()
    sync = project.images.sync(dataset)
    yield Progress(
        "index", 1, 1,
        message=f"{sync.total} images ({sync.added} new, {sync.changed} changed, {sync.missing} missing)",
    )
    if pool is None:
        from scoring.pool.spec import (  # local: scoring.pool.spec pulls in torchvision
            build_pool,
            pool_classes,
        )

        if not pool_specs:
            raise PoolError("no pool given: pass pool members (see `image-triage score --help`)")
        yield Progress("load", 0, len(pool_specs), message=f"loading {len(pool_specs)} pool members")
        if not project.classes:  # an unlabelled folder: scores are over the pool's classes
            project.adopt_classes(pool_classes(pool_specs))
        pool = build_pool(pool_specs, project.classes)
        yield Progress("load", len(pool_specs), len(pool_specs), message=f"{len(pool.members)} members loaded")
    elif not project.classes:
        project.adopt_classes(pool.classes)
    if list(pool.classes) != list(project.classes):
        raise PoolError(
            f"the pool was built for classes {pool.classes}, but the project has {project.classes}"
        )
    dev = pick_device(device)
    n_workers = None if workers is None else max(0, workers)  # None: the engine chooses (by measuring)
    config = RunConfig(pool=tuple(pool.spec), pool_fingerprint=pool.fingerprint,
                       member_fingerprints=tuple(m.fingerprint for m in pool.members), batch_size=batch_size,
                       workers=n_workers, engine=engine_name, runtime=runtime)
    project.runs.save_members(pool)
    run_id = project.runs.start_run(pool, config, str(dev))
    times = StageTimes()
    try:
        _warn_trained_on(pool, dataset.records)
        ids = project.images.scorable_ids()
        yield from engine.infer(project, pool, ids, dev, batch_size, n_workers, cancel, times)
        project.runs.note_run(run_id, runtimes=engine.runtimes)
        ids = project.images.scorable_ids()  # decode errors found while inferring drop out
        project.cache.set_embedding(*neighbour_embedding(pool))
        labels = project.images.given_labels(ids)
        yield from fit_members(project, pool, ids, labels, cancel, dev, times=times)  # times each as "fit <name>"
        n_scored = yield from write_scores(project, pool, ids, labels, cancel, times)
    except Cancelled:
        project.runs.finish_run(run_id, "cancelled")
        log.info("scoring cancelled; stored results are kept and the next run resumes")
        return RunSummary("cancelled", run_id, str(dev))
    except (KeyboardInterrupt, GeneratorExit):  # Ctrl+C, or the caller stopped reading: cancelled too
        project.runs.finish_run(run_id, "cancelled")
        raise
    except BaseException as exc:
        project.runs.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {exc}")
        raise
    project.runs.finish_run(run_id, "done")
    project.runs.note_run(run_id, profile={k: round(v, 3) for k, v in times.seconds.items()})
    return RunSummary(
        "done", run_id, str(dev), scored=n_scored, errors=len(project.images.errors()),
        pool_fingerprint=pool.fingerprint, members=[m.name for m in pool.members], labelled=bool((labels >= 0).any()),
        issues=project.issues.issue_counts(),
        runtime=runtime_summary(engine.runtimes) if engine.runtimes else "none (every output was stored)",
        profile={k: round(v, 3) for k, v in times.seconds.items()})


def neighbour_embedding(pool: Pool) -> tuple[str, str]:
    """(encoder key, description) the neighbour evidence compares by: the first backbone's
    features (they cluster by class), else the thumbnails every run stores (look-alikes). Not
    the pixels a network trains on, nor the frozen part's maps a fine-tuned member's last blocks
    train on (``train_blocks``: 11,200 values an image, not an embedding)."""
    for enc in pool.encoders():
        trunk = all(m.kind == "finetune" for m in pool.members_of(enc.key))
        if enc.output == "features" and not isinstance(enc.module, Pixels) and not trunk:
            return enc.key, f"{enc.description or 'backbone'} features"
    thumb = thumbnail_encoder()
    return thumb.key, "16x16 colour thumbnails (the pool has no backbone)"


def _warn_trained_on(pool: Pool, records: Sequence[Any]) -> None:
    from scoring.pool.spec import trained_on

    paths = {r.path for r in records}
    for member in pool.members:
        seen = trained_on(member.spec)
        if seen:
            overlap = paths & seen
            if overlap:
                log.warning(
                    "member %r was trained on %d of these images (e.g. %s): their scores are "
                    "in-sample and understate difficulty",
                    member.name, len(overlap), sorted(overlap)[0],
                )

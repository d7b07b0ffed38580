"""The inference stage's engines: this machine (decode a chunk once, each encoder over it, commit
per chunk) or a Ray cluster (scoring.engine.ray); both compute only what is missing, so a killed
run resumes, and both run the frozen encoders where scoring.engine.runtime says."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader

from scoring.engine.batches import (
    THUMB,
    Batch,
    DecodeOnce,
    collate,
    run_encoders,
    store_batch,
    thumbnail_encoder,
)
from scoring.engine.runtime import prepare as prepare_runtime
from scoring.evidence.image_issues import STATS, stats_encoder
from scoring.pool.base import Pool
from scoring.progress import Progress, RateMeter, StageTimes, check_cancel
from scoring.store import Project

log = logging.getLogger(__name__)


class Engine(Protocol):
    """The inference stage: store every encoder's outputs for ``ids`` in ``project``, yielding
    progress; resumable (computes only what is missing) and cancellable within a batch. After
    it, ``runtimes`` says where each encoder ran (scoring.engine.runtime). ``workers``: decode
    processes (Ray: actors); None lets the engine choose."""

    runtimes: dict[str, str]

    def infer(self, project: Project, pool: Pool, ids: np.ndarray, dev: torch.device, batch_size: int,
              workers: int | None, cancel: threading.Event, times: StageTimes) -> Generator[Progress, None, None]: ...


@dataclass
class LocalEngine:
    """This machine: decode a chunk once, each encoder over the chunk (see :func:`_infer`)."""

    runtime: str = "auto"
    runtimes: dict[str, str] = field(default_factory=dict)

    def infer(self, project: Project, pool: Pool, ids: np.ndarray, dev: torch.device, batch_size: int,
              workers: int | None, cancel: threading.Event, times: StageTimes) -> Generator[Progress, None, None]:
        return _infer(project, pool, ids, dev, batch_size, workers, cancel, times, self.runtime, self.runtimes)


@dataclass
class RayEngine:
    """A Ray cluster: the same per-batch code as Ray Data map_batches (scoring.engine.ray)."""

    address: str | None = None
    gpus_per_worker: float = 0.0
    device: str = "auto"  # as the user gave it: each actor picks its own node's device
    runtime: str = "auto"
    runtimes: dict[str, str] = field(default_factory=dict)

    def infer(self, project: Project, pool: Pool, ids: np.ndarray, dev: torch.device, batch_size: int,
              workers: int | None, cancel: threading.Event, times: StageTimes) -> Generator[Progress, None, None]:
        from scoring.engine.ray import infer_with_ray

        return infer_with_ray(project, pool, _pending(project, pool, ids), len(ids), address=self.address,
                              workers=(default_workers() if workers is None else workers) or 1, gpus_per_worker=self.gpus_per_worker,
                              batch_size=batch_size, device=self.device, cancel=cancel, runtime=self.runtime,
                              runtimes=self.runtimes)


def _missing(project: Project, pool: Pool, ids: np.ndarray) -> dict[str, set[int]]:
    """Per encoder, the ids whose output is not stored yet (its features, or any of its members'
    probabilities): a changed pool runs only the encoders that changed."""
    need: dict[str, set[int]] = {}
    for enc in pool.encoders():
        if enc.output == "features":
            need[enc.key] = {int(i) for i in project.cache.missing_features(enc.key, ids)}
        else:
            need[enc.key] = set()
            for m in pool.members_of(enc.key):
                need[enc.key].update(int(i) for i in project.cache.missing_probs(m.fingerprint, ids))
    return need


def _pending(project: Project, pool: Pool, ids: np.ndarray) -> np.ndarray:
    """Ids for which some encoder's output is not stored yet (checkpoint probs or features)."""
    return np.array(sorted(set().union(*_missing(project, pool, ids).values())), dtype=np.int64)


def _infer(
    project: Project,
    pool: Pool,
    ids: np.ndarray,
    dev: torch.device,
    batch_size: int,
    workers: int | None,
    cancel: threading.Event,
    times: StageTimes | None = None,
    runtime: str = "auto",
    runtimes: dict[str, str] | None = None,
) -> Generator[Progress, None, None]:
    times = times or StageTimes()
    missing = _missing(project, pool, ids)
    thumb = thumbnail_encoder()  # for duplicates: made in this decode pass, not another
    stats = stats_encoder()  # for the dataset's issues: the same
    for extra in (thumb, stats):
        missing[extra.key] = {int(i) for i in project.cache.missing_features(extra.key, ids)}
    todo = np.array(sorted(set().union(*missing.values())), dtype=np.int64)
    total = len(ids)
    done0 = total - len(todo)
    meter = RateMeter("infer", total, start_done=done0)
    yield meter.record(done0, f"{done0} already stored" if done0 else "")
    if len(todo) == 0:
        return
    paths = project.images.abspaths(project.images.paths_of(todo))
    preprocesses = pool.preprocesses()
    if missing[thumb.key]:
        preprocesses.append(THUMB)
    if missing[stats.key]:
        preprocesses.append(STATS)
    encoders = [enc for enc in [*pool.encoders(), thumb, stats] if missing[enc.key]]
    with times("runtime"):  # ONNX export (first time) and the check against torch
        encoders, chosen = prepare_runtime(encoders, dev, runtime)
    if runtimes is not None:
        runtimes.update(chosen)  # encoders without weights show as runtime.NO_WEIGHTS
    for enc in encoders:
        enc.module.to(dev).eval()
        if dev.type == "cuda":
            enc.module.to(memory_format=torch.channels_last)
    chunk = chunk_images(pool, batch_size)

    def decode_and_run(lo: int, hi: int, n_workers: int, done: int) -> Generator[Progress, None, int]:
        """Images ``todo[lo:hi]``: decoded by ``n_workers`` processes (0: here), flushed per chunk."""
        loader = DataLoader(DecodeOnce(paths[lo:hi], todo[lo:hi].tolist(), preprocesses), batch_size=batch_size,
                            shuffle=False, num_workers=n_workers, collate_fn=partial(collate, preprocesses=preprocesses),
                            persistent_workers=False, pin_memory=dev.type == "cuda",
                            timeout=WORKER_WAIT if n_workers else 0)
        buffer: list[Batch] = []
        batches = iter(loader)
        try:
            while True:
                with times("decode"):  # here (with the statistics, a batch at a time), or waiting for the workers
                    try:
                        batch = next(batches, None)
                    except RuntimeError as exc:
                        if "timed out" not in str(exc):
                            raise
                        raise RuntimeError(f"the decode workers gave no batch in {WORKER_WAIT} s (near {paths[lo]}): "
                                           "score again with --workers 0; what was stored is kept") from exc
                if batch is None:
                    break
                check_cancel(cancel)
                buffer.append(batch)
                if sum(b.count for b in buffer) >= chunk:
                    done = yield from _flush(project, pool, encoders, missing, buffer, dev, batch_size, cancel, meter, done, times)
                    buffer = []
            if buffer:
                done = yield from _flush(project, pool, encoders, missing, buffer, dev, batch_size, cancel, meter, done, times)
        finally:
            # Shut worker processes down promptly when the generator is closed or cancelled.
            del batches, loader
        return done

    done, lo = done0, 0
    if workers is None:  # chosen by measuring: the first images decoded here, then the pool's forward on them
        lo = min(batch_size, PROBE_IMAGES) if len(todo) > PROBE_AFTER * batch_size else len(todo)
        before = dict(times.seconds)
        done = yield from decode_and_run(0, lo, 0, done)
        spent = {k: times.seconds.get(k, 0.0) - before.get(k, 0.0) for k in ("decode", "forward")}
        workers = choose_workers(spent["decode"], spent["forward"]) if lo < len(todo) else 0
        log.info("decode workers: %d (the first %d images: decode %.2f s, forward %.2f s)", workers, lo,
                 spent["decode"], spent["forward"])
        yield meter.record(done, f"decode workers: {workers}")
    if lo < len(todo):
        yield from decode_and_run(lo, len(todo), workers, done)


def default_workers() -> int:
    """The Ray engine's actors when none are given: one on a machine of 2 cores or fewer, else
    half the cores, at most 4. (The local engine measures instead: :func:`choose_workers`.)"""
    cores = os.cpu_count() or 1
    return 0 if cores <= 2 else min(4, cores // 2)


WORKER_WAIT = 600  # seconds a batch may take in the decode workers before the run stops with a sentence
PROBE_AFTER = 2  # runs of more batches than this time their first images to choose decode workers
PROBE_IMAGES = 32  # decoded here and run through the pool (a whole first batch of 128 photos cost 0.3 s)


def choose_workers(decode_s: float, forward_s: float, cores: int | None = None) -> int:
    """Decode worker processes for the rest of a run, from its first batch measured here: none
    where the pool's forward takes over four times as long as the decode (the workers would take
    cores from it for little), else half the cores (at least 2, at most 4). Measured on 2 cores
    (benchmarks/bench_scoring.py, with batches collated in the workers): 2,000 CIFAR JPEGs, one
    ResNet-20 (forward 1.7x the decode) 1.81 -> 1.63 s with two workers, four ResNets (13x)
    7.57 -> 7.72 s; 500 photos of 1-4 MP, one ResNet (0.15x) 1.74 -> 1.29 s, four (1.3x)
    3.47 -> 2.95 s."""
    if forward_s > 4 * decode_s:
        return 0
    return max(2, min(4, (cores or os.cpu_count() or 1) // 2))  # 2 cores: 2 (one worker was slower than none)


MEMORY_BUDGET = 256 * 2**20  # preprocessed pixels held per chunk
MAX_CHUNK = 2048  # a kill loses at most this many images' work


def chunk_images(pool: Pool, batch_size: int) -> int:
    """Images decoded per chunk: as many as the memory budget holds (all preprocessings), a whole
    number of batches, between one batch and MAX_CHUNK."""
    per_image = sum((1 if pp.grayscale else 3) * pp.size * pp.size * 4 for pp in pool.preprocesses())
    n = min(MAX_CHUNK, MEMORY_BUDGET // max(per_image, 1))
    return max(batch_size, n // batch_size * batch_size)


def _inputs(batches: list[Batch], key: str, want: np.ndarray, batch_size: int) -> list[torch.Tensor]:
    """The chunk's rows of preprocessing ``key`` where ``want``, as the tensors the encoder runs
    over in slices of ``batch_size``: the decoded batches themselves where each is whole and of
    that size (no copy: joining 2,000 CIFAR images' tensors cost 0.03 s of a 1.3 s run, issue 35),
    else one joined tensor."""
    if want.all() and all(len(b.ids) == batch_size for b in batches[:-1]):
        return [b.inputs[key] for b in batches]
    x = batches[0].inputs[key] if len(batches) == 1 else torch.cat([b.inputs[key] for b in batches])
    return [x if want.all() else x[torch.from_numpy(want)]]


def _flush(
    project: Project, pool: Pool, encoders: Sequence[Any], missing: dict[str, set[int]], batches: list[Batch],
    dev: torch.device, batch_size: int, cancel: threading.Event, meter: RateMeter, done: int,
    times: StageTimes,
) -> Generator[Progress, None, int]:
    """One decoded chunk: each encoder over the chunk's images that lack its output (its weights
    stay hot), then every output, image size, hash and decode error in one transaction. A
    cancel stops within one batch and still stores the encoders that finished the chunk."""
    ok = [b for b in batches if len(b.ids)]
    ids = np.concatenate([b.ids for b in ok]) if ok else np.zeros(0, dtype=np.int64)
    finished: list[tuple[Any, np.ndarray, np.ndarray]] = []  # (encoder, ids, outputs)
    try:
        for enc in encoders:
            want = np.isin(ids, np.fromiter(missing[enc.key], dtype=np.int64, count=len(missing[enc.key])))
            if not want.any():
                continue
            parts = []
            for x in _inputs(ok, enc.preprocess.key, want, batch_size):
                if dev.type == "cuda":
                    x = x.pin_memory()  # copies to the GPU overlap the previous batch's compute
                for s in range(0, len(x), batch_size):
                    check_cancel(cancel)  # cancel within one batch
                    with times("forward"):
                        parts.append(run_encoders([enc], {enc.preprocess.key: x[s : s + batch_size]}, dev,
                                                  dev.type == "cuda")[enc.key])
            finished.append((enc, ids[want], np.concatenate(parts)))
            yield meter.record(done, enc.description or enc.key)
    finally:
        with times("store"):
            store_batch(project, pool, [e for b in batches for e in b.errors], finished, ids.tolist(),
                        [w for b in ok for w in b.widths], [h for b in ok for h in b.heights],
                        [h for b in ok for h in b.sha1s])
    done += sum(b.count for b in batches)
    yield meter.record(done)
    return done

"""Scoring on a Ray cluster: the same pool spec and the same per-batch code as the local engine,
run as Ray Data ``map_batches`` over the dataset's files.

* Each actor builds the pool once (weights loaded once per actor), decodes each image once, and
  runs every distinct encoder of the pool on the batch (``scoring.engine.batches.run_encoders``).
* Results stream back to the driver, which commits them to the project's SQLite batch by batch,
  exactly as the local engine does: a run stopped at any point resumes with what is stored, and
  only images still missing are sent to the cluster. (We chose streaming into SQLite over Parquet
  shards plus an import step: one less command, and the project stays the single source of truth.)
* Fitted members (backbone heads, scratch networks) are fitted on the driver after the features
  come back: they need every image's features and label at once, and a logistic head on
  (N, D) features takes seconds; a from-scratch network on the cluster would need the same
  gathered tensors anyway.

Ray is optional (``pip install 'image-triage[ray]'``); nothing else in the product imports it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Generator, Mapping, Sequence
from typing import Any

import numpy as np

from scoring.engine.batches import store_batch
from scoring.errors import ImageTriageError
from scoring.pool.base import Pool
from scoring.progress import Cancelled, Progress, RateMeter

log = logging.getLogger(__name__)


class RayUnavailableError(ImageTriageError, RuntimeError):
    """Ray is not installed or the cluster cannot be reached."""


def _ray() -> Any:
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            "--engine ray needs Ray Data: pip install 'image-triage[ray]' (or pip install 'ray[data]')"
        ) from exc
    return ray


class PoolActor:
    """A Ray actor holding one copy of the pool; called on batches of {id, path}."""

    def __init__(self, specs: Sequence[Mapping[str, Any]], classes: list[str], device: str = "auto", runtime: str = "auto"):
        from scoring.device import pick_device
        from scoring.engine.runtime import prepare
        from scoring.pool.spec import build_pool

        self.pool = build_pool(specs, classes)
        self.device = pick_device(device)
        self.encoders, _ = prepare(self.pool.encoders(), self.device, runtime)  # this node's device decides
        for enc in self.encoders:
            enc.module.to(self.device).eval()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from scoring.engine.batches import decode_item, run_encoders

        pps = {pp.key: pp for pp in self.pool.preprocesses()}
        items = [decode_item(int(i), str(p), list(pps.values())) for i, p in zip(batch["id"], batch["path"], strict=True)]
        ok = [it for it in items if it.tensors is not None]
        out: dict[str, np.ndarray] = {
            "id": np.array([it.image_id for it in items], dtype=np.int64),
            "error": np.array([it.error or "" for it in items], dtype=object),
            "width": np.array([it.width for it in items], dtype=np.int64),
            "height": np.array([it.height for it in items], dtype=np.int64),
            "sha1": np.array([it.sha1 or "" for it in items], dtype=object),
        }
        if ok:
            stacked = {key: pps[key].collate([it.tensors[key] for it in ok]) for key in ok[0].tensors}  # type: ignore[index, union-attr]
            outputs = run_encoders(self.encoders, stacked, self.device, self.device.type == "cuda")
        for enc in self.encoders:
            col = np.zeros((len(items), outputs[enc.key].shape[1] if ok else 1), dtype=np.float32)
            if ok:
                col[[n for n, it in enumerate(items) if it.tensors is not None]] = outputs[enc.key]
            out[f"enc_{enc.key}"] = col
        return out


def infer_with_ray(
    project: Any,
    pool: Pool,
    todo: np.ndarray,
    total: int,
    *,
    address: str | None,
    workers: int,
    gpus_per_worker: float,
    batch_size: int,
    device: str,
    cancel: threading.Event,
    runtime: str = "auto",
    runtimes: dict[str, str] | None = None,
) -> Generator[Progress, None, None]:
    """The engine's ``infer`` stage on Ray; commits to ``project`` as results arrive; each actor
    chooses its encoders' runtime for its own node (``runtimes`` records what was asked)."""
    ray = _ray()
    if not pool.spec:
        raise RayUnavailableError("--engine ray rebuilds the pool on each worker: give it as specs (a pool file or --member)")
    if not ray.is_initialized():
        kw: dict[str, Any] = {"ignore_reinit_error": True, "include_dashboard": False, "log_to_driver": False}
        if address:
            kw["address"] = address
        else:
            kw["num_cpus"] = max(1, workers)
        try:
            ray.init(**kw)
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise RayUnavailableError(f"cannot start or reach Ray at {address or 'a new local instance'}: {exc}") from exc
    if runtimes is not None:
        runtimes.update({enc.key: f"{runtime} (each Ray worker chooses for its node)" for enc in pool.encoders()})
    done0 = total - len(todo)
    meter = RateMeter("infer", total, start_done=done0)
    yield meter.record(done0, f"Ray: {len(todo)} images to score on {workers} actors")
    if len(todo) == 0:
        return
    items = [{"id": int(i), "path": str(project.images.abspath(project.images.image(int(i)).path))} for i in todo]
    ds = ray.data.from_items(items)
    results = ds.map_batches(
        PoolActor,
        fn_constructor_kwargs={"specs": pool.spec, "classes": list(pool.classes), "device": device, "runtime": runtime},
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(size=max(1, workers)),
        num_gpus=gpus_per_worker or None,
        batch_format="numpy",
    )
    done = done0
    for batch in results.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=1):
        if cancel.is_set():
            raise Cancelled()
        ids = batch["id"]
        good = np.array([not e for e in batch["error"]], dtype=bool)
        gid = ids[good]
        outputs = [(enc, gid, np.asarray(batch[f"enc_{enc.key}"])[good]) for enc in pool.encoders()] if good.any() else []
        store_batch(project, pool, [(int(i), str(e)) for i, e in zip(ids[~good], batch["error"][~good], strict=True)],
                    outputs, gid.tolist(), batch["width"][good].tolist(), batch["height"][good].tolist(),
                    [str(s) for s in batch["sha1"][good]])
        done += len(ids)
        yield meter.record(done)

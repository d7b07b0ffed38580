"""How long a scoring run will take here, measured before it starts (issue 22).

Nothing is guessed from a table: each encoder is timed on a batch through the runtime it will
run on (scoring.engine.runtime: ONNX Runtime on a CPU), each fitted member's training step on a batch
of its own input size, the logistic heads on a sample of the features' size; each is scaled by
the number of images, epochs and folds the run will use. The estimate is then corrected by this
machine's earlier runs (their estimate against their actual time, kept in the user's data
folder) and said as a range.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import time
from typing import Any

import numpy as np
import torch

from scoring.io.safeio import read_text
from scoring.io.safewrite import replace_file
from scoring.locations import user_data_dir

log = logging.getLogger(__name__)

DECODE_S = {"small": 0.0008, "large": 0.015}  # per image, measured order (bench_scoring: CIFAR JPEG / 1-4 MP JPEG)
SPREAD = 1.35  # the range said: estimate / SPREAD to estimate x SPREAD
HISTORY = "timings.jsonl"
KEEP = 50  # lines kept in the history file
LEARN_FROM = 60.0  # seconds: shorter runs are mostly fixed costs and say little about a long one


def _timed(fn: Any, repeats: int = 3, warm: int = 2) -> float:
    """Seconds of one call of ``fn``: the best of ``repeats`` after ``warm`` calls (the first
    calls pay one-time costs: thread pools, lazy kernels, the optimiser's state)."""
    for _ in range(warm):
        fn()
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def encoder_rate(module: torch.nn.Module, pp: Any, device: torch.device, batch: int = 32) -> float:
    """Images per second of ``module`` (a torch module or scoring.engine.runtime.OrtModule) at ``pp``'s size."""
    x = torch.randn(batch, 1 if pp.grayscale else 3, pp.size, pp.size, device=device)
    module = module.to(device).eval()
    with torch.inference_mode():
        return batch / max(_timed(lambda: module(x)), 1e-6)


def _step_seconds(net: torch.nn.Module, c: int, size: int, k: int, batch: int, device: torch.device) -> float:
    """Seconds of one training step (forward, backward, AdamW) of ``net`` on a batch."""
    net = net.to(device).train()
    x = torch.randn(batch, c, size, size, device=device)
    y = torch.randint(0, k, (batch,), device=device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)

    def step() -> None:
        loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    return _timed(step)


def _head_seconds(n_train: int, dim: int, k: int) -> float:
    """Seconds of one logistic head on ``n_train`` rows of ``dim`` features: timed on up to 1,000
    rows, scaled linearly (L-BFGS's iterations are full passes)."""
    from scoring.pool.crossfit import fit_logreg

    m = max(k * 2, min(n_train, 1000))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((m, dim)).astype(np.float32)
    y = np.arange(m) % k
    return _timed(lambda: fit_logreg(x, y, k, 0), repeats=1, warm=1) * n_train / m


def estimate(specs: list[dict[str, Any]], facts: Any, device: torch.device, runtime: str = "auto") -> dict[str, float]:
    """Seconds per stage of scoring ``facts.n_images`` images with ``specs`` here: "decode",
    "forward <encoder>", "fit <member>"."""
    from scoring.engine.runtime import prepare
    from scoring.errors import ImageTriageError
    from scoring.pool.finetune import FineTuneMember
    from scoring.pool.members import HeadMember
    from scoring.pool.models.registry import get_model
    from scoring.pool.scratch import ScratchMember, default_epochs
    from scoring.pool.spec import build_pool

    n = facts.n_images
    parts = {"decode": n * DECODE_S["small" if facts.small else "large"]}
    classes = list(facts.classes) or ["a", "b"]
    try:
        pool = build_pool([dict(s) for s in specs], classes)
    except ImageTriageError as exc:
        log.warning("could not build the pool to time it (%s); the estimate covers decoding only", exc)
        return parts
    encoders, _ = prepare([e for e in pool.encoders() if any(True for _ in e.module.parameters())], device, runtime)
    for enc in encoders:
        parts[f"forward {enc.description or enc.key}"] = n / encoder_rate(enc.module, enc.preprocess, device)
    dims: dict[str, int] = {}
    n_train = int(0.8 * n) if facts.labelled else 0
    for m in pool.members:
        folds = int(getattr(m, "folds", 1))
        if not facts.labelled or not m.fitted:
            continue
        pp = m.encoder.preprocess
        c = 1 if pp.grayscale else 3
        if isinstance(m, ScratchMember):
            net = get_model(m.arch, num_classes=len(classes), in_channels=c, size=pp.size)
            epochs = int(m.epochs or default_epochs(n))
            steps = epochs * max(1, -(-n_train // m.batch_size))
            parts[f"fit {m.name}"] = folds * steps * _step_seconds(net, c, pp.size, len(classes), m.batch_size, device)
        elif isinstance(m, HeadMember):
            if m.encoder.key not in dims:
                with torch.inference_mode():
                    x = torch.zeros(1, c, pp.size, pp.size)
                    dims[m.encoder.key] = int(m.encoder.module.to("cpu").eval()(x).shape[1])
            parts[f"fit {m.name}"] = folds * _head_seconds(max(2, int(m.fraction * n_train)), dims[m.encoder.key],
                                                           len(classes))
        elif isinstance(m, FineTuneMember):
            rate = encoder_rate(m.start, pp, device) / 3  # a training step: about three forward passes
            parts[f"fit {m.name}"] = m.epochs_for(n_train) * n_train * m.folds / rate
    return parts


def _history_path() -> Any:
    return user_data_dir() / HISTORY


def _usable(row: dict[str, Any]) -> bool:
    """A history row whose estimate and actual are finite positive numbers (another program, a
    hand edit or a bad disk may have written anything: "abc", {}, Infinity)."""
    vals = [row.get("estimate"), row.get("actual")]
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v < float("inf") for v in vals)


def history() -> list[dict[str, Any]]:
    """This machine's earlier (estimate, actual) pairs, newest last; empty when none are kept."""
    path = _history_path()
    if not path.is_file():
        return []
    out = []
    try:
        for line in read_text(path, what="timing history", max_bytes=1 << 20).splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get("host") == socket.gethostname() and _usable(row):
                out.append(row)
    except (OSError, ValueError) as exc:
        log.info("timing history not read (%s)", exc)
    return out


def record(estimate_s: float, actual_s: float, n_images: int) -> None:
    """Keep this run's estimate and actual time (the next estimate here learns from them); a
    failure to write is logged, never raised: the run's results matter more."""
    path = _history_path()
    try:
        rows = [json.dumps(r) for r in history()][-(KEEP - 1):]
        rows.append(json.dumps({"host": socket.gethostname(), "estimate": round(estimate_s, 1),
                                "actual": round(actual_s, 1), "images": n_images, "time": round(time.time())}))
        path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(path, ("\n".join(rows) + "\n").encode(), 0o600)
    except OSError as exc:
        log.info("timing history not written (%s)", exc)


def record_run(db: Any, summary: dict[str, Any], measured: float, said: list[float]) -> None:
    """Keep a finished run's estimate beside its actual time: in the run's record (``runs()``)
    and in this machine's history, which the next estimate here is corrected by."""
    from scoring.store import Project

    with Project.open(db) as p:
        p.runs.note_run(summary["run_id"], estimate_s=said, measured_s=round(measured, 1), actual_s=summary["seconds"])
    record(measured, float(summary["seconds"]), int(summary.get("scored") or 0))


def calibrate(seconds: float, past: list[dict[str, Any]] | None = None) -> tuple[float, tuple[float, float], str]:
    """(corrected seconds, (low, high), a note) from the measured ``seconds`` and the earlier
    runs (the median of the actual / estimate ratios of the last five that took a minute or
    more, clipped to 1/3..3)."""
    past = history() if past is None else past
    ratios = [float(r["actual"]) / float(r["estimate"]) for r in past
              if isinstance(r, dict) and _usable(r) and float(r.get("estimate") or 0) >= LEARN_FROM / 2
              and float(r.get("actual") or 0) >= LEARN_FROM][-5:]
    factor = float(np.clip(np.median(ratios), 1 / 3, 3)) if ratios else 1.0
    note = f", x{factor:.2f} from {len(ratios)} earlier run{'s' if len(ratios) != 1 else ''} here" if ratios else ""
    mid = seconds * factor
    return mid, (mid / SPREAD, mid * SPREAD), note

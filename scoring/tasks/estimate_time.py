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
import socket
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from scoring.io.safeio import read_text
from scoring.io.safewrite import replace_file
from scoring.locations import user_data_dir

if TYPE_CHECKING:
    from scoring.engine.inference import RunSummary

log = logging.getLogger(__name__)

DECODE_S = {"small": 0.0008, "large": 0.015}  # per image, measured order (bench_scoring: CIFAR JPEG / 1-4 MP JPEG)
SPREAD = 1.35  # the range said: estimate / SPREAD to estimate x SPREAD
HISTORY = "timings.jsonl"
KEEP = 50  # lines kept in the history file
LEARN_FROM = 60.0  # seconds: shorter runs are mostly fixed costs and say little about a long one
MIN_RUNS = 2  # earlier runs like this one before they correct the estimate


def estimate(specs: Sequence[Mapping[str, Any]], facts: Any, device: torch.device, runtime: str = "auto") -> dict[str, float]:
    """Seconds per stage of scoring ``facts.n_images`` images with ``specs`` here: "decode",
    "forward <encoder>", "fit <member>" (each fitted member's kind times its own fit:
    ``MemberKind.fit_seconds``; a kind without one adds no fit time)."""
    from scoring.engine.runtime import prepare
    from scoring.errors import ImageTriageError
    from scoring.pool.kinds import get_kind
    from scoring.pool.spec import build_pool
    from scoring.pool.timing import FitFacts, encoder_rate

    n = facts.n_images
    parts = {"decode": n * DECODE_S["small" if facts.small else "large"]}
    classes = list(facts.classes) or ["a", "b"]
    try:
        pool = build_pool([dict(s) for s in specs], classes)
    except ImageTriageError as exc:
        log.warning("could not build the pool to time it (%s); the estimate covers decoding only", exc)
        return parts
    t0 = time.perf_counter()
    encoders, _ = prepare([e for e in pool.encoders() if any(True for _ in e.module.parameters())], device, runtime)
    parts["runtime"] = time.perf_counter() - t0  # the run sets its encoders up the same way (an export is cached)
    for enc in encoders:
        parts[f"forward {enc.description or enc.key}"] = n / encoder_rate(enc.module, enc.preprocess, device)
    facts_here = FitFacts(n_images=n, n_train=int(0.8 * n) if facts.labelled else 0, n_classes=len(classes),
                          device=device)
    for m in pool.members:
        fit_seconds = get_kind(m.kind).fit_seconds
        if facts.labelled and m.fitted and fit_seconds is not None:  # the member's kind knows its fit
            parts[f"fit {m.name}"] = fit_seconds(m, facts_here)
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


def record_run(db: Any, summary: RunSummary, measured: float, said: list[float]) -> None:
    """Keep a finished run's estimate beside its actual time: in the run's record (``runs()``)
    and in this machine's history, which the next estimate here is corrected by."""
    from scoring.store import Project

    with Project.open(db) as p:
        p.runs.note_run(summary.run_id, estimate_s=said, measured_s=round(measured, 1), actual_s=summary.seconds)
    record(measured, summary.seconds, summary.scored)


def _similar(row: dict[str, Any], n_images: int | None) -> bool:
    """Whether an earlier run scored about as many images (within 4x): fixed costs weigh less
    in a large run, so a ratio learnt at 1,000 images says little at 200 or 10,000."""
    images = row.get("images")
    if n_images is None or not isinstance(images, int) or isinstance(images, bool) or images <= 0:
        return n_images is None
    return n_images / 4 <= images <= 4 * n_images


def calibrate(seconds: float, past: list[dict[str, Any]] | None = None,
              n_images: int | None = None) -> tuple[float, tuple[float, float], str]:
    """(corrected seconds, (low, high), a note) from the measured ``seconds`` and the earlier
    runs: the median of what the last five that took a minute or more (and, given ``n_images``,
    scored within 4x as many images) say this run will take, clipped to 1/3..3x, once there are
    MIN_RUNS of them (one run is an anecdote: four CLI runs of 1,000 images at 1.1-1.5x made a
    200-image estimate 2.2x its actual time). A run said to take about as long as this one (at
    least a third of it) says it by its ratio, actual / estimate; a much shorter one only by its
    offset, actual - estimate: its error is mostly fixed costs, which do not grow with the run
    (runs of 1-2 minutes that took 15-50 s more than said made a 25-minute estimate x1.29, 27 to
    51 minutes for a run that took 26, where the timing alone had said 25:20)."""
    past = history() if past is None else past
    rows = [(float(r["estimate"]), float(r["actual"])) for r in past
            if isinstance(r, dict) and _usable(r) and float(r.get("estimate") or 0) >= LEARN_FROM / 2
            and float(r.get("actual") or 0) >= LEARN_FROM and _similar(r, n_images)][-5:]
    if len(rows) < MIN_RUNS:
        rows = []
    said = [seconds * actual / est if est >= seconds / 3 else seconds + actual - est for est, actual in rows]
    mid = float(np.clip(np.median(said), seconds / 3, seconds * 3)) if said and seconds > 0 else seconds
    factor = mid / seconds if seconds > 0 else 1.0
    note = f", x{factor:.2f} from {len(rows)} earlier run{'s' if len(rows) != 1 else ''} here" if rows else ""
    return mid, (mid / SPREAD, mid * SPREAD), note

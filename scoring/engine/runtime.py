"""Where the frozen encoders run: torch, or ONNX Runtime on a CPU (issue 22).

An encoder with weights (a checkpoint, a backbone, the ImageNet classifier) never trains, so it
can run wherever it runs fastest. On a CPU that is ONNX Runtime: EfficientNet-Lite0 at 160 px ran
4.6x torch eager on this 2-core machine (benchmarks/bench_scoring.py prints both). Each encoder
is exported once with ``torch.onnx.export`` and cached in the user's cache folder under its key
(weights + architecture + preprocessing); every time a session is made, a seeded batch is run
through torch and ONNX Runtime and compared (largest difference within ``TOLERANCE`` of the
largest output), else torch runs it and one line says why. GPU scoring keeps torch (fp16,
channels-last). Encoders without weights (pixels, thumbnails, statistics) stay as they are.

``auto`` (the default): ONNX Runtime on a CPU when it is installed, torch elsewhere; ``onnx``
asks for it (torch, with one line, where it cannot be used); ``torch`` never uses it. The choice
per encoder is returned, printed in the run summary and stored in the run's record.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from scoring.device import RUNTIMES
from scoring.engine.onnx_child import export_in_child
from scoring.io.safeio import read_regular, read_text
from scoring.io.safewrite import replace_file
from scoring.locations import user_cache_dir, user_data_dir
from scoring.pool.base import Encoder

log = logging.getLogger(__name__)

OPSET = 17
TOLERANCE = 1e-4  # largest |torch - onnx| relative to the largest |torch| output
MAX_MODEL_BYTES = 2 * 1024**3
ABANDONED = re.compile(r"^\..+\.onnx\.[0-9a-f]{8}$")  # a half-export's hidden name
NO_WEIGHTS = "-"  # an encoder without weights (pixels, thumbnails, statistics): runs as it is


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def wants_onnx(runtime: str, dev: torch.device) -> bool:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}: use one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        return False
    if dev.type != "cpu":
        if runtime == "onnx":
            log.warning("--runtime onnx: the encoders run on %s with torch (ONNX Runtime is used on a CPU only)", dev)
        return False
    if not available():
        if runtime == "onnx":
            log.warning("--runtime onnx: onnxruntime is not installed (pip install onnxruntime); torch runs the encoders")
        return False
    return True


class OrtModule(torch.nn.Module):
    """An ONNX Runtime session behind torch's module call: (B, C, H, W) float32 on the CPU in,
    (B, D) out. No parameters, so ``.to()`` and ``.eval()`` leave it as it is."""

    def __init__(self, session: Any, name: str):
        super().__init__()
        self.session = session
        self.input = session.get_inputs()[0].name
        self.name = name
        self.provider = "CPUExecutionProvider"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        arr = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        return torch.from_numpy(self.session.run(None, {self.input: arr})[0])


def threads() -> int:
    """ONNX Runtime's threads: every core this process may use (the decode runs between batches
    on a machine of 2 cores, in worker processes on larger ones)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _has_weights(module: torch.nn.Module) -> bool:
    return any(True for _ in module.parameters())


def model_path(enc: Encoder) -> Path:
    return user_cache_dir() / "onnx" / f"{enc.key}-opset{OPSET}.onnx"


def _sample(enc: Encoder, n: int = 4) -> torch.Tensor:
    pp = enc.preprocess
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 1 if pp.grayscale else 3, pp.size, pp.size, generator=g)


def record_path(model: Path) -> Path:
    """Where the hash and size of an exported model are kept: the user's data folder, outside the
    cache, so a cache that was written by something else cannot vouch for itself."""
    return user_data_dir() / "onnx-records" / f"{model.name}.json"


def _record(model: Path, data: bytes) -> None:
    rec = record_path(model)
    rec.parent.mkdir(parents=True, exist_ok=True)
    replace_file(rec, json.dumps({"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}).encode(), 0o600)


def _verified(model: Path) -> bytes | None:
    """The cached model's bytes when they are what we exported (the recorded size and SHA-256);
    None when there is no record or they differ (a truncated, empty or tampered file)."""
    try:
        rec = json.loads(read_text(record_path(model), what="ONNX model record", max_bytes=4096))
        data = read_regular(model, max_bytes=MAX_MODEL_BYTES, what="ONNX model")
    except (OSError, ValueError):
        return None
    if not isinstance(rec, dict) or rec.get("size") != len(data) or rec.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    return data


def _clean_abandoned(folder: Path) -> None:
    """Hidden half-exports that a kill left behind (older than an hour: not another export's)."""
    with contextlib.suppress(OSError):
        for p in folder.iterdir():
            if ABANDONED.match(p.name) and p.is_file() and not p.is_symlink() and time.time() - p.stat().st_mtime > 3600:
                with contextlib.suppress(OSError):
                    p.unlink()


def export_all(encoders: list[Encoder]) -> dict[str, bytes | str]:
    """Per encoder key, its ONNX model's bytes, or why it could not be exported (one line). A
    cached file counts when it matches the record kept when we exported it (size and SHA-256, in
    the user's data folder); the others are exported now, all in one child process
    (scoring.engine.onnx_child: the app's event loop never waits on the exporter), each to a
    hidden name in the cache folder, then renamed, so a kill leaves no half file under the real
    name; a cached file that fails the check (truncated, empty, changed by another program) is
    replaced."""
    out: dict[str, bytes | str] = {}
    todo: list[tuple[Encoder, Path, Path]] = []  # (encoder, real name, hidden name)
    for enc in encoders:
        path = model_path(enc)
        data = _verified(path) if path.is_file() else None
        if data is not None:
            out[enc.key] = data
            continue
        if path.exists() or path.is_symlink():
            log.warning("%s: the cached ONNX model is not the one Image Triage exported (changed, truncated or "
                        "unrecorded); exporting it again", path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _clean_abandoned(path.parent)
        todo.append((enc, path, path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}"))
    if not todo:
        return out
    try:
        said = export_in_child([(enc.module.to("cpu").eval(), _sample(enc, 1), tmp) for enc, _, tmp in todo], OPSET)
        for (enc, path, tmp), why in zip(todo, said, strict=True):
            if why is not None:
                out[enc.key] = why
                continue
            try:
                data = read_regular(tmp, max_bytes=MAX_MODEL_BYTES, what="ONNX model")
                _record(path, data)
                os.replace(tmp, path)
                out[enc.key] = data
            except (OSError, ValueError) as exc:
                out[enc.key] = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
    finally:
        for _, _, tmp in todo:
            with contextlib.suppress(OSError):
                tmp.unlink()
    return out


PROVIDERS = ("OpenVINOExecutionProvider", "CPUExecutionProvider")  # the CPU ones tried, where installed


def session_for(enc: Encoder, model: bytes) -> OrtModule:
    """An ONNX Runtime module for ``enc`` running ``model`` (its exported bytes, checked against
    our record: the session runs exactly these), checked against torch; raises with the reason. Where
    more than one CPU execution provider is installed (OpenVINO's comes with the
    onnxruntime-openvino wheel), each that gives torch's outputs is timed on a batch and the
    fastest is kept: chosen by measurement on this machine, for this network."""
    import onnxruntime as ort

    x = _sample(enc, 8)
    with torch.inference_mode():
        want = enc.module.to("cpu").eval()(x).float().numpy()
    installed = [p for p in PROVIDERS if p in ort.get_available_providers()]
    best: tuple[float, OrtModule] | None = None
    why = "no CPU execution provider"
    for provider in installed:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads()
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            module = OrtModule(ort.InferenceSession(model, opts, providers=[provider]), enc.description or enc.key)
            _check(module(x).numpy(), want)
            seconds = _seconds(module, x) if len(installed) > 1 else 0.0
        except Exception as exc:  # noqa: BLE001 - this provider cannot run it: the next may
            why = f"{provider}: {str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__}"
            continue
        module.provider = provider
        if best is None or seconds < best[0]:
            best = (seconds, module)
    if best is None:
        raise ValueError(why)
    return best[1]


def _check(got: np.ndarray, want: np.ndarray) -> None:
    if got.shape != want.shape:
        raise ValueError(f"outputs of shape {got.shape}, torch's {want.shape}")
    diff = float(np.abs(got - want).max()) / max(float(np.abs(want).max()), 1e-6)
    if not diff <= TOLERANCE:
        raise ValueError(f"outputs differ from torch's by {diff:.1e} (relative; at most {TOLERANCE:.0e} allowed)")


def _seconds(module: OrtModule, x: torch.Tensor) -> float:
    module(x)  # the first call builds the provider's plan
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        module(x)
        best = min(best, time.perf_counter() - t0)
    return best


def prepare(encoders: list[Encoder], dev: torch.device, runtime: str = "auto") -> tuple[list[Encoder], dict[str, str]]:
    """``encoders`` with each frozen one on ONNX Runtime where ``runtime`` and ``dev`` allow and
    its check passes; and per encoder key the runtime it got ("onnx", "torch", or "torch: why")."""
    use = wants_onnx(runtime, dev)
    out: list[Encoder] = []
    chosen: dict[str, str] = {}
    wanted = [e for e in encoders if use and _has_weights(e.module) and not isinstance(e.module, OrtModule)]
    models = export_all(wanted) if wanted else {}
    for enc in encoders:
        if not _has_weights(enc.module):  # pixels, thumbnails, statistics: nothing to run faster
            out.append(enc)
            chosen[enc.key] = NO_WEIGHTS
            continue
        if not use or isinstance(enc.module, OrtModule):
            out.append(enc)
            chosen[enc.key] = "onnx" if isinstance(enc.module, OrtModule) else "torch"
            continue
        try:
            model = models[enc.key]
            if isinstance(model, str):
                raise ValueError(model)
            module = session_for(enc, model)
            out.append(replace(enc, module=module))
            chosen[enc.key] = "onnx" if module.provider == "CPUExecutionProvider" else f"onnx ({module.provider})"
        except Exception as exc:  # noqa: BLE001 - any failure to export or check: torch runs it, said in one line
            why = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            log.warning("ONNX Runtime not used for %s (%s); torch runs it", enc.description or enc.key, why)
            out.append(enc)
            chosen[enc.key] = f"torch: {why}"
    return out, chosen


def summary(chosen: dict[str, str]) -> str:
    """One phrase for the run summary: "onnx (2 encoders)", "torch", "onnx 1, torch 1"."""
    kinds = [v.split(":")[0].split(" (")[0] for v in chosen.values() if v != NO_WEIGHTS]
    if not kinds:
        return "torch"
    counts = {k: kinds.count(k) for k in dict.fromkeys(kinds)}
    return ", ".join(f"{k} {n}" for k, n in counts.items()) if len(counts) > 1 else kinds[0]

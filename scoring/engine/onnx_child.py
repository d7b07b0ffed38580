"""The ONNX export, run in a child process (issue 30).

``torch.onnx.export`` holds the interpreter lock for long stretches: importing ``onnx`` (its
``ml_dtypes`` extension: 693 ms in one call here) and tracing EfficientNet-Lite0 (757 ms). In the
app that stops the window's event loop for up to 848 ms during the first scoring on a machine
(measured with ``benchmarks/bench_stalls.py`` and a fresh cache). In a child process neither
touches the app; the exporter's own crash cannot take the app down either, and its imports
(onnx, torch._dynamo: hundreds of MB) never load into the long-lived process. The child costs
its own torch and onnx imports (about 4 s here) once per pool per machine: exports are cached.

The parent writes each module to a private temporary folder it has just made (``torch.save``,
or ``torch.jit.save`` for TorchScript), runs ``python -m scoring.engine.onnx_child FOLDER`` once
for all of them, with the parent's import path and a timeout, and reads back the exported files
and, per module, the reason in one line where one failed. The child reads only that folder.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from scoring.io.safeio import read_regular, read_text
from scoring.io.safewrite import replace_file, write_new

MAX_BYTES = 2 * 1024**3
TIMEOUT_S = 600.0  # a large network's export on a slow CPU; never an unbounded wait


def export_in_child(jobs: Sequence[tuple[torch.nn.Module, torch.Tensor, Path]], opset: int,
                    timeout: float = TIMEOUT_S) -> list[str | None]:
    """Export each ``(module, sample, dest)``: ``module`` traced on ``sample`` to the ONNX file
    ``dest``, all in one child process (one torch import for a pool's encoders). Returns, per
    job, None when ``dest`` was written, else the reason in one line."""
    out: list[str | None] = [None] * len(jobs)
    with tempfile.TemporaryDirectory(prefix="image-triage-export-") as tmp:
        folder = Path(tmp)
        spec = []
        for i, (module, sample, _) in enumerate(jobs):
            scripted = isinstance(module, torch.jit.ScriptModule)
            try:
                if scripted:
                    torch.jit.save(module, str(folder / f"module{i}.pt"))
                else:
                    torch.save(module, folder / f"module{i}.pt")
            except Exception as exc:  # noqa: BLE001 - not picklable: that encoder stays on torch
                out[i] = f"the network cannot be handed to the exporter process ({_line(exc)})"
                continue
            torch.save(sample, folder / f"sample{i}.pt")
            spec.append({"index": i, "scripted": scripted})
        if not spec:
            return out
        write_new(folder / "job.json", json.dumps({"opset": opset, "jobs": spec}).encode())
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        try:
            done = subprocess.run([sys.executable, "-m", "scoring.engine.onnx_child", str(folder)], env=env,
                                  capture_output=True, text=True, timeout=timeout, check=False)
            said = [ln for ln in (done.stderr or "").splitlines() if ln.strip()]
            why = said[-1] if said else f"the exporter process ended with code {done.returncode}"
        except subprocess.TimeoutExpired:
            why = f"the ONNX export took over {timeout:.0f} s and was stopped"
        results = _results(folder)
        for job in spec:
            i = job["index"]
            if (folder / f"model{i}.onnx").is_file() and results.get(str(i)) is None and str(i) in results:
                os.replace(folder / f"model{i}.onnx", jobs[i][2])
            else:
                out[i] = results.get(str(i)) or why
    return out


def _line(exc: BaseException) -> str:
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def _results(folder: Path) -> dict[str, str | None]:
    try:
        got = json.loads(read_text(folder / "results.json", what="exporter results", max_bytes=2**20))
    except (OSError, ValueError):
        return {}
    return got if isinstance(got, dict) else {}


def _main(folder: Path) -> None:
    job = json.loads(read_text(folder / "job.json", what="exporter job", max_bytes=2**20))
    results: dict[str, str | None] = {}
    for spec in job["jobs"]:
        i = int(spec["index"])
        try:
            # Our own file, written a moment ago into a folder only this user can open (mkdtemp):
            # the parent pickled the module it already runs, so loading it runs nothing new.
            data = read_regular(folder / f"module{i}.pt", max_bytes=MAX_BYTES, what="network")
            if spec["scripted"]:
                module = torch.jit.load(io.BytesIO(data))
            else:
                module = torch.load(io.BytesIO(data), weights_only=False)
            sample = torch.load(io.BytesIO(read_regular(folder / f"sample{i}.pt", max_bytes=MAX_BYTES, what="sample")),
                                weights_only=True)
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
                torch.onnx.export(module.eval(), (sample,), str(folder / f"model{i}.onnx"), input_names=["input"],
                                  output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
                                  opset_version=int(job["opset"]), dynamo=False)
            results[str(i)] = None
        except Exception as exc:  # noqa: BLE001 - this one stays on torch; the next may export
            results[str(i)] = _line(exc)
        replace_file(folder / "results.json", json.dumps(results).encode(), 0o600)


if __name__ == "__main__":
    try:
        _main(Path(sys.argv[1]))
    except Exception as exc:  # noqa: BLE001 - one line for the parent to show
        print(_line(exc), file=sys.stderr)
        sys.exit(1)

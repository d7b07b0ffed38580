"""Issue 21: benchmarks/gpu_check.sh runs; here its CPU path on a tiny set (the GPU run is manual)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.mark.skipif(not (SHARED / "data" / "cifar10-test").exists(), reason="needs ../shared (CIFAR JPEGs, ResNets)")
def test_the_gpu_check_runs_on_the_cpu_on_a_tiny_set() -> None:
    env = {**os.environ, "TINY": "1", "PY": str(ROOT / ".venv" / "bin" / "python")}
    if not Path(env["PY"]).exists():
        import sys

        env["PY"] = sys.executable
    out = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh")], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    for step in ("== device:", "== 1. engine", "resnet20-ft:", "effnet-lite0-ft:", "automatic pool --thorough:", "== done"):
        assert step in out.stdout, (step, out.stdout[-2000:])

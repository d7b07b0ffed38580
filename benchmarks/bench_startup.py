"""Benchmark: the app's start-up to the first image, on a project of 100,000 images (synthetic,
as bench_gui builds it), in a fresh interpreter as a user starts it: the review window as it is
(no torch, torchvision or ONNX Runtime imported: issue 31), beside the same start with torch
imported first, as the window did before. Wall time from the process's start to the first
image drawn in the detail pane, median of ``--repeats`` interleaved runs.

Usage: python benchmarks/bench_startup.py [--images 100000] [--repeats 3]   (QT_QPA_PLATFORM=offscreen is fine)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, sys, time
PRELOAD
from PySide6.QtCore import QCoreApplication, QSettings
from gui.app import _app
from gui.main_window import MainWindow

app = _app()
win = MainWindow(QSettings(sys.argv[2], QSettings.Format.IniFormat))
win.resize(1366, 768)
win.show()
win.open_project(sys.argv[1], ask_resume=False)
end = time.monotonic() + 120
while time.monotonic() < end:
    QCoreApplication.processEvents()
    pix = win.detail.image.pixmap()
    if pix is not None and not pix.isNull():
        break
    time.sleep(0.002)
print(json.dumps({"shown": pix is not None and not pix.isNull(), "torch": "torch" in sys.modules,
                  "onnxruntime": "onnxruntime" in sys.modules}), flush=True)
"""


def once(db: Path, ini: Path, preload: str) -> tuple[float, dict[str, bool]]:
    env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"), "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CHILD.replace("PRELOAD", preload), str(db), str(ini)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False)
    took = time.perf_counter() - t0
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        sys.exit(done.stderr[-2000:])
    return took, json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from benchmarks.bench_gui import build

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        db = build(Path(tmp), args.images)
        print(f"built a synthetic project of {args.images:,} images in {time.perf_counter() - t0:.1f}s")
        runs: dict[str, list[float]] = {"as it is": [], "torch imported first (before issue 31)": []}
        facts: dict[str, dict[str, bool]] = {}
        for _ in range(args.repeats):
            for name, preload in (("as it is", ""), ("torch imported first (before issue 31)", "import torch")):
                took, got = once(db, Path(tmp) / "s.ini", preload)
                if not got["shown"]:
                    sys.exit(f"{name}: no image was shown within 120 s")
                runs[name].append(took)
                facts[name] = got
    now, before = (statistics.median(v) for v in runs.values())
    for name, v in runs.items():
        print(f"{name:<40} start to the first image: median {statistics.median(v):5.2f} s "
              f"({', '.join(f'{x:.2f}' for x in v)}); torch imported: {facts[name]['torch']}, "
              f"onnxruntime imported: {facts[name]['onnxruntime']}")
    print(f"ratio as it is / before: {now / before:.2f}")


if __name__ == "__main__":
    main()

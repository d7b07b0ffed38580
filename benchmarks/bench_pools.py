"""Each shared CIFAR-10 ResNet as shipped, with a cross-fitted head, and fine-tuned in 5 folds.

Prints, per network, top-1 against the folder labels of the CIFAR-10 test JPEGs and the seconds
each took on this machine (one member per scoring run, so each time is that member's own).
Needs ../shared (the developers' data); ``--limit N`` takes the first N images per class.

    python benchmarks/bench_pools.py [--limit 200] [--depths 20 32] [--epochs 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.engine.inference import score_project  # noqa: E402
from scoring.pool.spec import CIFAR10_CLASSES, cifar_resnet_pool_specs  # noqa: E402
from scoring.progress import drain
from scoring.store import Project, project_for  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def subset(limit: int | None, out: Path) -> Path:
    """An ImageFolder of links to the first ``limit`` images per class (all when None)."""
    src = SHARED / "data" / "cifar10-test"
    if limit is None:
        return src
    for c in CIFAR10_CLASSES:
        (out / c).mkdir(parents=True, exist_ok=True)
        for f in sorted((src / c).iterdir())[:limit]:
            (out / c / f.name).symlink_to(f)
    return out


def top1(db: Path, fp: str) -> float:
    with Project.open(db) as p:
        ids = p.images.scorable_ids()
        probs = p.cache.get_probs([fp], ids)[0]
        return float((probs.argmax(1) == p.images.given_labels(ids)).mean())


def score_one(data: Path, work: Path, spec: dict, tag: str) -> tuple[float, float]:
    db = project_for(data, work / f"{tag}.triage.db", follow_symlinks=True)
    t0 = time.perf_counter()
    summary = drain(score_project(db, [spec], workers=0))
    seconds = time.perf_counter() - t0
    with Project.open(db) as p:
        fp = p.runs.active_members()[0]["fingerprint"]
    assert summary.status == "done", summary
    return top1(db, fp), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="images per class (default: all 1,000)")
    ap.add_argument("--depths", type=int, nargs="*", default=[20, 32, 44, 56])
    ap.add_argument("--epochs", type=int, default=4)
    args = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"needs {SHARED} (the developers' shared data)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = subset(args.limit, work / "data")
        n = sum(1 for _ in data.rglob("*.jpg"))
        print(f"CIFAR-10 test JPEGs: {n} images; {os.cpu_count()} CPU cores; one member per run", flush=True)
        print(f"{'network':>9} | {'shipped':>15} | {'cross-fitted head':>17} | {'fine-tuned (5 folds)':>22}", flush=True)
        rows = []
        for spec in cifar_resnet_pool_specs(SHARED / "models" / "cifar10-resnet"):
            depth = int(spec["arch"].removeprefix("cifar_resnet"))
            if depth not in args.depths:
                continue
            shipped = score_one(data, work, spec, f"c{depth}")
            head = score_one(data, work, {**spec, "kind": "backbone", "fractions": [1.0], "seeds": [0]}, f"b{depth}")
            tuned = score_one(data, work, {**spec, "kind": "finetune", "epochs": args.epochs}, f"f{depth}")
            rows.append((shipped[0], head[0], tuned[0]))
            print(f"{spec['name']:>9} | {shipped[0]:.3f} {shipped[1]:6.0f} s | {head[0]:.3f} {head[1]:9.0f} s | "
                  f"{tuned[0]:.3f} {tuned[1]:14.0f} s", flush=True)
        mean = np.mean(rows, axis=0)
        print(f"{'mean':>9} | {mean[0]:.3f}          | {mean[1]:.3f}             | {mean[2]:.3f}", flush=True)


if __name__ == "__main__":
    main()

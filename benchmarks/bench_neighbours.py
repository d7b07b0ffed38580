"""Benchmark: the neighbour evidence at scale - memory of the index and time per query.

Synthetic float16 features (D = 512, ten classes) at 100,000 and 1,000,000 images; the query is
what the detail pane asks for each image: the 6 nearest within its label and within another.
Prints build time, index memory, and the median / worst query time of 50 queries.

    python benchmarks/bench_neighbours.py [--sizes 100000,1000000] [--dim 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.neighbours import NeighbourIndex  # noqa: E402


class _NoEdits:
    """Stands in for a project whose edit log is empty (the index asks only that)."""

    def last_edit_id(self) -> int:
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'images':>9} | {'build s':>7} | {'index MB':>8} | {'query ms median':>15} | {'worst':>6}")
    for n in (int(s) for s in args.sizes.split(",")):
        feats = rng.standard_normal((n, args.dim), dtype=np.float32).astype(np.float16)
        labels = rng.integers(0, 10, n)
        t0 = time.perf_counter()
        index = NeighbourIndex.from_features(np.arange(1, n + 1), feats, labels, ["unreviewed"] * n, "synthetic", 0)
        build = time.perf_counter() - t0
        project = _NoEdits()
        times = []
        for q in rng.choice(n, 50, replace=False):
            t = time.perf_counter()
            index.near(project, int(q) + 1, int(labels[q]))  # type: ignore[arg-type]
            index.near(project, int(q) + 1, int((labels[q] + 1) % 10))  # type: ignore[arg-type]
            times.append((time.perf_counter() - t) * 1000)
        print(f"{n:>9,} | {build:>7.2f} | {index.feats.nbytes / 2**20:>8.0f} | {np.median(times):>15.1f} | {max(times):>6.1f}")
        del feats, index


if __name__ == "__main__":
    main()

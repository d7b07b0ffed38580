"""Benchmark: the neighbour evidence at scale - memory of the index and time per query.

Synthetic float16 features (D = 512, ten classes) at 100,000 and 1,000,000 images; the query is
what the detail pane asks for each image: the 6 nearest within its label and within another.
Prints build time, index memory, and the median / worst query time of 50 queries; then the
scoring run's neighbour pass over the same index (issue 20): each image's 10 nearest (faiss: exact
below 50,000 images, HNSW above), the votes, the fitted weight, neighbour_agreement and
label_issue, and the outlier check's class-centre cosines, with the seconds of each step.
The features are clustered as a trained pool's are: 100 modes per class in a 32-dimensional
space, projected to D dimensions, plus noise (uniform random features are the worst case for the
graph search, and unlike any pool's); the recall of the graph search against exact search is
printed for 2,000 images.

    python benchmarks/bench_neighbours.py [--sizes 100000,1000000] [--dim 512]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.evidence import (
    image_issues,
    label_evidence,  # noqa: E402
)
from scoring.evidence.neighbours import NeighbourIndex  # noqa: E402


class _NoEdits:
    """Stands in for a project whose edit log is empty (the index asks only that)."""

    def last_edit_id(self) -> int:
        return 0


def clustered(rng: np.random.Generator, n: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(labels (n,), float16 features (n, dim)): 10 classes of 100 modes each (see the module text)."""
    modes = rng.standard_normal((1000, 32), dtype=np.float32) * 2
    project = rng.standard_normal((32, dim), dtype=np.float32)
    mode = rng.integers(0, 1000, n)
    feats = np.empty((n, dim), dtype=np.float16)
    for s in range(0, n, 100_000):
        m = mode[s : s + 100_000]
        z = modes[m] + rng.standard_normal((len(m), 32), dtype=np.float32)
        feats[s : s + 100_000] = z @ project + 0.5 * rng.standard_normal((len(m), dim), dtype=np.float32)
    return mode // 100, feats


def evidence(index: NeighbourIndex, rng: np.random.Generator) -> None:
    """The scoring run's neighbour pass over ``index`` (see score_pass.write_label_evidence),
    timed step by step; the pool's mean is a stand-in that is right on 80 % of the images."""
    n = len(index.ids)
    labels = index.labels
    mean = np.full((n, 10), 0.02)
    guess = np.where(rng.random(n) < 0.8, labels, rng.integers(0, 10, n))
    mean[np.arange(n), guess] = 0.82
    steps = {}
    t = time.perf_counter()
    sims, rows = label_evidence.nearest(index.feats)
    steps["nearest"] = time.perf_counter() - t
    t = time.perf_counter()
    v = label_evidence.votes(sims, rows, labels, 10)
    weight = label_evidence.stack_weight(mean, v, labels, 4)
    agreement, _, _ = label_evidence.scores(mean, v, labels, weight, 4)
    steps["votes and scores"] = time.perf_counter() - t
    t = time.perf_counter()
    image_issues.centre_cosines(index.feats, labels)
    steps["class centres"] = time.perf_counter() - t
    agree = float((v.argmax(1) == labels).mean())
    import faiss

    probe = rng.choice(n, 2000, replace=False)
    exact = faiss.IndexFlatIP(index.feats.shape[1])
    exact.add(index.feats)
    _, truth = exact.search(index.feats[probe], label_evidence.K + 1)
    recall = np.mean([len(set(rows[p]) & (set(truth[r]) - {p})) / label_evidence.K for r, p in enumerate(probe)])
    print(f"  neighbour pass: {sum(steps.values()):.1f} s ("
          + ", ".join(f"{k} {s:.1f} s" for k, s in steps.items())
          + f"); recall of the 10 nearest vs exact {recall:.3f}; the neighbours' vote matches the label on "
          f"{agree:.1%}, weight {weight:g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--dim", type=int, default=512)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'images':>9} | {'build s':>7} | {'index MB':>8} | {'query ms median':>15} | {'worst':>6}")
    for n in (int(s) for s in args.sizes.split(",")):
        labels, feats = clustered(rng, n, args.dim)
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
        evidence(index, rng)
        del feats, index


if __name__ == "__main__":
    main()

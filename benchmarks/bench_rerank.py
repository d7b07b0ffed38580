"""Benchmark: does a queue that learns from the annotator find more label errors in the same
review budget than a static one?

On a copy of the shared CIFAR-10 test JPEGs (a CSV manifest over the same files, so nothing is
copied) with a share of labels flipped to the class the clean pool finds most confusable with
the true one, a simulated annotator reviews the top 2 % of the queue (sorted by normalised
margin, a label-aware score) and answers with the true label:

  static     - the queue's order after the first scoring, reviewed top down;
  re-ranked  - reviewed 20 at a time; after each 20 the product's `rerank` refits the pool's
               cross-fitted heads on the corrected labels, rescores and re-ranks the rest.

Prints flips found by each, the flips the budget could hold at most, and the time per re-rank.
The pool: the shipped ResNets cut at the penultimate layer, logistic heads 5-fold cross-fitted.

Usage: python benchmarks/bench_rerank.py [--share 0.05] [--budget 0.02] [--batch 20]
         [--depths 20,56] [--mode confusable|random] [--seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import csv
import shutil
import time
from pathlib import Path

import numpy as np
from bench_label_errors import flip  # the same planted flips as that benchmark

from scoring.engine.inference import score_project
from scoring.io.formats import open_dataset
from scoring.pool.spec import cifar_resnet_pool_specs
from scoring.progress import drain
from scoring.store import Project, QueueFilter, project_for
from scoring.tasks.rerank import rerank

SHARED = Path(__file__).resolve().parents[2] / "shared"


def review(p: Project, ids: np.ndarray, truth: dict[int, int]) -> int:
    """The simulated annotator: the true label for each image; returns the flips found."""
    found = 0
    for i in ids:
        i = int(i)
        if p.images.image(i).given_label != truth[i]:
            p.edits.relabel(i, truth[i])
            found += 1
        else:
            p.edits.keep(i)
    return found


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--budget", type=float, default=0.02)
    ap.add_argument("--batch", type=int, default=20)
    ap.add_argument("--depths", default="20,56")
    ap.add_argument("--mode", default="confusable", choices=["confusable", "random"])
    ap.add_argument("--sort", default="margin")
    ap.add_argument("--seed", type=int, default=0, help="which images are flipped")
    ap.add_argument("--work", default="/tmp/bench-rerank")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = SHARED / "data" / "cifar10-test"
    specs = [s for s in cifar_resnet_pool_specs(SHARED / "models" / "cifar10-resnet", kind="backbone")
             if s["arch"].removeprefix("cifar_resnet") in args.depths.split(",")]

    t0 = time.perf_counter()
    clean_db = project_for(data, work / "clean.triage.db")
    drain(score_project(clean_db, specs, workers=0, batch_size=256))
    with Project.open(clean_db) as p:
        ids = p.images.scorable_ids()
        paths, clean = p.images.paths_of(ids), p.images.given_labels(ids)
        fps = [m["fingerprint"] for m in p.runs.active_members()]
        mean = p.cache.get_probs(fps, ids).mean(0)
        classes = p.classes
    print(f"clean pool ({len(fps)} heads on {len(specs)} backbones): top-1 {(mean.argmax(1) == clean).mean():.3f} "
          f"on {len(ids):,} images ({time.perf_counter() - t0:.0f} s)")

    noisy, _ = flip(clean, mean, args.share, args.mode, seed=args.seed)
    n_flips = int((noisy != clean).sum())
    manifest = work / f"noisy-{args.mode}-{args.seed}.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label"])
        for path, lab in zip(paths, noisy, strict=True):
            w.writerow([str(data / path), classes[lab]])
    db = work / f"noisy-{args.mode}-{args.seed}.triage.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    Project.create(db, open_dataset(manifest)).close()  # WAL files are checkpointed on close
    t1 = time.perf_counter()
    drain(score_project(db, specs, workers=0, batch_size=256))
    print(f"noisy project: {n_flips} {args.mode} flips ({args.share:.0%}), scored in {time.perf_counter() - t1:.0f} s")

    with Project.open(db) as p:
        nids = p.images.scorable_ids()
        by_path = dict(zip(p.images.paths_of(nids), (int(i) for i in nids), strict=True))
        truth = {by_path[str(data / path)]: int(c) for path, c in zip(paths, clean, strict=True)}
        budget = round(args.budget * len(nids))
        order = p.queue.ranked_ids(QueueFilter(status="unreviewed"), args.sort)[:budget]
        static = sum(p.images.image(int(i)).given_label != truth[int(i)] for i in order)
    print(f"budget: {budget} images ({args.budget:.0%}), sorted by {args.sort}")
    print(f"  {'static queue:':<28} {static} flips found ({static / budget:.1%} of reviews)")

    fresh = work / "fresh.triage.db"
    shutil.copy(db, fresh)  # scored, no decisions: each condition starts from it
    for prune in (False, True):
        shutil.copy(fresh, db)
        found, seconds = 0, []
        for _ in range(0, budget, args.batch):
            with Project.open(db) as p:
                nxt = p.queue.ranked_ids(QueueFilter(status="unreviewed"), args.sort)
                found += review(p, nxt[: args.batch], truth)
                done = p.queue.stats()["reviewed"]
            if done >= budget:
                break
            t = time.perf_counter()
            out = drain(rerank(db, args.sort, prune=prune))
            seconds.append(time.perf_counter() - t)
        name = "re-ranked, suspects pruned" if prune else "re-ranked"
        print(f"  {name + ':':<28} {found} flips found ({found / budget:.1%} of reviews), {found / max(static, 1):.3f}x static; "
              f"{len(seconds)} re-ranks, median {np.median(seconds):.1f} s each")
        print(f"    last: {out.line()}")
    print(f"  (flips planted: {n_flips}; at most {min(budget, n_flips)} fit the budget)")


if __name__ == "__main__":
    main()

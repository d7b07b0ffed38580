"""What each member of the automatic pool adds to finding label errors, and what it costs (issue 33).

On the shared CIFAR-10 test JPEGs (default all 10,000) scored by the automatic pool, with 5 % of
the labels flipped (at random, and to the class the clean pool finds most confusable), every
member is refitted on the noisy labels as a user's would be, timed, and the label view's default
score (label issue, as the product computes it) is ranked for the whole pool and for the pool
without each group of members (the four heads; the CNN), and for the pool with each candidate
member added or swapped in (``--candidates``: a cheaper CNN). Prints per pool: the fit seconds,
the consensus top-1 against the clean labels, and the label issue's AUROC, average precision and
planted flips among the first 100 and the first 1 %.

    python benchmarks/bench_members.py [--n 10000] [--work DIR] [--candidates cnn-e8,cnn-e4]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_label_errors import SHARED, auroc, flip, neighbour_votes, scored, with_label_issue  # noqa: E402
from bench_peers import average_precision  # noqa: E402

from scoring.device import pick_device  # noqa: E402
from scoring.io.formats import open_dataset  # noqa: E402
from scoring.pool.spec import build_pool  # noqa: E402
from scoring.tasks.autopool import auto_pool  # noqa: E402


def group(m) -> str:  # type: ignore[no-untyped-def]
    return {"backbone": "heads", "scratch": str(m.spec["arch"]).replace("small_", "").replace("tiny_", "")}.get(m.kind, m.kind)


def candidate(name: str, cnn: dict) -> dict:  # type: ignore[type-arg]
    """``cnn-e8``: the automatic pool's CNN at 8 epochs (``-fN``: N folds, ``-sN``: N seeds)."""
    spec = {**cnn, "name": name}
    for part in name.split("-")[1:]:
        if part.startswith("e"):
            spec["epochs"] = int(part[1:])
        elif part.startswith("f"):
            spec["folds"] = int(part[1:])
        elif part.startswith("s"):
            spec["seeds"] = list(range(int(part[1:])))
    return spec


def line(title: str, probs: np.ndarray, noisy: np.ndarray, clean: np.ndarray, flipped: np.ndarray, seconds: float,
         label_issue) -> None:  # type: ignore[no-untyped-def]
    s = label_issue(probs, noisy)
    order = np.argsort(-s, kind="stable")
    one = max(1, len(s) // 100)
    print(f"    {title:<34} {seconds:7.0f} s {(probs.mean(0).argmax(1) == clean).mean():9.3f} {auroc(s, flipped):7.3f} "
          f"{average_precision(s, flipped):6.3f} {int(flipped[order[:100]].sum()):9d} {int(flipped[order[:one]].sum()):8d}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--work", default="/tmp/bench-members")
    ap.add_argument("--candidates", default="cnn-e8", help="extra members: cnn-eE[-fF][-sS], the CNN at E epochs, F folds, S seeds")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = SHARED / "data" / "cifar10-test"
    if args.n < 10_000:
        from bench_label_errors import subset

        data = subset(work / f"cifar-{args.n}", data, args.n // 10)
    choice = auto_pool(open_dataset(data), pick_device("auto"))
    project, pool = scored(work / f"cifar-{args.n}.triage.db", data, [dict(s) for s in choice.specs], 1)
    ids = project.images.scorable_ids()
    clean_labels = project.images.given_labels(ids)
    cnn = next(dict(s) for s in choice.specs if s.kind == "scratch")
    extra = {c: build_pool([candidate(c, cnn)], project.classes).members for c in args.candidates.split(",") if c}
    label_issue = with_label_issue(neighbour_votes(project, ids))["label_issue (default)"]
    clean = project.cache.get_probs([m.fingerprint for m in pool.members], ids).mean(0)
    for mode in ("random", "confusable"):
        noisy, flipped = flip(clean_labels, clean, args.share, mode)
        fitted, took = {}, {}
        for m in [*pool.members, *(m for ms in extra.values() for m in ms)]:
            kept = work / f"fit-{m.fingerprint}-{mode}-{args.share}-{len(ids)}.npz"  # a member's refit, for the next run
            if not kept.exists():
                t0 = time.perf_counter()
                np.savez(kept, probs=m.fit_predict(project.cache.get_features(m.encoder.key, ids), noisy),
                         seconds=time.perf_counter() - t0)
            with np.load(kept) as z:
                fitted[m.name], took[m.name] = z["probs"], float(z["seconds"])
        print(f"\n  CIFAR-10, {len(ids):,} images, {flipped.sum()} {mode} flips, members refitted on the noisy labels")
        print(f"    {'pool':<34} {'fit':>9} {'consensus':>9} {'AUROC':>7} {'AP':>6} {'first 100':>9} {'first 1%':>8}")
        base = list(pool.members)
        pools = {"the automatic pool": base}
        for g in sorted({group(m) for m in base}):
            pools[f"without the {g}"] = [m for m in base if group(m) != g]
        for c, ms in extra.items():
            pools[f"with {c} ({len(ms)} seed{'s' * (len(ms) > 1)}) for the CNN"] = [*(b for b in base if group(b) != "cnn"), *ms]
        for title, members in pools.items():
            if members:
                line(title, np.stack([fitted[m.name] for m in members]), noisy, clean_labels, flipped,
                     sum(took[m.name] for m in members), label_issue)
    project.close()


if __name__ == "__main__":
    main()

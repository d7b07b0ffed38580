"""Benchmark: how well each score finds label errors, for each kind of pool.

On copies of real datasets where a known share of labels is flipped (at random, and to the
class the clean pool finds most confusable), prints for each pool kind and each score the
AUROC of separating flipped from clean images and the number of flipped images among the
100 that score worst. Also prints each pool's out-of-sample top-1 accuracy on the clean labels.

Pools (all through the product's own engine and members):
  checkpoint - the four CIFAR-10 ResNets as trained classifiers (on ../shared CIFAR-10 test)
  backbone   - the same four cut at the penultimate layer, logistic heads 5-fold cross-fitted
  scratch    - small networks trained from scratch, 5-fold cross-fitted (on ../shared MNIST test)
  finetune   - the four ResNets fine-tuned whole in 5 folds (CIFAR-10; slow on a CPU)
  auto       - the automatic pool `image-triage score DATASET` chooses (CIFAR-10)
Fitted pools are refitted on the noisy labels, as a user's would be.

Usage: python benchmarks/bench_label_errors.py [--share 0.05] [--work DIR] [--kinds checkpoint,backbone,scratch]
         [--depths 20,32,44,56]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scoring import metrics as M
from scoring.engine.inference import score_project
from scoring.io.datasets import open_dataset
from scoring.pool.spec import build_pool, cifar_resnet_pool_specs, default_scratch_specs
from scoring.progress import drain
from scoring.store import Project

SHARED = Path(__file__).resolve().parents[2] / "shared"
SCORES = {
    "C-perplexity": lambda p, y: M.confusion_perplexity(p),
    "X-perplexity": M.x_perplexity,
    "mutual information": lambda p, y: M.mutual_information(p),
    "1 - self-confidence": lambda p, y: 1 - M.self_confidence(p, y),
    "-normalised margin": lambda p, y: -M.normalized_margin(p, y),
    "label_error (blend)": M.label_error_score,
}


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Mann-Whitney AUROC with average ranks for ties."""
    order = np.argsort(score, kind="mergesort")
    ranks = np.empty(len(score))
    sorted_scores = score[order]
    i = 0
    while i < len(score):
        j = i
        while j + 1 < len(score) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def flip(labels: np.ndarray, mean_probs: np.ndarray, share: float, mode: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, k = mean_probs.shape
    idx = rng.choice(n, size=round(share * n), replace=False)
    noisy = labels.copy()
    if mode == "random":
        noisy[idx] = (labels[idx] + rng.integers(1, k, len(idx))) % k
    else:  # the class the clean pool finds most confusable with the true one
        p = mean_probs[idx].copy()
        p[np.arange(len(idx)), labels[idx]] = -1
        noisy[idx] = p.argmax(1)
    flipped = np.zeros(n, bool)
    flipped[idx] = True
    return noisy, flipped


def scored(db: Path, data: Path, specs: list[dict], workers: int) -> tuple[Project, object]:
    if not db.exists():
        Project.create(db, open_dataset(data)).close()
    t0 = time.perf_counter()
    summary = drain(score_project(db, specs, workers=workers, batch_size=256))
    print(f"  scored {summary.get('scored')} images in {time.perf_counter() - t0:.1f}s (cached results reused)")
    p = Project.open(db)
    return p, build_pool(specs, p.classes)


def neighbour_votes(project: Project, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(sims, rows) of each image's nearest images in the project's neighbour embedding."""
    from scoring.evidence.label_evidence import nearest
    from scoring.evidence.neighbours import NeighbourIndex

    emb = project.cache.embedding()
    if emb is None:
        return None
    feats = project.cache.get_features(emb[0], ids).astype(np.float32)
    index = NeighbourIndex.from_features(ids, feats, np.zeros(len(ids), int), ["ok"] * len(ids), emb[1], 0)
    unit = index.feats[np.argsort(np.argsort(index.ids))]  # back to the order of ids
    return nearest(unit)


def with_label_issue(near: tuple[np.ndarray, np.ndarray] | None) -> dict:  # type: ignore[type-arg]
    """SCORES plus the label view's default, label_issue, computed as the product does."""
    from scoring.evidence import label_evidence as LE

    def label_issue(p: np.ndarray, y: np.ndarray) -> np.ndarray:
        if near is None:
            return -M.normalized_margin(p, y)
        v = LE.votes(near[0], near[1], y, p.shape[2])
        w = LE.stack_weight(p.mean(0), v, y, len(p))
        print(f"      (label_issue: the neighbours count for {w:g} members)")
        return LE.scores(p.mean(0), v, y, w, len(p))[1]

    return {**SCORES, "label_issue (default)": label_issue}


def report(kind: str, probs_by_condition: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
           scores: dict | None = None) -> None:  # type: ignore[type-arg]
    from scoring.tasks.estimate import estimated_errors

    for cond, (probs, noisy, flipped) in probs_by_condition.items():
        print(f"\n  {kind}, {cond} flips ({flipped.sum()} of {len(flipped)} labels):")
        est = estimated_errors(probs.mean(axis=0), noisy)
        cal = estimated_errors(probs.mean(axis=0), noisy, calibrated=True)
        print(f"    confident-joint estimate of label errors: {est:.0f} (planted {flipped.sum()}, "
              f"{(est - flipped.sum()) / flipped.sum():+.0%}; the original labels hold some errors too); "
              f"calibrated rows: {cal:.0f} ({(cal - flipped.sum()) / flipped.sum():+.0%})")
        two = len(noisy) // 50
        print(f"    {'score':<22} {'AUROC':>6} {'flipped in top 100':>19} {'in top 2 %':>11}")
        for name, fn in (scores or SCORES).items():
            s = np.nan_to_num(fn(probs, noisy), nan=-np.inf)
            order = np.argsort(-s, kind="stable")
            print(f"    {name:<22} {auroc(s, flipped):6.3f} {int(flipped[order[:100]].sum()):>19} {int(flipped[order[:two]].sum()):>11}")


def evaluate(kind: str, project: Project, pool, share: float) -> None:  # type: ignore[no-untyped-def]
    ids = project.images.scorable_ids()
    labels = project.images.given_labels(ids)
    fps = [m.fingerprint for m in pool.members]
    clean = project.cache.get_probs(fps, ids)
    accs = [(clean[i].argmax(1) == labels).mean() for i in range(len(fps))]
    print(f"  clean-label out-of-sample top-1: members {', '.join(f'{a:.3f}' for a in accs)}; "
          f"mean {np.mean(accs):.3f}; pool mean {(clean.mean(0).argmax(1) == labels).mean():.3f}")
    conditions = {}
    for mode in ("random", "confusable"):
        noisy, flipped = flip(labels, clean.mean(0), share, mode)
        if any(m.fitted for m in pool.members):
            t0 = time.perf_counter()
            probs = np.stack([
                m.fit_predict(project.cache.get_features(m.encoder.key, ids), noisy) for m in pool.members
            ])
            print(f"  refitted {len(pool.members)} members on {mode}-noisy labels in {time.perf_counter() - t0:.1f}s")
        else:
            probs = clean
        conditions[mode] = (probs, noisy, flipped)
    report(kind, conditions, with_label_issue(neighbour_votes(project, ids)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--work", default="/tmp/bench-label-errors")
    ap.add_argument("--kinds", default="checkpoint,backbone,scratch")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--depths", default="20,32,44,56", help="which CIFAR ResNets (the fine-tuned pool takes minutes each)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    cifar, mnist = SHARED / "data" / "cifar10-test", SHARED / "data" / "mnist-test"
    models = SHARED / "models" / "cifar10-resnet"
    depths = args.depths.split(",")

    def resnets(kind: str = "checkpoint") -> list[dict]:
        return [s for s in cifar_resnet_pool_specs(models, kind=kind) if s["arch"].removeprefix("cifar_resnet") in depths]

    for kind in args.kinds.split(","):
        print(f"\n== {kind} pool ==")
        if kind == "checkpoint":
            project, pool = scored(work / "cifar.triage.db", cifar, resnets(), args.workers)
        elif kind == "backbone":
            project, pool = scored(work / "cifar.triage.db", cifar, resnets("backbone"), args.workers)
        elif kind == "finetune":
            specs = [{**s, "kind": "finetune", "epochs": 4} for s in resnets()]
            project, pool = scored(work / "cifar.triage.db", cifar, specs, args.workers)
        elif kind == "auto":
            from scoring.device import pick_device
            from scoring.tasks.autopool import auto_pool

            choice = auto_pool(open_dataset(cifar), pick_device("auto"))
            print("  " + "\n  ".join(choice.reasons))
            project, pool = scored(work / "cifar.triage.db", cifar, choice.specs, args.workers)
        else:
            project, pool = scored(work / "mnist.triage.db", mnist, default_scratch_specs(10_000), args.workers)
        evaluate(kind, project, pool, args.share)
        project.close()


if __name__ == "__main__":
    main()

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

With --sorts, compares the label view's candidate default sorts instead (issue 36): per set and
per kind of planted flip (random; confusable: to the class the clean pool finds most like the
true one; boundary: among the fifth of images with the smallest clean margin, to the runner-up;
doubted: drawn in proportion to the clean pool's doubt of the true class, to the runner-up), the
flips each sort puts in the first 100 rows and the first 1 %, the pool refitted on the noisy labels.

Usage: python benchmarks/bench_label_errors.py [--share 0.05] [--work DIR] [--kinds checkpoint,backbone,scratch]
         [--depths 20,32,44,56]
       python benchmarks/bench_label_errors.py --sorts cifar-resnet-heads,cifar-auto-heads,mnist-auto-heads,mnist-2000-scratch --share 0.02
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scoring import metrics as M
from scoring.engine.inference import score_project
from scoring.io.formats import open_dataset
from scoring.pool.base import Pool
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
    if mode == "mixed":  # a quarter of each kind below, as real errors come: slips and look-alikes
        noisy, flipped = labels.copy(), np.zeros(len(labels), bool)
        for j, kind in enumerate(FLIPS[:4]):
            nz, fz = flip(labels, mean_probs, share / 4, kind, seed + 1 + j)
            new = fz & ~flipped
            noisy[new], flipped = nz[new], flipped | new
        return noisy, flipped
    rng = np.random.default_rng(seed)
    n, k = mean_probs.shape
    idx = rng.choice(n, size=round(share * n), replace=False)
    noisy = labels.copy()
    if mode in ("boundary", "doubted"):  # images the clean pool is unsure of, not a uniform draw
        p = mean_probs[np.arange(n), labels]
        other = mean_probs.copy()
        other[np.arange(n), labels] = -1
        if mode == "boundary":  # the least certain fifth by margin: what people call ambiguous
            pool = np.argsort(p - other.max(1), kind="stable")[: max(5 * round(share * n), 1)]
            idx = rng.choice(pool, size=round(share * n), replace=False)
        else:  # drawn in proportion to the pool's doubt of the true class
            w = np.clip(1 - p, 1e-6, None)
            idx = rng.choice(n, size=round(share * n), replace=False, p=w / w.sum())
    if mode == "random":
        noisy[idx] = (labels[idx] + rng.integers(1, k, len(idx))) % k
    else:  # the class the clean pool finds most confusable with the true one
        p = mean_probs[idx].copy()
        p[np.arange(len(idx)), labels[idx]] = -1
        noisy[idx] = p.argmax(1)
    flipped = np.zeros(n, bool)
    flipped[idx] = True
    return noisy, flipped


def scored(db: Path, data: Path, specs: list[dict], workers: int) -> tuple[Project, Pool]:
    if not db.exists():
        Project.create(db, open_dataset(data)).close()
    t0 = time.perf_counter()
    summary = drain(score_project(db, specs, workers=workers, batch_size=256))
    print(f"  scored {summary.scored} images in {time.perf_counter() - t0:.1f}s (cached results reused)")
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
        if near is None:  # no neighbour embedding: the product's formula with the votes weighed at zero
            return LE.scores(p.mean(0), np.zeros_like(p[0]), y, 0.0, len(p))[1]
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


FLIPS = ("random", "confusable", "boundary", "doubted", "mixed")


def _neighbour_votes(mean: np.ndarray, y: np.ndarray, near: tuple[np.ndarray, np.ndarray] | None, n_members: int
                     ) -> tuple[np.ndarray, float]:
    """(the neighbours' votes, the members' worth they count for) as the product weighs them; no
    neighbours: flat votes at weight 0."""
    from scoring.evidence import label_evidence as LE

    if near is None:
        return np.full_like(mean, 1.0 / mean.shape[1]), 0.0
    v = LE.votes(near[0], near[1], y, mean.shape[1])
    return v, LE.stack_weight(mean, v, y, n_members)


def candidate_sorts(probs: np.ndarray, y: np.ndarray, near: tuple[np.ndarray, np.ndarray] | None) -> dict[str, np.ndarray]:
    """The label view's default (as the product computes it: the chance the label is wrong under
    the noise model fitted to the labels) beside the sorts it could be: margin, self-confidence,
    the neighbours alone, and fixed blends ``(1 - p_label) + lam * p_best_other`` of the pool's
    mean (lam 1 is the margin's order, 0 self-confidence's; 0.25 was the default before)."""
    from scoring.evidence import label_evidence as LE

    n_members, n, k = probs.shape
    mean, rows = probs.mean(0), np.arange(n)

    def blend(d: np.ndarray, lam: float) -> np.ndarray:
        other = d.copy()
        other[rows, y] = -np.inf
        return (1 - d[rows, y]) + lam * other.max(1)

    v, w = _neighbour_votes(mean, y, near, n_members)
    _, issue, model = LE.scores(mean, v, y, w, n_members)
    FITTED.append(model)
    out = {"label issue (default)": issue,
           "margin": -M.normalized_margin(probs, y),
           "self-confidence": 1 - M.self_confidence(probs, y)}
    mixed = (n_members * mean + w * v) / (n_members + w)
    for lam in (0.25, 0.5):
        out[f"fixed blend, lam {lam}" + (" (before)" if lam == 0.25 else "")] = blend(mixed, lam)
    ranks = [np.argsort(np.argsort(out[key], kind="stable")) for key in ("margin", "self-confidence")]
    out["rank mean: margin, self-conf."] = (ranks[0] + ranks[1]) / 2.0
    if near is not None:
        out["neighbours alone"] = 1 - v[rows, y]
    return out


def after_review(probs: np.ndarray, noisy: np.ndarray, flipped: np.ndarray, truth: np.ndarray,
                 near: tuple[np.ndarray, np.ndarray] | None, reviewed: int = 100) -> dict[str, int]:
    """The first ``reviewed`` rows of the label view decided by the planted truth (each flip
    relabelled to its true class), then the planted flips in the next 100 unreviewed rows by each
    sort: label issue re-fitted with those relabels (as the app's re-rank does), without them, the
    margin and self-confidence."""
    from scoring.evidence import label_evidence as LE

    n_members = probs.shape[0]
    mean = probs.mean(0)
    v, w = _neighbour_votes(mean, noisy, near, n_members)
    _, before, _ = LE.scores(mean, v, noisy, w, n_members)
    order = np.argsort(-before, kind="stable")
    done, rest = order[:reviewed], order[reviewed:]
    fixed = done[flipped[done]]
    _, after, model = LE.scores(mean, v, noisy, w, n_members, (fixed, truth[fixed]))
    FITTED.append(model)
    out = {}
    for name, score in (("label issue, refitted with the relabels", after), ("label issue, without them", before),
                        ("margin", -M.normalized_margin(probs, noisy)), ("self-confidence", 1 - M.self_confidence(probs, noisy))):
        out[name] = int(flipped[rest[np.argsort(-score[rest], kind="stable")[:100]]].sum())
    return out


FITTED: list = []  # label_issue's fitted NoiseModel, per call  # type: ignore[type-arg]


def _fit_words(model) -> str:  # type: ignore[no-untyped-def]
    """The fitted look-alike share and how strongly the labels decided it (issue 36)."""
    return f"{model.look_alike:.0%} ({model.evidence:.1f} nats{'' if model.decided else ', undecided'})"


def confirmed_errors(path: Path, project: Project, ids: np.ndarray) -> np.ndarray:
    """(N,) bool: the images people confirmed as label errors, from a labelerrors.com study file
    (cleanlab/label-errors, mturk/<set>_mturk.json: ``id`` = the original index, the image's file
    name here; confirmed = fewer than 3 of 5 workers chose the given label). Kept outside the
    repository: it is someone else's data."""
    import json
    import re

    rows = json.loads(path.read_text())
    bad = {int(r["id"]) for r in rows if int(r["mturk"]["given"]) < 3}
    index = np.array([int(m.group(1)) if (m := re.search(r"(\d+)\.\w+$", p)) else -1
                      for p in project.images.paths_of(ids)])
    return np.isin(index, sorted(bad))


def sort_sets(work: Path, share: float, names: list[str], seeds: int = 1, flips: tuple[str, ...] = FLIPS,
              confirmed: dict[str, Path] | None = None) -> None:
    """Per set and flip kind, the planted flips each candidate sort puts in the first 100 rows and
    the first 1 %; the pool is refitted on each set of noisy labels, as a user's would be."""
    from scoring.device import pick_device
    from scoring.tasks.autopool import auto_pool

    cifar, mnist = SHARED / "data" / "cifar10-test", SHARED / "data" / "mnist-test"
    models = SHARED / "models" / "cifar10-resnet"
    sets = {
        "cifar-resnet-heads": (cifar, lambda d: cifar_resnet_pool_specs(models, kind="backbone")),
        "cifar-auto-heads": (cifar, lambda d: [s for s in auto_pool(d, pick_device("auto")).specs if s["kind"] == "backbone"]),
        "mnist-auto-heads": (mnist, lambda d: [s for s in auto_pool(d, pick_device("auto")).specs if s["kind"] == "backbone"]),
        "mnist-2000-scratch": (subset(work / "mnist-2000", mnist, 200), lambda d: default_scratch_specs(2000, size=28)),
    }
    for name in names:
        data, specs_of = sets[name]
        print(f"\n== {name} ({share:.0%} of labels flipped, pool refitted on them) ==")
        project, pool = scored(work / f"{name}.triage.db", data, specs_of(open_dataset(data)), 1)
        ids = project.images.scorable_ids()
        labels = project.images.given_labels(ids)
        clean = project.cache.get_probs([m.fingerprint for m in pool.members], ids)
        print(f"  clean-label pool top-1 {(clean.mean(0).argmax(1) == labels).mean():.3f}, {len(ids):,} images")
        near = neighbour_votes(project, ids)
        table: dict[str, list[str]] = {}
        one = max(1, len(ids) // 100)
        feats = {m.encoder.key: project.cache.get_features(m.encoder.key, ids) for m in pool.members}
        columns = list(flips)
        for mode in flips:
            found: dict[str, np.ndarray] = {}
            fitted, refitted, later = [], [], {}
            for seed in range(seeds):
                noisy, flipped = flip(labels, clean.mean(0), share, mode, seed)
                probs = np.stack([m.fit_predict(feats[m.encoder.key], noisy) for m in pool.members])
                for sort, score in candidate_sorts(probs, noisy, near).items():
                    order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
                    found[sort] = found.get(sort, 0) + np.array([flipped[order[:100]].sum(), flipped[order[:one]].sum()])
                fitted.append(FITTED[-1])
                for sort, got in after_review(probs, noisy, flipped, labels, near).items():
                    later[sort] = later.get(sort, 0) + got
                refitted.append(FITTED[-1])
            print(f"  {mode}: label issue fitted " + ", ".join(_fit_words(f) for f in fitted) + " look-alike errors")
            print(f"    after the first 100 rows reviewed ({', '.join(f'{f.corrections} relabels: {_fit_words(f)}' for f in refitted)}), "
                  "flips in the next 100: " + "; ".join(f"{k} {v}" for k, v in later.items()))
            for sort, (top, first) in found.items():
                table.setdefault(sort, []).append(f"{top:>4} /{first:>4}")
        people = (confirmed or {}).get(name.split("-")[0])
        if people is not None:  # the untouched labels, against the errors people confirmed
            truth = confirmed_errors(people, project, ids)
            columns.append(f"people ({truth.sum()})")
            for sort, score in candidate_sorts(clean, labels, near).items():
                order = np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")
                table.setdefault(sort, []).append(f"{int(truth[order[:100]].sum()):>4} /{int(truth[order[:one]].sum()):>4}")
            print(f"  untouched labels: label issue fitted {_fit_words(FITTED[-1])} look-alike errors")
        print(f"  flips found in the first 100 / first 1 % ({one}) rows, of {round(share * len(ids))} planted"
              + (f", summed over {seeds} draws" if seeds > 1 else ""))
        print(f"  {'sort':<30}" + "".join(f"{m:>12}" for m in columns))
        for sort, cells in table.items():
            print(f"  {sort:<30}" + "".join(f"{c:>12}" for c in cells))
        project.close()


def subset(dest: Path, source: Path, per_class: int) -> Path:
    """The first ``per_class`` images of each class of ``source``, copied (a set small enough to refit
    networks trained from scratch four times)."""
    import shutil

    for c in sorted(d for d in source.iterdir() if d.is_dir()):
        (dest / c.name).mkdir(parents=True, exist_ok=True)
        for f in sorted(c.iterdir())[:per_class]:
            if not (dest / c.name / f.name).exists():
                shutil.copyfile(f, dest / c.name / f.name)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--work", default="/tmp/bench-label-errors")
    ap.add_argument("--kinds", default="checkpoint,backbone,scratch")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--depths", default="20,32,44,56", help="which CIFAR ResNets (the fine-tuned pool takes minutes each)")
    ap.add_argument("--flips", default=",".join(FLIPS), help="with --sorts: which kinds of planted flips")
    ap.add_argument("--seeds", type=int, default=1, help="with --sorts: draws of the planted flips, summed")
    ap.add_argument("--confirmed", default="", help="with --sorts: labelerrors.com study files (cleanlab/label-errors "
                    "mturk/cifar10_mturk.json, mnist_mturk.json), comma-separated: adds the untouched labels against "
                    "the errors people confirmed")
    ap.add_argument("--sorts", default="", help="compare the label view's candidate sorts on these sets instead "
                    "(cifar-resnet-heads,cifar-auto-heads,mnist-auto-heads,mnist-2000-scratch; share 0.02 suits)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.sorts:
        confirmed = {Path(f).name.split("_")[0].replace("cifar10", "cifar"): Path(f) for f in args.confirmed.split(",") if f}
        sort_sets(work, args.share, args.sorts.split(","), args.seeds, tuple(args.flips.split(",")), confirmed)
        return
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

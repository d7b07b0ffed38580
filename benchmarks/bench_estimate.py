"""Does the errors-left interval hold the truth? A simulated annotator works down the default
(label) queue, a stretch at a time, relabelling exactly the planted flips and keeping the rest;
at each checkpoint the estimate's 90 % interval is compared with the number of planted flips
still unreviewed. Prints the checkpoints and the coverage (the share of checkpoints whose
interval holds the truth) for:

  demo     the built-in demo (1,797 digits, 3 % flipped), scored with the demo's pool, through
           the product's own `errors_left` on the project as the app shows it
  subset   a CIFAR-10 subset (4 classes x 60, 10 flips, seeded), the automatic pool, the same way
  count    the likely-errors count before review on the untouched CIFAR-10 / MNIST test labels
           and with 5 % planted flips, per pool
  cifar    the 10,000 shared CIFAR-10 test JPEGs with 5 % of labels flipped (at random, and to
           the class the pool finds most confusable), the four ResNets as checkpoints (no refit)
           and as backbones with heads refitted on the noisy labels; the estimate is computed by
           the same function on arrays (the pool held fixed while reviewing)

The truth counts only the planted flips; the original CIFAR labels hold real errors the
simulated annotator keeps, so the CIFAR figures are harder than real use.

    python benchmarks/bench_estimate.py [--sets demo,subset,cifar] [--work DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scoring import metrics as M  # noqa: E402
from scoring.store import Project, QueueFilter  # noqa: E402
from scoring.tasks.estimate import errors_left, left_in_queue, likely_errors  # noqa: E402

Row = tuple[int, int, float, float, float]  # reviewed, truly left, low, estimate, high


def coverage(rows: list[Row]) -> float:
    return float(np.mean([lo <= truly <= hi for _, truly, lo, _, hi in rows]))


def show(title: str, rows: list[Row], every: int = 1) -> None:
    print(f"\n{title}: the interval holds the truth at {coverage(rows):.0%} of {len(rows)} checkpoints")
    for n, (done, truly, lo, est, hi) in enumerate(rows):
        miss = not lo <= truly <= hi
        if miss or n % every == 0:
            print(f"  reviewed {done:>6}  truly left {truly:>5}  estimate {est:>7.0f} ({lo:,.0f}-{hi:,.0f}){'  MISS' if miss else ''}")


def walk_project(db: Path, flipped: set[str], step: int, upto: int) -> list[Row]:
    """Review a scored project down its default queue through the store, as the app does."""
    rows: list[Row] = []
    with Project.open(db) as p:
        sort = "margin" if p.images.labelled() else "c_perplexity"
        done = 0
        while True:
            est = errors_left(p, sort)
            assert est is not None, "no estimate"
            rows.append((done, len(flipped) - est.found, est.low, est.left, est.high))
            if done >= upto:
                return rows
            batch = p.queue.page(QueueFilter(status="unreviewed"), sort=sort, limit=step)
            if not batch:
                return rows
            for r in batch:
                p.edits.remove(r.id) if r.path in flipped else p.edits.keep(r.id)
            done += len(batch)


def walk_arrays(probs: np.ndarray, labels: np.ndarray, planted: np.ndarray, step: int, upto: int) -> list[Row]:
    """The same walk on arrays: (M, N, K) out-of-sample probabilities held fixed, (N,) labels."""
    mean = probs.mean(axis=0)
    n = len(labels)
    p_err = 1.0 - mean[np.arange(n), labels]
    margin = M.normalized_margin(probs, labels)
    order = np.argsort(margin, kind="stable")
    likely, flagged = likely_errors(mean, labels, (probs.argmax(axis=2) != labels[None]).all(axis=0))
    count = likely.count
    reviewed = np.zeros(n, bool)
    rows: list[Row] = []
    for done in range(0, upto + 1, step):
        reviewed[order[:done]] = True
        hit = reviewed & planted
        left, lo, hi, _ = left_in_queue(p_err, margin, flagged, reviewed, hit, p_err[order[done : done + 100]], count)
        rows.append((done, int((planted & ~reviewed).sum()), lo, left, hi))
    return rows


def run_demo(work: Path) -> None:
    from scoring.cli.main import main as cli
    from scoring.pool.spec import demo_specs
    from scoring.tasks.demo import build_demo, flipped_paths

    root = build_demo(work / "demo")
    db = work / "demo.triage.db"
    if not db.exists():
        import json

        spec = work / "demo_pool.json"
        spec.write_text(json.dumps(demo_specs(1797)))
        assert cli(["score", str(root), "--db", str(db), "--pool", str(spec), "-q"]) == 0
    flipped = flipped_paths(work / "demo")
    show(f"demo ({len(flipped)} flips), 20 reviews a checkpoint", walk_project(db, flipped, 20, 3 * len(flipped) + 200), every=3)


def run_subset(work: Path, seeds: list[int]) -> None:
    from bench_first_screen import flipped_subset

    from scoring.cli.main import main as cli

    for seed in seeds:
        data, flipped = flipped_subset(work / f"subset{seed}", ["cat", "deer", "dog", "horse"], 60, 10, seed)
        db = work / f"subset{seed}.triage.db"
        assert cli(["score", str(data), "--db", str(db), "-q"]) == 0
        show(f"CIFAR-10 subset, seed {seed} (240 images, 10 flips), 5 reviews a checkpoint",
             walk_project(db, flipped, 5, 60), every=2)


def run_cifar(work: Path, kinds: list[str]) -> None:
    from bench_label_errors import SHARED, flip, scored

    from scoring.pool.spec import cifar_resnet_pool_specs

    cifar = SHARED / "data" / "cifar10-test"
    for kind in kinds:
        project, pool = scored(work / "cifar.triage.db", cifar, cifar_resnet_pool_specs(SHARED / "models" / "cifar10-resnet", kind=kind), 1)
        ids = project.images.scorable_ids()
        labels = project.images.given_labels(ids)
        fps = [m.fingerprint for m in pool.members]
        clean = project.cache.get_probs(fps, ids)
        for mode in ("random", "confusable"):
            noisy, planted = flip(labels, clean.mean(0), 0.05, mode)
            probs = clean
            if any(m.fitted for m in pool.members):
                probs = np.stack([m.fit_predict(project.cache.get_features(m.encoder.key, ids), noisy) for m in pool.members])
            show(f"CIFAR-10, 10,000 images, {planted.sum()} {mode} flips, the ResNets as {kind}s, 100 reviews a checkpoint",
                 walk_arrays(probs, noisy, planted, 100, 3000), every=5)
        project.close()


def count_line(name: str, probs: np.ndarray, labels: np.ndarray, planted: int | None = None) -> None:
    le, _ = likely_errors(probs.mean(0), labels, (probs.argmax(axis=2) != labels[None]).all(axis=0))
    truth = "untouched labels" if planted is None else f"{planted} planted"
    print(f"  {name:<44} {truth:>17}: likely errors {le.count:6.0f} (uniform {le.uniform:5.0f}, strong {le.strong:4d}); "
          f"confident joint {le.flagged:5d}; pool disagrees {le.disagree:5d}")


def run_count(work: Path, kinds: list[str]) -> None:
    """The likely-errors count on the untouched CIFAR-10 and MNIST test labels and with 5 %
    planted flips, for each pool (fitted members refitted on the noisy labels)."""
    from bench_label_errors import SHARED, flip, scored

    from scoring.pool.spec import cifar_resnet_pool_specs, default_scratch_specs

    print("\nLikely label errors before review (a re-annotation of the CIFAR-10 test set, CIFAR-10H, finds "
          "about 80-120)")
    cifar, mnist = SHARED / "data" / "cifar10-test", SHARED / "data" / "mnist-test"
    resnets = SHARED / "models" / "cifar10-resnet"
    for kind in kinds:
        if kind == "scratch":
            project, pool = scored(work / "mnist.triage.db", mnist, default_scratch_specs(10_000), 1)
        elif kind == "finetune":
            specs = [{**s, "kind": "finetune", "epochs": 4} for s in cifar_resnet_pool_specs(resnets) if s["arch"].endswith("20")]
            project, pool = scored(work / "cifar.triage.db", cifar, specs, 1)
        elif kind == "auto":
            from scoring.device import pick_device
            from scoring.io.datasets import open_dataset
            from scoring.tasks.autopool import auto_pool

            project, pool = scored(work / "cifar.triage.db", cifar, auto_pool(open_dataset(cifar), pick_device("auto")).specs, 1)
        else:
            project, pool = scored(work / "cifar.triage.db", cifar, cifar_resnet_pool_specs(resnets, kind=kind), 1)
        ids = project.images.scorable_ids()
        labels = project.images.given_labels(ids)
        clean = project.cache.get_probs([m.fingerprint for m in pool.members], ids)
        name = f"{'MNIST' if kind == 'scratch' else 'CIFAR-10'}, {kind} pool"
        count_line(name, clean, labels)
        for mode in ("random", "confusable"):
            noisy, planted = flip(labels, clean.mean(0), 0.05, mode)
            refit = [m for m in pool.members if m.fitted and m.kind != "finetune"]
            probs = np.stack([m.fit_predict(project.cache.get_features(m.encoder.key, ids), noisy) if m in refit else clean[n]
                              for n, m in enumerate(pool.members)])
            count_line(f"{name}, {mode} flips{' (refitted)' if refit else ''}", probs, noisy, int(planted.sum()))
        project.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", default="demo,subset,cifar,count")
    ap.add_argument("--count-kinds", default="checkpoint,backbone,scratch", help="pools for the count (also: finetune, auto: slow)")
    ap.add_argument("--seeds", default="0,1,2", help="subset seeds")
    ap.add_argument("--kinds", default="checkpoint,backbone", help="CIFAR pools")
    ap.add_argument("--work", default=None, help="keep scored projects here (reused on the next run)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-estimate-"))
    work.mkdir(parents=True, exist_ok=True)
    sets = args.sets.split(",")
    if "demo" in sets:
        run_demo(work)
    if "subset" in sets:
        run_subset(work, [int(s) for s in args.seeds.split(",")])
    if "cifar" in sets:
        run_cifar(work, args.kinds.split(","))
    if "count" in sets:
        run_count(work, args.count_kinds.split(","))


if __name__ == "__main__":
    main()

"""Does the errors-left interval hold the truth while the annotator works (issue 29)? A
simulated annotator works down the default (label) queue one image at a time, relabelling
exactly the planted flips and keeping the rest, with a re-rank every 20 decisions as the app
does; the product's own estimate is taken after every decision. Prints, every 10 decisions, the
estimate, its 90 % interval and the truth (the planted flips still unreviewed), then the share
of checkpoints whose interval holds the truth and how often the estimate rose after a fix. Sets:

  review   the built-in demo (1,797 digits, 54 flipped, the demo's pool), and 1,000-image
           subsets of the shared CIFAR-10 and MNIST test sets (100 per class, 40 flips at random
           or to the class people confuse it with, on top of the sets' own label errors, seeded),
           scored by the automatic pool
  replay   the review sets' walks without re-ranks on arrays, the estimate after every decision
           (about a minute for the five once scored: for trying a change of the model)
  count    the likely-errors count before review on the untouched CIFAR-10 / MNIST test labels
           and with 5 % planted flips, per pool
  cifar    the 10,000 shared CIFAR-10 test JPEGs with 5 % of labels flipped (at random, and to
           the class the pool finds most confusable), the four ResNets as checkpoints (no refit)
           and as backbones with heads refitted on the noisy labels; the estimate is computed by
           the same function on arrays (the pool held fixed while reviewing)

The truth counts only the planted flips; the sets' own labels hold real errors the simulated
annotator keeps, so the figures are harder than real use.

    python benchmarks/bench_estimate.py [--sets review,cifar,count] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from scoring import metrics as M  # noqa: E402
from scoring.store import Project, QueueFilter  # noqa: E402
from scoring.tasks.estimate import (  # noqa: E402
    ErrorsLeft,
    _prior,
    errors_left,
    label_doubt,
    left_in_queue,
    likely_errors,
    steady,
)
from scoring.tasks.review import ReviewSession  # noqa: E402
from scoring.vocabulary import LABEL_SORT  # noqa: E402

Row = tuple[int, int, float, float, float]  # reviewed, truly left, low, estimate, high

SHARED = Path(__file__).resolve().parents[2] / "shared"
# the pairs people confuse (and label one as the other), both ways
CONFUSABLE = {
    "cifar10-test": {"cat": "dog", "dog": "cat", "automobile": "truck", "truck": "automobile", "deer": "horse",
                     "horse": "deer", "airplane": "ship", "ship": "airplane", "bird": "airplane", "frog": "cat"},
    "mnist-test": {"4": "9", "9": "4", "3": "5", "5": "3", "7": "1", "1": "7", "8": "3", "2": "7", "6": "0", "0": "6"},
}


@dataclass(frozen=True)
class ReviewSet:
    name: str
    root: Path  # the dataset (an ImageFolder)
    db: Path
    flipped: dict[str, str]  # the planted flips, paths relative to root -> their true class


def planted_subset(dest: Path, source: str, per_class: int, flips: int, mode: str, seed: int) -> tuple[Path, set[str]]:
    """``per_class`` images of each class of a shared test set, with ``flips`` labels moved
    (``random``: to any other class; ``confusable``: to the class people confuse it with), on
    top of the set's own real label errors: (the folder, the planted paths)."""
    src = SHARED / "data" / source
    root = dest / "data"
    picked_file = dest / "planted.json"
    if picked_file.exists():
        return root, set(json.loads(picked_file.read_text()))
    rng = np.random.default_rng(seed)
    classes = sorted(d.name for d in src.iterdir() if d.is_dir())
    files = [(c, f) for c in classes for f in sorted(rng.choice(sorted((src / c).iterdir()), per_class, replace=False))]
    chosen = set(rng.choice(len(files), flips, replace=False).tolist())
    out = set()
    for n, (c, f) in enumerate(files):
        to = c
        if n in chosen:
            others = [k for k in classes if k != c]
            to = CONFUSABLE[source][c] if mode == "confusable" else others[int(rng.integers(0, len(others)))]
        (root / to).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, root / to / f.name)
        if to != c:
            out.add(f"{to}/{f.name}")
    picked_file.write_text(json.dumps(sorted(out)))
    return root, out


def demo_truth(dest: Path, flipped: set[str]) -> dict[str, str]:
    """The demo's flipped paths -> their true class, from its demo_truth.csv."""
    import csv

    with (dest / "demo_truth.csv").open() as fh:
        return {row["path"]: row["true_label"] for row in csv.DictReader(fh) if row["path"] in flipped}


def true_classes(flipped: set[str], source: str) -> dict[str, str]:
    """Planted paths ("to/name") -> the class folder holding ``name`` in the shared source set
    (its file names are the set's own indices, unique across classes)."""
    src = SHARED / "data" / (f"{source}10-test" if source == "cifar" else "mnist-test")
    where = {f.name: c.name for c in src.iterdir() if c.is_dir() for f in c.iterdir()}
    return {path: where[Path(path).name] for path in flipped}


def review_sets(work: Path, names: list[str]) -> list[ReviewSet]:
    """The simulation's datasets: ``demo``; ``cifar-random``, ``cifar-confusable``,
    ``mnist-random``, ``mnist-confusable`` (1,000 images, 40 planted flips, seeded)."""
    from scoring.tasks.demo import build_demo, flipped_paths

    out = []
    for name in names:
        if name == "demo":
            root = build_demo(work / "demo")
            out.append(ReviewSet(name, root, work / "demo.triage.db", demo_truth(work / "demo", flipped_paths(work / "demo"))))
            continue
        source, mode = name.split("-")
        root, flipped = planted_subset(work / name, f"{source}10-test" if source == "cifar" else "mnist-test", 100, 40, mode, 1)
        out.append(ReviewSet(name, root, work / f"{name}.triage.db", true_classes(flipped, source)))
    return out


def score_set(s: ReviewSet) -> None:
    """Score with the pool the product picks (the demo's own pool for the demo), once."""
    from scoring.cli.main import main as cli

    if s.db.exists():
        return
    args = ["score", str(s.root), "--db", str(s.db), "-q"]
    if s.name == "demo":
        from scoring.pool.spec import demo_specs

        spec = s.db.with_suffix(".pool.json")
        spec.write_text(json.dumps([dict(s) for s in demo_specs(1797)]))
        args += ["--pool", str(spec)]
    assert cli(args) == 0, s.name


def coverage(rows: list[Row]) -> float:
    return float(np.mean([lo <= truly <= hi for _, truly, lo, _, hi in rows]))


def show(title: str, rows: list[Row], every: int = 1) -> None:
    print(f"\n{title}: the interval holds the truth at {coverage(rows):.0%} of {len(rows)} checkpoints")
    for n, (done, truly, lo, est, hi) in enumerate(rows):
        miss = not lo <= truly <= hi
        if miss or n % every == 0:
            print(f"  reviewed {done:>6}  truly left {truly:>5}  estimate {est:>7.0f} ({lo:,.0f}-{hi:,.0f}){'  MISS' if miss else ''}")


@dataclass
class Walk:
    rows: list[Row]  # every ``every`` decisions
    fixes: int = 0
    rises: int = 0  # fixes after which the estimate shown rose
    model_rises: int = 0  # fixes after which the model's own mean rose (the app holds it: scoring.tasks.estimate.steady)
    shown_rises: int = 0  # of them, rises of the number the app shows ("about 25": the estimate rounded)
    surprises: int = 0  # of them, fixes of an image the estimate gave less than even odds of a wrong label
    largest_rise: float = 0.0
    reranks: int = 0
    rerank_rises: int = 0  # re-ranks after which the number shown rose
    held: int = 0  # estimates (after every decision and re-rank) whose interval held the truth
    shown: int = 0  # estimates made

    def saw(self, est: ErrorsLeft, truly_left: int) -> None:
        self.shown += 1
        self.held += est.low <= truly_left <= est.high

    def step(self, last: tuple[float, bool, float, float] | None, est: ErrorsLeft, model: float) -> None:
        """After a decision: ``last`` (the estimate shown, a fix?, its next_one, the model's mean) before it."""
        if last is None or not last[1]:
            return
        self.model_rises += model > last[3] + 1e-9
        if est.left > last[0] + 1e-9:
            self.rises += 1
            self.shown_rises += round(est.left) > round(last[0])
            self.surprises += last[2] < 0.5
            self.largest_rise = max(self.largest_rise, est.left - last[0])


def walk_project(db: Path, flipped: dict[str, str], upto: int, every: int = 10, rerank_every: int = 20) -> Walk:
    """Review a scored project down its default queue through the store, one image at a time as
    the app does: each image decided by the planted truth (relabel a flip to its true class, keep
    the rest; until 2026-12-05 the flips were removed, which the estimate now reads as no
    evidence about the label), the
    product's own ``errors_left`` after every decision, a re-rank every ``rerank_every``
    decisions (0: none) as the app does."""
    from scoring.progress import drain
    from scoring.tasks.rerank import rerank

    walk = Walk([])
    with Project.open(db) as p:
        sort = LABEL_SORT if p.images.labelled() else "c_perplexity"
        session = ReviewSession(p, sort)  # the app's owner of what it shows
        done, last = 0, None
        while True:
            model = errors_left(p, sort)
            assert model is not None, "no estimate"
            session.set_estimate(model)
            est = session.estimate
            assert est is not None
            walk.step(last, est, model.left)
            walk.saw(est, len(flipped) - est.found)
            if done % every == 0:
                walk.rows.append((done, len(flipped) - est.found, est.low, est.left, est.high))
            if done >= upto:
                return walk
            if rerank_every and done and done % rerank_every == 0:
                session.reranked()
                drain(rerank(db, sort))
                session.rerank_finished(0.0)
                walk.reranks += 1
                before = est.left
                session.set_estimate(errors_left(p, sort))  # a re-rank is a new estimate, not a fix
                est = session.estimate
                assert est is not None
                walk.rerank_rises += est.left > before + 1e-9
                model = est
                walk.saw(est, len(flipped) - est.found)
            row = p.queue.page(QueueFilter(status="unreviewed"), sort=sort, limit=1)
            if not row:
                return walk
            fix = row[0].path in flipped
            p.edits.relabel(row[0].id, p.classes.index(flipped[row[0].path])) if fix else p.edits.keep(row[0].id)
            walk.fixes += fix
            done += 1
            last = (est.left, fix, est.next_one, model.left)


def show_walk(title: str, walk: Walk, every: int = 4) -> None:
    show(title, walk.rows, every)
    print(f"  after every decision and re-rank: the interval held the truth {walk.held / max(walk.shown, 1):.0%} of {walk.shown} times")
    print(f"  the estimate shown rose after {walk.rises} of {walk.fixes} fixes ({walk.shown_rises} of them in the number shown; "
          f"the largest rise {walk.largest_rise:.1f}; the model's own mean after {walk.model_rises}), "
          f"{walk.surprises} of them after fixing an image it gave less than even odds; {walk.reranks} re-ranks "
          f"({walk.rerank_rises} of them raised it)")


def walk_arrays(probs: np.ndarray, labels: np.ndarray, planted: np.ndarray, step: int, upto: int) -> list[Row]:
    """The same walk on arrays: (M, N, K) out-of-sample probabilities held fixed, (N,) labels."""
    mean = probs.mean(axis=0)
    n = len(labels)
    margin = M.normalized_margin(probs, labels)
    order = np.argsort(margin, kind="stable")
    likely, _ = likely_errors(mean, labels, (probs.argmax(axis=2) != labels[None]).all(axis=0))
    doubt = label_doubt(mean, labels)
    reviewed = np.zeros(n, bool)
    rows: list[Row] = []
    for done in range(0, upto + 1, step):
        reviewed[order[:done]] = True
        tail = left_in_queue(doubt, reviewed, reviewed & planted, likely.count, order[done : done + 100])
        rows.append((done, int((planted & ~reviewed).sum()), tail.low, tail.left, tail.high))
    return rows


def run_review(work: Path, names: list[str], rerank_every: int) -> None:
    """The review simulation (issue 29): each set walked to three times its planted flips plus
    100, the estimate after every decision."""
    for s in review_sets(work, names):
        score_set(s)
        db = s.db.with_suffix(".walk.db")  # the scored project stays unreviewed for the next run
        db.unlink(missing_ok=True)
        shutil.copyfile(s.db, db)
        walk = walk_project(db, s.flipped, 3 * len(s.flipped) + 100, rerank_every=rerank_every)
        show_walk(f"{s.name} ({len(s.flipped)} planted flips on top of the set's own labels), the estimate every 10 decisions",
                  walk)


def replay_walk(db: Path, flipped: dict[str, str], upto: int) -> Walk:
    """The walk of :func:`walk_project` without re-ranks, on arrays: the scored project's pool held
    fixed, its label queue's order, the product's ``left_in_queue`` after every decision. The
    five sets take about a minute where the walk through the store takes ten: for measuring a
    change of the model (issue 29) before the whole walk."""
    with Project.open(db) as p:
        ids = np.array([r[0] for r in p.queue.self_confidences()], dtype=np.int64)
        prior = _prior(p, ids)
        assert prior is not None, "no estimate"
        queue = [r.id for r in p.queue.page(QueueFilter(status="unreviewed"), sort=LABEL_SORT, limit=len(ids))]
        planted = np.array([path in flipped for path in p.images.paths_of(ids)])
    order = np.searchsorted(ids, queue)
    reviewed = np.zeros(len(ids), bool)
    walk, last, shown = Walk([]), None, None
    for done in range(min(upto, len(order)) + 1):
        tail = left_in_queue(prior.doubt, reviewed, reviewed & planted, prior.likely.count, order[done : done + 100])
        truly = int((planted & ~reviewed).sum())
        model = ErrorsLeft(prior.likely.count, done, int((reviewed & planted).sum()), tail.left, tail.low, tail.high,
                           tail.next_100, next_one=tail.next_one)
        shown = est = steady(shown, model)
        walk.step(last, est, model.left)
        walk.saw(est, truly)
        if done % 10 == 0:
            walk.rows.append((done, truly, est.low, est.left, est.high))
        if done < len(order):
            fix = bool(planted[order[done]])
            walk.fixes += fix
            reviewed[order[done]] = True
            last = (est.left, fix, est.next_one, model.left)
    return walk


def run_replay(work: Path, names: list[str]) -> None:
    for s in review_sets(work, names):
        score_set(s)
        show_walk(f"{s.name} replayed without re-ranks ({len(s.flipped)} planted flips), the estimate every 10 decisions",
                  replay_walk(s.db, s.flipped, 3 * len(s.flipped) + 100))


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
            from scoring.io.formats import open_dataset
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
    ap.add_argument("--sets", default="review,cifar,count")
    ap.add_argument("--review", default="demo,cifar-random,cifar-confusable,mnist-random,mnist-confusable",
                    help="the review simulation's sets")
    ap.add_argument("--rerank-every", type=int, default=20, help="re-rank every N decisions in the walk, as the app does (0: never)")
    ap.add_argument("--count-kinds", default="checkpoint,backbone,scratch", help="pools for the count (also: finetune, auto: slow)")
    ap.add_argument("--kinds", default="checkpoint,backbone", help="CIFAR pools")
    ap.add_argument("--work", default=None, help="keep scored projects here (reused on the next run)")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-estimate-"))
    work.mkdir(parents=True, exist_ok=True)
    sets = args.sets.split(",")
    if "review" in sets:
        run_review(work, args.review.split(","), args.rerank_every)
    if "replay" in sets:
        run_replay(work, args.review.split(","))
    if "cifar" in sets:
        run_cifar(work, args.kinds.split(","))
    if "count" in sets:
        run_count(work, args.count_kinds.split(","))


if __name__ == "__main__":
    main()

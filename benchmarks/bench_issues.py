"""The dataset's issues beyond labels, measured: planted faults and untouched data.

Builds, from the shared CIFAR-10 test JPEGs, a set of 2,000 untouched images plus planted faults
made from 540 others (60 of each: Gaussian blur of radius 1, 1.5 and 2.5 px, darkened to 20 %,
overexposed (x2.5 + 60 in every channel, clipped), a constant colour, grey, stretched to 32x96 / 96x32) and 50 MNIST
digits filed under CIFAR classes (outliers); scores it with ResNet-20 as a backbone with a
cross-fitted head (the neighbour embedding is its features), and prints precision and recall per
issue. Then scores the same 2,000 untouched, and 2,000 untouched MNIST digits, and prints the
share flagged per issue (false flags: nothing was planted there; for grey, the images whose
pixels have colour: CIFAR-10 has some truly grey photos).

    python benchmarks/bench_issues.py [--work DIR] [--n 2000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.cli.main import main as cli  # noqa: E402
from scoring.store import Project  # noqa: E402
from scoring.vocabulary import ISSUES  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
PLANTS = {  # planted name -> (issue it should raise, how it is made)
    "blur1.0": ("blurry", lambda im: im.filter(ImageFilter.GaussianBlur(1.0))),
    "blur1.5": ("blurry", lambda im: im.filter(ImageFilter.GaussianBlur(1.5))),
    "blur2.5": ("blurry", lambda im: im.filter(ImageFilter.GaussianBlur(2.5))),
    "dark": ("dark", lambda im: ImageEnhance.Brightness(im).enhance(0.2)),
    "over": ("overexposed", lambda im: Image.eval(im, lambda v: min(255, int(v * 2.5 + 60)))),
    "constant": ("low_information", lambda im: Image.new("RGB", im.size, tuple(int(x) for x in np.asarray(im).reshape(-1, 3).mean(0)))),
    "grey": ("grey", lambda im: im.convert("L").convert("RGB")),
    "stretched": ("odd_size", lambda im: im.resize((32, 96) if random.random() < 0.5 else (96, 32))),
}


def files(name: str) -> list[Path]:
    return sorted(p for p in (SHARED / "data" / name).rglob("*") if p.is_file())


def build(root: Path, n: int, plant: bool, source: str = "cifar10-test") -> dict[str, str]:
    """An ImageFolder at ``root``; returns {relative path: planted kind} of the planted images."""
    rng = random.Random(0)
    random.seed(0)  # the plants' own draws (which way a stretched image goes): the same set every run
    pool = files(source)
    picked = rng.sample(pool, n + (60 * len(PLANTS) if plant else 0))
    planted: dict[str, str] = {}
    for f in picked[:n]:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        (root / f.parent.name / f.name).write_bytes(f.read_bytes())
    if plant:
        for k, f in enumerate(picked[n:]):
            kind = list(PLANTS)[k % len(PLANTS)] if k < 60 * len(PLANTS) else None
            if kind is None:
                break
            im = PLANTS[kind][1](Image.open(f).convert("RGB"))
            rel = f"{f.parent.name}/{kind}_{f.stem}.png"
            im.save(root / rel)
            planted[rel] = kind
        classes = sorted(p.name for p in root.iterdir())
        for k, f in enumerate(rng.sample(files("mnist-test"), 50)):
            rel = f"{rng.choice(classes)}/mnist_{k}_{f.stem}.png"
            Image.open(f).convert("RGB").save(root / rel)
            planted[rel] = "mnist"
    return planted


def no_colour(path: Path) -> bool:
    """The ground truth of "grey", by the pixels, not by the statistic under test: 99 % of
    pixels within 8 grey levels across the channels."""
    a = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    return bool(np.percentile(a.max(axis=2) - a.min(axis=2), 99) <= 8)


def score(root: Path, db: Path) -> float:
    from scoring.pool.spec import cifar_resnet_pool_specs

    spec = [s for s in cifar_resnet_pool_specs(SHARED / "models" / "cifar10-resnet", kind="backbone") if s["arch"].endswith("20")]
    pool = db.with_suffix(".pool.json")
    pool.write_text(json.dumps([dict(s) for s in spec]))
    t0 = time.perf_counter()
    assert cli(["score", str(root), "--db", str(db), "--pool", str(pool), "-q"]) == 0
    return time.perf_counter() - t0


def flagged(db: Path) -> dict[str, set[str]]:
    with Project.open(db) as p:
        ids_by_issue = {name: p.queue.ranked_ids(_filter(name), "id") for name in ISSUES}
        return {name: set(p.images.paths_of(ids)) for name, ids in ids_by_issue.items()}


def _filter(name: str):  # type: ignore[no-untyped-def]
    from scoring.store import QueueFilter

    return QueueFilter(issue=name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=None)
    ap.add_argument("--n", type=int, default=2000)
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-issues-"))
    want = {kind: issue for kind, (issue, _) in PLANTS.items()} | {"mnist": "outlier"}

    planted = build(work / "planted", args.n, True)
    took = score(work / "planted", work / "planted.triage.db")
    found = flagged(work / "planted.triage.db")
    print(f"\n{args.n} CIFAR-10 JPEGs + {len(planted)} planted ({', '.join(f'{k} 60' for k in PLANTS)}, 50 MNIST digits); "
          f"scored in {took:.0f} s")
    print(f"  {'issue':<16} {'precision':>9} {'recall':>7} {'flagged':>8}  planted kinds caught / untouched images flagged")
    grey_truth = {p for p in map(str, (q.relative_to(work / "planted") for q in (work / "planted").rglob("*") if q.is_file()))
                  if no_colour(work / "planted" / p)}
    for issue in ISSUES:
        kinds = [k for k, v in want.items() if v == issue]
        pos = {p for p, k in planted.items() if k in kinds}
        if issue == "grey":  # truly grey: planted, or a source image without colour (MNIST, grey CIFAR photos)
            pos = grey_truth
        got = found[issue]
        tp = len(got & pos)
        prec = tp / len(got) if got else float("nan")
        rec = tp / len(pos) if pos else float("nan")
        by_kind = {k: sum(1 for p in got if planted.get(p) == k) for k in list(PLANTS) + ["mnist"]}
        clean = sum(1 for p in got if p not in planted)
        print(f"  {issue:<16} {prec:9.3f} {rec:7.3f} {len(got):8d}  {by_kind} / {clean}")

    for name, source in (("untouched CIFAR-10", "cifar10-test"), ("untouched MNIST", "mnist-test")):
        root = work / name.replace(" ", "_")
        build(root, args.n, False, source)
        took = score(root, work / f"{root.name}.triage.db")
        found = flagged(work / f"{root.name}.triage.db")
        shares = ", ".join(f"{issue} {len(found[issue]) / args.n:.2%}" for issue in ISSUES)
        false_grey = sum(1 for p in found["grey"] if not no_colour(root / p))
        print(f"\n{name}, {args.n} images (scored in {took:.0f} s): flagged {shares}; "
              f"grey flags without truly grey pixels: {false_grey / args.n:.2%}")


if __name__ == "__main__":
    main()

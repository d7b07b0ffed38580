"""What the annotator's first screen holds: a CIFAR-10 subset (4 classes x 60 by default) with
10 labels flipped (seeded), scored with no pool options (the automatic pool), then
`image-triage queue` with no --sort, as the app opens. Prints how many flips are in the first 20
and 40 rows, for the default sort and for each other sort.

    python benchmarks/bench_first_screen.py [--per-class 60] [--flips 10] [--seed 0]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.cli.main import main as cli  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def flipped_subset(data: Path, classes: list[str], per_class: int, flips: int, seed: int) -> tuple[Path, set[str]]:
    """A CIFAR-10 subset of ``per_class`` images of each class in ``data`` with ``flips`` labels
    moved to another class (seeded): (the folder, the flipped paths relative to it)."""
    src = SHARED / "data" / "cifar10-test"
    if not src.exists():
        sys.exit(f"needs {src}")
    rng = np.random.default_rng(seed)
    files = []
    for c in classes:
        (data / c).mkdir(parents=True)
        picked = sorted(rng.choice(sorted((src / c).iterdir()), per_class, replace=False))
        files += [(c, f) for f in picked]
    flipped = set(rng.choice(len(files), flips, replace=False).tolist())
    out = set()
    for n, (c, f) in enumerate(files):
        to = classes[(classes.index(c) + 1 + int(rng.integers(0, len(classes) - 1))) % len(classes)] if n in flipped else c
        shutil.copyfile(f, data / to / f.name)
        if to != c:
            out.add(f"{to}/{f.name}")
    return data, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", default="cat,deer,dog,horse")
    ap.add_argument("--per-class", type=int, default=60)
    ap.add_argument("--flips", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    classes = args.classes.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        data, flips = flipped_subset(Path(tmp) / "subset", classes, args.per_class, args.flips, args.seed)
        files = [f for f in data.rglob("*") if f.is_file()]
        db = Path(tmp) / "p.triage.db"
        t0 = time.perf_counter()
        assert cli(["score", str(data), "--db", str(db), "-q"]) == 0
        took = time.perf_counter() - t0
        rows = []
        for sort in (None, "margin", "x_perplexity", "self_confidence", "c_perplexity"):
            out = io.StringIO()
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
                cli(["queue", "--db", str(db), "--json", "--limit", "40", *(["--sort", sort] if sort else [])])
            paths = [r["path"] for r in json.loads(out.getvalue())]
            rows.append((sort or "default (no --sort)", sum(p in flips for p in paths[:20]), sum(p in flips for p in paths)))
        print(f"{len(files)} CIFAR-10 images ({', '.join(classes)}), {len(flips)} labels flipped, scored with the "
              f"automatic pool in {took:.0f} s")
        for name, a, b in rows:
            print(f"  {name:<22} flips in the first 20: {a:>2}, in the first 40: {b:>2}")


if __name__ == "__main__":
    main()

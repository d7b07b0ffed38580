"""The built-in demo: a real small dataset available offline, with planted label errors.

The 1,797 handwritten digits of the UCI "Optical Recognition of Handwritten Digits" test set
(Alpaydin & Kaynak 1998, CC BY 4.0; the copy scikit-learn bundles, shipped in
``resources/demo/digits.csv.gz``) are written out as an ImageFolder of 32x32 grey PNGs, and
a fixed, seeded 3 % of their labels are flipped to another digit, so the review queue has real
mistakes to find. The list of flipped images goes beside the dataset (never inside it) in
``demo_truth.csv``.
"""

from __future__ import annotations

import csv
import gzip
import io
import logging
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from scoring.errors import UnsafePathError
from scoring.io.safewrite import clean_leftovers, created_by_us, move_into_place, new_build_folder

log = logging.getLogger(__name__)

FLIP_SHARE = 0.03
SEED = 20260
DEMO_DIRNAME = "digits"
SIDE = 32


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 digits as (N, 8, 8) uint8 in 0..16 and labels (N,) int."""
    raw = resources.files("resources.demo").joinpath("digits.csv.gz").read_bytes()
    table = np.loadtxt(io.TextIOWrapper(gzip.GzipFile(fileobj=io.BytesIO(raw))), delimiter=",")
    pixels = table[:, :64].reshape(-1, 8, 8).astype(np.uint8)
    return pixels, table[:, 64].astype(np.int64)


def default_demo_dir() -> Path:
    """Where ``image-triage demo`` builds the demo: the user's data folder."""
    from scoring.locations import user_data_dir

    return user_data_dir() / "demo"


def build_demo(dest: str | Path | None = None, *, limit: int | None = None) -> Path:
    """Write the demo ImageFolder under ``dest`` (idempotent) and return the dataset root.

    ``limit`` keeps the first N digits (tests). Labels of ``FLIP_SHARE`` of the images are
    flipped with a fixed seed; ``dest/demo_truth.csv`` lists ``path,true_label,given_label``.
    """
    dest = Path(dest) if dest is not None else default_demo_dir()
    root = dest / DEMO_DIRNAME
    truth = dest / "demo_truth.csv"
    if truth.exists() and root.is_dir():
        return root
    pixels, labels = load_digits()
    if limit is not None:
        pixels, labels = pixels[:limit], labels[:limit]
    rng = np.random.default_rng(SEED)
    n = len(labels)
    flip = rng.choice(n, size=max(1, round(FLIP_SHARE * n)), replace=False)
    given = labels.copy()
    given[flip] = (labels[flip] + rng.integers(1, 10, size=len(flip))) % 10
    if root.exists() and not created_by_us(root):
        raise UnsafePathError(
            f"{root} exists and was not made by Image Triage; it is left as it is: give the demo another --dest"
        )
    clean_leftovers(root)
    tmp = new_build_folder(root, "demo")
    for d in range(10):
        (tmp / str(d)).mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        img = Image.fromarray((pixels[i].astype(np.float32) * (255 / 16)).astype(np.uint8), "L")
        img = img.resize((SIDE, SIDE), Image.Resampling.BICUBIC)
        rel = f"{given[i]}/{i:04d}.png"
        img.save(tmp / rel)
        if given[i] != labels[i]:
            rows.append((rel, int(labels[i]), int(given[i])))
    move_into_place(tmp, root)
    with truth.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "true_label", "given_label"])
        w.writerows(rows)
    log.info("demo dataset: %d digits in %s, %d labels flipped", n, root, len(rows))
    return root


def flipped_paths(dest: str | Path | None = None) -> set[str]:
    """Paths (relative to the demo root) whose labels the demo flipped."""
    dest = Path(dest) if dest is not None else default_demo_dir()
    with (dest / "demo_truth.csv").open() as fh:
        return {row["path"] for row in csv.DictReader(fh)}


def demo_project(dest: str | Path | None = None) -> Path:
    """Build the demo (idempotent) and return its project file, created beside it."""
    from scoring.store import project_for

    return project_for(build_demo(dest))

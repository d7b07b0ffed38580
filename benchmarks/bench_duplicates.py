"""Duplicate finding on planted near-duplicates: precision and recall at each threshold.

A copy of N CIFAR-10 test JPEGs (or MNIST PNGs) gets planted duplicates of a random share of its
images: exact copies, JPEG re-encodes at quality 60, and small crops (a 2-pixel border cut and
resized back); a third of them filed under another class (label conflicts). Pairs are verified at
32x32 as the product does (VERIFY_THRESHOLD); the thresholds below are the thumbnails'. The project's
duplicates are then found as a user would (`find_duplicates`), and every pair inside a found
group is checked against the planted pairs: precision = planted pairs among found pairs, recall =
planted pairs found. Natural near-duplicates in the originals count against precision.

    python benchmarks/bench_duplicates.py [--images 2000] [--share 0.1] [--data cifar|mnist] [--graph]
"""

from __future__ import annotations

import argparse
import io
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.progress import drain  # noqa: E402
from scoring.store import Project, project_for  # noqa: E402
from scoring.tasks.duplicates import DEFAULT_THRESHOLD, near_pairs, verifier  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def plant(src: Path, out: Path, n: int, share: float, seed: int = 0) -> set[frozenset[str]]:
    rng = np.random.default_rng(seed)
    classes = sorted(p.name for p in src.iterdir())
    files = [f for c in classes for f in sorted((src / c).iterdir())]
    files = [files[i] for i in sorted(rng.choice(len(files), n, replace=False))]
    for f in files:
        (out / f.parent.name).mkdir(parents=True, exist_ok=True)
        (out / f.parent.name / f.name).write_bytes(f.read_bytes())
    pairs = set()
    for k, i in enumerate(rng.choice(n, round(share * n), replace=False)):
        f = files[i]
        cls = f.parent.name if k % 3 else classes[(classes.index(f.parent.name) + 1) % len(classes)]
        kind = ("copy", "jpeg60", "crop")[k % 3]
        dst = out / cls / f"{kind}-{f.stem}.{'png' if f.suffix == '.png' and kind == 'copy' else 'jpg' if kind != 'copy' else f.suffix[1:]}"
        img = Image.open(f).convert("RGB")
        if kind == "copy":
            dst.write_bytes(f.read_bytes())
        elif kind == "jpeg60":
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=60)
            dst.write_bytes(buf.getvalue())
        else:
            w, h = img.size
            img.crop((2, 2, w - 2, h - 2)).resize((w, h), Image.Resampling.BICUBIC).save(dst, quality=95)
        pairs.add(frozenset({f"{f.parent.name}/{f.name}", f"{cls}/{dst.name}"}))
    return pairs


def scale(n: int) -> None:
    """find_duplicates over ``n`` stored smooth random thumbnails (no image files: the thumbnails
    are what scoring leaves), timed, with the process's peak memory."""
    import resource

    from scoring.io.datasets import Dataset, ImageRecord
    from scoring.tasks.duplicates import THUMB_KEY, find_duplicates

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(data / "seed.png")
        p = Project.create(Path(tmp) / "big.triage.db", Dataset(data, "csv", data / "m.csv", ["a"], [ImageRecord("seed.png", "a")]))
        with p._tx() as c:
            c.execute("DELETE FROM images")
            c.executemany("INSERT INTO images(path, given_label, current_label, status) VALUES (?, 0, 0, 'unreviewed')",
                          ((f"img/{i:07d}.png",) for i in range(n)))
        ids = p.images.scorable_ids()
        for s in range(0, n, 100_000):
            part = ids[s : s + 100_000]
            base = rng.random((len(part), 3, 4, 4), dtype=np.float32)
            th = np.repeat(np.repeat(base, 4, axis=2), 4, axis=3).reshape(len(part), -1)
            p.cache.put_features(THUMB_KEY, part, th + 0.05 * rng.random(th.shape, dtype=np.float32))
        p.close()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        t0 = time.perf_counter()
        groups = drain(find_duplicates(Path(tmp) / "big.triage.db"))
        took = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"{n:,} stored thumbnails: find_duplicates {took:.0f} s ({len(groups)} groups); "
              f"peak memory {peak:.1f} GB (before: {before:.1f} GB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--share", type=float, default=0.1)
    ap.add_argument("--data", default="cifar", choices=["cifar", "mnist"])
    ap.add_argument("--scale", type=int, default=0, metavar="N",
                    help="instead: time find_duplicates on N synthetic stored thumbnails, and its peak memory")
    ap.add_argument("--untouched", action="store_true",
                    help="instead: nothing planted; count the groups found on --images untouched images (or the demo)")
    ap.add_argument("--demo", action="store_true", help="with --untouched: the built-in demo")
    ap.add_argument("--graph", action="store_true",
                    help="search with the HNSW graph used above 50,000 images (instead of the exact search)")
    args = ap.parse_args()
    if args.graph:
        import scoring.tasks.duplicates

        scoring.tasks.duplicates.EXACT_BELOW = 0
    if args.scale:
        scale(args.scale)
        return
    src = SHARED / "data" / ("cifar10-test" if args.data == "cifar" else "mnist-test")
    if args.untouched:
        untouched(src if src.exists() else None, args.images, args.demo)
        return
    if not src.exists():
        sys.exit(f"needs {src}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        planted = plant(src, data, args.images, args.share)
        db = project_for(data, Path(tmp) / "p.triage.db")
        t0 = time.perf_counter()
        from scoring.tasks.duplicates import find_duplicates

        drain(find_duplicates(db))
        seconds = time.perf_counter() - t0
        with Project.open(db) as p:
            ids = p.images.scorable_ids()
            thumbs = p.cache.get_features("thumb16:v1", ids)
            paths = p.images.paths_of(ids)
            sha = p.dupes.sha1s(ids)
            a, b, s = near_pairs(thumbs, 0.90, verifier(p, ids))  # as find_duplicates does, at 0.90
        print(f"{args.data}: {len(ids)} images, {len(planted)} planted near-duplicates "
              f"(exact copies, JPEG q60 re-encodes, 2-px crops; a third relabelled); found in {seconds:.1f} s")
        exact = {frozenset({paths[i], paths[j]}) for i, j in itertools.combinations(range(len(ids)), 2)
                 if sha[i] is not None and sha[i] == sha[j]} if len(ids) <= 5000 else set()
        print(f"{'threshold':>9} | {'precision':>9} | {'recall':>6} | found pairs")
        for t in (0.90, 0.93, 0.95, 0.96, DEFAULT_THRESHOLD, 0.98, 0.99):
            found = {frozenset({paths[i], paths[j]}) for i, j, v in zip(a, b, s, strict=True) if v >= t} | exact
            tp = len(found & planted)
            prec = tp / len(found) if found else 1.0
            mark = "  <- default" if t == DEFAULT_THRESHOLD else ""
            print(f"{t:>9.2f} | {prec:>9.3f} | {tp / len(planted):>6.3f} | {len(found)}{mark}")
        kinds = {"copy": [], "jpeg60": [], "crop": []}
        found_default = {frozenset({paths[i], paths[j]}) for i, j, v in zip(a, b, s, strict=True) if v >= DEFAULT_THRESHOLD} | exact
        for pair in planted:
            name = next(x for x in pair if "-" in x.split("/")[1]).split("/")[1].split("-")[0]
            kinds[name].append(pair in found_default)
        print("recall by kind at the default: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in kinds.items() if v))
        with Project.open(db) as p:  # what the user sees: the stored groups (never chained)
            by_id = dict(zip(ids.tolist(), paths, strict=True))
            in_groups = {frozenset({by_id[i], by_id[j]}) for g in p.dupes.duplicate_groups().values()
                         for i, j in itertools.combinations(g, 2)}
        tp = len(in_groups & planted)
        print(f"stored groups: {len(in_groups)} pairs inside groups, precision {tp / max(len(in_groups), 1):.3f}, "
              f"recall {tp / len(planted):.3f}")


def untouched(src: Path | None, n: int, demo: bool) -> None:
    """Nothing planted: every group found is a false one unless its images are byte-identical.
    Prints the groups, the largest, the pairs of different content, and how long listing the
    stored groups takes (`image-triage duplicates --db` without --search)."""
    import contextlib
    import io as _io
    import shutil

    from scoring.cli.main import main as cli_main
    from scoring.tasks.duplicates import find_duplicates

    with tempfile.TemporaryDirectory() as tmp:
        if demo:
            from scoring.tasks.demo import build_demo

            data, name = build_demo(Path(tmp) / "demo"), "demo"
        else:
            assert src is not None
            data, name = Path(tmp) / "data", src.name
            files = sorted(f for c in sorted(src.iterdir()) for f in sorted(c.iterdir()))
            files = [files[i] for i in sorted(np.random.default_rng(0).choice(len(files), min(n, len(files)), replace=False))]
            for f in files:
                (data / f.parent.name).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(f, data / f.parent.name / f.name)
        db = project_for(data, Path(tmp) / "p.triage.db")
        t0 = time.perf_counter()
        groups = drain(find_duplicates(db))
        took = time.perf_counter() - t0
        with Project.open(db) as p:
            ids = p.images.scorable_ids()
            sha = dict(zip(ids.tolist(), p.dupes.sha1s(ids), strict=True))
        distinct = sum(1 for g in groups for i, j in itertools.combinations(g.image_ids, 2) if sha[i] != sha[j])
        largest = max((len(g.image_ids) for g in groups), default=0)
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(_io.StringIO()), contextlib.redirect_stderr(_io.StringIO()):
            cli_main(["duplicates", "--db", str(db), "--json"])
        listing = time.perf_counter() - t0
        print(f"{name}: {len(ids):,} untouched images: {len(groups)} groups (largest {largest}), {distinct} pairs of "
              f"different content inside groups; search {took:.1f} s, listing the stored groups {listing:.2f} s")


if __name__ == "__main__":
    main()

"""Benchmark: Image Triage against the tools a user would install instead, on the same images in
one run (issue 33). The peers run in a venv of their own that this script makes (``--venv``),
at pinned versions: nothing is installed into the product's environment.

Label errors: the shared CIFAR-10 test set (10,000 images) scored by the product with the four
CIFAR ResNets as backbones and 5-fold cross-fitted heads; 5 % of the labels flipped (at random,
and to the class the clean pool finds most confusable), the heads refitted on the flipped labels
as a user's would be, and the untouched labels. Every tool gets the same out-of-fold
probabilities (the pool's mean) and, where it takes them, the same features (the project's
neighbour embedding):
  ours:       label issue (the label view's default) and the normalised margin; the count is
              the app's "likely errors" before review, and our flags are that many of the top
  cleanlab:   ``filter.find_label_issues`` (its flags) ranked by ``rank.get_label_quality_scores``
  FiftyOne:   fiftyone-brain's classification mistakenness (its per-sample function: its Dataset
              needs a MongoDB server that downloads at run time); its flags: mistakenness > 0.5
  Datalab:    ``Datalab.find_issues`` with the probabilities and the features (label issues)
For each: AUROC and average precision against the planted flips, precision and recall at the
tool's own flag count, the count it reports on the untouched labels, and wall time.

Image issues: ``bench_issues.py``'s planted set (2,000 CIFAR-10 JPEGs plus 60 each of blur at
three radii, dark, overexposed, constant, grey and stretched images, and 50 MNIST digits as
outliers) and 2,000 untouched CIFAR-10 images: ours (scored with ResNet-20 as a backbone, as
bench_issues does) vs cleanvision's ``Imagelab`` on the same folder, precision and recall per
issue (cleanvision's light / grayscale / odd size and odd aspect ratio counted as our
overexposed / grey / odd size; outliers against Datalab's outlier check on the same features as
ours), the share of untouched images flagged, and wall time.

Duplicates: ``bench_duplicates.py``'s planted set (2,000 CIFAR-10 JPEGs plus 200 planted
near-duplicates: exact copies, JPEG re-encodes at quality 60 and 2-pixel crops, a third filed
under another class): ours (the groups `image-triage duplicates` shows) vs imagededup's PHash
(its default distance, 10), cleanvision's exact and near duplicates, fastdup (its own bundled
model; pairs at its "nearly identical" similarity 0.98, and at 0.96) and Datalab's
near-duplicate check on the same thumbnails ours start from: precision and recall over pairs,
and wall time. imagededup's CNN method downloads its weights at run time, so it cannot run here.

Usage: python benchmarks/bench_peers.py [--work /tmp/peers] [--venv /tmp/peers/venv] [--share 0.05]
       (make bench-peers)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PINNED = ["cleanlab[datalab]==2.9.0", "cleanvision==0.3.7", "torch==2.14.1", "torchvision==0.29.1",
          "imagededup==0.3.3.post2"]
PINNED_FASTDUP = ["fastdup==2.54"]  # a venv of its own: it pins NumPy 1, which breaks the pyarrow Datalab needs
PINNED_FIFTYONE = ["fiftyone==1.22.1", "fiftyone-brain==0.25.0"]  # its own venv too (it pins its own pymongo, starlette...)
SHARED = Path(__file__).resolve().parents[2] / "shared"

PEER = r"""
import sys, time
import numpy as np
d = np.load(sys.argv[1])
out = {}
probs, labels, feats = d["probs"], d["labels"], d["features"]
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores
t = time.perf_counter()
flags = find_label_issues(labels, probs)
quality = get_label_quality_scores(labels, probs)
out["cleanlab find_label_issues"] = (1.0 - quality, flags, time.perf_counter() - t)
from cleanlab import Datalab
t = time.perf_counter()
lab = Datalab(data={"label": labels}, label_name="label", verbosity=0)
lab.find_issues(pred_probs=probs, features=feats, issue_types={"label": {}})
li = lab.get_issues("label")
out["cleanlab Datalab"] = (1.0 - li["label_score"].to_numpy(), li["is_label_issue"].to_numpy(), time.perf_counter() - t)
np.savez(sys.argv[2], **{f"{k}|score": v[0] for k, v in out.items()}, **{f"{k}|flags": v[1] for k, v in out.items()},
         **{f"{k}|seconds": np.array(v[2]) for k, v in out.items()})
"""

# FiftyOne Brain's mistakenness, its own code on the same probabilities. Its App and Dataset need
# the MongoDB server its fiftyone-db package downloads at run time (it cannot here, offline), so the
# per-sample function ``compute_mistakenness`` applies is called directly: with logits, (m *
# exp(-entropy) + 1) / 2 with m = +1 where the prediction differs from the label, else -1.
PEER_FIFTYONE = r"""
import sys, time
import numpy as np
from fiftyone.brain.internal.core.mistakenness import _compute_mistakenness_class
d = np.load(sys.argv[1])
probs, labels = d["probs"], d["labels"]
t = time.perf_counter()
logits = np.log(np.clip(probs, 1e-12, 1.0))
agrees = (probs.argmax(1) == labels).astype(float)  # its m: 1 where the prediction is the label (as FiftyOne sets it)
score = np.array([_compute_mistakenness_class(z, m) for z, m in zip(logits, agrees)])
name = "FiftyOne Brain mistakenness"
np.savez(sys.argv[2], **{f"{name}|score": score, f"{name}|flags": score > 0.5,
                         f"{name}|seconds": np.array(time.perf_counter() - t)})
"""

PEER_ISSUES = r"""
import json, sys, time
from cleanvision import Imagelab
t = time.perf_counter()
lab = Imagelab(data_path=sys.argv[1])
lab.find_issues(verbose=False)
seconds = time.perf_counter() - t
df = lab.issues
root = sys.argv[1].rstrip("/") + "/"
out = {}
for col in df.columns:
    if col.startswith("is_") and col.endswith("_issue"):
        out[col[3:-6]] = sorted(str(p)[len(root):] for p in df.index[df[col].to_numpy()])
print(json.dumps({"seconds": seconds, "flags": out}))
"""
PEER_OUTLIERS = r"""
import sys, time
import numpy as np
from cleanlab import Datalab
d = np.load(sys.argv[1])
t = time.perf_counter()
lab = Datalab(data={"label": d["labels"]}, label_name="label", verbosity=0)
lab.find_issues(features=d["features"], issue_types={"outlier": {}})
got = lab.get_issues("outlier")
np.savez(sys.argv[2], flags=got["is_outlier_issue"].to_numpy(), seconds=np.array(time.perf_counter() - t))
"""
PEER_DUPES = r"""
import json, sys, time
import numpy as np
root = sys.argv[1].rstrip("/") + "/"
out = {}
def timed(name, fn):
    t = time.perf_counter()
    try:
        pairs = fn()
        out[name] = {"seconds": time.perf_counter() - t, "pairs": sorted(sorted(p) for p in pairs)}
    except Exception as e:  # a peer that cannot run here says so in the table
        out[name] = {"error": f"{type(e).__name__}: {e}"[:200]}
def phash():
    from imagededup.methods import PHash
    ph = PHash(verbose=False)
    found = ph.find_duplicates(encoding_map=ph.encode_images(image_dir=root, recursive=True))
    return {tuple(sorted((a, b))) for a, bs in found.items() for b in bs}
def cleanvision():
    from cleanvision import Imagelab
    lab = Imagelab(data_path=root)
    lab.find_issues({"exact_duplicates": {}, "near_duplicates": {}}, verbose=False)
    pairs = set()
    for kind in ("exact_duplicates", "near_duplicates"):
        for group in lab.info[kind]["sets"]:
            names = sorted(str(p)[len(root):] for p in group)
            pairs |= {(a, b) for i, a in enumerate(names) for b in names[i + 1:]}
    return pairs
def fastdup_at(threshold):
    def run():
        import fastdup
        fd = fastdup.create(work_dir=sys.argv[3], input_dir=root)
        fd.run(ccthreshold=0.9, overwrite=True, verbose=False)
        sim = fd.similarity()
        sim = sim[sim["distance"] >= threshold]
        def rel(p):
            p = str(p)
            return p[p.index(root):][len(root):] if root in p else p.split(root.rstrip("/").split("/")[-1] + "/", 1)[-1]
        return {tuple(sorted((rel(a), rel(b)))) for a, b in zip(sim["filename_from"], sim["filename_to"])}
    return run
def datalab():
    from cleanlab import Datalab
    d = np.load(sys.argv[2])
    lab = Datalab(data={"label": d["labels"]}, label_name="label", verbosity=0)
    lab.find_issues(features=d["features"], issue_types={"near_duplicate": {}})
    names = [str(n) for n in d["paths"]]
    info = lab.get_issues("near_duplicate")
    pairs = set()
    for i, (flag, sets) in enumerate(zip(info["is_near_duplicate_issue"], info["near_duplicate_sets"])):
        if flag:
            pairs |= {tuple(sorted((names[i], names[j]))) for j in sets}
    return pairs
if sys.argv[4] == "fastdup":
    timed("fastdup (similarity >= 0.98)", fastdup_at(0.98))
    timed("fastdup (similarity >= 0.96)", fastdup_at(0.96))
else:
    timed("imagededup PHash", phash)
    timed("cleanvision", cleanvision)
    timed("cleanlab Datalab near_duplicate (our thumbnails)", datalab)
print(json.dumps(out))
"""
# cleanvision's issue names -> ours
CLEANVISION = {"dark": "dark", "light": "overexposed", "blurry": "blurry", "low_information": "low_information",
               "grayscale": "grey", "odd_size": "odd_size", "odd_aspect_ratio": "odd_size"}


def issue_rows(work: Path, py: Path) -> None:
    from benchmarks import bench_issues as BI
    from scoring.vocabulary import ISSUES

    want = {kind: issue for kind, (issue, _) in BI.PLANTS.items()} | {"mnist": "outlier"}
    sets = {"planted": work / "issues-planted", "untouched CIFAR-10": work / "issues-untouched"}
    planted: dict[str, str] = {}
    for name, root in sets.items():
        if not root.exists():
            got = BI.build(root, 2000, name == "planted")
            (root.parent / f"{root.name}.json").write_text(json.dumps(got))
        if name == "planted":
            planted = json.loads((root.parent / f"{root.name}.json").read_text())
    print("\nImage issues: 2,000 CIFAR-10 JPEGs + 530 planted faults (bench_issues.py), and 2,000 untouched")
    for name, root in sets.items():
        db = work / f"{root.name}.triage.db"
        took = BI.score(root, db) if not db.exists() else float("nan")
        ours = BI.flagged(db)
        done = subprocess.run([str(py), "-c", PEER_ISSUES, str(root)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"  cleanvision failed: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
            theirs: dict[str, set[str]] = {}
            their_s = float("nan")
        else:
            got = json.loads(done.stdout.strip().splitlines()[-1])
            their_s = got["seconds"]
            theirs = {}
            for issue, paths in got["flags"].items():
                if issue in CLEANVISION:
                    theirs.setdefault(CLEANVISION[issue], set()).update(paths)
        files = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
        ours_t = "its scoring run cached from an earlier run" if took != took else f"{took:.0f} s for the whole scoring run"
        print(f"\n  {name} ({len(files):,} images); wall time: ours {ours_t} (the issues ride on its decode), "
              f"cleanvision {their_s:.0f} s")
        if name == "planted":
            grey = {f for f in files if BI.no_colour(root / f)}
            print(f"  {'issue':<16} {'ours P':>7} {'ours R':>7} {'theirs P':>9} {'theirs R':>9}")
            theirs["outlier"] = _datalab_outliers(db, py, work)
            for issue in ISSUES:
                pos = grey if issue == "grey" else {p for p, k in planted.items() if want.get(k) == issue}
                cells = []
                for flags in (ours.get(issue, set()), theirs.get(issue)):
                    if flags is None:
                        cells += ["n/a", "n/a"]
                        continue
                    tp = len(flags & pos)
                    cells += [f"{tp / len(flags):.3f}" if flags else "-", f"{tp / len(pos):.3f}" if pos else "-"]
                print(f"  {issue:<16} {cells[0]:>7} {cells[1]:>7} {cells[2]:>9} {cells[3]:>9}")
        else:
            print(f"  {'issue':<16} {'ours flagged':>13} {'theirs flagged':>15}")
            for issue in ISSUES:
                theirs_n = "n/a" if issue not in theirs else f"{len(theirs[issue]) / len(files):.2%}"
                print(f"  {issue:<16} {len(ours.get(issue, set())) / len(files):13.2%} {theirs_n:>15}")


def _datalab_outliers(db: Path, py: Path, work: Path) -> set[str] | None:
    """Datalab's outlier check on the project's own neighbour embedding (the features ours use)."""
    from scoring.store import Project

    with Project.open(db) as p:
        ids = p.images.scorable_ids()
        emb = p.cache.embedding()
        if emb is None:
            return None
        npz, out = work / "peer-outliers-in.npz", work / "peer-outliers-out.npz"
        np.savez(npz, features=p.cache.get_features(emb[0], ids).astype(np.float32),
                 labels=np.maximum(p.images.given_labels(ids), 0))
        done = subprocess.run([str(py), "-c", PEER_OUTLIERS, str(npz), str(out)], capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"  Datalab's outlier check failed: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}")
            return None
        got = np.load(out)
        print(f"  Datalab's outlier check (same features as ours): {float(got['seconds']):.1f} s")
        return set(p.images.paths_of(ids[got["flags"].astype(bool)]))


def duplicate_rows(work: Path, py: Path, images: int = 2000, share: float = 0.1) -> None:
    """Ours against the duplicate finders on bench_duplicates' planted set, pairs counted."""
    import itertools

    from bench_duplicates import plant

    from scoring.progress import drain
    from scoring.store import Project, project_for
    from scoring.tasks.duplicates import find_duplicates

    data = work / "dupes-planted"
    truth_file = work / "dupes-planted.json"
    if not truth_file.exists():
        planted = plant(SHARED / "data" / "cifar10-test", data, images, share)
        truth_file.write_text(json.dumps(sorted(sorted(p) for p in planted)))
    planted = {frozenset(p) for p in json.loads(truth_file.read_text())}
    db = work / "dupes-planted.triage.db"
    db.unlink(missing_ok=True)
    t0 = time.perf_counter()
    db = project_for(data, db)
    drain(find_duplicates(db))
    rows: dict[str, tuple[set[frozenset[str]], float] | str] = {}
    with Project.open(db) as p:
        ids = p.images.scorable_ids()
        paths = dict(zip(ids.tolist(), p.images.paths_of(ids), strict=True))
        ours = {frozenset({paths[i], paths[j]}) for g in p.dupes.duplicate_groups().values()
                for i, j in itertools.combinations(g, 2)}
        rows["Image Triage (the groups shown)"] = (ours, time.perf_counter() - t0)
        npz = work / "peer-dupes-in.npz"
        np.savez(npz, features=p.cache.get_features("thumb16:v1", ids).astype(np.float32),
                 labels=np.maximum(p.images.given_labels(ids), 0), paths=np.array(list(paths.values())))
    fastdup_py = make_venv(py.parent.parent.with_name(py.parent.parent.name + "-fastdup"), PINNED_FASTDUP)
    for which, python in (("others", py), ("fastdup", fastdup_py)):
        done = subprocess.run([str(python), "-c", PEER_DUPES, str(data), str(npz), str(work / "fastdup-work"), which],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"  the peers' duplicate finders ({which}) failed: {done.stderr.strip().splitlines()[-1] if done.stderr else ''}")
            continue
        for name, got in json.loads(done.stdout.strip().splitlines()[-1]).items():
            rows[name] = got["error"] if "error" in got else ({frozenset(x) for x in got["pairs"]}, got["seconds"])
    print(f"\nDuplicates: {len(ids):,} images, {len(planted)} planted near-duplicate pairs (copies, JPEG q60, "
          f"2-px crops; a third under another class)")
    print(f"  {'tool':<50} {'pairs':>6} {'precision':>9} {'recall':>7} {'seconds':>8}")
    for name, row in rows.items():
        if isinstance(row, str):
            print(f"  {name:<50} could not run: {row}")
            continue
        found, seconds = row
        tp = len(found & planted)
        print(f"  {name:<50} {len(found):>6} {tp / max(len(found), 1):>9.3f} {tp / len(planted):>7.3f} {seconds:>8.1f}")


def make_venv(venv: Path, pinned: list[str] = PINNED) -> Path:
    py = venv / "bin" / "python"
    stamp = venv / "pinned.txt"
    want = "\n".join(pinned)
    if py.exists() and stamp.exists() and stamp.read_text() == want:
        return py
    print(f"making the peers' venv in {venv} (once): {', '.join(pinned)}")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *pinned], check=True)
    stamp.write_text(want)
    return py


def average_precision(score: np.ndarray, positive: np.ndarray) -> float:
    order = np.argsort(-score, kind="stable")
    hits = positive[order]
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def label_rows(work: Path, py: Path, share: float) -> None:
    from benchmarks.bench_label_errors import auroc, flip, neighbour_votes, scored
    from scoring import metrics as M
    from scoring.evidence import label_evidence as LE
    from scoring.pool.spec import cifar_resnet_pool_specs
    from scoring.tasks.estimate import likely_errors

    data, models = SHARED / "data" / "cifar10-test", SHARED / "models" / "cifar10-resnet"
    if not data.exists():
        sys.exit(f"needs {data}")
    project, pool = scored(work / "cifar-resnet-heads.triage.db", data, cifar_resnet_pool_specs(models, kind="backbone"), 1)
    ids = project.images.scorable_ids()
    labels = project.images.given_labels(ids)
    fps = [m.fingerprint for m in pool.members]
    clean = project.cache.get_probs(fps, ids)
    feats = {m.encoder.key: project.cache.get_features(m.encoder.key, ids) for m in pool.members}
    emb = project.cache.embedding()
    assert emb is not None
    features = project.cache.get_features(emb[0], ids).astype(np.float32)
    near = neighbour_votes(project, ids)
    assert near is not None
    fiftyone_py = make_venv(py.parent.parent.with_name(py.parent.parent.name + "-fiftyone"), PINNED_FIFTYONE)
    print(f"\nLabel errors: CIFAR-10 test, {len(ids):,} images, four ResNet backbones with cross-fitted heads; "
          f"the same out-of-fold probabilities and {features.shape[1]}-d features for every tool")
    for mode in ("random", "confusable", "untouched"):
        if mode == "untouched":
            noisy, flipped, probs = labels, None, clean
        else:
            noisy, flipped = flip(labels, clean.mean(0), share, mode)
            probs = np.stack([m.fit_predict(feats[m.encoder.key], noisy) for m in pool.members])
        mean = probs.mean(0)
        t = time.perf_counter()
        v = LE.votes(near[0], near[1], noisy, mean.shape[1])
        w = LE.stack_weight(mean, v, noisy, len(probs))
        issue = LE.scores(mean, v, noisy, w, len(probs))[1]
        count = likely_errors(mean, noisy, (probs.argmax(2) != noisy[None]).all(0))[0].count
        ours_s = time.perf_counter() - t
        rows: dict[str, tuple[np.ndarray, int, float]] = {}
        for name, score in (("Image Triage: label issue", issue), ("Image Triage: margin", -M.normalized_margin(probs, noisy))):
            rows[name] = (score, int(round(count)), ours_s)
        npz = work / f"peer-in-{mode}.npz"
        np.savez(npz, probs=mean.astype(np.float64), labels=noisy.astype(np.int64), features=features)
        for which, python, script in (("cleanlab", py, PEER), ("FiftyOne", fiftyone_py, PEER_FIFTYONE)):
            got = work / f"peer-out-{mode}-{which}.npz"
            done = subprocess.run([str(python), "-c", script, str(npz), str(got)], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"  {which} failed on {mode}: {done.stderr.strip().splitlines()[-1] if done.stderr else done.returncode}")
                continue
            peer = np.load(got)
            for name in sorted({k.split("|")[0] for k in peer.files}):
                rows[name] = (peer[f"{name}|score"], int(peer[f"{name}|flags"].sum()), float(peer[f"{name}|seconds"]))
        title = (f"{mode} flips ({int(flipped.sum())} of {len(noisy):,} labels)" if flipped is not None
                 else "untouched labels (the count each tool reports; people re-annotating find about 80-120)")
        print(f"\n  {title}")
        if flipped is not None:
            print(f"  {'tool':<28} {'AUROC':>6} {'AP':>6} {'flags':>6} {'precision':>9} {'recall':>7} {'seconds':>8}")
        else:
            print(f"  {'tool':<28} {'flags':>6} {'seconds':>8}")
        for name, (score, flags, secs) in rows.items():
            s = np.nan_to_num(np.asarray(score, dtype=np.float64), nan=-np.inf)
            if flipped is None:
                print(f"  {name:<28} {flags:>6} {secs:8.2f}")
                continue
            top = np.argsort(-s, kind="stable")[:flags]
            hit = int(flipped[top].sum())
            print(f"  {name:<28} {auroc(s, flipped):6.3f} {average_precision(s, flipped):6.3f} {flags:>6} "
                  f"{hit / max(flags, 1):9.3f} {hit / flipped.sum():7.3f} {secs:8.2f}")
    project.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/tmp/peers")
    ap.add_argument("--venv", default=None, help="the peers' venv (default: WORK/venv, made once)")
    ap.add_argument("--share", type=float, default=0.05)
    ap.add_argument("--tasks", default="labels,issues,duplicates", help="labels, issues, duplicates (comma-separated)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    py = make_venv(Path(args.venv) if args.venv else work / "venv")
    versions = subprocess.run([str(py), "-c", "import cleanlab, cleanvision; print(cleanlab.__version__, cleanvision.__version__)"],
                              capture_output=True, text=True, check=True).stdout.split()
    print(f"peers: cleanlab {versions[0]}, cleanvision {versions[1]}, in {py.parent.parent}")
    if "labels" in args.tasks:
        label_rows(work, py, args.share)
    if "issues" in args.tasks:
        issue_rows(work, py)
    if "duplicates" in args.tasks:
        duplicate_rows(work, py)


if __name__ == "__main__":
    main()

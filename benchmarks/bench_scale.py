"""Do costs grow linearly? Synthetic datasets of 100,000 / 300,000 / 1,000,000 tiny images.

For each size: write an ImageFolder of 8x8 PNGs (3 classes), create the project (sync), score it
with a tiny pool (a linear checkpoint and a fitted nearest-centroid member), and print seconds
per 100,000 images for each stage (sync, inference, fitting, score writing, from the engine's
own profile), the growth of the per-image cost from the smallest size to each larger one
(target <= 1.3x), and the peak resident memory of the process for that size (each size runs in
its own child process so peaks do not carry over).

    python benchmarks/bench_scale.py [--sizes 100000 300000 1000000] [--work /tmp/bench-scale]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, time
from pathlib import Path
import numpy as np
from PIL import Image
from scoring.io.formats import open_dataset
from scoring.engine.inference import score_project
from scoring.progress import drain
from scoring.store import Project
from tests.scoring.tinypool import tiny_pool

n, work = int(sys.argv[1]), Path(sys.argv[2])
data = work / f"d{n}"
if not (data / "done").exists():
    rng = np.random.default_rng(0)
    tiles = [Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)) for _ in range(256)]
    for c in ("blue", "green", "red"):
        (data / c).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = ("blue", "green", "red")[i % 3]
        tiles[i % 256].save(data / c / f"{i:07d}.png", compress_level=0)
    (data / "done").write_text("ok")
db = work / f"p{n}.triage.db"
for f in work.glob(f"p{n}.triage.db*"):
    f.unlink()
t0 = time.perf_counter()
ds = open_dataset(data)
Project.create(db, ds).close()
sync = time.perf_counter() - t0
pool = tiny_pool(["blue", "green", "red"])
pool.members = [pool.members[0], pool.members[3]]  # one checkpoint, one fitted member
summary = drain(score_project(db, pool=pool, batch_size=512, workers=0))
prof = summary.profile
print(json.dumps({"n": n, "sync": sync, "inference": prof.get("decode", 0) + prof.get("forward", 0) + prof.get("store", 0),
                  "fitting": sum(v for k, v in prof.items() if k.startswith("fit")), "score writing": prof.get("metrics", 0) + prof.get("score store", 0),
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 300_000, 1_000_000])
    ap.add_argument("--work", default="/tmp/bench-scale")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", CHILD, str(n), str(work)], cwd=ROOT, capture_output=True, text=True)
        if out.returncode:
            sys.exit(out.stderr[-2000:])
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(f"  {n:>9,} images done in {time.perf_counter() - t0:.0f} s", flush=True)
    stages = ["sync", "inference", "fitting", "score writing"]
    print(f"\n{'images':>10} | " + " | ".join(f"{s:>13}" for s in stages) + " | s per 100k total | growth | peak MB")
    base = None
    for r in rows:
        per = {s: r[s] / r["n"] * 100_000 for s in stages}
        total = sum(per.values())
        base = base or total
        print(f"{r['n']:>10,} | " + " | ".join(f"{per[s]:>11.2f} s" for s in stages)
              + f" | {total:>16.2f} | {total / base:>5.2f}x | {r['peak_mb']:>7.0f}")


if __name__ == "__main__":
    main()

"""Benchmark: the local engine and the Ray engine on the same images and pool, in one run.

Usage: python benchmarks/bench_engines.py [--images 10000] [--workers 2] [--address ADDR]
Defaults: ../shared CIFAR-10 test JPEGs and the four CIFAR ResNets, a local Ray instance.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from scoring.engine.inference import score_project
from scoring.io.formats import open_dataset
from scoring.pool.spec import cifar_resnet_pool_specs
from scoring.progress import drain
from scoring.store import Project

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--address", default=None)
    ap.add_argument("--data", default=str(SHARED / "data" / "cifar10-test"))
    ap.add_argument("--models", default=str(SHARED / "models" / "cifar10-resnet"))
    args = ap.parse_args()
    import ray

    src = open_dataset(args.data)
    step = max(1, len(src.records) // args.images)
    recs = src.records[::step][: args.images]
    tmp = Path(tempfile.mkdtemp())
    (tmp / "subset.csv").write_text("path,label\n" + "".join(f"{src.abspath(r.path)},{r.label}\n" for r in recs))
    ds = open_dataset(tmp / "subset.csv")
    specs = cifar_resnet_pool_specs(args.models)
    times = {}
    t0 = time.perf_counter()
    ray.init(address=args.address, num_cpus=None if args.address else args.workers, include_dashboard=False,
             log_to_driver=False, ignore_reinit_error=True)
    t_ray_start = time.perf_counter() - t0
    for engine, workers in (("local", max(0, args.workers - 1)), ("ray", args.workers)):
        db = tmp / f"{engine}.triage.db"
        Project.create(db, ds).close()
        t0 = time.perf_counter()
        s = drain(score_project(db, specs, batch_size=args.batch_size, workers=workers, engine=engine))
        times[engine] = time.perf_counter() - t0
        print(f"{engine:>5}: {s.scored} images in {times[engine]:.1f}s ({s.scored / times[engine]:.0f} images/s), {workers} workers")
    print(f"ray startup (not included above): {t_ray_start:.1f}s")
    print(f"ray/local = {times['ray'] / times['local']:.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()

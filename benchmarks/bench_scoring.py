"""Benchmark: the pool's end-to-end scoring vs its parts vs the naive way, in one run.

Prints, on the same images:
  (a) end-to-end: ``score_project`` on a fresh project (decode once, all members per batch,
      SQLite writes, metrics);
  (b) one decode+preprocess pass, plus each member's forward-only time on already-decoded
      tensors (the floor the engine could reach);
Each figure is the best of --repeats runs, interleaved.
  (c) the naive way: one full pass per member, decoding every image again each time.
and the ratios a/b (target <= 1.15) and c/a.

Usage: python benchmarks/bench_scoring.py [--images 2000] [--data DIR] [--models DIR] [--workers 0]
Defaults use ../shared (CIFAR-10 test JPEGs and the four CIFAR ResNets).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from scoring.datasets import ImageRecord, load_image, open_dataset
from scoring.inference import run, score_project
from scoring.poolspec import build_pool, cifar_resnet_pool_specs
from scoring.store import Project

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--data", default=str(SHARED / "data" / "cifar10-test"))
    ap.add_argument("--models", default=str(SHARED / "models" / "cifar10-resnet"))
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="each figure is the best of this many runs")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    src = open_dataset(args.data)
    step = max(1, len(src.records) // args.images)
    records: list[ImageRecord] = src.records[::step][: args.images]
    manifest = Path(tempfile.mkdtemp()) / "subset.csv"
    manifest.write_text("path,label\n" + "".join(f"{src.abspath(r.path)},{r.label}\n" for r in records))
    full = open_dataset(manifest)
    specs = cifar_resnet_pool_specs(args.models)
    pool = build_pool(specs, full.classes)
    n = len(records)
    paths = [src.abspath(r.path) for r in records]
    print(f"{n} images from {args.data}; pool of {len(pool.members)} members; "
          f"batch {args.batch_size}; {args.workers} decode workers; torch threads {torch.get_num_threads()}")

    # warm-up: first-call costs (allocator, kernels) must not land on whichever runs first
    warm = torch.stack([pool.preprocesses()[0](load_image(p)) for p in paths[:32]])
    with torch.inference_mode():
        for enc in pool.encoders():
            enc.module.eval()(warm)

    def end_to_end() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.triage.db"
            Project.create(db, full).close()
            t0 = time.perf_counter()
            run(score_project(db, pool=pool, batch_size=args.batch_size, workers=args.workers))
            return time.perf_counter() - t0

    def decode_once() -> tuple[float, dict[str, torch.Tensor]]:
        t0 = time.perf_counter()
        pps = pool.preprocesses()
        decoded: dict[str, list[torch.Tensor]] = {pp.key: [] for pp in pps}
        for p in paths:
            img = load_image(p)
            for pp in pps:
                decoded[pp.key].append(pp(img))
        tensors = {k: torch.stack(v) for k, v in decoded.items()}
        return time.perf_counter() - t0, tensors

    def forward_only(enc, x: torch.Tensor) -> float:  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        with torch.inference_mode():
            for s in range(0, n, args.batch_size):
                enc.module(x[s : s + args.batch_size])
        return time.perf_counter() - t0

    def naive() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for enc in pool.encoders():
                pp = enc.preprocess
                for s in range(0, n, args.batch_size):
                    x = torch.stack([pp(load_image(p)) for p in paths[s : s + args.batch_size]])
                    enc.module(x)
        return time.perf_counter() - t0

    # Best of N, rounds interleaved, so a burst of load elsewhere hits every figure alike.
    a_runs, dec_runs, c_runs = [], [], []
    fwd_runs: dict[str, list[float]] = {enc.description or enc.key: [] for enc in pool.encoders()}
    for _ in range(args.repeats):
        a_runs.append(end_to_end())
        t_dec, tensors = decode_once()
        dec_runs.append(t_dec)
        for enc in pool.encoders():
            fwd_runs[enc.description or enc.key].append(forward_only(enc, tensors[enc.preprocess.key]))
        c_runs.append(naive())
    a, decode, c = min(a_runs), min(dec_runs), min(c_runs)
    forward = {k: min(v) for k, v in fwd_runs.items()}
    b = decode + sum(forward.values())

    print(f"(a) end-to-end scoring           {a:8.2f} s  ({n / a:,.0f} images/s)")
    print(f"(b) decode once                  {decode:8.2f} s")
    for name, t in forward.items():
        print(f"    forward only {name:<17} {t:8.2f} s")
    print(f"    decode + forwards            {b:8.2f} s")
    print(f"(c) naive, one pass per member   {c:8.2f} s")
    print(f"a/b = {a / b:.3f}   (target <= 1.15)")
    print(f"c/a = {c / a:.3f}")


if __name__ == "__main__":
    main()

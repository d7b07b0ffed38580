"""Benchmark: the engine against its floor and against the naive way, measured in one run.

For each image set and pool size, on the same images:
  (a) end-to-end: ``score_project`` on a fresh project with its defaults (decode once, each
      encoder over a chunk, SQLite writes, metrics, neighbours, issues; the decode workers chosen
      by timing the first batch, scoring.engine.engines.choose_workers);
  (b) the floor: one decode at the scale the pool needs (JPEGs decode at 1/2-1/8 scale inside
      libjpeg when members want small inputs) plus one read of the file's bytes for the hash,
      then each encoder's forward on the decoded tensors, on the runtime (a) uses (ONNX Runtime
      on a CPU where its check passes); no statistics, thumbnails, store, metrics or
      neighbours. (a)/(b) is what the engine's extras cost (issue 35: at most 1.15);
  (c) the naive way: one full pass per member, decoding every full-size image again each time.
Every figure is the median of --repeats runs, interleaved (a, b, c, a, b, c, ...) so a burst
of load elsewhere hits all alike; the spread (min-max) is printed beside it. Also printed:
a/b, c/a, images/s, and the seconds of (a) in each stage of the engine's own profile (decode
includes the statistics and thumbnails made from the decoded pixels); and (a) with 0, 1 and 2 decode
worker processes, with the number the default chose.

Then the runtime column (issue 22): the forward time of each encoder on the same decoded batches
through torch and through ONNX Runtime (scoring.engine.runtime), interleaved, median of --repeats: the
four ResNets at 32 px, and EfficientNet-Lite0 at the size the automatic pool gives the set (160
px for CIFAR's small images on a CPU, 224 px for the photos).

Image sets: ``cifar`` - CIFAR-10 test JPEGs (32 px, ~0.1 ms to decode); ``large`` - JPEGs of
1-4 megapixels made here by upscaling CIFAR JPEGs with Pillow (decoding costs what it costs on
photos). Pools: the shared CIFAR ResNet-20 alone, and all four ResNets.

    python benchmarks/bench_scoring.py [--images 2000] [--large 500] [--repeats 5] [--sets cifar large]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.engine.batches import decode_item  # noqa: E402
from scoring.engine.inference import score_project  # noqa: E402
from scoring.io.decoding import load_image  # noqa: E402
from scoring.io.formats import open_dataset  # noqa: E402
from scoring.pool.spec import build_pool, cifar_resnet_pool_specs  # noqa: E402
from scoring.progress import drain
from scoring.store import Project  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def cifar_paths(n: int) -> list[Path]:
    src = open_dataset(SHARED / "data" / "cifar10-test")
    step = max(1, len(src.records) // n)
    return [Path(src.abspath(r.path)) for r in src.records[::step][:n]]  # type: ignore[arg-type]


def large_set(sources: list[Path], n: int, folder: Path) -> list[Path]:
    """``n`` JPEGs of 1-4 megapixels, upscaled from ``sources`` (made once, kept in ``folder``)."""
    rng = np.random.default_rng(0)
    out = []
    for i, src in enumerate(sources[:n]):
        cls = src.parent.name
        dst = folder / cls / f"{i:05d}.jpg"
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            mp = rng.uniform(1.0, 4.0) * 1e6
            w = int((mp * 4 / 3) ** 0.5)
            Image.open(src).convert("RGB").resize((w, int(w * 3 / 4)), Image.Resampling.BICUBIC).save(dst, quality=90)
        out.append(dst)
    return out


def manifest(paths: list[Path], folder: Path) -> Path:
    m = folder / "subset.csv"
    m.write_text("path,label\n" + "".join(f"{p},{p.parent.name}\n" for p in paths))
    return m


def measure(paths: list[Path], specs: list[dict], repeats: int, batch: int, folder: Path) -> dict[str, object]:
    full = open_dataset(manifest(paths, folder))
    pool = build_pool(specs, full.classes)
    n = len(paths)
    from scoring.engine.runtime import prepare

    encoders, _ = prepare(pool.encoders(), torch.device("cpu"), "auto")  # what (a) runs (exported once, cached)
    warm = torch.stack([pool.preprocesses()[0](load_image(p)) for p in paths[:16]])
    with torch.inference_mode():
        for enc in encoders:
            enc.module.eval()(warm)

    chosen: list[str] = []  # the default's choice of decode workers, as the run said it

    def end_to_end(workers: int | None = None) -> tuple[float, dict[str, float]]:
        with tempfile.TemporaryDirectory() as tmp:
            db = Path(tmp) / "bench.triage.db"
            Project.create(db, full).close()
            t0 = time.perf_counter()
            summary = drain(score_project(db, pool=pool, batch_size=batch, workers=workers),
                            lambda p: chosen.append(p.message) if p.message.startswith("decode workers") else None)
            return time.perf_counter() - t0, summary.profile

    def floor() -> float:
        """The engine's own decode (once, at the scale needed, every preprocessing of the pool)
        and each member's forward, with none of the engine's orchestration or storage."""
        t0 = time.perf_counter()
        pps = pool.preprocesses()
        items = [decode_item(i, p, pps) for i, p in enumerate(paths)]
        tensors = {pp.key: torch.stack([it.tensors[pp.key] for it in items]) for pp in pps}  # type: ignore[index]
        with torch.inference_mode():
            for enc in encoders:
                x = tensors[enc.preprocess.key]
                for s in range(0, n, batch):
                    enc.module(x[s : s + batch])
        return time.perf_counter() - t0

    def naive() -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for enc in pool.encoders():
                for s in range(0, n, batch):
                    enc.module(torch.stack([enc.preprocess(load_image(p)) for p in paths[s : s + batch]]))
        return time.perf_counter() - t0

    a_runs, b_runs, c_runs, profiles = [], [], [], []
    for _ in range(repeats):
        t, prof = end_to_end()
        a_runs.append(t)
        profiles.append(prof)
        b_runs.append(floor())
        c_runs.append(naive())
    workers = {w: statistics.median(end_to_end(w)[0] for _ in range(max(1, repeats // 2))) for w in (0, 1, 2)}
    stages = sorted({k for p in profiles for k in p}, key=lambda k: -statistics.median(p.get(k, 0.0) for p in profiles))
    prof = {k: statistics.median(p.get(k, 0.0) for p in profiles) for k in stages}
    return {"n": n, "a": a_runs, "b": b_runs, "c": c_runs, "profile": prof, "workers": workers,
            "chosen": sorted(set(chosen))}


def forward_by_runtime(paths: list[Path], specs: list[dict], repeats: int, batch: int) -> list[tuple[str, float, float]]:
    """(encoder, torch s, onnx s) of each encoder's forward over ``paths`` decoded once."""
    from scoring.engine.runtime import prepare

    pool = build_pool(specs, list(open_dataset(SHARED / "data" / "cifar10-test").classes))
    pps = pool.preprocesses()
    items = [decode_item(i, p, pps) for i, p in enumerate(paths)]
    tensors = {pp.key: torch.stack([it.tensors[pp.key] for it in items]) for pp in pps}  # type: ignore[index]
    cpu = torch.device("cpu")
    out = []
    for enc in pool.encoders():
        [onnx], chosen = prepare([enc], cpu, "onnx")
        if not chosen[enc.key].startswith("onnx"):
            print(f"  {enc.description}: {chosen[enc.key]}")
            continue
        x = tensors[enc.preprocess.key]
        runs: dict[str, list[float]] = {"torch": [], "onnx": []}
        for _ in range(repeats):
            for name, module in (("torch", enc.module), ("onnx", onnx.module)):
                t0 = time.perf_counter()
                with torch.inference_mode():
                    for s in range(0, len(x), batch):
                        module(x[s : s + batch])
                runs[name].append(time.perf_counter() - t0)
        out.append((enc.description, statistics.median(runs["torch"]), statistics.median(runs["onnx"])))
    return out


def fmt(runs: list[float]) -> str:
    return f"{statistics.median(runs):7.2f} s ({min(runs):.2f}-{max(runs):.2f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000, help="CIFAR JPEGs in the cifar set")
    ap.add_argument("--large", type=int, default=500, help="images in the large set")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--sets", nargs="*", default=["cifar", "large"])
    ap.add_argument("--members", nargs="*", type=int, default=[1, 4])
    ap.add_argument("--runtime-only", action="store_true", help="only the torch / ONNX Runtime forward comparison")
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "image-triage-bench-large"))
    args = ap.parse_args()
    if not SHARED.exists():
        sys.exit(f"needs {SHARED} (the developers' shared data)")
    specs = cifar_resnet_pool_specs(SHARED / "models" / "cifar10-resnet")
    base = cifar_paths(max(args.images, args.large))
    print(f"{os.cpu_count()} CPU cores; torch threads {torch.get_num_threads()}; batch {args.batch_size}; "
          f"median (min-max) of {args.repeats} interleaved runs; (a) with the default decode workers (chosen per run "
          "by timing its first batch)")
    for name in args.sets:
        t0 = time.perf_counter()
        paths = base[: args.images] if name == "cifar" else large_set(base, args.large, Path(args.cache))
        if name == "large":
            sizes = [Image.open(p).size for p in paths[:50]]
            print(f"\n[large] {len(paths)} JPEGs of {min(w * h for w, h in sizes) / 1e6:.1f}-"
                  f"{max(w * h for w, h in sizes) / 1e6:.1f} MP (made in {time.perf_counter() - t0:.0f} s)")
        else:
            print(f"\n[cifar] {len(paths)} CIFAR-10 test JPEGs, 32x32")
        lite = {"name": "lite", "kind": "backbone", "arch": "efficientnet_lite0", "fractions": [1.0],
                "preprocess": {"size": 160, "resize": 160} if name == "cifar" else {"size": 224, "resize": 256}}
        sample = paths[: min(len(paths), 500)]
        for enc_name, t_torch, t_onnx in forward_by_runtime(sample, [*specs, lite], max(1, args.repeats // 2), 64):
            print(f"  runtime: {enc_name[:60]:<60} {len(sample)} images: torch {t_torch:6.2f} s, onnx {t_onnx:6.2f} s "
                  f"-> {t_torch / t_onnx:.2f}x")
        if args.runtime_only:
            continue
        for k in args.members:
            with tempfile.TemporaryDirectory() as tmp:
                r = measure(paths, specs[:k], args.repeats, args.batch_size, Path(tmp))
            a, b, c = (statistics.median(r[x]) for x in ("a", "b", "c"))  # type: ignore[arg-type]
            prof: dict[str, float] = r["profile"]  # type: ignore[assignment]
            shares = ", ".join(f"{s} {v:.2f}" for s, v in prof.items() if v >= 0.005)
            shares += f"; outside the stages {a - sum(prof.values()):.2f}"
            print(f"  {k} member{'s' if k > 1 else ' '}: (a) {fmt(r['a'])}  (b) {fmt(r['b'])}  (c) {fmt(r['c'])}")  # type: ignore[arg-type]
            print(f"             a/b = {a / b:.3f} ({min(r['a']) / max(r['b']):.3f}-{max(r['a']) / min(r['b']):.3f})   "  # type: ignore[arg-type]
                  f"c/a = {c / a:.3f} ({min(r['c']) / max(r['a']):.3f}-{max(r['c']) / min(r['a']):.3f})   "  # type: ignore[arg-type]
                  f"{r['n'] / a:,.0f} images/s")
            print(f"             seconds in (a): {shares}")
            w: dict[int, float] = r["workers"]  # type: ignore[assignment]
            best = min(w, key=w.get)  # type: ignore[arg-type]
            print("             decode workers: " + ", ".join(f"{n} -> {t:.2f} s" for n, t in w.items())
                  + f"; best here {best}, the default chose: {', '.join(r['chosen']) or 'none (a short run)'}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()

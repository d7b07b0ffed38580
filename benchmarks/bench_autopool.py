"""The automatic pool end to end, as a user without options gets it (issue 22).

On N shared CIFAR-10 test JPEGs (default 10,000) and on the large-photo set bench_scoring makes
(default 2,000 JPEGs of 1-4 megapixels), for each runtime (torch, onnx): the estimate printed
before the run (a range), the actual wall time, the seconds per stage (runtime set-up, decode,
forward, store, each member's fit, scores), images per second, peak memory, and the pool's
quality: the consensus top-1 against the given labels and each member's out-of-fold top-1.
Each run is a fresh project in its own process (so peak memory is that run's); the ONNX files
are cached in the user's cache folder as in real use (the first run exports them).

    python benchmarks/bench_autopool.py [--n 10000] [--large 2000] [--sets cifar large] [--runtimes torch onnx] [--busy]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_scoring import SHARED, cifar_paths, large_set, manifest  # noqa: E402


def child(manifest_path: str, db: str, runtime: str) -> dict[str, object]:
    """One scoring run, as `image-triage score MANIFEST` with no pool options would make it."""
    from scoring.device import pick_device
    from scoring.engine.inference import score_project
    from scoring.progress import drain
    from scoring.store import Project, project_for
    from scoring.tasks.autopool import auto_pool

    path = project_for(manifest_path, Path(db))
    with Project.open(path) as p:
        dataset = p.dataset()
    t0 = time.perf_counter()
    choice = auto_pool(dataset, pick_device("auto"), runtime=runtime)
    chose = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = drain(score_project(path, choice.specs, runtime=runtime))
    actual = time.perf_counter() - t0
    with Project.open(path) as p:
        ids = p.images.scorable_ids()
        labels = p.images.given_labels(ids)
        members = p.runs.active_members()
        probs = p.cache.get_probs([m["fingerprint"] for m in members], ids)
    return {
        "n": int(len(ids)), "estimate": list(choice.range), "estimate_seconds": chose, "actual": actual,
        "parts": choice.parts,
        "profile": summary.profile, "runtime": summary.runtime,
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "consensus": float((probs.mean(axis=0).argmax(1) == labels).mean()),
        "members": {m["name"]: float((pr.argmax(1) == labels).mean()) for m, pr in zip(members, probs, strict=True)},
    }


def secs(v: float) -> str:
    """Seconds as a person reads them: tenths below ten (a 200-image run's stages are 0.2-2 s)."""
    return f"{v:.1f}" if v < 10 else f"{v:.0f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="CIFAR-10 JPEGs")
    ap.add_argument("--large", type=int, default=2000, help="large photos")
    ap.add_argument("--sets", nargs="*", default=["cifar", "large"])
    ap.add_argument("--runtimes", nargs="*", default=["torch", "onnx"])
    ap.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "image-triage-bench-large"))
    ap.add_argument("--busy", action="store_true", help="keep one core busy with another process through each run")
    ap.add_argument("--child", nargs=3, metavar=("MANIFEST", "DB", "RUNTIME"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if not SHARED.exists():
        sys.exit(f"needs {SHARED} (the developers' shared data)")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in args.sets:
            paths = cifar_paths(args.n) if name == "cifar" else large_set(cifar_paths(args.large), args.large, Path(args.cache))
            folder = work / name
            folder.mkdir()
            m = manifest(paths, folder)
            for rt in args.runtimes:
                db = folder / f"{rt}.triage.db"
                busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
                try:
                    out = subprocess.run([sys.executable, __file__, "--child", str(m), str(db), rt],
                                         capture_output=True, text=True, check=False)
                finally:
                    if busy is not None:
                        busy.kill()
                if out.returncode != 0:
                    print(f"[{name} {rt}] failed:\n{out.stderr[-3000:]}", flush=True)
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                lo, hi = r["estimate"]
                prof = r["profile"]
                stages = ", ".join(f"{k} {secs(v)}" for k, v in sorted(prof.items(), key=lambda kv: -kv[1]) if v >= 0.5)
                inside = "inside" if lo <= r["actual"] <= hi else f"{r['actual'] / np.sqrt(lo * hi):.2f}x its middle"
                print(f"[{name}, {r['n']} images, --runtime {rt} -> {r['runtime']}{', one core busy' if args.busy else ''}] "
                      f"{r['actual']:.0f} s "
                      f"({r['n'] / r['actual']:.1f} images/s), peak {r['peak_gb']:.1f} GB; estimate {lo:.0f}-{hi:.0f} s "
                      f"(made in {r['estimate_seconds']:.0f} s; actual {inside})", flush=True)
                print(f"    stages (s): {stages}", flush=True)
                said: dict[str, float] = {}
                for k, v in r["parts"].items():  # every encoder's forward is one stage of the run
                    said["forward" if k.startswith("forward") else k] = said.get("forward" if k.startswith("forward") else k, 0) + v
                print("    said / took (s): " + ", ".join(f"{k} {secs(v)} / {secs(prof.get(k, float('nan')))}"
                                                        for k, v in said.items()), flush=True)
                members = ", ".join(f"{k} {v:.3f}" for k, v in r["members"].items())
                print(f"    consensus top-1 {r['consensus']:.3f}; out-of-fold top-1: {members}", flush=True)


if __name__ == "__main__":
    main()

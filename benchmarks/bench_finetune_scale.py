"""The packaged encoder fine-tuned at the images' own scale on a CPU (issue 34): top-1 against
input size and epochs, and the time, for one fold of the automatic pool's fine-tuned member.

On N shared CIFAR-10 test JPEGs (default 10,000), one fold of five (four fifths train, the rest
held out, stratified by a seeded shuffle): the member `--budget` and `--thorough` add
(EfficientNet-Lite0 from the packaged ImageNet weights, a new head, SGD with a one-cycle
schedule, flips and padded crops, the flip at prediction), trained whole at each input size and
epoch count asked; prints the training seconds, seconds per epoch, the held-out top-1, and the
member's own estimate of the same fold (``finetune_fit_seconds`` / folds). Pixels are resized
with Pillow's bilinear filter from the 32 px JPEGs here (the engine's own decode is not used).

``--blocks`` trains only the last N blocks and the head (``train_blocks``; 0 = the whole
network): the frozen trunk runs once over every image first (through torch here; the engine runs
it through ONNX Runtime on a CPU), and its seconds are printed on their own line.

    python benchmarks/bench_finetune_scale.py [--n 10000] [--sizes 64] [--epochs 4] [--blocks 0]
    python benchmarks/bench_finetune_scale.py --sizes 160 --blocks 5 --epochs 1,2,4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scoring.pool.finetune import finetune_fit_seconds  # noqa: E402
from scoring.pool.spec import build_pool  # noqa: E402
from scoring.pool.timing import FitFacts  # noqa: E402
from scoring.tasks.autopool import Facts, _finetune  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def load(n: int, size: int, mean: tuple[float, ...], std: tuple[float, ...]) -> tuple[torch.Tensor, np.ndarray, list[str]]:
    root = SHARED / "data" / "cifar10-test"
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((root / name).iterdir())[: n // len(classes)]]
    m, s = np.array(mean, np.float32), np.array(std, np.float32)
    x = np.stack([((np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR), np.float32) / 255 - m) / s)
                  for f, _ in files]).transpose(0, 3, 1, 2)
    return torch.from_numpy(np.ascontiguousarray(x)), np.array([c for _, c in files]), classes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--sizes", default="64")
    ap.add_argument("--epochs", default="4")
    ap.add_argument("--blocks", default="0", help="last blocks trained, comma-separated (0: the whole network)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"{'size':>5} {'blocks':>6} {'epochs':>6} {'train':>6} {'seconds':>8} {'s/epoch':>8} {'estimate':>9} "
          f"{'held-out top-1':>15}")
    for size, blocks in ((int(s), int(b)) for s in args.sizes.split(",") for b in args.blocks.split(",")):
        facts = Facts(n_images=args.n, labelled=True, side=size // 2, grayscale=False, gpu=False, thorough=True,
                      classes=tuple(str(i) for i in range(10)), min_per_class=args.n // 10)
        spec = _finetune(facts)[0]
        spec["preprocess"] = {**spec["preprocess"], "size": size, "resize": size}
        spec = {k: v for k, v in spec.items() if k not in ("train_blocks", "batch_size")}
        if blocks:
            spec.update(train_blocks=blocks, lr=0.05, batch_size=64)
        else:
            spec.update(lr=0.01)
        x: torch.Tensor | None = None
        for epochs in (int(e) for e in args.epochs.split(",")):
            member = build_pool([{**spec, "epochs": epochs}], list(facts.classes)).members[0]
            pp = member.encoder.preprocess
            if x is None:
                x, y, _ = load(args.n, size, pp.mean, pp.std)
                if blocks:
                    t0 = time.perf_counter()
                    with torch.no_grad():
                        trunk = member.encoder.module.eval()
                        x = torch.cat([trunk(x[i : i + 200]) for i in range(0, len(x), 200)]).view(-1, *member.map_shape)
                    print(f"  the frozen trunk over {len(x):,} images at {size} px: {time.perf_counter() - t0:.0f} s "
                          f"(torch), maps {tuple(member.map_shape)}", flush=True)
            order = np.random.default_rng(0).permutation(len(y))
            held = np.sort(order[: len(y) // 5])
            train = np.sort(order[len(y) // 5 :])
            est = finetune_fit_seconds(member, FitFacts(args.n, len(train), 10, torch.device("cpu"))) / member.folds
            t0 = time.perf_counter()
            net = member._train(x, y, train, epochs, lambda *_: None, None)
            took = time.perf_counter() - t0
            top1 = float((member._predict(net, x, held).argmax(1) == y[held]).mean())
            print(f"{size:>5} {blocks or 'all':>6} {epochs:>6} {len(train):>6} {took:>8.0f} {took / epochs:>8.0f} {est:>9.0f} {top1:>15.3f}", flush=True)


if __name__ == "__main__":
    main()

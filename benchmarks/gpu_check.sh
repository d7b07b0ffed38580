#!/usr/bin/env bash
# The GPU check (issue 21): one script, under 10 minutes on one GPU, that prints images per second
# and the time per stage of
#   1. the engine benchmark: CIFAR JPEGs and large JPEGs, 1 and 4 members (bench_scoring.py)
#   2. fine-tuning ResNet-20 and EfficientNet-Lite0 in 2 folds, 1 epoch each (time per fold printed)
#   3. the automatic pool with --thorough (fine-tuned members included) on CIFAR JPEGs
# on whatever device torch finds (CUDA, else MPS, else CPU). TINY=1 runs the same steps on a tiny
# set (the CPU path CI runs: tests/test_gpu_check.py). Needs ../shared (the CIFAR JPEGs and ResNets).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
N=${N:-2000}; LARGE=${LARGE:-200}; REPEATS=${REPEATS:-3}
if [ "${TINY:-0}" = 1 ]; then N=48; LARGE=4; REPEATS=1; fi
SHARED=${SHARED:-../shared}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu-check-XXXXXX")
trap 'rm -rf "$WORK"' EXIT

"$PY" - <<PYEOF
import torch
from scoring.device import pick_device
d = pick_device("auto")
name = torch.cuda.get_device_name(0) if d.type == "cuda" else d.type
print(f"== device: {name} (torch {torch.__version__}); {$N} CIFAR JPEGs, {$LARGE} large")
PYEOF

echo "== 1. engine: CIFAR and large JPEGs, 1 and 4 members"
"$PY" benchmarks/bench_scoring.py --images "$N" --large "$LARGE" --repeats "$REPEATS" --members 1 4 --cache "$WORK/large"

echo "== 2. fine-tuning, 2 folds x 1 epoch"
mkdir -p "$WORK/cifar"
"$PY" - "$SHARED/data/cifar10-test" "$WORK/cifar" "$N" <<'PYEOF'
import random, sys
from pathlib import Path
src, dst, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
files = sorted(p for p in src.rglob("*") if p.is_file())
for f in random.Random(0).sample(files, n):
    (dst / f.parent.name).mkdir(exist_ok=True)
    (dst / f.parent.name / f.name).write_bytes(f.read_bytes())
PYEOF
"$PY" - "$SHARED/models/cifar10-resnet" "$WORK" <<'PYEOF'
import json, sys
from pathlib import Path
from scoring.pool.spec import cifar_resnet_pool_specs
r20 = next(s for s in cifar_resnet_pool_specs(Path(sys.argv[1])) if s["arch"] == "cifar_resnet20")
pools = {"resnet20-ft": [{**r20, "name": "resnet20-ft", "kind": "finetune", "folds": 2, "epochs": 1}],
         "effnet-lite0-ft": [{"name": "effnet-lite0-ft", "kind": "finetune", "arch": "efficientnet_lite0", "folds": 2,
                              "epochs": 1, "lr": 0.01, "preprocess": {"size": 64, "resize": 64}}]}
for name, spec in pools.items():
    Path(sys.argv[2], f"{name}.json").write_text(json.dumps(spec))
PYEOF
for name in resnet20-ft effnet-lite0-ft; do
  start=$(date +%s.%N)
  "$PY" -m scoring.cli.main score "$WORK/cifar" --db "$WORK/$name.triage.db" --pool "$WORK/$name.json" --trust-checkpoint -q --no-duplicates --profile
  end=$(date +%s.%N)
  "$PY" -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); print(f'   {sys.argv[3]}: {t:.1f} s in all, {t/2:.1f} s per fold, {int(sys.argv[4])/t:.0f} images/s')" "$start" "$end" "$name" "$N"
done

echo "== 3. the automatic pool, --thorough"
start=$(date +%s.%N)
"$PY" -m scoring.cli.main score "$WORK/cifar" --db "$WORK/auto.triage.db" --thorough -q --no-duplicates --profile
end=$(date +%s.%N)
"$PY" -c "import sys; t=float(sys.argv[2])-float(sys.argv[1]); print(f'   automatic pool --thorough: {t:.1f} s, {int(sys.argv[3])/t:.0f} images/s')" "$start" "$end" "$N"
echo "== done"

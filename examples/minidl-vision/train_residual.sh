#!/usr/bin/env bash
# A residual convnet on the digits, from a model spec with residual(...), through
# minidl-run alone: 5 seeds, their mean held-out accuracy (the target: at least 98%), each
# saved model reloaded and scored again (it must give the very same accuracy), and one
# data-parallel run (--nproc 2) of the same spec.
#
#   examples/minidl-vision/train_residual.sh [OUT_DIR]       (default: runs/residual)
set -euo pipefail
out=${1:-runs/residual}
mkdir -p "$out"
model="conv2d(16, 3, padding=1), batchnorm2d(16), relu, residual(conv2d(16, 3, padding=1), batchnorm2d(16), relu, conv2d(16, 3, padding=1), batchnorm2d(16)), relu, maxpool2d(2), flatten, linear(10)"
common=(--dataset digits --model "$model" --loss cross_entropy --optimizer adam --lr 3e-3
        --batch-size 64 --epochs 20 --no-diagnostics --quiet)
for seed in 0 1 2 3 4; do
    minidl-run train "${common[@]}" --seed "$seed" --out "$out/seed$seed" --json >"$out/seed$seed.json"
done
minidl-run train "${common[@]}" --seed 0 --nproc 2 --out "$out/nproc2" --json >"$out/nproc2.json"
python - "$out" <<'PY'
import json
import sys

import minidl

out = sys.argv[1]
accuracies = []
for seed in range(5):
    reported = json.load(open(f"{out}/seed{seed}.json"))["test_accuracy"]
    model, _ = minidl.load_model(f"{out}/seed{seed}")
    _, test = minidl.create("dataset", "digits", seed=seed)
    reloaded = minidl.accuracy(minidl.predict(model, test.x), test.y)
    assert reloaded == reported, (seed, reloaded, reported)
    accuracies.append(reported)
    print(f"seed {seed}: held-out accuracy {reported:.2%} (reloaded: {reloaded:.2%})")
mean = sum(accuracies) / len(accuracies)
print(f"mean over 5 seeds: {mean:.2%}")
parallel = json.load(open(f"{out}/nproc2.json"))["test_accuracy"]
print(f"--nproc 2, seed 0: {parallel:.2%}")
sys.exit(0 if mean >= 0.98 else 1)
PY

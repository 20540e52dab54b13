#!/usr/bin/env bash
# Regenerate the measured parts of docs/reproduction.md and docs/tuning.md: Table I
# (minidl and its torch.nn twin), Figs. 1-3, the tuned Table I and its diagnostics plots.
#
#   bash docs/regenerate.sh [WORKDIR]     # from the repository root, with minidl installed
#
# Each run writes into WORKDIR (default out/regenerate, which git ignores), copies the plots
# into docs/img/, and prints every table the pages show. The tables in the pages are then
# replaced by hand with exactly what it printed. Nothing here is random beyond the seeds,
# so a rerun prints the same numbers. Most of its time goes to `tune` (docs/tuning.md
# gives the times measured).
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:-out/regenerate}"
img=docs/img
jobs="${JOBS:-2}"
mkdir -p "$work" "$img"

step() { printf '\n=== %s\n' "$*"; }
timed() {
    local start=$SECONDS
    "$@"
    printf '(%d s)\n' "$((SECONDS - start))"
}

step "Table I: minidl-run sweep --jobs $jobs --out $work/table1"
rm -rf "$work/table1"
timed minidl-run sweep --jobs "$jobs" --out "$work/table1"
cp "$work/table1/accuracy.png" "$img/table1.png"
cat "$work/table1/table.md"

step "Table I, the torch.nn twin's column (benchmarks/twin.py; same data, weights, batches)"
timed python - <<'EOF'
import statistics

import torch

from benchmarks.twin import torch_optimizer, torch_twin, twin_fit
from minidl.cli import TrainConfig
from minidl.cli.experiment import setup
from minidl.cli.sweep import TABLE_I, round_config

torch.set_num_threads(1)
for row in TABLE_I:
    accuracies = []
    for r in range(10):
        config = round_config(TrainConfig(), row, r)
        model, _, _, train, test = setup(config)
        net = torch_twin(model)
        betas = {} if row.beta1 is None else {"betas": (row.beta1, row.beta2)}
        opt = torch_optimizer(row.optimizer, net.parameters(), lr=row.lr, **betas)
        history = twin_fit(net, opt, train, test, epochs=100, batch_size=100, seed=config.seed)
        accuracies.append(history[-1]["test_accuracy"])
    mean, std = statistics.mean(accuracies), statistics.stdev(accuracies)
    print(f"{row.label}: {100 * mean:.2f} ± {100 * std:.2f}")
EOF

step "Figs. 1 and 2: minidl-run train --optimizer sgd --lr 0.5 --out $work/relu-sgd"
rm -rf "$work/relu-sgd" "$work/relu-adam"
timed minidl-run train --optimizer sgd --lr 0.5 --out "$work/relu-sgd"
step "Figs. 2 and 3: minidl-run train --out $work/relu-adam --show-misclassified"
timed minidl-run train --out "$work/relu-adam" --show-misclassified
for run in relu-sgd relu-adam; do
    cp "$work/$run/loss.png" "$img/$run-loss.png"
    cp "$work/$run/accuracy.png" "$img/$run-accuracy.png"
done
cp "$work/relu-adam/decision_boundary.png" "$img/relu-adam-decision-boundary.png"

step "Tuned Table I: minidl-run tune --jobs $jobs --out $work/tuned"
rm -rf "$work/tuned"
timed minidl-run tune --jobs "$jobs" --out "$work/tuned"
cp "$work/tuned/accuracy.png" "$img/tuned-table1.png"
for row in sigmoid-sgd sigmoid-adam tanh-adam; do
    cp "$work/tuned/diagnostics-$row.png" "$img/tuned-diagnostics-$row.png"
done
cat "$work/tuned/table.md"
python - "$work/tuned/tune.json" <<'EOF'
import json
import sys

rows = json.load(open(sys.argv[1]))["rows"]
for r in rows:
    v = r["validation"]
    n = len(v["seeds"])
    print(f"{r['label']}: validation {100 * v['mean']:.2f} ± {100 * v['std']:.2f} ({n} seeds)")
print(f"worst tuned round: {100 * min(min(r['accuracies']) for r in rows):.1f}%")
EOF

step "done: plots copied into $img/; tables above"

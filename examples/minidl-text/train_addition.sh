#!/usr/bin/env bash
# The long run: through minidl-run alone, a small GPT learns two-digit addition, and is
# scored on the 500 held-out additions it never saw (sequence accuracy: every answer digit
# right), for seeds 0, 1 and 2. Then generate completes a few prompts with the first model.
#
#   examples/minidl-text/train_addition.sh [OUT_DIR]       (default: runs/addition)
#
# The model is minGPT's shape at width 64: token and position embeddings, two pre-norm
# transformer blocks of 4 heads, a final layer norm and a linear head over the 10 digits.
# AdamW at lr 3e-3 with a 1-epoch linear warm-up then a cosine decay over 10 epochs of
# 9,500 additions, batch 64.
#
# Measured on minidl 0.3.0's main, on the project's 2-core machine, OMP_NUM_THREADS=1:
# held-out sequence accuracy 100% for seeds 0, 1 and 2; 72 s of wall time for the whole
# script (about 24 s a seed, both splits evaluated after every epoch).
set -euo pipefail
out=${1:-runs/addition}
mkdir -p "$out"
for seed in 0 1 2; do
    minidl-run train \
        --dataset "addition(digits=2)" \
        --model "embedding(10, 64), positional_embedding(6), transformer_block(4), transformer_block(4), layernorm, linear(10)" \
        --loss cross_entropy --optimizer adamw --lr 3e-3 --schedule "cosine(warmup=1)" \
        --batch-size 64 --epochs 10 --seed "$seed" --no-diagnostics \
        --out "$out/seed$seed" --json >"$out/seed$seed.json"
    python -c "import json, sys; m = json.load(open(sys.argv[1])); print(f'seed {sys.argv[2]}: held-out accuracy {m[\"test_accuracy\"]:.2%}')" \
        "$out/seed$seed.json" "$seed"
done
python - "$out" <<'PY'
import json
import sys

accuracies = [json.load(open(f"{sys.argv[1]}/seed{s}.json"))["test_accuracy"] for s in range(3)]
mean = sum(accuracies) / 3
print(f"mean held-out accuracy over 3 seeds: {mean:.2%}")
sys.exit(0 if mean >= 0.99 else 1)
PY
minidl-run generate "$out/seed0" 12+34 99+99 7+5 50+50

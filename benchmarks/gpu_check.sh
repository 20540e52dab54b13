#!/usr/bin/env bash
# A short CUDA check on a machine with a GPU and a CUDA build of torch (run from the repo
# root): install minidl without touching that torch, run the CUDA tests, train on the GPU
# through the CLI, and time the training steps against the torch twin there.
# Writes its logs into $OUT (default: gpu-check/).
set -u
OUT=${OUT:-gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
nvidia-smi -L
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
if ! $PY -m pip install -q --no-deps --no-build-isolation -e . >"$OUT/install.log" 2>&1; then
  cat "$OUT/install.log"; exit 1
fi
echo "== CUDA tests"
$PY -m pytest -q -p no:cacheprovider -k cuda \
  tests/test_layers.py tests/test_module.py tests/test_train.py 2>&1 | tee "$OUT/pytest.log" | tail -8
echo "== minidl-run train --device cuda"
$PY -m minidl.cli train --device cuda --json >"$OUT/train-cuda.json" && \
  $PY -c "import json; d = json.load(open('$OUT/train-cuda.json')); print('test accuracy', d['test_accuracy'])"
$PY -m minidl.cli train --device cuda --dtype float64 --epochs 20 --out "$OUT/run64" 2>&1 | tail -3
$PY -m minidl.cli predict "$OUT/run64" 0.5 0.5 0.0 0.0
echo "== benchmark on the GPU"
timeout "${BENCH_TIMEOUT:-240}" $PY -m benchmarks.bench --device cuda --only steps --rounds 5 --out "$OUT" 2>&1 | tail -16

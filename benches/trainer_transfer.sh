#!/usr/bin/env bash
# Transfer benchmark: a small CNN pretrained on bundled MNIST (10k digits), fine-tuned on bundled
# Fashion-MNIST with 100 labels per class (800 train / 200 val after the split), vs the same network from
# scratch with the same budget. Reports test accuracy on the 2,000 held-out Fashion-MNIST test images.
#
#   benches/trainer_transfer.sh                 # uses target/release/nightshift (cargo build --release)
#   NIGHTSHIFT_BIN=path/to/nightshift EPOCHS=15 SEEDS="0 1 2" benches/trainer_transfer.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${NIGHTSHIFT_BIN:-target/release/nightshift}"
EPOCHS="${EPOCHS:-15}"
PRETRAIN_EPOCHS="${PRETRAIN_EPOCHS:-3}"
LR="${LR:-0.002}"
SEEDS="${SEEDS:-0 1 2}"
OUT="${OUT:-reports/transfer}"
mkdir -p "$OUT"

if [ ! -f "$OUT/mnist-cnn/model.safetensors" ]; then
  "$BIN" pretrain --dataset data/mnist_npm10k --arch small-cnn --epochs "$PRETRAIN_EPOCHS" --out "$OUT/mnist-cnn" --device cpu
fi

run() { # name freeze_depth init-args...
  local name=$1 freeze=$2; shift 2
  for seed in $SEEDS; do
    local acc
    acc=$(NIGHTSHIFT_PARAMS="{\"epochs\": $EPOCHS, \"learning_rate\": $LR, \"batch_size\": 64, \"freeze_depth\": $freeze}" \
      "$BIN" trial --dataset data/fashion_mnist_100 --test --no-wait --seed "$seed" --device cpu "$@" </dev/null \
      | tail -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["metrics"]["test_accuracy"])')
    echo "$name seed=$seed test_accuracy=$acc"
  done
}

run "scratch                 " 0
run "pretrained freeze_depth=0" 0 --init "$OUT/mnist-cnn"
run "pretrained freeze_depth=2" 2 --init "$OUT/mnist-cnn"
run "pretrained freeze_depth=3 (linear probe)" 3 --init "$OUT/mnist-cnn"

#!/usr/bin/env bash
# CPU training throughput and peak memory, nightshift (burn flex) vs PyTorch: the same small CNN
# (28x28, batch 64, AdamW) and ResNet-18 (64x64 RGB, batch 64) on the bundled Fashion-MNIST images,
# with the same number of threads. Prints images/s (wall clock), images per CPU-second (user+sys; less
# sensitive to other load on the machine) and the peak resident memory of each process.
#
# The nightshift side is `nightshift trial` itself (images/s as it reports per epoch, mean after the
# first), so what is measured is what a sweep runs.
#
#   cargo build --release && benches/cpu_vs_pytorch.sh      # THREADS="1 2" MODELS="cnn resnet" EPOCHS=2
#   NIGHTSHIFT_BIN=target/debug/nightshift THREADS=1 MODELS=cnn benches/cpu_vs_pytorch.sh
#
# Needs `pip install torch torchvision` for the PyTorch side (skipped otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-1 2}"
MODELS="${MODELS:-cnn resnet}"
EPOCHS="${EPOCHS:-2}"
BIN="${NIGHTSHIFT_BIN:-target/release/nightshift}"
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release (or set NIGHTSHIFT_BIN)"; exit 1; }

# nightshift trial for EPOCHS+1 epochs; prints "N images/s" (mean of the epochs after the first).
trial() {
  NIGHTSHIFT_PARAMS="{\"epochs\": $((EPOCHS + 1)), \"learning_rate\": 0.001, \"batch_size\": 64}" \
    "$BIN" trial --dataset data/fashion_mnist_100 --no-wait --device cpu "$@" </dev/null \
    | python3 -c 'import json, sys
r = [json.loads(l)["report"]["metrics"]["images_per_second"] for l in sys.stdin if l.startswith("{\"report\"")]
print(f"{sum(r[1:]) / len(r[1:]):.1f} images/s")'
}
export -f trial
export BIN EPOCHS

# measure LABEL command…: runs it under GNU time, prints one summary line.
measure() {
  local label=$1; shift
  local log
  log=$(mktemp)
  /usr/bin/time -f "time: %U %S %e %M" "$@" >"$log" 2>&1 || { cat "$log"; return 1; }
  local ips cpu_user cpu_sys wall rss
  ips=$(grep -oE '[0-9.]+ images/s' "$log" | head -n 1 | cut -d' ' -f1)
  read -r cpu_user cpu_sys wall rss < <(grep '^time:' "$log" | cut -d' ' -f2-)
  awk -v l="$label" -v ips="$ips" -v u="$cpu_user" -v s="$cpu_sys" -v w="$wall" -v r="$rss" 'BEGIN {
    printf "%-36s %6.0f images/s  %5.0f s CPU  %5.0f s wall  peak RSS %5.0f MiB\n", l, ips, u + s, w, r / 1024 }'
  rm -f "$log"
}

have_torch=$(python3 -c 'import torch, torchvision; print(1)' 2>/dev/null || echo 0)
for t in $THREADS; do
  for m in $MODELS; do
    if [ "$m" = cnn ]; then
      RAYON_NUM_THREADS=$t measure "burn-flex small-cnn, $t thread(s)" bash -c 'trial' 
      [ "$have_torch" = 1 ] && measure "pytorch small-cnn, $t thread(s)" \
        python3 benches/pytorch_small_cnn.py --epochs $((EPOCHS + 1)) --threads "$t"
    else
      RAYON_NUM_THREADS=$t measure "burn-flex resnet18 64x64, $t thread(s)" \
        bash -c 'trial --arch resnet18 --image-size 64 --channels 3' 
      [ "$have_torch" = 1 ] && measure "pytorch resnet18 64x64, $t thread(s)" \
        python3 benches/pytorch_resnet18.py --epochs "$EPOCHS" --device cpu --threads "$t"
    fi
  done
done
[ "$have_torch" = 1 ] || echo "SKIPPED the PyTorch side: torch/torchvision are not installed"

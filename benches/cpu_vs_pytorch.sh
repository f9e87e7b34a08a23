#!/usr/bin/env bash
# CPU training and eval throughput and peak memory, nightshift (burn flex) vs PyTorch, back to back on the
# same machine with the same number of threads, on the bundled Fashion-MNIST images (800 train / 200
# held-out validation images, batch 64, AdamW):
#   cnn        the small CNN, 28x28 grey
#   resnet     ResNet-18 (random init), 64x64 RGB
#   effnet     EfficientNet-Lite0 from the ImageNet weights, EFFNET_SIZE px RGB (default 64, as the example
#              sweep search-spaces/efficientnet-fashion.yaml), full fine-tuning
#   effnet-lp  the same, linear probe (freeze_depth 7: only the head trains)
# Prints training images/s, eval images/s (the validation pass after each epoch: eval mode, no gradients,
# batch 64), CPU seconds (user+sys), wall seconds and the peak resident memory of each process.
#
# The nightshift side is `nightshift trial` itself, so what is measured is what a sweep runs: training
# images/s as it reports per epoch; eval images/s from its history.json (each epoch's seconds minus its
# training time, over the 200 validation images). Both sides: the mean of the epochs after the first.
#
#   cargo build --release && benches/cpu_vs_pytorch.sh   # THREADS="1 2" MODELS="cnn resnet effnet" EPOCHS=1
#   PYTHON=/var/tmp/nightshift-venv/bin/python EFFNET_SIZE=128 MODELS="effnet effnet-lp" benches/cpu_vs_pytorch.sh
#
# The EfficientNet rows need the weights (scripts/fetch-efficientnet.sh; or EFFNET_WEIGHTS=FILE.pth). The
# PyTorch side needs torch (and torchvision for ResNet-18) in $PYTHON (default python3); skipped otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS="${THREADS:-1 2}"
MODELS="${MODELS:-cnn resnet effnet}"
EPOCHS="${EPOCHS:-1}"
EFFNET_SIZE="${EFFNET_SIZE:-64}"
EFFNET_WEIGHTS="${EFFNET_WEIGHTS:-models/efficientnet-lite0.pth}"
PYTHON="${PYTHON:-python3}"
BIN="${NIGHTSHIFT_BIN:-target/release/nightshift}"
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release (or set NIGHTSHIFT_BIN)"; exit 1; }
case " $MODELS " in *" effnet"*)
  [ -f "$EFFNET_WEIGHTS" ] || { echo "no $EFFNET_WEIGHTS: run scripts/fetch-efficientnet.sh (or set EFFNET_WEIGHTS)"; exit 1; } ;;
esac

# nightshift trial for EPOCHS+1 epochs [extra hyperparameters as JSON members] -- flags…; prints
# "N images/s training, eval M images/s" (means of the epochs after the first).
trial() {
  local extra=$1; shift
  local out
  out=$(mktemp -d)
  NIGHTSHIFT_PARAMS="{\"epochs\": $((EPOCHS + 1)), \"learning_rate\": 0.001, \"batch_size\": 64$extra}" \
    "$BIN" trial --dataset data/fashion_mnist_100 --no-wait --device cpu --out "$out" "$@" </dev/null >/dev/null
  "$PYTHON" - "$out/history.json" <<'PY'
import json, sys
# data/fashion_mnist_100: 1,000 training images, of which a stratified 20 % are held out for validation.
n_train, n_val = 800, 200
epochs = json.load(open(sys.argv[1]))[1:]
train = [e["images_per_second"] for e in epochs]
evals = [n_val / (e["seconds"] - n_train / e["images_per_second"]) for e in epochs]
print(f"{sum(train) / len(train):.1f} images/s training, eval {sum(evals) / len(evals):.1f} images/s")
PY
  rm -rf "$out"
}
export -f trial
export BIN EPOCHS PYTHON

# measure LABEL command…: runs it under GNU time, prints one summary line.
measure() {
  local label=$1; shift
  local log
  log=$(mktemp)
  /usr/bin/time -f "time: %U %S %e %M" "$@" >"$log" 2>&1 || { cat "$log"; rm -f "$log"; return 1; }
  if grep -q '^SKIPPED' "$log"; then
    printf '%-44s %s\n' "$label" "$(grep '^SKIPPED' "$log")"
    rm -f "$log"
    return 0
  fi
  local ips eval_ips cpu_user cpu_sys wall rss
  ips=$(grep -oE '[0-9.]+ images/s' "$log" | head -n 1 | cut -d' ' -f1)
  eval_ips=$(grep -oE 'eval [0-9.]+ images/s' "$log" | head -n 1 | cut -d' ' -f2)
  read -r cpu_user cpu_sys wall rss < <(grep '^time:' "$log" | cut -d' ' -f2-)
  awk -v l="$label" -v ips="$ips" -v e="$eval_ips" -v u="$cpu_user" -v s="$cpu_sys" -v w="$wall" -v r="$rss" 'BEGIN {
    printf "%-44s train %7.1f images/s  eval %7.1f images/s  %5.0f s CPU  %5.0f s wall  peak RSS %5.0f MiB\n",
      l, ips, e, u + s, w, r / 1024 }'
  rm -f "$log"
}

have_torch=$("$PYTHON" -c 'import torch; print(1)' 2>/dev/null || echo 0)
have_torchvision=$("$PYTHON" -c 'import torchvision; print(1)' 2>/dev/null || echo 0)
echo "# $(date -u '+%F %T') UTC, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg); THREADS=\"$THREADS\" EPOCHS=$EPOCHS EFFNET_SIZE=$EFFNET_SIZE"
for t in $THREADS; do
  for m in $MODELS; do
    case "$m" in
      cnn)
        RAYON_NUM_THREADS=$t measure "nightshift small-cnn 28x28, $t thread(s)" bash -c 'trial "$@"' _ ""
        [ "$have_torch" = 1 ] && measure "pytorch small-cnn 28x28, $t thread(s)" \
          "$PYTHON" benches/pytorch_small_cnn.py --epochs $((EPOCHS + 1)) --threads "$t" ;;
      resnet)
        RAYON_NUM_THREADS=$t measure "nightshift resnet18 64x64, $t thread(s)" \
          bash -c 'trial "$@"' _ "" --arch resnet18 --image-size 64 --channels 3
        [ "$have_torchvision" = 1 ] && measure "pytorch resnet18 64x64, $t thread(s)" \
          "$PYTHON" benches/pytorch_resnet18.py --epochs "$EPOCHS" --device cpu --threads "$t" ;;
      effnet | effnet-lp)
        depth=0; [ "$m" = effnet-lp ] && depth=7
        name="efficientnet-lite0 ${EFFNET_SIZE}px freeze_depth $depth"
        RAYON_NUM_THREADS=$t measure "nightshift $name, $t thread(s)" \
          bash -c 'trial "$@"' _ ", \"freeze_depth\": $depth" --init "$EFFNET_WEIGHTS" --arch efficientnet-lite0 \
          --image-size "$EFFNET_SIZE" --channels 3
        [ "$have_torch" = 1 ] && measure "pytorch $name, $t thread(s)" \
          "$PYTHON" benches/pytorch_efficientnet_lite0.py --weights "$EFFNET_WEIGHTS" --image-size "$EFFNET_SIZE" \
          --epochs "$EPOCHS" --threads "$t" --freeze-depth "$depth" ;;
      *) echo "unknown model $m (cnn, resnet, effnet, effnet-lp)"; exit 2 ;;
    esac
  done
done
[ "$have_torch" = 1 ] || echo "SKIPPED the PyTorch side: torch is not installed in $PYTHON"
[ "$have_torchvision" = 1 ] || echo "SKIPPED PyTorch's ResNet-18: torchvision is not installed in $PYTHON"

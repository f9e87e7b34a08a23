#!/usr/bin/env bash
# The trainer's caches (docs/trainer.md, "Caches"): EfficientNet-Lite0 trials with and without the
# frozen-prefix and dataset caches — epoch-1 seconds, mean seconds of epochs 2…N, each trial's total and
# peak RSS. Per strategy (linear probe, depth:K): one trial with --no-cache, then two trials sharing a
# fresh cache directory (the second finds the first's entries).
#
#   benches/prefix_cache.sh
#   env: NIGHTSHIFT_BIN (default $CARGO_TARGET_DIR/release/nightshift, built if missing),
#        WEIGHTS (default ../shared/fixtures/efficientnet_lite0.safetensors), DATASET (data/fashion_mnist_100),
#        SIZE (96), EPOCHS (4), PER_CLASS (100), DEPTH (5), BATCH (32)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${NIGHTSHIFT_BIN:-${CARGO_TARGET_DIR:-target}/release/nightshift}
if [ ! -x "$BIN" ]; then cargo build --release --bin nightshift; fi
WEIGHTS=${WEIGHTS:-../shared/fixtures/efficientnet_lite0.safetensors}
DATASET=${DATASET:-data/fashion_mnist_100}
SIZE=${SIZE:-96} EPOCHS=${EPOCHS:-4} PER_CLASS=${PER_CLASS:-100} DEPTH=${DEPTH:-5} BATCH=${BATCH:-32}
[ -f "$WEIGHTS" ] || { echo "no weights at $WEIGHTS: set WEIGHTS=path/to/efficientnet_lite0.safetensors" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
echo "binary $BIN; $(nproc) CPUs; load average at start $(cut -d' ' -f1-3 /proc/loadavg)"
echo "EfficientNet-Lite0 ${SIZE}x${SIZE}, $DATASET per_class $PER_CLASS, $EPOCHS epochs, batch $BATCH, hflip"

# run NAME STRATEGY FLAGS…: one trial; every output line is stamped on arrival, so epoch 1 runs from the
# "loaded" log line (weights and data ready) to the first report, epoch k from report k-1 to report k.
run() {
    local name=$1 strategy=$2
    shift 2
    NIGHTSHIFT_PARAMS="{\"freeze_strategy\":\"$strategy\",\"epochs\":$EPOCHS,\"batch_size\":$BATCH}" \
        /usr/bin/time -f "%M %e" -o "$WORK/$name.time" \
        "$BIN" trial --no-wait --arch efficientnet-lite0 --init "$WEIGHTS" --dataset "$DATASET" \
        --per-class "$PER_CLASS" --image-size "$SIZE" --hflip "$@" 2>&1 |
        while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done >"$WORK/$name.log"
    awk -v name="$name" -v time_file="$WORK/$name.time" '
        / nightshift trial: loaded / { t0 = $1 }
        / \{"report"/ { n++; if (n == 1) first = $1 - t0; else rest += $1 - prev; prev = $1; match($0, /"value":[0-9.]+/); acc = substr($0, RSTART + 8, RLENGTH - 8) }
        / cache: / { sub(/^[0-9.]+ nightshift trial: /, ""); caches = caches "    " $0 "\n" }
        END {
            getline t < time_file; split(t, f, " ")
            printf "%-22s epoch 1 %7.1f s   epochs 2..%d mean %8.3f s   total %7.1f s   peak RSS %5.0f MiB   val acc %s\n", name, first, n, (n > 1 ? rest / (n - 1) : 0), f[2], f[1] / 1024, acc
            printf "%s", caches
        }' "$WORK/$name.log"
}

for strategy in linear_probe "depth:$DEPTH"; do
    tag=${strategy/:/}
    cache="$WORK/cache-$tag"
    run "$tag-nocache" "$strategy" --no-cache
    run "$tag-cache-first" "$strategy" --cache-dir "$cache"
    run "$tag-cache-second" "$strategy" --cache-dir "$cache"
done
echo "load average at end $(cut -d' ' -f1-3 /proc/loadavg)"

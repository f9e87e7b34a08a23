#!/usr/bin/env bash
# GPU check for a short window on a GPU machine (about 10 minutes, nothing built there).
#
# Before the window, on any Linux x86-64 machine with the repository (no GPU needed):
#   scripts/gpu-check.sh build             # release build with --features wgpu (offline), stripped, size printed
#   CUDA=1 scripts/gpu-check.sh build      # also --features cuda: needs network access (LLVM bundle download)
# then carry the repository (data/, benches/, scripts/) and the binary to the GPU machine.
#
# In the window:
#   NIGHTSHIFT_BIN=target-gpu/release/nightshift scripts/gpu-check.sh run [OUT_DIR]
#   DEVICE=cuda:0 NIGHTSHIFT_BIN=target-gpu-cuda/release/nightshift scripts/gpu-check.sh run   # a cuda build
#
# Every step has its own timeout and writes its log under OUT_DIR as it goes; OUT_DIR/summary.tsv gets one
# line per step (name, exit code, seconds, figure), so a window that closes early still leaves results:
#   env         nvidia-smi -L, driver, memory, Vulkan adapters, the binary's size and features
#   smoke       one epoch of the small CNN on the GPU
#   ips-*       ResNet-18 at 64 px and EfficientNet-Lite0 at 224 px (both 3-channel), batch 64 and 256,
#               3 epochs; the figure is the mean images/s of epochs 2-3 (epoch 1 compiles and autotunes
#               kernels); nvidia-smi sampled every 0.5 s into ips-*.smi.csv
#   torch-*     the same ResNet-18 runs in PyTorch on the same GPU (benches/pytorch_resnet18.py; skipped
#               without torch). torchvision has no EfficientNet-Lite0, so that model has no PyTorch twin here.
#   sweep       `nightshift run` with 2 trials per GPU (ResNet-18 64 px): total images/s, utilisation and
#               memory per process (nvidia-smi --query-compute-apps) in sweep.smi*.csv
#   oom         one trial at a batch that cannot fit, run as a sweep, and the reason the study stored
#
#   DRY_RUN=1 scripts/gpu-check.sh run     # the same steps on CPU with tiny sizes: checks the plumbing
#
# Knobs: DEVICE (wgpu), DATA (data/mnist_npm10k), EPOCHS (3), BATCHES ("64 256"), STEP_TIMEOUT (75 s per
# throughput run), SWEEP_TIMEOUT (150 s). Never enable burn's `vulkan` feature: its SPIR-V path crashes lavapipe.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

mode="${1:-}"
dry="${DRY_RUN:-0}"

build() {
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target-gpu}"
  echo "== cargo build --release --features wgpu (offline once the crates are fetched)"
  cargo build --release --locked --features wgpu || { echo "the wgpu build failed (see above)"; return 1; }
  strip -o "$CARGO_TARGET_DIR/release/nightshift-stripped" "$CARGO_TARGET_DIR/release/nightshift"
  ls -l "$CARGO_TARGET_DIR/release/nightshift" "$CARGO_TARGET_DIR/release/nightshift-stripped"
  if [ "${CUDA:-0}" = 1 ]; then
    local dir="${CUDA_TARGET_DIR:-target-gpu-cuda}" log
    log="$dir/cuda-build.log"
    mkdir -p "$dir"
    echo "== cargo build --release --features cuda (log: $log)"
    if CARGO_TARGET_DIR="$dir" cargo build --release --locked --features cuda >"$log" 2>&1; then
      strip -o "$dir/release/nightshift-stripped" "$dir/release/nightshift"
      ls -l "$dir/release/nightshift-stripped"
    else
      echo "the cuda build FAILED; the last lines of $log:"
      tail -n 15 "$log"
      if grep -qiE "tracel-llvm|llvm-bundler|download|dns|resolve|connect" "$log"; then
        echo "=> the \`cuda\` feature needs network access at build time: cubecl-llvm's build script downloads an"
        echo "   LLVM bundle (tracel-llvm releases on GitHub). Build it where that is reachable, or use the wgpu build."
      fi
      return 1
    fi
  fi
}

# ---------------------------------------------------------------------------------------------------------

OUT="${2:-gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}"
BIN="${NIGHTSHIFT_BIN:-target-gpu/release/nightshift}"
DEVICE="${DEVICE:-wgpu}"
DATA="${DATA:-data/mnist_npm10k}"
EPOCHS="${EPOCHS:-3}"
BATCHES="${BATCHES:-64 256}"
STEP_TIMEOUT="${STEP_TIMEOUT:-75}"
SWEEP_TIMEOUT="${SWEEP_TIMEOUT:-150}"
RESNET_SIZE=64
EFFNET_SIZE=224
EFFNET_PER_CLASS=300   # 2,400 training images at 224 px: 1.4 GB as f32 on the host
if [ "$dry" = 1 ]; then
  DEVICE=cpu DATA=data/fashion_mnist_tiny EPOCHS=2 BATCHES="16" RESNET_SIZE=32 EFFNET_SIZE=64 EFFNET_PER_CLASS=8
fi

have() { command -v "$1" >/dev/null 2>&1; }
note() { echo "$*" | tee -a "$OUT/notes.txt"; }

# step NAME SECONDS CMD…: runs CMD with a timeout, its output in NAME.log; appends to summary.tsv.
step() {
  local name="$1" limit="$2" start rc
  shift 2
  start=$(date +%s)
  timeout --kill-after=5 "$limit" "$@" >"$OUT/$name.log" 2>&1 </dev/null
  rc=$?
  local secs=$(( $(date +%s) - start )) figure
  figure="$(figure_of "$name")"
  [ "$rc" = 124 ] && figure="TIMED OUT after ${limit}s${figure:+; $figure}"
  printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$secs" "$figure" >>"$OUT/summary.tsv"
  printf '%-28s rc=%-3s %4ss  %s\n' "$name" "$rc" "$secs" "$figure"
  return 0
}

# The headline figure of a step's log: mean images/s of the epochs after the first (nightshift's report
# lines), PyTorch's line, or nothing.
figure_of() {
  local log="$OUT/$1.log"
  case "$1" in
    ips-*|smoke) python3 - "$log" <<'PY' 2>/dev/null
import json, sys
rates = []
for line in open(sys.argv[1], errors="replace"):
    try:
        rec = json.loads(line)
    except ValueError:
        continue
    if isinstance(rec, dict) and "report" in rec:
        rates.append(rec["report"]["metrics"]["images_per_second"])
if rates:
    timed = rates[1:] or rates
    which = f"epochs 2-{len(rates)}" if len(rates) > 2 else f"epoch {len(rates)}"
    print(f"{sum(timed) / len(timed):.0f} img/s ({which}: {', '.join(f'{r:.0f}' for r in timed)})")
PY
    ;;
    torch-*) grep -E "images/s|SKIPPED" "$log" | tail -n 1 ;;
  esac
}

# Samples nvidia-smi into FILE(s) while a step runs: `sample_on NAME`, then `sample_off`.
SAMPLERS=()
sample_on() {
  have nvidia-smi || return 0
  nvidia-smi --query-gpu=timestamp,index,utilization.gpu,memory.used,memory.total,power.draw \
    --format=csv,noheader -lms 500 >"$OUT/$1.smi.csv" 2>&1 &
  SAMPLERS+=($!)
  nvidia-smi --query-compute-apps=timestamp,pid,gpu_uuid,used_memory --format=csv,noheader -lms 1000 \
    >"$OUT/$1.smi-apps.csv" 2>&1 &
  SAMPLERS+=($!)
}
sample_off() {
  local pid
  for pid in "${SAMPLERS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  SAMPLERS=()
}
trap sample_off EXIT

params() { printf '{"epochs": %s, "batch_size": %s, "learning_rate": 0.001}' "$1" "$2" >"$OUT/$3"; }

run_checks() {
  mkdir -p "$OUT"
  OUT="$(cd "$OUT" && pwd)"
  printf 'step\trc\tseconds\tfigure\n' >"$OUT/summary.tsv"
  note "gpu-check $(date -u +%FT%TZ), binary $BIN, device $DEVICE, data $DATA, dry run $dry, output $OUT"
  if [ ! -x "$BIN" ]; then
    note "no executable at $BIN: build it first (scripts/gpu-check.sh build) or set NIGHTSHIFT_BIN"
    return 1
  fi

  # Environment: what machine, driver, memory and adapters; the binary and what it was built with.
  step env-nvidia-smi-L 20 nvidia-smi -L
  step env-nvidia-smi 20 nvidia-smi
  step env-gpus 20 nvidia-smi --query-gpu=index,name,driver_version,memory.total,pci.bus_id,mig.mode.current --format=csv
  if have vulkaninfo; then step env-vulkan 30 vulkaninfo --summary; else note "vulkaninfo: not installed"; fi
  step env-binary 20 bash -c "ls -l '$BIN'; '$BIN' --version; uname -a; nproc; free -g"
  step env-devices-auto 30 bash -c "cd '$OUT' && printf 'study: probe\nobjective: {metric: val_accuracy, direction: maximize}\nbudget: {trials: 1}\ndevices: auto\ntrial: {dataset: $PWD/$DATA, epochs: 1}\nparams: {learning_rate: {type: float, low: 0.001, high: 0.01}}\n' > probe.yaml && '$BIN' check probe.yaml"

  # Smoke: one short trial on the device.
  params 1 64 smoke.json
  step smoke 120 "$BIN" trial --device "$DEVICE" --dataset data/fashion_mnist_tiny --params-file "$OUT/smoke.json" --no-wait

  # Throughput, nightshift then PyTorch, nvidia-smi sampled throughout.
  local b
  for b in $BATCHES; do
    params "$EPOCHS" "$b" "b$b.json"
    sample_on "ips-resnet18-${RESNET_SIZE}px-b$b"
    step "ips-resnet18-${RESNET_SIZE}px-b$b" "$STEP_TIMEOUT" "$BIN" trial --device "$DEVICE" --dataset "$DATA" \
      --arch resnet18 --image-size "$RESNET_SIZE" --channels 3 --params-file "$OUT/b$b.json" --no-wait
    sample_off
    sample_on "ips-effnet-lite0-${EFFNET_SIZE}px-b$b"
    step "ips-effnet-lite0-${EFFNET_SIZE}px-b$b" "$STEP_TIMEOUT" "$BIN" trial --device "$DEVICE" --dataset "$DATA" \
      --per-class "$EFFNET_PER_CLASS" --arch efficientnet-lite0 --image-size "$EFFNET_SIZE" --channels 3 \
      --params-file "$OUT/b$b.json" --no-wait
    sample_off
  done
  local torch_device=cuda
  [ "$dry" = 1 ] && torch_device=cpu
  for b in $BATCHES; do
    sample_on "torch-resnet18-64px-b$b"
    step "torch-resnet18-64px-b$b" "$STEP_TIMEOUT" python3 benches/pytorch_resnet18.py --epochs $((EPOCHS - 1)) \
      --batch-size "$b" --data "$DATA" --device "$torch_device"
    sample_off
  done

  # A sweep with 2 trials per GPU (per CPU slot in a dry run).
  local gpus devices backend=cuda
  case "$DEVICE" in wgpu*) backend=wgpu ;; esac
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)
  if [ "$dry" = 1 ] || [ "${gpus:-0}" = 0 ]; then
    devices="{cpu: 1, trials_per_device: 2}"
    gpus=1
  else
    devices="{gpu: [$(seq -s, 0 $((gpus - 1)))], trials_per_device: 2, backend: $backend}"
  fi
  cat >"$OUT/sweep.yaml" <<YAML
study: gpu-check-sweep
objective: {metric: val_accuracy, direction: maximize}
sampler: {type: random, seed: 1}
budget: {trials: $((gpus * 4)), max_consecutive_failures: 2}
devices: $devices
trial: {dataset: $PWD/$DATA, arch: resnet18, image_size: $RESNET_SIZE, channels: 3, epochs: $EPOCHS}
params:
  learning_rate: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
  batch_size: {type: categorical, choices: [${BATCHES// /, }]}
pruner: {type: none}
YAML
  sample_on sweep
  step sweep "$SWEEP_TIMEOUT" bash -c "cd '$OUT' && '$BIN' run sweep.yaml"
  sample_off
  step sweep-trials 30 bash -c "cd '$OUT' && '$BIN' trials --study-name gpu-check-sweep -f json"
  python3 - "$OUT/sweep-trials.log" "$gpus" <<'PY' | tee -a "$OUT/notes.txt"
import json, sys
try:
    trials = json.load(open(sys.argv[1]))
except ValueError:
    sys.exit(print("sweep: no trial list"))
ips = [t["user_attrs"].get("metrics", t["system_attrs"].get("metrics", {})).get("images_per_second") for t in trials]
ips = [x for x in ips if x]
states = {}
for t in trials:
    states[t["state"]] = states.get(t["state"], 0) + 1
per = sum(ips) / len(ips) if ips else 0
print(f"sweep: {states}; mean {per:.0f} img/s per trial, about {per * 2 * int(sys.argv[2]):.0f} img/s with 2 trials on each of {sys.argv[2]} device(s)")
PY

  # A deliberate out-of-memory: ResNet-18 at 512 px, one batch of all 2,400 images (hundreds of GB of activations).
  if [ "$dry" = 1 ]; then
    note "oom: skipped in a dry run (a CPU cannot run out of device memory cheaply)"
  else
    cat >"$OUT/oom.yaml" <<YAML
study: gpu-check-oom
objective: {metric: val_accuracy, direction: maximize}
budget: {trials: 1}
devices: {gpu: [0], backend: $backend}
trial: {dataset: $PWD/$DATA, per_class: 300, arch: resnet18, image_size: 512, channels: 3, epochs: 1}
params: {batch_size: {type: categorical, choices: [2400]}}
YAML
    step oom 120 bash -c "cd '$OUT' && '$BIN' run oom.yaml"
    step oom-reason 30 bash -c "cd '$OUT' && '$BIN' trials --study-name gpu-check-oom -f json"
  fi
  note "done: $OUT/summary.tsv"
  cat "$OUT/summary.tsv"
}

case "$mode" in
  build) build ;;
  run) run_checks ;;
  *) sed -n '2,29p' "$0"; exit 2 ;;
esac

#!/usr/bin/env bash
# GPU check: builds the trainer with the `wgpu` feature (and `cuda` if it builds), then fine-tunes ResNet-18
# on the bundled Fashion-MNIST at 64x64 (batch 64, AdamW) for a fixed number of epochs and prints images/s,
# alongside the same in PyTorch when torch/torchvision are installed.
#
#   scripts/gpu-check.sh            # wgpu (+ cuda when it builds) + PyTorch
#   EPOCHS=5 scripts/gpu-check.sh
#
# Runs headless on a software Vulkan too (Mesa lavapipe: apt-get install mesa-vulkan-drivers), to exercise
# the wgpu code path without a GPU: WGPU_DEVICE=wgpu:cpu scripts/gpu-check.sh. CI does not run it (a cold
# wgpu build is another 25+ min on 2 cores). Never enable burn's `vulkan` feature: its SPIR-V path crashes
# lavapipe.
set -euo pipefail
cd "$(dirname "$0")/.."
EPOCHS="${EPOCHS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target-gpu}"
export NIGHTSHIFT_BENCH_EPOCHS="$EPOCHS" NIGHTSHIFT_BENCH_RESNET=1 NIGHTSHIFT_BENCH_SKIP_CNN=1

echo "== nightshift (burn wgpu), device ${WGPU_DEVICE:-wgpu}"
NIGHTSHIFT_DEVICE="${WGPU_DEVICE:-wgpu}" cargo bench -p nightshift-trainer --features wgpu --bench trainer_throughput

if cargo build --release -p nightshift-trainer --features cuda --benches >/dev/null 2>&1; then
  echo "== nightshift (burn cuda:0)"
  NIGHTSHIFT_DEVICE=cuda:0 cargo bench -p nightshift-trainer --features cuda --bench trainer_throughput
else
  echo "== cuda feature does not build here; skipped"
fi

echo "== PyTorch"
python3 benches/pytorch_resnet18.py --epochs "$EPOCHS" || echo "PyTorch run failed"

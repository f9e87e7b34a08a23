#!/usr/bin/env bash
# N nightshift workers on one study, as a Slurm job array: one worker per array task, each on
# the GPUs Slurm gives it. Create the study once first (it stores the spec with the study):
#
#   nightshift run search-spaces/demo.yaml --storage "$NIGHTSHIFT_STORAGE"   # or let a worker start it
#   sbatch --array=0-7 deploy/slurm-workers.sh demo
#
# NIGHTSHIFT_STORAGE must reach one PostgreSQL server from every node, e.g.
# postgres://nightshift:PASSWORD@db.cluster.local/nightshift (export it before sbatch; Slurm
# passes the environment on). The study's budget holds across all workers together.
#
# Which build: for the built-in trainer (`trial:` specs), a GPU build of nightshift on the nodes'
# PATH — `cargo build --release --features wgpu` (builds offline; needs the Vulkan driver, which the
# NVIDIA driver ships) or `--features cuda` (needs network access while building). A default,
# CPU-only build trains on the task's CPUs instead and says so in the log. `command:` trials bring
# their own CUDA and use the GPUs with any build.
#SBATCH --job-name=nightshift-worker
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --time=12:00:00
#SBATCH --output=nightshift-worker-%A_%a.log
set -euo pipefail

study="${1:?usage: sbatch --array=0-N deploy/slurm-workers.sh STUDY}"
: "${NIGHTSHIFT_STORAGE:?set NIGHTSHIFT_STORAGE=postgres://user:password@host/db}"

# Each worker writes its log and report under its own directory; the study lives in PostgreSQL.
workdir="${SLURM_SUBMIT_DIR:-$PWD}/workers/${SLURM_ARRAY_JOB_ID:-local}-${SLURM_ARRAY_TASK_ID:-0}"
mkdir -p "$workdir"
cd "$workdir"
# --devices auto: the GPUs Slurm gave this task (its CUDA_VISIBLE_DEVICES, honoured with or without
# device cgroups), else its cores.
exec nightshift worker --storage "$NIGHTSHIFT_STORAGE" --study "$study" --devices auto --quiet

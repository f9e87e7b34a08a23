#!/usr/bin/env bash
# Runs one fuzz target, single job, until `runs` executions or `seconds` of wall time, whichever comes first:
#   fuzz/run.sh TARGET [RUNS=1000000] [SECONDS=600]
# New corpus entries go to fuzz/corpus/TARGET (git-ignored); the committed seeds in fuzz/seeds/TARGET are read only.
# Crashes land in fuzz/artifacts/TARGET/. See docs/fuzzing.md.
set -euo pipefail
dict=()
cd "$(dirname "$0")/.."
target=${1:?usage: fuzz/run.sh TARGET [RUNS] [SECONDS]}
runs=${2:-1000000}
seconds=${3:-600}
case "$target" in
    # These link the trainer, i.e. burn: an instrumented build of its own (slow once), without ASan (speed).
    idx | image | checkpoint_safetensors | checkpoint_pth) flags=(--features trainer --sanitizer none --target-dir fuzz/target/trainer) ;;
    # Text targets: the default AddressSanitizer build; the YAML ones get a dictionary of keys and edge numbers.
    space | spec) flags=() dict=(-dict=fuzz/dicts/yaml.dict) ;;
    protocol) flags=() ;;
    *) echo "unknown fuzz target '$target' (see fuzz/Cargo.toml)" >&2; exit 2 ;;
esac
mkdir -p "fuzz/corpus/$target"
# One core: burn's CPU backend would otherwise start a rayon thread per core.
export RAYON_NUM_THREADS=1
exec cargo +nightly fuzz run "${flags[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -runs="$runs" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 "${dict[@]}"

#!/usr/bin/env bash
# The CLI loop benchmark: N ask+tell pairs through the `nightshift` binary against one SQLite file,
# as a shell loop would run them, on a study that starts empty and grows to N trials (so the
# sampler's history is 0 … N-1 trials; the mean is over all of them). Prints the time per pair.
#   cargo build --release && benches/cli_loop.sh [N=200] [SAMPLER=auto] [path/to/nightshift]
set -euo pipefail
n="${1:-200}"
sampler="${2:-auto}"
bin="${3:-$(cd "$(dirname "$0")/.." && pwd)/target/release/nightshift}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
cd "$dir"
space='{"learning_rate": {"type": "float", "low": 1e-5, "high": 0.1, "log": true},
        "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
        "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.05},
        "weight_decay": {"type": "float", "low": 1e-6, "high": 0.01, "log": true},
        "freeze_depth": {"type": "int", "low": 0, "high": 4}}'
"$bin" create-study --study-name loop --direction minimize --seed 1 --sampler "$sampler" --search-space "$space" >/dev/null
start=$(date +%s%N)
for _ in $(seq "$n"); do
  trial=$("$bin" ask --study-name loop)
  number=${trial#*\"number\":}; number=${number%%,*}
  lr=${trial#*\"learning_rate\":}; lr=${lr%%[,\}]*}
  "$bin" tell --study-name loop --trial-number "$number" --values "$lr" 2>/dev/null
done
end=$(date +%s%N)
echo "$sampler, $n ask+tell pairs: $(( (end - start) / 1000000 )) ms total, $(( (end - start) / n / 1000 )) µs per pair"

#!/usr/bin/env bash
# The real-backbone example sweep (search-spaces/efficientnet-fashion.yaml) end to end, timed: once as the
# spec is (with the trial caches, which are on by default once the build has them) and once from a copy with
# `trial.cache: false`, each in a fresh temporary directory (its own reports/ and study database), back to
# back. Prints per mode: wall time, CPU time, the peak RSS of the largest process (GNU time's %M: the
# orchestrator or one trial, whichever peaked higher), the tournament's verdict with each arm's replicates,
# and the end of `nightshift run`'s output.
#
#   cargo build --release && scripts/fetch-efficientnet.sh && benches/efficientnet_sweep.sh
#   MODES=as-is benches/efficientnet_sweep.sh        # one run of the spec as it is (the baseline before caches)
#   MODES="as-is no-cache" KEEP=1 benches/efficientnet_sweep.sh   # KEEP=1: keep the directories (reports)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BIN="${NIGHTSHIFT_BIN:-target/release/nightshift}"
case "$BIN" in /*) ;; *) BIN="$ROOT/$BIN" ;; esac
SPEC=search-spaces/efficientnet-fashion.yaml
MODES="${MODES:-as-is no-cache}"
[ -x "$BIN" ] || { echo "no $BIN: run cargo build --release (or set NIGHTSHIFT_BIN)"; exit 1; }
[ -f models/efficientnet-lite0.pth ] || { echo "no models/efficientnet-lite0.pth: run scripts/fetch-efficientnet.sh"; exit 1; }

echo "# $(date -u '+%F %T') UTC, commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores," \
  "load average $(cut -d' ' -f1-3 /proc/loadavg); $SPEC"
for mode in $MODES; do
  work=$(mktemp -d)
  # Its relative paths (../data, ../models) made absolute, so that the copy runs from anywhere.
  sed -e "s#\.\./#$ROOT/#g" "$SPEC" >"$work/spec.yaml"
  case "$mode" in
    as-is) ;;
    no-cache) sed -i -e 's/^trial:$/trial:\n  cache: false/' "$work/spec.yaml" ;;
    *) echo "unknown mode $mode (as-is, no-cache)"; exit 2 ;;
  esac
  rc=0
  (cd "$work" && /usr/bin/time -f "time: %U %S %e %M" "$BIN" run spec.yaml --quiet >run.log 2>&1) || rc=$?
  study=$(sed -n 's/^study: //p' "$work/spec.yaml")
  "${PYTHON:-python3}" - "$mode" "$rc" "$work/run.log" "$work/reports/$study/summary.json" <<'PY'
import json, re, sys
mode, rc, log, summary = sys.argv[1:]
text = open(log).read()
u, s, wall, rss = re.findall(r"^time: (\S+) (\S+) (\S+) (\S+)", text, re.M)[-1]
line = f"{mode:9} exit {rc}  {float(wall) / 60:5.1f} min wall  {(float(u) + float(s)) / 60:5.1f} min CPU  peak RSS {int(rss) / 1024:5.0f} MiB"
try:
    c = json.load(open(summary))["comparison"] or {}
    line += f"  winner {c.get('winner')}\n          verdict: {c.get('verdict')}"
    for arm in c.get("arms", []):
        line += (f"\n          {arm['value']}: replicates {arm['replicates']} mean {arm['mean']} ci95 {arm['ci95']}"
                 f" (best search trial {arm['best_trial']}, {arm['trials']} trials, {arm['epochs_spent']} epochs)")
except (OSError, ValueError, KeyError, TypeError) as e:
    line += f"  (no summary: {e})"
line += "\n          " + "\n          ".join(text.strip().splitlines()[-4:-1])
print(line)
PY
  if [ "${KEEP:-0}" = 1 ]; then echo "          kept $work"; else rm -rf "$work"; fi
done

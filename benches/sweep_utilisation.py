#!/usr/bin/env python3
"""Device utilisation of a real `nightshift run`: the release binary, the study in SQLite
(`reports/<study>/study.db`), the report rewritten every 4 finished trials, progress lines on
stderr (a pipe) — what a user's sweep does, unlike the stripped in-process figure of
`cargo bench -p nightshift-orchestrator --bench sweep_overhead` (in-memory storage, no report, no
progress).

    cargo build --release && python3 benches/sweep_utilisation.py [--trials 40] [--slots 2]

utilisation = busy slot-time (each trial's spawn → exit, the `start`/`end` it stores) ÷ (wall ×
slots); "wall" is measured around the whole process (start-up, the final report and summary
included) and, separately, from the first trial's start to the last trial's end.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nightshift", default=str(ROOT / "target/release/nightshift"))
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--sleep", type=float, default=0.05)
    args = parser.parse_args()
    fake = ROOT / "tests/fixtures/fake_trial.py"
    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp, "bench.yaml")
        spec.write_text(
            "study: bench\nobjective: {metric: score, direction: maximize}\n"
            "sampler: {type: random, seed: 1}\n"
            f"budget: {{trials: {args.trials}}}\ndevices: {{cpu: {args.slots}}}\n"
            f'command: [{sys.executable}, "{fake}", --steps, "{args.steps}", --sleep, "{args.sleep}"]\n'
            "params:\n  x: {type: float, low: 0.0, high: 1.0}\n"
        )
        t0 = time.monotonic()
        run = subprocess.run([args.nightshift, "run", str(spec)], cwd=tmp, capture_output=True, text=True)
        wall = time.monotonic() - t0
        if run.returncode != 0:
            sys.exit(f"nightshift run failed ({run.returncode}):\n{run.stderr}")
        progress_lines = len(run.stderr.splitlines())
        listed = subprocess.run(
            [args.nightshift, "trials", "--study-name", "bench", "-f", "json"], cwd=tmp, capture_output=True, text=True, check=True
        )
        trials = json.loads(listed.stdout)
    spans = [(t["system_attrs"]["start"], t["system_attrs"]["end"]) for t in trials]
    busy = sum(end - start for start, end in spans)
    inner = max(end for _, end in spans) - min(start for start, _ in spans)
    print(f"real run: {len(trials)} fake trials × {args.steps} reports × {args.sleep}s on {args.slots} CPU slots,"
          f" SQLite, report every 4 trials, {progress_lines} progress lines on stderr")
    print(f"  wall (whole process) {wall:.2f}s, first start → last end {inner:.2f}s, busy slot-time {busy:.2f}s")
    print(f"  utilisation: {100 * busy / (wall * args.slots):.1f}% of the whole process,"
          f" {100 * busy / (inner * args.slots):.1f}% from the first trial's start to the last one's end")


if __name__ == "__main__":
    main()

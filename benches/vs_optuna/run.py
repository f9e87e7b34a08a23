#!/usr/bin/env python3
"""Search quality and ask latency, nightshift against Optuna 5.0, in one run on one machine.

Every arm sees the same problems (suite.py) and seeds. Optuna's samplers run in-process through
Optuna's ask/tell; nightshift runs through its `Study` (the ask_tell_driver example, an in-memory
study driven over stdin/stdout) and, for the arms named `cli-*`, through the real `nightshift`
binary exactly as a shell loop would (create-study, then one `ask` and one `tell` process per
trial, on a SQLite file).

    python3 -m venv .venv && .venv/bin/pip install optuna==5.0.0 scipy torch
    cargo build --release -p nightshift-search --example ask_tell_driver
    cargo build --release                 # only for the cli-* arms
    .venv/bin/python benches/vs_optuna/run.py --seeds 20

Prints, for 25/50/100 trials: the median [25th, 75th percentile] best value per problem and arm,
each arm's geometric-mean regret ratio against Optuna's TPE and GPSampler (per problem the
geometric mean over seeds of the regret, floored at 1e-8; then the geometric mean of the
per-problem ratios), the mean rank of each arm, the price of parallel workers (each `*-<k>workers`
arm against its one-worker arm) and the mean ask latency near the end of each run. Workers are
simulated alike for both tools: four trials always in flight, the oldest told, then one asked. Optuna's runs are cached by (Optuna version, arm, problem, seed, trials) in --cache, since
they do not change between runs of nightshift; --fresh ignores the cache.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE))

import optuna  # noqa: E402
from optuna.distributions import distribution_to_json  # noqa: E402

from suite import EXTRA_PROBLEMS, PROBLEMS, Problem  # noqa: E402
from suite_heldout import HELDOUT_PROBLEMS  # noqa: E402

ALL_PROBLEMS = PROBLEMS + EXTRA_PROBLEMS + HELDOUT_PROBLEMS

CHECKPOINTS = (25, 50, 100)
REGRET_FLOOR = 1e-8

# Arms: `<sampler>` or `<sampler>-<k>workers` (k asynchronous workers, simulated alike for both tools).
# Optuna's samplers by name; for parallel workers they are set up as Optuna's documentation suggests:
# GPSampler as it is (it models RUNNING trials itself, with qLogEI), TPE with its constant liar.
OPTUNA_SAMPLERS = {
    "optuna-tpe": lambda seed, workers: optuna.samplers.TPESampler(seed=seed, constant_liar=workers > 1),
    "optuna-gp": lambda seed, workers: optuna.samplers.GPSampler(seed=seed),
    "optuna-random": lambda seed, workers: optuna.samplers.RandomSampler(seed=seed),
}
# nightshift's: the sampler config the study is created with (None: the study's default), and
# whether to drive the real binary through the CLI.
NIGHTSHIFT_SAMPLERS: dict[str, dict[str, Any]] = {
    "ns-auto": {"sampler": None},
    "ns-tpe": {"sampler": {"type": "tpe"}},
    "ns-gp": {"sampler": {"type": "gp"}},
    "ns-random": {"sampler": {"type": "random"}},
    "cli-auto": {"sampler": None, "cli": True},
}
# Optuna's GPSampler (about 0.1-0.45 s per ask here) runs --gp-trials trials.
SLOW_SAMPLER = "optuna-gp"


def sampler_of(arm: str) -> str:
    """The sampler an arm runs: its name without a `-<k>workers` suffix."""
    return re.sub(r"-\d+workers$", "", arm)


def workers_of(arm: str) -> int:
    """Parallel workers of an arm named `…-<k>workers`; otherwise one."""
    match = re.search(r"-(\d+)workers$", arm)
    return int(match.group(1)) if match else 1


def is_optuna(arm: str) -> bool:
    return sampler_of(arm) in OPTUNA_SAMPLERS


def space_json(problem: Problem) -> dict[str, Any]:
    return {name: json.loads(distribution_to_json(d)) for name, d in problem.space.items()}


def run_optuna(arm: str, problem: Problem, seed: int, trials: int) -> dict[str, Any]:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction=problem.direction, sampler=OPTUNA_SAMPLERS[sampler_of(arm)](seed, workers_of(arm)))
    values, ask_s, pending = [], [], []
    asked = 0
    # Workers simulated as for nightshift's arms (`run_nightshift`).
    while len(values) < trials:
        while asked < trials and len(pending) < workers_of(arm):
            start = time.perf_counter()
            trial = study.ask(fixed_distributions=problem.space)
            ask_s.append(time.perf_counter() - start)
            pending.append((trial, problem.objective(trial.params)))
            asked += 1
        trial, value = pending.pop(0)
        study.tell(trial, value)
        values.append(value)
    return {"values": values, "ask_s": ask_s}


class Driver:
    """The ask_tell_driver example: an in-memory nightshift Study over a line protocol."""

    def __init__(self, exe: str) -> None:
        self.proc = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        reply = json.loads(self.proc.stdout.readline())
        if "error" in reply:
            raise RuntimeError(f"driver: {reply['error']} (request {request})")
        return reply

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def run_nightshift(arm: str, problem: Problem, seed: int, trials: int, exe: str) -> dict[str, Any]:
    """Asynchronous workers are simulated deterministically: `workers_of(arm)` trials are in
    flight; the oldest is told, then a new one is asked, so each ask sees workers − 1 RUNNING
    trials."""
    config = NIGHTSHIFT_SAMPLERS[sampler_of(arm)]
    driver = Driver(exe)
    request: dict[str, Any] = {"op": "new", "direction": problem.direction, "seed": seed, "space": space_json(problem)}
    if config["sampler"] is not None:
        request["sampler"] = config["sampler"]
    driver.call(request)
    values, ask_s, pending = [], [], []
    asked = 0
    while len(values) < trials:
        while asked < trials and len(pending) < workers_of(arm):
            reply = driver.call({"op": "ask"})
            ask_s.append(reply["ask_us"] * 1e-6)
            pending.append((reply["number"], problem.objective(reply["params"])))
            asked += 1
        number, value = pending.pop(0)
        driver.call({"op": "tell", "number": number, "value": value})
        values.append(value)
    driver.close()
    return {"values": values, "ask_s": ask_s}


def run_cli(arm: str, problem: Problem, seed: int, trials: int, exe: str) -> dict[str, Any]:
    config = NIGHTSHIFT_SAMPLERS[sampler_of(arm)]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, NIGHTSHIFT_STORAGE=f"sqlite:///{tmp}/bench.db")
        create = [exe, "create-study", "--study-name", "bench", "--direction", problem.direction, "--seed", str(seed)]
        create += ["--search-space", json.dumps(space_json(problem))]
        if config["sampler"] is not None:
            create += ["--sampler", config["sampler"]["type"]]
        subprocess.run(create, env=env, check=True, capture_output=True)
        values, ask_s = [], []
        for _ in range(trials):
            start = time.perf_counter()
            out = subprocess.run([exe, "ask", "--study-name", "bench"], env=env, check=True, capture_output=True, text=True)
            ask_s.append(time.perf_counter() - start)
            trial = json.loads(out.stdout)
            value = problem.objective(trial["params"])
            tell = [exe, "tell", "--study-name", "bench", "--trial-number", str(trial["number"]), f"--values={value!r}"]
            subprocess.run(tell, env=env, check=True, capture_output=True)
            values.append(value)
    return {"values": values, "ask_s": ask_s}


def job(args: tuple[str, str, int, int, dict[str, str]]) -> tuple[str, str, int, dict[str, Any]]:
    arm, problem_name, seed, trials, exes = args
    problem = next(p for p in ALL_PROBLEMS if p.name == problem_name)
    if is_optuna(arm):
        result = run_optuna(arm, problem, seed, trials)
    elif NIGHTSHIFT_SAMPLERS[sampler_of(arm)].get("cli"):
        result = run_cli(arm, problem, seed, trials, exes["cli"])
    else:
        result = run_nightshift(arm, problem, seed, trials, exes["driver"])
    return arm, problem_name, seed, result


def best_so_far(problem: Problem, values: list[float], n: int) -> float:
    head = values[:n]
    return min(head) if problem.direction == "minimize" else max(head)


def gmean(xs: list[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[1], q[0], q[2]


def report(results: dict[tuple[str, str, int], dict[str, Any]], arms: list[str], problems: list[Problem], seeds: list[int]) -> str:
    longest = max(len(r["values"]) for r in results.values())
    checkpoints = [n for n in CHECKPOINTS if n <= longest]
    lines = []
    for n in checkpoints:
        lines.append(f"\n### Best value after {n} trials: median [25th, 75th percentile] over {len(seeds)} seeds\n")
        have = [a for a in arms if all(len(results[(a, p.name, s)]["values"]) >= n for p in problems for s in seeds)]
        lines.append("| problem (optimum) | " + " | ".join(have) + " |")
        lines.append("| --- " * (len(have) + 1) + "|")
        for p in problems:
            cells = []
            for a in have:
                med, lo, hi = quartiles([best_so_far(p, results[(a, p.name, s)]["values"], n) for s in seeds])
                cells.append(f"{med:.4g} [{lo:.4g}, {hi:.4g}]")
            lines.append(f"| {p.name} ({p.optimum:.6g}, {p.direction[:3]}) | " + " | ".join(cells) + " |")

    lines.append("\n### Geometric-mean regret ratio (lower is better; < 1 beats the anchor)\n")
    lines.append("| arm | " + " | ".join(f"vs {anchor} @ {n}" for anchor in ("optuna-tpe", "optuna-gp") for n in checkpoints) + " |")
    lines.append("| --- " * (1 + 2 * len(checkpoints)) + "|")
    per_problem: dict[tuple[str, str, int], float] = {}
    for a in arms:
        for p in problems:
            for n in checkpoints:
                runs = [results[(a, p.name, s)]["values"] for s in seeds]
                if all(len(v) >= n for v in runs):
                    per_problem[(a, p.name, n)] = gmean([max(p.regret(best_so_far(p, v, n)), REGRET_FLOOR) for v in runs])
    for a in arms:
        cells = []
        for anchor in ("optuna-tpe", "optuna-gp"):
            for n in checkpoints:
                keys = [(p.name, n) for p in problems if (a, p.name, n) in per_problem and (anchor, p.name, n) in per_problem]
                if len(keys) < len(problems) or anchor not in arms:
                    cells.append("–")
                    continue
                ratio = gmean([per_problem[(a, name, n)] / per_problem[(anchor, name, n)] for name, n in keys])
                cells.append(f"{ratio:.3f}")
        lines.append(f"| {a} | " + " | ".join(cells) + " |")

    one_worker = {a: re.sub(r"-\d+workers$", "", a) for a in arms if workers_of(a) > 1}
    parallel = [(a, base) for a, base in one_worker.items() if base in arms]
    if parallel:
        lines.append("\n### The price of parallel workers: regret ratio of each parallel arm to its one-worker arm\n")
        lines.append("| arm | " + " | ".join(f"@ {n}" for n in checkpoints) + " |")
        lines.append("| --- " * (1 + len(checkpoints)) + "|")
        for a, base in parallel:
            cells = []
            for n in checkpoints:
                if not all((x, p.name, n) in per_problem for x in (a, base) for p in problems):
                    cells.append("–")
                    continue
                cells.append(f"{gmean([per_problem[(a, p.name, n)] / per_problem[(base, p.name, n)] for p in problems]):.3f}")
            lines.append(f"| {a} vs {base} | " + " | ".join(cells) + " |")

    lines.append("\n### Per problem: geometric-mean regret over seeds\n")
    for n in checkpoints:
        have = [a for a in arms if all((a, p.name, n) in per_problem for p in problems)]
        lines.append(f"\nAfter {n} trials\n")
        lines.append("| problem | " + " | ".join(have) + " |")
        lines.append("| --- " * (len(have) + 1) + "|")
        for p in problems:
            lines.append(f"| {p.name} | " + " | ".join(f"{per_problem[(a, p.name, n)]:.3g}" for a in have) + " |")

    lines.append("\n### Mean rank (1 = best; ties share the mean rank), over problems × seeds\n")
    lines.append("| arm | " + " | ".join(f"@ {n}" for n in checkpoints) + " |")
    lines.append("| --- " * (1 + len(checkpoints)) + "|")
    ranks: dict[tuple[str, int], list[float]] = {}
    for n in checkpoints:
        have = [a for a in arms if all(len(results[(a, p.name, s)]["values"]) >= n for p in problems for s in seeds)]
        for p in problems:
            for s in seeds:
                regrets = {a: p.regret(best_so_far(p, results[(a, p.name, s)]["values"], n)) for a in have}
                for a in have:
                    below = sum(1 for b in have if regrets[b] < regrets[a])
                    ties = sum(1 for b in have if regrets[b] == regrets[a])
                    ranks.setdefault((a, n), []).append(below + (ties + 1) / 2)
    for a in arms:
        lines.append(f"| {a} | " + " | ".join(f"{statistics.mean(ranks[(a, n)]):.2f}" if (a, n) in ranks else "–" for n in checkpoints) + " |")

    lines.append("\n### Ask latency: mean over the last 10 asks of each run (ms), all problems and seeds\n")
    lines.append("| arm | trials | ms per ask |")
    lines.append("| --- | --- | --- |")
    for a in arms:
        last = [x for p in problems for s in seeds for x in results[(a, p.name, s)]["ask_s"][-10:]]
        n = len(results[(a, problems[0].name, seeds[0])]["values"])
        lines.append(f"| {a} | {n - 9}–{n} | {1e3 * statistics.mean(last):.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--gp-trials", type=int, default=50, help="trials for optuna-gp (about 0.2 s per ask)")
    parser.add_argument("--arms", default="optuna-tpe,optuna-gp,optuna-random,ns-auto,ns-tpe,ns-gp,ns-random,ns-auto-4workers")
    parser.add_argument("--problems", help="comma-separated names (default: the suite's)")
    parser.add_argument(
        "--suite",
        choices=["default", "heldout"],
        default="default",
        help="heldout: suite_heldout.py, problems written after the default sampler was settled",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--driver", default=str(ROOT / "target/release/examples/ask_tell_driver"))
    parser.add_argument("--nightshift", default=str(ROOT / "target/release/nightshift"))
    parser.add_argument("--cache", default="/var/tmp/nightshift-vs-optuna-cache")
    parser.add_argument("--fresh", action="store_true", help="rerun Optuna's arms even when cached")
    parser.add_argument("--json", help="also write every run's values and ask times here")
    args = parser.parse_args()

    arms = args.arms.split(",")
    unknown = [a for a in arms if sampler_of(a) not in OPTUNA_SAMPLERS | NIGHTSHIFT_SAMPLERS]
    if unknown:
        parser.error(
            f"unknown arm(s) {', '.join(unknown)}: an arm is one of {', '.join(OPTUNA_SAMPLERS | NIGHTSHIFT_SAMPLERS)}, "
            "optionally followed by -<k>workers"
        )
    if cli_parallel := [a for a in arms if NIGHTSHIFT_SAMPLERS.get(sampler_of(a), {}).get("cli") and workers_of(a) > 1]:
        parser.error(f"{', '.join(cli_parallel)}: the CLI arms run one worker")
    names = args.problems.split(",") if args.problems else [p.name for p in (HELDOUT_PROBLEMS if args.suite == "heldout" else PROBLEMS)]
    if unknown_problems := [n for n in names if n not in {p.name for p in ALL_PROBLEMS}]:
        parser.error(f"unknown problem(s) {', '.join(unknown_problems)}: known are {', '.join(p.name for p in ALL_PROBLEMS)}")
    problems = [p for p in ALL_PROBLEMS if p.name in names]
    seeds = list(range(args.seeds))
    exes = {"driver": args.driver, "cli": args.nightshift}
    cache_dir = Path(args.cache) / f"optuna-{optuna.__version__}"
    cache_dir.mkdir(parents=True, exist_ok=True)

    results: dict[tuple[str, str, int], dict[str, Any]] = {}
    todo = []
    for a in arms:
        trials = args.gp_trials if sampler_of(a) == SLOW_SAMPLER else args.trials
        for p in problems:
            for s in seeds:
                cached = cache_dir / f"{a}-{p.name}-{s}-{trials}.json"
                if is_optuna(a) and cached.exists() and not args.fresh:
                    results[(a, p.name, s)] = json.loads(cached.read_text())
                else:
                    todo.append((a, p.name, s, trials, exes))
    # The slow arms first, so the pool stays busy to the end.
    todo.sort(key=lambda t: sampler_of(t[0]) != SLOW_SAMPLER)
    started = time.time()
    print(f"{len(todo)} runs to do ({len(results)} cached), {args.jobs} at a time", file=sys.stderr)
    with multiprocessing.Pool(args.jobs) as pool:
        for i, (a, name, s, result) in enumerate(pool.imap_unordered(job, todo), 1):
            results[(a, name, s)] = result
            if is_optuna(a):
                trials = len(result["values"])
                (cache_dir / f"{a}-{name}-{s}-{trials}.json").write_text(json.dumps(result))
            if i % 20 == 0 or i == len(todo):
                print(f"  {i}/{len(todo)} runs, {time.time() - started:.0f} s", file=sys.stderr)

    print(f"# nightshift vs Optuna {optuna.__version__}: {len(problems)} problems, {len(seeds)} seeds")
    print(report(results, arms, problems, seeds))
    if args.json:
        Path(args.json).write_text(json.dumps({f"{a}|{p}|{s}": r for (a, p, s), r in results.items()}))


if __name__ == "__main__":
    main()

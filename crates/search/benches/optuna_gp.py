#!/usr/bin/env python3
"""Optuna 5.0's GPSampler on the problems of `examples/gp_regret.rs`, the anchor for our GpSampler.

    pip install optuna scipy torch numpy
    python3 crates/search/benches/optuna_gp.py regret branin,hartmann6,mixed,ackley5,rosen4 30 > optuna.jsonl
    cargo run --release -p nightshift-search --example gp_regret -- branin,hartmann6,mixed,ackley5,rosen4 30 > ours.jsonl
    python3 crates/search/benches/optuna_gp.py compare ours.jsonl optuna.jsonl
    python3 crates/search/benches/optuna_gp.py latency    # ask time at 50/100/200 trials, cf. `--bench gp_ask`

`regret` prints one JSON line per problem: the best value after 25 and 50 trials for each seed
(an optional third argument is the first seed). `compare` prints median and mean regret side by
side. `latency` times `study.ask` over a history of random trials of the 5-D space of
`benches/gp_ask.rs` (CPU time of the process; run with OMP_NUM_THREADS=1 for one core).
Skips (exit 0 with a message) when optuna, torch or scipy is not installed.
"""
import json, math, sys, time

try:
    import numpy as np
    import optuna
    import scipy  # noqa: F401 (GPSampler needs it)
    import torch  # noqa: F401
except ImportError as e:
    if len(sys.argv) > 1 and sys.argv[1] == "compare":
        raise
    print(f"SKIPPED: {e.name} is not installed (pip install optuna scipy torch numpy)")
    sys.exit(0)

optuna.logging.set_verbosity(optuna.logging.ERROR)
OPTIMA = {"branin": 0.397887, "hartmann6": -3.32237, "mixed": 0.0, "ackley5": 0.0, "rosen4": 0.0}


def branin(t):
    x1, x2 = t.suggest_float("x1", -5, 10), t.suggest_float("x2", 0, 15)
    b, c, s = 5.1 / (4 * math.pi**2), 5 / math.pi, 1 / (8 * math.pi)
    return (x2 - b * x1 * x1 + c * x1 - 6) ** 2 + 10 * (1 - s) * math.cos(x1) + 10


ALPHA = [1.0, 1.2, 3.0, 3.2]
A = [[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14], [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]]
P = [
    [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
    [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
    [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
    [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
]


def hartmann6(t):
    x = [t.suggest_float(f"x{i}", 0, 1) for i in range(6)]
    return -sum(ALPHA[i] * math.exp(-sum(A[i][j] * (x[j] - P[i][j]) ** 2 for j in range(6))) for i in range(4))


def mixed(t):
    lr = t.suggest_float("learning_rate", 1e-5, 1e-1, log=True)
    batch = t.suggest_categorical("batch_size", [16, 32, 64, 128])
    dropout = t.suggest_float("dropout", 0.0, 0.5, step=0.05)
    wd = t.suggest_float("weight_decay", 1e-6, 1e-2, log=True)
    depth = t.suggest_int("freeze_depth", 0, 4)
    opt = t.suggest_categorical("optimizer", ["sgd", "adam", "adamw"])
    best_lr = -3.0 + 0.5 * math.log2(batch / 32) / 2
    return (
        (math.log10(lr) - best_lr) ** 2
        + 0.2 * (math.log10(wd) + 4) ** 2
        + 3 * (dropout - 0.15) ** 2
        + 0.08 * abs(depth - 3)
        + {"adamw": 0.0, "adam": 0.15}.get(opt, 0.6)
        + {32: 0.0, 64: 0.05, 16: 0.2}.get(batch, 0.3)
    )


def ackley5(t):
    x = [t.suggest_float(f"x{i}", -32.768, 32.768) for i in range(5)]
    n = len(x)
    return (
        -20 * math.exp(-0.2 * math.sqrt(sum(v * v for v in x) / n))
        - math.exp(sum(math.cos(2 * math.pi * v) for v in x) / n)
        + 20
        + math.e
    )


def rosen4(t):
    x = [t.suggest_float(f"x{i}", -2.048, 2.048) for i in range(4)]
    return sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(3))


PROBLEMS = {"branin": branin, "hartmann6": hartmann6, "mixed": mixed, "ackley5": ackley5, "rosen4": rosen4}


def regret(names, seeds, first=0):
    for name in names.split(","):
        at25, at50, started = [], [], time.time()
        for seed in range(first, seeds):
            study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=seed))
            study.optimize(PROBLEMS[name], n_trials=50)
            best = np.minimum.accumulate([t.value for t in study.trials])
            at25.append(float(best[24]))
            at50.append(float(best[49]))
        print(json.dumps({"problem": name, "b25": at25, "b50": at50, "secs": time.time() - started}), flush=True)


def compare(ours_path, optuna_path):
    def load(path):
        out = {}
        for line in open(path):
            d = json.loads(line)
            row = out.setdefault(d["problem"], {"b25": [], "b50": []})
            row["b25"] += d["b25"]
            row["b50"] += d["b50"]
        return out

    ours, theirs = load(ours_path), load(optuna_path)
    print(f"{'problem':10} {'N':>3} {'ours median':>12} {'optuna median':>14} {'ours mean':>10} {'optuna mean':>12}  seeds")
    for name in ours:
        if name not in theirs:
            continue
        for key in ("b25", "b50"):
            a = np.array(ours[name][key]) - OPTIMA[name]
            b = np.array(theirs[name][key]) - OPTIMA[name]
            print(f"{name:10} {key[1:]:>3} {np.median(a):12.4g} {np.median(b):14.4g} {a.mean():10.4g} {b.mean():12.4g}  {len(a)} vs {len(b)}")


def latency():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space = {
        "learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
        "batch_size": CategoricalDistribution([16, 32, 64, 128]),
        "dropout": FloatDistribution(0.0, 0.5, step=0.05),
        "weight_decay": FloatDistribution(1e-6, 1e-2, log=True),
        "freeze_depth": IntDistribution(0, 4),
    }

    def objective(p):
        return (
            (math.log10(p["learning_rate"]) + 3) ** 2
            + 0.1 * (math.log10(p["weight_decay"]) + 4) ** 2
            + 4 * (p["dropout"] - 0.2) ** 2
            + 0.05 * (p["freeze_depth"] - 2) ** 2
            + 0.1 * abs(math.log2(p["batch_size"] / 32))
        )

    for n in (50, 100, 200):
        history = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
        for _ in range(n):
            trial = history.ask(space)
            history.tell(trial, objective(trial.params))
        study = optuna.create_study(sampler=optuna.samplers.GPSampler(seed=0))
        study.add_trials(history.trials)
        cpu = []
        for _ in range(5):
            start = time.process_time()
            trial = study.ask(space)
            cpu.append(time.process_time() - start)
            # FAIL keeps the history the GP sees unchanged for the next ask.
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        print(f"{n} trials: Optuna GPSampler ask {np.median(cpu) * 1e3:.1f} ms CPU (median of 5)", flush=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else "latency"
    if mode == "regret":
        regret(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
    elif mode == "compare":
        compare(sys.argv[2], sys.argv[3])
    else:
        latency()

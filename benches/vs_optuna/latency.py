#!/usr/bin/env python3
"""Optuna 5.0's ask latency on the 5-parameter space of `crates/search/benches/{tpe_ask,gp_ask}.rs`
(log float, categorical, stepped float, log float, int), for comparison with those benches:
CPU time of one `study.ask` over a history of n random COMPLETE trials (median of 5 asks; each
is told FAIL, which leaves the history the sampler learns from unchanged).

    OMP_NUM_THREADS=1 .venv/bin/python benches/vs_optuna/latency.py     # one core, as the Rust benches
"""

import math
import statistics
import time

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

SPACE = {
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


def main():
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    samplers = {"TPESampler": (100, 500, 1000), "GPSampler": (50, 100, 200)}
    for name, sizes in samplers.items():
        for n in sizes:
            history = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
            for _ in range(n):
                trial = history.ask(SPACE)
                history.tell(trial, objective(trial.params))
            study = optuna.create_study(sampler=getattr(optuna.samplers, name)(seed=0))
            study.add_trials(history.trials)
            cpu = []
            for _ in range(5):
                start = time.process_time()
                trial = study.ask(SPACE)
                cpu.append(time.process_time() - start)
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            print(f"Optuna {optuna.__version__} {name}, {n} trials: {statistics.median(cpu) * 1e3:.1f} ms CPU per ask", flush=True)


if __name__ == "__main__":
    main()

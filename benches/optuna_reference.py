"""Golden fixtures for nightshift's TPE, computed by Optuna 5.0's own TPE internals.

Each fixture is a fixed trial history (built with ``optuna.trial.create_trial`` and Optuna's
distributions) together with what Optuna's ``TPESampler._sample`` derives from it: the
below/above split, the fitted Parzen estimators l(x) and g(x) (kernel centres, bandwidths,
mixture weights, bounds after step widening and log, categorical weight rows), log l(x) and
log g(x) at given points, and which of a given candidate list Optuna picks (argmax of
log l − log g). ``crates/search/tests/tpe_golden.rs`` loads every fixture and compares.

Regenerate (from the repository root):

    python -m venv /tmp/optuna-venv && /tmp/optuna-venv/bin/pip install optuna==5.0.0
    /tmp/optuna-venv/bin/python benches/optuna_reference.py

It rewrites ``crates/search/tests/fixtures/tpe/*.json``. Floats are written as strings holding
Python's ``repr`` (which round-trips exactly, and covers inf/nan); nothing is rounded.

Numeric parameters never repeat a value within a history: numpy's ``argsort`` (which Optuna's
bandwidth rule uses) breaks ties in a platform-dependent order (on AVX-512 machines it is not
stable even for ten elements), so Optuna's own output for tied observations depends on the
machine. The script checks this and refuses to write such a fixture.
"""

from __future__ import annotations

import json
import math
import os
import sys
import warnings

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution
from optuna.distributions import FloatDistribution
from optuna.distributions import IntDistribution
from optuna.samplers import TPESampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator
from optuna.samplers._tpe.probability_distributions import _BatchedCategoricalDistributions
from optuna.samplers._tpe.sampler import _split_trials
from optuna.samplers._tpe.sampler import default_gamma
from optuna.trial import TrialState
from optuna.trial import create_trial

assert optuna.__version__ == "5.0.0", optuna.__version__
warnings.simplefilter("ignore")
optuna.logging.set_verbosity(optuna.logging.ERROR)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "search", "tests", "fixtures", "tpe")
N_CANDIDATES = 24


def f(x: float) -> str:
    return repr(float(x))


def tag(v) -> dict:
    if isinstance(v, bool):
        return {"bool": v}
    if isinstance(v, (int, np.integer)):
        return {"int": int(v)}
    if isinstance(v, (float, np.floating)):
        return {"float": f(v)}
    if isinstance(v, str):
        return {"str": v}
    raise TypeError(v)


def dist_json(d) -> dict:
    if isinstance(d, FloatDistribution):
        return {"type": "float", "low": f(d.low), "high": f(d.high), "log": d.log, "step": None if d.step is None else f(d.step)}
    if isinstance(d, IntDistribution):
        return {"type": "int", "low": d.low, "high": d.high, "log": d.log, "step": d.step}
    return {"type": "categorical", "choices": [tag(c) for c in d.choices]}


# ---------------------------------------------------------------------------------------------
# Histories


class Gen:
    """Parameter values without repeats of any numeric value (see the module docstring)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.RandomState(seed)
        self.used: dict[str, set] = {}

    def value(self, name: str, d):
        if isinstance(d, CategoricalDistribution):
            return d.choices[self.rng.randint(len(d.choices))]
        used = self.used.setdefault(name, set())
        for _ in range(10_000):
            v = self._draw(d)
            if v not in used:
                used.add(v)
                return v
        raise RuntimeError(f"{name}: grid too small for distinct values")

    def _draw(self, d):
        r = self.rng
        if isinstance(d, FloatDistribution):
            if d.step is not None:
                k = r.randint(int(round((d.high - d.low) / d.step)) + 1)
                return float(min(d.low + k * d.step, d.high))
            if d.log:
                return float(math.exp(r.uniform(math.log(d.low), math.log(d.high))))
            return float(r.uniform(d.low, d.high))
        if d.log:
            return int(min(max(round(math.exp(r.uniform(math.log(d.low), math.log(d.high)))), d.low), d.high))
        k = r.randint((d.high - d.low) // d.step + 1)
        return int(d.low + k * d.step)

    def params(self, space: dict, names=None) -> dict:
        names = list(space) if names is None else names
        return {n: self.value(n, space[n]) for n in names}


SMALL = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 0.5, step=0.01),
    "depth": IntDistribution(0, 64, step=2),
    "units": IntDistribution(8, 512, log=True),
    "opt": CategoricalDistribution(["adam", "sgd", "rmsprop"]),
    "bs": CategoricalDistribution([16, 32, 64, 0.5]),
    "x": FloatDistribution(-3.0, 2.0),
}

WIDE = {
    "lr": FloatDistribution(1e-5, 1e-1, log=True),
    "dropout": FloatDistribution(0.0, 10.0, step=1e-6),
    "depth": IntDistribution(0, 50_000_000, step=5),
    "units": IntDistribution(1000, 10_000_000, log=True),
    "opt": CategoricalDistribution(["adam", "sgd", "rmsprop", "lion"]),
    "bs": CategoricalDistribution([16, 32, 64, 0.5, True]),
    "x": FloatDistribution(-3.0, 2.0),
}

# The two large histories leave out one categorical to keep the fixtures small.
WIDE_BIG = {k: v for k, v in WIDE.items() if k != "bs"}


def objective(p: dict) -> float:
    v = 0.0
    for k, x in p.items():
        if isinstance(x, bool) or isinstance(x, str):
            v += 0.1 * len(str(x))
        elif k == "lr":
            v += (math.log10(x) + 3) ** 2
        elif k == "units":
            v += 0.1 * (math.log10(x) - 2) ** 2
        else:
            v += 0.01 * abs(float(x)) ** 0.5
    return v


def history(
    space: dict,
    seed: int,
    n_complete: int,
    n_pruned: int = 0,
    n_running: int = 0,
    n_fail: int = 0,
    conditional: tuple[str, ...] = (),
    tie_values: int = 0,
    nan_pruned: bool = True,
    no_iv_pruned: int = 0,
) -> list:
    """Trials in a shuffled order of states; `conditional` parameters appear in every other trial.

    Every trial of a history uses the same distribution for a parameter (the fixture stores each
    distribution once)."""
    g = Gen(seed)
    states = (
        [TrialState.COMPLETE] * n_complete
        + [TrialState.PRUNED] * n_pruned
        + [TrialState.RUNNING] * n_running
        + [TrialState.FAIL] * n_fail
    )
    g.rng.shuffle(states)
    trials = []
    n_pruned_seen = 0
    tie_value = None
    for i, state in enumerate(states):
        names = [n for n in space if n not in conditional or i % 2 == 0]
        if state == TrialState.RUNNING and i % 3 == 0 and len(names) > 1:
            names = names[:-1]  # a running trial that has not suggested everything yet
        params = g.params(space, names)
        dists = {n: space[n] for n in names}
        if state == TrialState.COMPLETE:
            value = objective(params) + g.rng.normal(0, 0.1)
            if tie_values and i % 4 == 0:
                # Equal objective values: the split must keep their order by number.
                tie_value = tie_value if tie_value is not None else value
                value = tie_value
            trials.append(create_trial(state=state, value=value, params=params, distributions=dists))
        elif state == TrialState.PRUNED:
            n_pruned_seen += 1
            if n_pruned_seen <= no_iv_pruned:
                ivs = {}
            else:
                depth = 1 + g.rng.randint(5)
                ivs = {s: objective(params) + g.rng.normal(0, 0.5) for s in range(0, depth * 2, 2)}
                if nan_pruned and n_pruned_seen == no_iv_pruned + 2:
                    ivs[max(ivs)] = float("nan")
            value = None
            trials.append(create_trial(state=state, value=value, params=params, distributions=dists, intermediate_values=ivs))
        elif state == TrialState.RUNNING:
            trials.append(create_trial(state=state, params=params, distributions=dists))
        else:
            trials.append(create_trial(state=state, params=params, distributions=dists))
    return trials


# ---------------------------------------------------------------------------------------------
# Optuna's computation


def estimator_json(mpe: _ParzenEstimator, space: dict) -> dict:
    mix = mpe._mixture_distribution
    dims = {}
    for name, d in zip(space, mix.distributions):
        if isinstance(d, _BatchedCategoricalDistributions):
            dims[name] = {"categorical_weights": [[f(w) for w in row] for row in d.weights]}
        else:
            dims[name] = {
                "mus": [f(m) for m in d.mu],
                "sigmas": [f(s) for s in d.sigma],
                "low": f(d.adapted_low),
                "high": f(d.adapted_high),
            }
    return {"weights": [f(w) for w in mix.weights], "dims": dims}


def check_no_ties(mpe: _ParzenEstimator, space: dict, what: str) -> None:
    for name, d in zip(space, mpe._mixture_distribution.distributions):
        if isinstance(d, _BatchedCategoricalDistributions):
            continue
        obs = d.mu[:-1]
        if len(np.unique(obs)) != len(obs):
            sys.exit(f"{what}/{name}: tied observations; Optuna's result would depend on the platform")


def external(space: dict, internal: dict) -> list:
    n = len(next(iter(internal.values())))
    return [{k: tag(space[k].to_external_repr(internal[k][i])) for k in space} for i in range(n)]


def fit(study, sampler: TPESampler, below, above, space: dict, seed: int, what: str) -> dict:
    mpe_below = sampler._build_parzen_estimator(study, space, below, handle_below=True)
    mpe_above = sampler._build_parzen_estimator(study, space, above, handle_below=False)
    check_no_ties(mpe_below, space, what + "/below")
    check_no_ties(mpe_above, space, what + "/above")
    rng = np.random.RandomState(seed)
    # Candidates exactly as TPESampler._sample draws them, and their acquisition values.
    candidates = mpe_below.sample(rng, N_CANDIDATES)
    acq = sampler._compute_acquisition_func(candidates, mpe_below, mpe_above)
    chosen = int(np.argmax(acq))
    # Points for the densities: the candidates, draws from g, and the ends of every range.
    from_above = mpe_above.sample(rng, 8)
    points = {k: np.concatenate([candidates[k], from_above[k]]) for k in space}
    for end in (0, 1):
        for k, d in space.items():
            row = {kk: points[kk][0] for kk in space}
            if isinstance(d, CategoricalDistribution):
                row[k] = float(len(d.choices) - 1) if end else 0.0
            else:
                row[k] = float(d.high if end else d.low)
            for kk in space:
                points[kk] = np.append(points[kk], row[kk])
    return {
        "params": list(space),
        "below": estimator_json(mpe_below, space),
        "above": estimator_json(mpe_above, space),
        "points": external(space, points),
        "log_l": [f(v) for v in mpe_below.log_pdf(points)],
        "log_g": [f(v) for v in mpe_above.log_pdf(points)],
        "candidates": external(space, candidates),
        "acquisition": [f(v) for v in acq],
        "chosen": chosen,
    }


def fixture(name: str, direction: str, trials: list, config: dict | None = None, seed: int = 0) -> None:
    config = dict(config or {})
    constant_liar = config.pop("constant_liar", True)
    sampler = TPESampler(seed=seed, constant_liar=constant_liar, **config)
    study = optuna.create_study(direction=direction, sampler=sampler)
    for t in trials:
        study.add_trial(t)
    all_trials = study.get_trials(deepcopy=False)
    current = len(all_trials)  # the trial being sampled: not in the storage yet

    # TPESampler._sample, step by step.
    states = [TrialState.COMPLETE, TrialState.PRUNED] + ([TrialState.RUNNING] if constant_liar else [])
    used = [t for t in study._get_trials(deepcopy=False, states=states, use_cache=False) if t.number != current]
    n = sum(t.state != TrialState.RUNNING for t in used)
    below, above = _split_trials(study, used, default_gamma(n))
    n_finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))

    fits = []
    relative = sampler.infer_relative_search_space(study, None)
    if relative:
        fits.append({"kind": "relative", **fit(study, sampler, below, above, relative, seed + 1, name + "/relative")})
    # Parameters outside the relative space are sampled one at a time (sample_independent).
    union = {}
    for t in all_trials:
        union.update(t.distributions)
    for k in sorted(union):
        if k not in relative and not union[k].single():
            fits.append({"kind": "independent", **fit(study, sampler, below, above, {k: union[k]}, seed + 2, f"{name}/{k}")})
    # And one univariate fit of a parameter that is in the relative space (in the smaller
    # histories; it would double the size of the large fixtures).
    if relative and len(all_trials) < 100:
        k = sorted(relative)[0]
        fits.append({"kind": "independent", **fit(study, sampler, below, above, {k: relative[k]}, seed + 3, f"{name}/{k}")})

    out = {
        "name": name,
        "optuna_version": optuna.__version__,
        "direction": direction,
        "config": {
            "constant_liar": constant_liar,
            "prior_weight": f(sampler._parzen_estimator_parameters.prior_weight),
            "consider_magic_clip": sampler._parzen_estimator_parameters.consider_magic_clip,
            "consider_endpoints": sampler._parzen_estimator_parameters.consider_endpoints,
            "n_startup_trials": sampler._n_startup_trials,
        },
        "current_trial": current,
        "distributions": {k: dist_json(d) for k, d in sorted(union.items())},
        "startup": n_finished < sampler._n_startup_trials,
        "trials": [
            {
                "number": t.number,
                "state": t.state.name,
                "value": None if t.value is None else f(t.value),
                "params": {k: tag(v) for k, v in t.params.items()},
                "intermediate_values": [[s, f(v)] for s, v in sorted(t.intermediate_values.items())],
            }
            for t in all_trials
        ],
        "n_below": default_gamma(n),
        "below": [t.number for t in below],
        "above": [t.number for t in above],
        "fits": fits,
    }
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, name + ".json"), "w") as fh:
        json.dump(out, fh, indent=None, separators=(",", ":"))
        fh.write("\n")
    print(f"{name}: {len(all_trials)} trials, {len(below)} below, {len(above)} above, {len(fits)} fits")


def main() -> None:
    fixture("startup_5", "minimize", history(SMALL, 1, 5))
    fixture("startup_edge_10", "minimize", history(SMALL, 2, 8, n_pruned=2, n_running=1, no_iv_pruned=1))
    fixture("mixed_20_maximize", "maximize", history(SMALL, 3, 14, n_pruned=6, n_running=2, n_fail=1))
    fixture("ramp_40_minimize", "minimize", history(WIDE, 4, 34, n_pruned=6, n_running=2, tie_values=1))
    fixture("conditional_60", "minimize", history(WIDE, 5, 50, n_pruned=10, conditional=("x", "opt")))
    fixture("gamma_cap_250_maximize", "maximize", history(WIDE_BIG, 6, 232, n_pruned=18, n_running=3))
    fixture("pruned_heavy_250", "minimize", history(WIDE_BIG, 7, 12, n_pruned=238, no_iv_pruned=5))
    fixture(
        "categorical_only_30",
        "minimize",
        history({"opt": WIDE["opt"], "bs": WIDE["bs"], "act": CategoricalDistribution(["relu", "gelu"])}, 8, 30),
    )
    fixture("log_float_1d_15", "minimize", history({"lr": SMALL["lr"]}, 9, 15))
    fixture("int_step_1d_12_maximize", "maximize", history({"depth": SMALL["depth"]}, 10, 12, n_pruned=2))
    fixture(
        "prior2_endpoints_nomagic_30",
        "minimize",
        history(WIDE, 11, 30, n_running=1),
        config={"prior_weight": 2.0, "consider_endpoints": True, "consider_magic_clip": False},
    )
    fixture("no_liar_25", "maximize", history(WIDE, 12, 20, n_pruned=3, n_running=4), config={"constant_liar": False})
    fixture("all_pruned_14", "minimize", history(SMALL, 13, 0, n_pruned=14, no_iv_pruned=3))
    fixture("ties_in_values_30", "maximize", history(WIDE, 14, 30, tie_values=1))
    fixture(
        "one_obs_each_side_11",
        "minimize",
        history({"x": SMALL["x"], "units": SMALL["units"], "dropout": SMALL["dropout"]}, 15, 11),
    )


if __name__ == "__main__":
    main()

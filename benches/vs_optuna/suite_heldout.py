"""Held-out problems (`run.py --suite heldout`): none of them is in suite.py. They were written
after the default sampler was settled, by a helper that saw only run.py and suite.py, to check that
its lead over Optuna is not an artefact of the suite it was developed on; nothing was tuned on them
(figures in docs/search.md). Regret = |optimum - best| in the direction of improvement.

Published functions (Surjanovic & Bingham, Virtual Library of Simulation Experiments,
https://www.sfu.ca/~ssurjano/), on their usual domains:
  styblinski_tang4   f = 1/2 sum(x^4 - 16 x^2 + 5 x), x in [-5, 5]^4, f* = -39.16616570377142 * 4
                     at x_i = -2.903534027771178
  six_hump_camel     x1 in [-3, 3], x2 in [-2, 2], f* = -1.031628453489877 at (+-0.0898, -+0.7126)
  michalewicz5       f = -sum sin(x_i) sin^20(i x_i^2 / pi), x in [0, pi]^5, f* = -4.687658 (published,
                     7 digits); separable, so the value used is the sum of the five 1-D minima
                     (refined by golden section; see _check_optima)
  rastrigin4         f = 40 + sum(x^2 - 10 cos(2 pi x)), x in [-5.12, 5.12]^4, f* = 0 at 0
  log_goldstein_price  log(GP(x)), x in [-2, 2]^2, f* = log 3 at (0, -1)
  shekel10           f = -sum_{i<=10} 1 / (sum_j (x_j - C_ji)^2 + b_i), x in [0, 10]^4,
                     f* = -10.53644315348353 at (4.000747, 3.999509, 4.000747, 3.999509)
                     (refined numerically; published -10.5364)
  griewank6          f = sum x^2/4000 - prod cos(x_i / sqrt(i)) + 1, x in [-600, 600]^6, f* = 0 at 0
  log_powell4        log(1 + Powell(x)), x in [-4, 5]^4, f* = 0 at 0
Plus two invented spaces shaped like fine-tuning sweeps (lora_finetune_loss,
batch_freeze_accuracy); each is 'constant + a sum of terms that are >= 0 and all 0 at the stated
point', so the stated optimum is provably the global one.
"""

from __future__ import annotations

import math
from typing import Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from suite import Problem, _unit


def _xs(p: dict[str, Any], n: int) -> list[float]:
    return [p[f"x{i}"] for i in range(n)]


def _styblinski_tang(x: list[float]) -> float:
    return 0.5 * sum(v**4 - 16 * v**2 + 5 * v for v in x)


def _six_hump_camel(x1: float, x2: float) -> float:
    return (4 - 2.1 * x1**2 + x1**4 / 3) * x1**2 + x1 * x2 + (-4 + 4 * x2**2) * x2**2


def _michalewicz(x: list[float], m: int = 10) -> float:
    return -sum(math.sin(v) * math.sin((i + 1) * v * v / math.pi) ** (2 * m) for i, v in enumerate(x))


def _rastrigin(x: list[float]) -> float:
    return 10 * len(x) + sum(v * v - 10 * math.cos(2 * math.pi * v) for v in x)


def _goldstein_price(x1: float, x2: float) -> float:
    a = 1 + (x1 + x2 + 1) ** 2 * (19 - 14 * x1 + 3 * x1**2 - 14 * x2 + 6 * x1 * x2 + 3 * x2**2)
    b = 30 + (2 * x1 - 3 * x2) ** 2 * (18 - 32 * x1 + 12 * x1**2 + 48 * x2 - 36 * x1 * x2 + 27 * x2**2)
    return a * b


_SHEKEL_B = (0.1, 0.2, 0.2, 0.4, 0.4, 0.6, 0.3, 0.7, 0.5, 0.5)
_SHEKEL_C = (
    (4.0, 1.0, 8.0, 6.0, 3.0, 2.0, 5.0, 8.0, 6.0, 7.0),
    (4.0, 1.0, 8.0, 6.0, 7.0, 9.0, 3.0, 1.0, 2.0, 3.6),
    (4.0, 1.0, 8.0, 6.0, 3.0, 2.0, 5.0, 8.0, 6.0, 7.0),
    (4.0, 1.0, 8.0, 6.0, 7.0, 9.0, 3.0, 1.0, 2.0, 3.6),
)


def _shekel(x: list[float]) -> float:
    total = 0.0
    for i, b in enumerate(_SHEKEL_B):
        total += 1.0 / (sum((x[j] - _SHEKEL_C[j][i]) ** 2 for j in range(4)) + b)
    return -total


def _griewank(x: list[float]) -> float:
    s = sum(v * v for v in x) / 4000
    prod = 1.0
    for i, v in enumerate(x):
        prod *= math.cos(v / math.sqrt(i + 1))
    return s - prod + 1


def _powell(x: list[float]) -> float:
    total = 0.0
    for k in range(len(x) // 4):
        a, b, c, d = x[4 * k : 4 * k + 4]
        total += (a + 10 * b) ** 2 + 5 * (c - d) ** 2 + (b - 2 * c) ** 4 + 10 * (a - d) ** 4
    return total


def _lora_finetune_loss(p: dict[str, Any]) -> float:
    """Validation loss of an imagined LoRA fine-tuning sweep. The best learning rate depends on the
    optimiser and falls with the number of epochs; the best dropout rises with the epochs (more
    epochs overfit); the best weight decay depends on the optimiser (decoupled or not); a learning
    rate far above the best one diverges (a hinge), and learning rate and weight decay are coupled
    by a cross term. Every term after 0.25 is >= 0, and all are 0 at: adamw, 4 epochs,
    lr 10^-4.1, dropout 0.15, weight decay 10^-2. Minimum 0.25 there."""
    opt, epochs = p["optimizer"], p["epochs"]
    best_log_lr = {"adamw": -4.0, "lion": -4.7, "sgd": -2.0, "adafactor": -3.3}[opt] - 0.1 * (epochs - 3)
    best_log_wd = {"adamw": -2.0, "lion": -1.5, "sgd": -4.0, "adafactor": -3.5}[opt]
    best_dropout = 0.05 * (epochs - 1) if epochs < 7 else 0.3
    d_lr = math.log10(p["learning_rate"]) - best_log_lr
    d_wd = math.log10(p["weight_decay"]) - best_log_wd
    return (
        0.25
        + {"adamw": 0.0, "lion": 0.01, "sgd": 0.03, "adafactor": 0.006}[opt]
        + 0.004 * (epochs - 4) ** 2
        + 0.05 * d_lr**2
        + 0.3 * max(0.0, d_lr - 0.75)  # divergence
        + 0.5 * (p["dropout"] - best_dropout) ** 2
        + 0.006 * d_wd**2
        + 0.01 * (d_lr + 0.5 * d_wd) ** 2
    )


def _batch_freeze_accuracy(p: dict[str, Any]) -> float:
    """Accuracy (maximised) of an imagined fine-tuning sweep over batch size (categorical),
    frozen layers (int), learning rate (a bump in log space whose centre follows the square-root
    scaling rule in the batch size and rises with the frozen layers), dropout (best value falls
    with the frozen layers) and weight decay (best value falls with the batch size). Every term
    subtracted from 0.9 is >= 0, and all are 0 at: batch 32, 5 frozen layers, lr 10^-3.25,
    dropout 0.2, weight decay 10^-3. Maximum 0.9 there."""
    batch, freeze = p["batch_size"], p["freeze_layers"]
    best_log_lr = -3.5 + 0.5 * math.log10(batch / 32) + 0.05 * freeze
    best_log_wd = -3.0 - 0.25 * math.log2(batch / 32)
    off = math.log10(p["learning_rate"]) - best_log_lr
    return (
        0.9
        - {8: 0.01, 16: 0.004, 32: 0.0, 64: 0.002, 128: 0.008}[batch]
        - 0.0015 * (freeze - 5) ** 2
        - 0.25 * (1 - math.exp(-((off / 0.5) ** 2)))
        - 0.3 * (p["dropout"] - (0.3 - 0.02 * freeze)) ** 2
        - 0.005 * (math.log10(p["weight_decay"]) - best_log_wd) ** 2
    )


_MICHALEWICZ5_OPT = -4.687658179088147  # separable: sum of the five 1-D minima (golden section); published -4.687658
_SHEKEL10_OPT = -10.53644315348353  # refined numerically (Nelder-Mead then BFGS); published -10.5364

HELDOUT_PROBLEMS: list[Problem] = [
    Problem("styblinski_tang4", _unit(4, -5.0, 5.0), "minimize", -39.16616570377142 * 4, lambda p: _styblinski_tang(_xs(p, 4))),
    Problem(
        "six_hump_camel",
        {"x1": FloatDistribution(-3.0, 3.0), "x2": FloatDistribution(-2.0, 2.0)},
        "minimize",
        -1.031628453489877,
        lambda p: _six_hump_camel(p["x1"], p["x2"]),
    ),
    Problem("michalewicz5", _unit(5, 0.0, math.pi), "minimize", _MICHALEWICZ5_OPT, lambda p: _michalewicz(_xs(p, 5))),
    Problem("rastrigin4", _unit(4, -5.12, 5.12), "minimize", 0.0, lambda p: _rastrigin(_xs(p, 4))),
    Problem(
        "log_goldstein_price",
        {"x1": FloatDistribution(-2.0, 2.0), "x2": FloatDistribution(-2.0, 2.0)},
        "minimize",
        math.log(3.0),
        lambda p: math.log(_goldstein_price(p["x1"], p["x2"])),
    ),
    Problem("shekel10", _unit(4, 0.0, 10.0), "minimize", _SHEKEL10_OPT, lambda p: _shekel(_xs(p, 4))),
    Problem("griewank6", _unit(6, -600.0, 600.0), "minimize", 0.0, lambda p: _griewank(_xs(p, 6))),
    Problem("log_powell4", _unit(4, -4.0, 5.0), "minimize", 0.0, lambda p: math.log1p(_powell(_xs(p, 4)))),
    Problem(
        "lora_finetune_loss",
        {
            "learning_rate": FloatDistribution(1e-6, 1e-2, log=True),
            "optimizer": CategoricalDistribution(["adamw", "lion", "sgd", "adafactor"]),
            "dropout": FloatDistribution(0.0, 0.3, step=0.05),
            "weight_decay": FloatDistribution(1e-5, 1e-1, log=True),
            "epochs": IntDistribution(1, 10),
        },
        "minimize",
        0.25,
        _lora_finetune_loss,
    ),
    Problem(
        "batch_freeze_accuracy",
        {
            "learning_rate": FloatDistribution(1e-5, 1e-1, log=True),
            "batch_size": CategoricalDistribution([8, 16, 32, 64, 128]),
            "dropout": FloatDistribution(0.0, 0.5, step=0.1),
            "weight_decay": FloatDistribution(1e-6, 1e-1, log=True),
            "freeze_layers": IntDistribution(0, 12),
        },
        "maximize",
        0.9,
        _batch_freeze_accuracy,
    ),
]


def _check_optima() -> None:
    """Each stated optimum is attained at its known minimiser (guards typos in constants)."""
    by = {p.name: p for p in HELDOUT_PROBLEMS}
    st = -2.903534027771178
    assert abs(_styblinski_tang([st] * 4) - by["styblinski_tang4"].optimum) < 1e-9
    for x1, x2 in ((0.08984201368301331, -0.7126564032704135), (-0.08984201368301331, 0.7126564032704135)):
        assert abs(_six_hump_camel(x1, x2) - by["six_hump_camel"].optimum) < 1e-12
    m5 = [2.2029055218935776, 1.5707963320632525, 1.2849915708060915, 1.9230584706035976, 1.7204697738959838]
    assert abs(_michalewicz(m5) - _MICHALEWICZ5_OPT) < 1e-12, _michalewicz(m5)
    assert abs(_MICHALEWICZ5_OPT - (-4.687658)) < 1e-6
    assert _rastrigin([0.0] * 4) == 0.0
    assert _goldstein_price(0.0, -1.0) == 3.0
    sh = [4.000746867869747, 3.9995094850576276, 4.000746868809279, 3.999509480017675]
    assert abs(_shekel(sh) - _SHEKEL10_OPT) < 1e-12, _shekel(sh)
    assert _griewank([0.0] * 6) == 0.0
    assert _powell([0.0] * 4) == 0.0
    best_a = {"optimizer": "adamw", "epochs": 4, "learning_rate": 10**-4.1, "dropout": 0.15, "weight_decay": 1e-2}
    assert abs(_lora_finetune_loss(best_a) - 0.25) < 1e-12, _lora_finetune_loss(best_a)
    best_b = {"batch_size": 32, "freeze_layers": 5, "learning_rate": 10**-3.25, "dropout": 0.2, "weight_decay": 1e-3}
    assert abs(_batch_freeze_accuracy(best_b) - 0.9) < 1e-12, _batch_freeze_accuracy(best_b)


_check_optima()


//! Search quality: TPE, the GP sampler and random search on standard black-box functions,
//! through the real `Study` ask/tell path over `InMemoryStorage`.
//!
//! For each function and sampler, 30 seeds (run on two threads); prints the median and
//! quartiles of the best value found after N trials (lower is better; the known optimum is
//! shown), and on how many seeds TPE and GP beat random search at the largest N.
//!
//! Run: `cargo bench -p nightshift-search --bench search_quality`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use nightshift_search::{
    Direction, GpConfig, InMemoryStorage, NewStudy, ParamValue, SamplerConfig, SearchSpace, Study, TellOutcome, TpeConfig,
};

const SEEDS: u64 = 30;
const CHECKPOINTS: [usize; 4] = [25, 50, 100, 200];

struct Problem {
    name: &'static str,
    space: &'static str,
    optimum: f64,
    f: fn(&BTreeMap<String, ParamValue>) -> f64,
}

fn num(p: &BTreeMap<String, ParamValue>, name: &str) -> f64 {
    p[name].as_f64().expect("numeric parameter")
}

/// Branin–Hoo on [-5, 10] × [0, 15]; minimum 0.397887 at three points.
fn branin(p: &BTreeMap<String, ParamValue>) -> f64 {
    let (x1, x2) = (num(p, "x1"), num(p, "x2"));
    let pi = std::f64::consts::PI;
    let (b, c, t) = (5.1 / (4.0 * pi * pi), 5.0 / pi, 1.0 / (8.0 * pi));
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

/// Hartmann-6 on [0, 1]⁶; minimum −3.32237.
fn hartmann6(p: &BTreeMap<String, ParamValue>) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    let x: Vec<f64> = (0..6).map(|i| num(p, &format!("x{i}"))).collect();
    -(0..4).map(|i| ALPHA[i] * (-(0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum::<f64>()).exp()).sum::<f64>()
}

/// A mixed space shaped like fine-tuning: log learning rate whose best value depends on the
/// batch size, a categorical batch size, stepped dropout, log weight decay, an int depth and a
/// string optimizer. Minimum 0.
fn mixed(p: &BTreeMap<String, ParamValue>) -> f64 {
    let batch = num(p, "batch_size");
    let lr = num(p, "learning_rate").log10();
    let best_lr = -3.0 + 0.5 * (batch / 32.0).log2() / 2.0;
    let optimizer = match &p["optimizer"] {
        ParamValue::Str(s) if s == "adamw" => 0.0,
        ParamValue::Str(s) if s == "adam" => 0.15,
        _ => 0.6,
    };
    let batch_penalty = match batch as i64 {
        32 => 0.0,
        64 => 0.05,
        16 => 0.2,
        _ => 0.3,
    };
    (lr - best_lr).powi(2)
        + 0.2 * (num(p, "weight_decay").log10() + 4.0).powi(2)
        + 3.0 * (num(p, "dropout") - 0.15).powi(2)
        + 0.08 * (num(p, "freeze_depth") - 3.0).abs()
        + optimizer
        + batch_penalty
}

const PROBLEMS: [Problem; 3] = [
    Problem {
        name: "branin",
        space: "x1: {type: float, low: -5.0, high: 10.0}\nx2: {type: float, low: 0.0, high: 15.0}\n",
        optimum: 0.397887,
        f: branin,
    },
    Problem {
        name: "hartmann6",
        space: "x0: {type: float, low: 0.0, high: 1.0}\nx1: {type: float, low: 0.0, high: 1.0}\nx2: {type: float, low: 0.0, high: 1.0}\nx3: {type: float, low: 0.0, high: 1.0}\nx4: {type: float, low: 0.0, high: 1.0}\nx5: {type: float, low: 0.0, high: 1.0}\n",
        optimum: -3.32237,
        f: hartmann6,
    },
    Problem {
        name: "mixed",
        space: "learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}\nbatch_size: {type: categorical, choices: [16, 32, 64, 128]}\ndropout: {type: float, low: 0.0, high: 0.5, step: 0.05}\nweight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}\nfreeze_depth: {type: int, low: 0, high: 4}\noptimizer: {type: categorical, choices: [sgd, adam, adamw]}\n",
        optimum: 0.0,
        f: mixed,
    },
];

/// Best value after each checkpoint for one run.
fn run(problem: &Problem, sampler: &SamplerConfig, seed: u64) -> Vec<f64> {
    let space = SearchSpace::parse(problem.space, problem.name).expect("valid space");
    let mut new = NewStudy::new(problem.name, Direction::Minimize, seed);
    new.sampler = sampler.clone();
    let study = Study::create(Arc::new(InMemoryStorage::new()), &new).expect("study");
    let mut best = f64::INFINITY;
    let mut out = Vec::new();
    for i in 1..=*CHECKPOINTS.last().unwrap() {
        let trial = study.ask(&space).expect("ask");
        let value = (problem.f)(&trial.params);
        study.tell(trial.number, TellOutcome::Value(value)).expect("tell");
        best = best.min(value);
        if CHECKPOINTS.contains(&i) {
            out.push(best);
        }
    }
    out
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// `run` for every seed, spread over two threads; indexed by seed.
fn runs(problem: &Problem, sampler: &SamplerConfig) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new(); SEEDS as usize];
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2u64)
            .map(|t| {
                scope.spawn(move || {
                    (0..SEEDS).filter(|s| s % 2 == t).map(|seed| (seed, run(problem, sampler, seed))).collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for (seed, r) in handle.join().expect("run thread") {
                out[seed as usize] = r;
            }
        }
    });
    out
}

fn main() {
    // `cargo bench` passes `--bench`; other flags (e.g. a filter) are ignored.
    let started = Instant::now();
    let samplers = [
        ("tpe", SamplerConfig::Tpe(TpeConfig::default())),
        ("gp", SamplerConfig::Gp(GpConfig::default())),
        ("random", SamplerConfig::Random),
    ];
    println!("best value after N trials over {SEEDS} seeds: median [25th, 75th percentile]; lower is better");
    println!(
        "{:<10} {:>10} {:<7} {}",
        "function",
        "optimum",
        "sampler",
        CHECKPOINTS.map(|n| format!("{:>34}", format!("N={n}"))).join("")
    );
    for problem in &PROBLEMS {
        let mut all = Vec::new();
        for (label, sampler) in &samplers {
            let t0 = Instant::now();
            let runs = runs(problem, sampler);
            let mut cells = String::new();
            for c in 0..CHECKPOINTS.len() {
                let mut v: Vec<f64> = runs.iter().map(|r| r[c]).collect();
                v.sort_by(f64::total_cmp);
                let (q1, med, q3) = (quantile(&v, 0.25), quantile(&v, 0.5), quantile(&v, 0.75));
                cells.push_str(&format!("{:>34}", format!("{med:.4} [{q1:.4}, {q3:.4}]")));
            }
            println!(
                "{:<10} {:>10.5} {:<7} {cells}   ({:.1} s)",
                problem.name,
                problem.optimum,
                label,
                t0.elapsed().as_secs_f64()
            );
            all.push(runs);
        }
        // On how many seeds TPE and GP beat random at the largest N.
        let last = CHECKPOINTS.len() - 1;
        let random = &all[samplers.len() - 1];
        for (i, (label, _)) in samplers.iter().enumerate().take(samplers.len() - 1) {
            let wins = (0..SEEDS as usize).filter(|&s| all[i][s][last] < random[s][last]).count();
            println!("{:<10} {label} better than random on {wins}/{SEEDS} seeds at N={}", "", CHECKPOINTS[last]);
        }
    }
    println!("({:.1} s)", started.elapsed().as_secs_f64());
}

//! Best value after 25 and 50 trials of our samplers on the problems of `benches/optuna_gp.py`
//! (Branin, Hartmann-6, a fine-tuning-shaped mixed space, Ackley-5, Rosenbrock-4), one JSON
//! line per problem, for comparison with Optuna's GPSampler on the same problems:
//!
//! ```text
//! cargo run --release -p nightshift-search --example gp_regret -- branin,hartmann6,mixed,ackley5,rosen4 30 gp > ours.jsonl
//! python3 crates/search/benches/optuna_gp.py regret branin,hartmann6,mixed,ackley5,rosen4 30 > optuna.jsonl
//! python3 crates/search/benches/optuna_gp.py compare ours.jsonl optuna.jsonl
//! ```
//!
//! Arguments: problems (comma-separated), number of seeds, sampler (`gp`, `tpe` or `random`).

use std::collections::BTreeMap;
use std::f64::consts::{E, PI};
use std::sync::Arc;

use nightshift_search::{
    Direction, GpConfig, InMemoryStorage, NewStudy, ParamValue, SamplerConfig, SearchSpace, Study, TellOutcome, TpeConfig,
};

type Params = BTreeMap<String, ParamValue>;

fn num(p: &Params, name: &str) -> f64 {
    p[name].as_f64().expect("numeric parameter")
}

fn xs(p: &Params, n: usize) -> Vec<f64> {
    (0..n).map(|i| num(p, &format!("x{i}"))).collect()
}

fn branin(p: &Params) -> f64 {
    let (x1, x2) = (num(p, "x1"), num(p, "x2"));
    let (b, c, t) = (5.1 / (4.0 * PI * PI), 5.0 / PI, 1.0 / (8.0 * PI));
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

fn hartmann6(p: &Params) -> f64 {
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
    let x = xs(p, 6);
    -(0..4).map(|i| ALPHA[i] * (-(0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum::<f64>()).exp()).sum::<f64>()
}

/// The `mixed` problem of `benches/search_quality.rs`.
fn mixed(p: &Params) -> f64 {
    let batch = num(p, "batch_size");
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
    (num(p, "learning_rate").log10() - best_lr).powi(2)
        + 0.2 * (num(p, "weight_decay").log10() + 4.0).powi(2)
        + 3.0 * (num(p, "dropout") - 0.15).powi(2)
        + 0.08 * (num(p, "freeze_depth") - 3.0).abs()
        + optimizer
        + batch_penalty
}

fn ackley5(p: &Params) -> f64 {
    let x = xs(p, 5);
    let n = x.len() as f64;
    -20.0 * (-0.2 * (x.iter().map(|v| v * v).sum::<f64>() / n).sqrt()).exp()
        - (x.iter().map(|v| (2.0 * PI * v).cos()).sum::<f64>() / n).exp()
        + 20.0
        + E
}

fn rosen4(p: &Params) -> f64 {
    let x = xs(p, 4);
    (0..3).map(|i| 100.0 * (x[i + 1] - x[i] * x[i]).powi(2) + (1.0 - x[i]).powi(2)).sum()
}

fn cube(n: usize, low: f64, high: f64) -> String {
    (0..n).map(|i| format!("x{i}: {{type: float, low: {low}, high: {high}}}\n")).collect()
}

fn problem(name: &str) -> (String, fn(&Params) -> f64) {
    match name {
        "branin" => ("x1: {type: float, low: -5.0, high: 10.0}\nx2: {type: float, low: 0.0, high: 15.0}\n".into(), branin),
        "hartmann6" => (cube(6, 0.0, 1.0), hartmann6),
        "mixed" => (
            "learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}\n\
             batch_size: {type: categorical, choices: [16, 32, 64, 128]}\n\
             dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}\n\
             weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}\n\
             freeze_depth: {type: int, low: 0, high: 4}\n\
             optimizer: {type: categorical, choices: [sgd, adam, adamw]}\n"
                .into(),
            mixed,
        ),
        "ackley5" => (cube(5, -32.768, 32.768), ackley5),
        "rosen4" => (cube(4, -2.048, 2.048), rosen4),
        other => panic!("unknown problem {other} (branin, hartmann6, mixed, ackley5, rosen4)"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let names = args.get(1).map(String::as_str).unwrap_or("branin,hartmann6,mixed,ackley5,rosen4");
    let seeds: u64 = args.get(2).map(|s| s.parse().expect("number of seeds")).unwrap_or(10);
    let sampler = match args.get(3).map(String::as_str).unwrap_or("gp") {
        "gp" => SamplerConfig::Gp(GpConfig::default()),
        "tpe" => SamplerConfig::Tpe(TpeConfig::default()),
        "random" => SamplerConfig::Random,
        other => panic!("unknown sampler {other} (gp, tpe, random)"),
    };
    for name in names.split(',') {
        let (text, f) = problem(name);
        let space = SearchSpace::parse(&text, name).expect("valid space");
        let (mut at25, mut at50) = (Vec::new(), Vec::new());
        let started = std::time::Instant::now();
        for seed in 0..seeds {
            let mut new = NewStudy::new(name, Direction::Minimize, seed);
            new.sampler = sampler.clone();
            let study = Study::create(Arc::new(InMemoryStorage::new()), &new).expect("study");
            let mut best = f64::INFINITY;
            for i in 1..=50 {
                let trial = study.ask(&space).expect("ask");
                let value = f(&trial.params);
                best = best.min(value);
                study.tell(trial.number, TellOutcome::Value(value)).expect("tell");
                match i {
                    25 => at25.push(best),
                    50 => at50.push(best),
                    _ => {}
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!("{{\"problem\":\"{name}\",\"b25\":{at25:?},\"b50\":{at50:?},\"secs\":{secs}}}");
    }
}

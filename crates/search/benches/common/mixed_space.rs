//! The 5-parameter mixed space of the ask-latency benches (log float, categorical, stepped float,
//! log float, int), a smooth synthetic objective over it, and random histories, shared by
//! `tpe_ask.rs` and `gp_ask.rs` so that both samplers are timed on the same histories.

use std::collections::BTreeMap;

use nightshift_search::sampler::sample_space;
use nightshift_search::{Direction, FrozenTrial, ParamValue, RandomSampler, Sampler, SamplingContext, SearchSpace, TrialState};

pub const SPACE: &str = "\
learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
batch_size: {type: categorical, choices: [16, 32, 64, 128]}
dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
freeze_depth: {type: int, low: 0, high: 4}
";

/// A smooth synthetic "validation loss" over the space.
pub fn objective(p: &BTreeMap<String, ParamValue>) -> f64 {
    let lr = p["learning_rate"].as_f64().unwrap().log10();
    let wd = p["weight_decay"].as_f64().unwrap().log10();
    let dropout = p["dropout"].as_f64().unwrap();
    let depth = p["freeze_depth"].as_f64().unwrap();
    let bs = p["batch_size"].as_f64().unwrap();
    (lr + 3.0).powi(2)
        + 0.1 * (wd + 4.0).powi(2)
        + 4.0 * (dropout - 0.2).powi(2)
        + 0.05 * (depth - 2.0).powi(2)
        + 0.1 * (bs / 32.0).log2().abs()
}

/// `n` COMPLETE trials with random parameters, then the RUNNING trial being sampled.
pub fn history(space: &SearchSpace, n: u64) -> Vec<FrozenTrial> {
    let mut trials = Vec::new();
    for number in 0..n {
        let ctx =
            SamplingContext { study_name: "bench", direction: Direction::Minimize, seed: 1, trials: &[], trial_number: number };
        let mut t = FrozenTrial::new(number as i64, number, TrialState::Complete);
        for (name, dist) in space.iter() {
            t.params.insert(name.to_string(), RandomSampler.sample_independent(&ctx, name, dist).unwrap());
            t.distributions.insert(name.to_string(), dist.clone());
        }
        t.value = Some(objective(&t.params));
        trials.push(t);
    }
    trials.push(FrozenTrial::new(n as i64, n, TrialState::Running));
    trials
}

/// One ask as `Study::ask` performs it.
pub fn ask(sampler: &dyn Sampler, ctx: &SamplingContext<'_>, space: &SearchSpace) -> BTreeMap<String, ParamValue> {
    sample_space(sampler, ctx, space).unwrap()
}

/// `count` asks of `sampler` over `history` (finished trials, then the RUNNING trial being
/// sampled), for a profiler or an instruction count; returns the last suggestion.
pub fn repeated_asks(sampler: &dyn Sampler, history: &[FrozenTrial], count: usize) -> Option<BTreeMap<String, ParamValue>> {
    let space = SearchSpace::parse(SPACE, "bench").unwrap();
    let trial_number = history.last().map_or(0, |t| t.number);
    let ctx = SamplingContext { study_name: "bench", direction: Direction::Minimize, seed: 1, trials: history, trial_number };
    (0..count).map(|_| std::hint::black_box(ask(sampler, std::hint::black_box(&ctx), &space))).last()
}

/// A number from the environment variable `name`, if it is set and parses.
pub fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

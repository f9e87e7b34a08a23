use std::sync::Arc;

use super::*;
use crate::sampler::SamplerConfig;
use crate::storage::{InMemoryStorage, NewStudy};
use crate::study::{Study, TellOutcome};
use crate::trial::Direction;

fn float(low: f64, high: f64) -> Distribution {
    Distribution::Float { low, high, log: false, step: None }
}

fn trial(number: u64, state: TrialState, value: Option<f64>, params: &[(&str, &Distribution, f64)]) -> FrozenTrial {
    let mut t = FrozenTrial::new(number as i64, number, state);
    t.value = value;
    for (name, dist, internal) in params {
        t.params.insert(name.to_string(), dist.to_external(*internal));
        t.distributions.insert(name.to_string(), (*dist).clone());
    }
    t
}

fn ctx<'a>(trials: &'a [FrozenTrial], number: u64, direction: Direction) -> SamplingContext<'a> {
    SamplingContext { study_name: "t", direction, seed: 5, trials, trial_number: number }
}

/// One ask as `Study::ask` performs it.
fn ask(sampler: &GpSampler, c: &SamplingContext<'_>, space: &SearchSpace) -> BTreeMap<String, ParamValue> {
    crate::sampler::sample_space(sampler, c, space).unwrap()
}

fn small() -> GpSampler {
    GpSampler::new(GpConfig { n_preliminary_samples: 256, ..GpConfig::default() })
}

/// The radical inverse of `i` in `base` (a Halton coordinate).
fn halton(mut i: u64, base: u64) -> f64 {
    let (mut f, mut r) = (1.0, 0.0);
    while i > 0 {
        f /= base as f64;
        r += f * (i % base) as f64;
        i /= base;
    }
    r
}

/// `n` COMPLETE trials of (x − 0.3)² + (y + 0.2)² on [−1, 1]², at evenly spread points.
fn bowl(n: u64) -> (SearchSpace, Vec<FrozenTrial>) {
    let d = float(-1.0, 1.0);
    let mut space = SearchSpace::new();
    space.insert("x", d.clone());
    space.insert("y", d.clone());
    let trials = (0..n)
        .map(|i| {
            let (x, y) = (halton(i + 1, 2) * 2.0 - 1.0, halton(i + 1, 3) * 2.0 - 1.0);
            trial(i, TrialState::Complete, Some((x - 0.3).powi(2) + (y + 0.2).powi(2)), &[("x", &d, x), ("y", &d, y)])
        })
        .collect();
    (space, trials)
}

fn xy(p: &BTreeMap<String, ParamValue>) -> (f64, f64) {
    (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap())
}

#[test]
fn start_up_trials_are_random_and_only_complete_ones_count() {
    let (space, mut trials) = bowl(9);
    // Pruned and failed trials do not end the start-up phase.
    trials.push(trial(9, TrialState::Pruned, Some(0.0), &[("x", &float(-1.0, 1.0), 0.3), ("y", &float(-1.0, 1.0), -0.2)]));
    trials.push(trial(10, TrialState::Fail, None, &[]));
    trials.push(FrozenTrial::new(11, 11, TrialState::Running));
    let sampler = small();
    assert!(sampler.infer_relative_search_space(&ctx(&trials, 11, Direction::Minimize), &space).is_empty());
    let (space, mut trials) = bowl(10);
    trials.push(FrozenTrial::new(10, 10, TrialState::Running));
    assert_eq!(sampler.infer_relative_search_space(&ctx(&trials, 10, Direction::Minimize), &space).len(), 2);
}

#[test]
fn with_parallel_workers_the_start_up_ends_once_its_trials_are_asked_and_half_finished() {
    let sampler = small();
    let d = float(-1.0, 1.0);
    let with_running = |complete: u64, running: u64| {
        let (space, mut trials) = bowl(complete);
        for i in complete..complete + running {
            trials.push(trial(i, TrialState::Running, None, &[("x", &d, 0.5), ("y", &d, 0.5)]));
        }
        let number = complete + running;
        trials.push(FrozenTrial::new(number as i64, number, TrialState::Running));
        (space, trials, complete + running)
    };
    // Four workers asking the 11th trial: 7 results and 3 running start-up trials.
    let (space, trials, number) = with_running(7, 3);
    let c = ctx(&trials, number, Direction::Minimize);
    assert_eq!(sampler.infer_relative_search_space(&c, &space).len(), 2);
    let (x, y) = xy(&ask(&sampler, &c, &space));
    assert!((-1.0..=1.0).contains(&x) && (-1.0..=1.0).contains(&y));
    // Too few results yet, or not every start-up trial asked.
    for (complete, running) in [(4, 8), (6, 3)] {
        let (space, trials, number) = with_running(complete, running);
        assert!(sampler.infer_relative_search_space(&ctx(&trials, number, Direction::Minimize), &space).is_empty());
    }
}

#[test]
fn finds_the_bowl_minimum_and_is_deterministic() {
    let (space, mut trials) = bowl(15);
    trials.push(FrozenTrial::new(15, 15, TrialState::Running));
    let sampler = small();
    let c = ctx(&trials, 15, Direction::Minimize);
    let a = ask(&sampler, &c, &space);
    let (x, y) = xy(&a);
    assert!((x - 0.3).powi(2) + (y + 0.2).powi(2) < 0.05, "({x}, {y})");
    // Same context, same answer, from a fresh sampler too; another trial number differs.
    assert_eq!(a, ask(&sampler, &c, &space));
    assert_eq!(a, ask(&small(), &c, &space));
    let other = ask(&sampler, &ctx(&trials, 16, Direction::Minimize), &space);
    assert_ne!(a, other);
}

#[test]
fn maximize_flips_the_sign() {
    let (space, trials) = bowl(15);
    let negated: Vec<FrozenTrial> = trials
        .iter()
        .map(|t| {
            let mut t = t.clone();
            t.value = t.value.map(|v| -v);
            t
        })
        .collect();
    let sampler = small();
    let min = ask(&sampler, &ctx(&trials, 15, Direction::Minimize), &space);
    let max = ask(&sampler, &ctx(&negated, 15, Direction::Maximize), &space);
    assert_eq!(min, max);
}

#[test]
fn pruned_and_interrupted_trials_are_ignored() {
    let (space, trials) = bowl(12);
    let d = float(-1.0, 1.0);
    let mut noisy = trials.clone();
    noisy.push(trial(12, TrialState::Pruned, Some(-100.0), &[("x", &d, -0.9), ("y", &d, 0.9)]));
    let mut interrupted = trial(13, TrialState::Fail, None, &[("x", &d, 0.9), ("y", &d, 0.9)]);
    interrupted.system_attrs.insert(crate::attrs::FAIL_REASON.into(), crate::attrs::FAIL_REASON_INTERRUPTED.into());
    noisy.push(interrupted);
    let sampler = small();
    assert_eq!(
        ask(&sampler, &ctx(&trials, 14, Direction::Minimize), &space),
        ask(&sampler, &ctx(&noisy, 14, Direction::Minimize), &space)
    );
}

#[test]
fn a_point_that_failed_is_not_suggested_again() {
    // Found by a user's shell loop: the objective fails wherever x > 0.7 and improves toward x = 1 (on
    // the boundary of the failing region), and a GP that ignored failed trials suggested the same failed
    // point at every ask from about the 15th on.
    let d = float(0.0, 1.0);
    let mut space = SearchSpace::new();
    space.insert("x", d.clone());
    space.insert("y", d.clone());
    let sampler = small();
    let mut trials: Vec<FrozenTrial> = Vec::new();
    for number in 0..40 {
        let params = ask(&sampler, &ctx(&trials, number, Direction::Minimize), &space);
        let (x, y) = xy(&params);
        let (state, value) =
            if x > 0.7 { (TrialState::Fail, None) } else { (TrialState::Complete, Some(-x + (y - 0.5).powi(2))) };
        let mut t = trial(number, state, value, &[("x", &d, x), ("y", &d, y)]);
        if state == TrialState::Fail {
            t.system_attrs.insert(crate::attrs::FAIL_REASON.into(), "told fail".into());
        }
        trials.push(t);
    }
    let failed: Vec<(f64, f64)> = trials.iter().filter(|t| t.state == TrialState::Fail).map(|t| xy(&t.params)).collect();
    let mut distinct = failed.clone();
    distinct.sort_by(|a, b| a.partial_cmp(b).unwrap());
    distinct.dedup();
    assert_eq!(distinct.len(), failed.len(), "a failed point suggested again: {failed:?}");
    assert!(failed.len() <= 15, "{} of 40 trials failed: {failed:?}", failed.len());
    let best = trials.iter().filter_map(|t| t.value).fold(f64::INFINITY, f64::min);
    assert!(best < -0.6, "best {best}: the search went on toward x = 0.7");
}

/// A FAIL trial that ran out of memory at (x, y).
fn oom(number: u64, x: f64, y: f64) -> FrozenTrial {
    let d = float(-1.0, 1.0);
    let mut t = trial(number, TrialState::Fail, None, &[("x", &d, x), ("y", &d, y)]);
    t.system_attrs.insert(crate::attrs::FAIL_KIND.into(), crate::attrs::FAIL_KIND_OOM.into());
    t
}

#[test]
fn out_of_memory_trials_are_infeasible() {
    // The bowl's minimum (0.3, −0.2) lies where x > 0.2 runs out of memory.
    let (space, mut trials) = bowl(20);
    trials.retain(|t| t.params["x"].as_f64().unwrap() <= 0.2);
    assert!(trials.len() >= 10, "past the start-up, also without the out-of-memory trials");
    let points = [(0.3, -0.2), (0.5, 0.5), (0.9, -0.8), (0.25, 0.9), (0.7, 0.0), (0.35, -0.5)];
    trials.extend((100..).zip(points).map(|(n, (x, y))| oom(n, x, y)));
    let sampler = small();
    let xs: Vec<f64> = (200..210).map(|n| xy(&ask(&sampler, &ctx(&trials, n, Direction::Minimize), &space)).0).collect();
    let inside = xs.iter().filter(|&&x| x > 0.2).count();
    assert!(inside <= 1, "{inside} of 10 suggestions where trials ran out of memory: {xs:?}");
    // Other failures are infeasible too; without the failed trials the GP heads for the bowl's minimum there.
    let plain: Vec<FrozenTrial> = trials
        .iter()
        .cloned()
        .map(|mut t| {
            t.system_attrs.clear();
            t
        })
        .collect();
    let xs: Vec<f64> = (200..210).map(|n| xy(&ask(&sampler, &ctx(&plain, n, Direction::Minimize), &space)).0).collect();
    assert!(xs.iter().filter(|&&x| x > 0.2).count() <= 1, "{xs:?}");
    let plain: Vec<FrozenTrial> = trials.iter().filter(|t| t.state == TrialState::Complete).cloned().collect();
    let xs: Vec<f64> = (200..210).map(|n| xy(&ask(&sampler, &ctx(&plain, n, Direction::Minimize), &space)).0).collect();
    assert!(xs.iter().filter(|&&x| x > 0.2).count() >= 5, "{xs:?}");

    // With nothing complete yet, the GP still models feasibility (no random fallback) and stays away.
    let only_oom: Vec<FrozenTrial> = (0..10).map(|i| oom(i, 0.4 + 0.4 * (i % 2) as f64, -0.8 + 0.4 * (i / 2) as f64)).collect();
    let c = ctx(&only_oom, 10, Direction::Minimize);
    assert!(!sampler.in_startup(&c), "out-of-memory trials count toward the start-up trials");
    let relative = sampler.infer_relative_search_space(&c, &space);
    let suggestion = sampler.suggest(&c, &relative);
    assert_eq!(suggestion.fallback, None);
    assert!(suggestion.params["x"].as_f64().unwrap() < 0.2, "{:?}", suggestion.params);
}

#[test]
fn running_trials_push_the_next_ask_elsewhere() {
    let (space, trials) = bowl(12);
    let sampler = small();
    let first = ask(&sampler, &ctx(&trials, 12, Direction::Minimize), &space);
    let (x1, y1) = xy(&first);
    // Trial 13 asked while 12 is still RUNNING at `first`, and asked without it.
    let d = float(-1.0, 1.0);
    let mut with_running = trials.clone();
    with_running.push(trial(12, TrialState::Running, None, &[("x", &d, x1), ("y", &d, y1)]));
    let (x2, y2) = xy(&ask(&sampler, &ctx(&with_running, 13, Direction::Minimize), &space));
    let (x3, y3) = xy(&ask(&sampler, &ctx(&trials, 13, Direction::Minimize), &space));
    let dist = |a: (f64, f64), b: (f64, f64)| ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt();
    // Without the pending trial the GP goes back to (nearly) the same point; with it, elsewhere.
    assert!(dist((x3, y3), (x1, y1)) < 0.02, "{:?} vs {:?}", (x3, y3), (x1, y1));
    assert!(dist((x2, y2), (x1, y1)) > 0.05, "{:?} vs {:?}", (x2, y2), (x1, y1));
}

#[test]
fn degenerate_histories_never_fail_an_ask() {
    let d = float(-1.0, 1.0);
    let mut space = SearchSpace::new();
    space.insert("x", d.clone());
    let sampler = GpSampler::new(GpConfig { n_startup_trials: 1, n_preliminary_samples: 64, ..GpConfig::default() });
    let histories: Vec<Vec<Option<f64>>> = vec![
        vec![Some(1.0)],                                                       // one point
        vec![Some(2.0); 6],                                                    // all equal
        vec![Some(1.0), Some(f64::INFINITY), Some(-f64::INFINITY), Some(0.5)], // infinities
        vec![Some(f64::INFINITY); 3],                                          // nothing finite
        vec![Some(f64::NAN), Some(1.0), Some(f64::NAN), Some(0.0)],            // NaN values
        vec![None, Some(1.0)],                                                 // COMPLETE without a value
    ];
    for values in histories {
        let mut trials: Vec<FrozenTrial> = values
            .iter()
            .enumerate()
            .map(|(i, v)| trial(i as u64, TrialState::Complete, *v, &[("x", &d, -0.5 + 0.2 * i as f64)]))
            .collect();
        // The same point observed twice.
        trials.push(trial(values.len() as u64, TrialState::Complete, values[0], &[("x", &d, -0.5)]));
        let n = trials.len() as u64;
        let c = ctx(&trials, n, Direction::Minimize);
        let suggestion = sampler.suggest(&c, &space);
        let x = suggestion.params.get("x").map(|v| v.as_f64().unwrap());
        assert!(x.is_none_or(|x| (-1.0..=1.0).contains(&x)), "{values:?}: {x:?}");
        let p = ask(&sampler, &c, &space);
        assert!(d.to_internal(&p["x"]).is_ok(), "{values:?}");
        assert_eq!(suggestion.fallback, None, "{values:?}");
    }
}

#[test]
fn single_valued_and_partial_parameters_are_left_to_independent_sampling() {
    let (mut space, mut trials) = bowl(12);
    let fixed = Distribution::Int { low: 3, high: 3, log: false, step: 1 };
    let extra = float(0.0, 1.0);
    space.insert("fixed", fixed.clone());
    space.insert("extra", extra.clone());
    for t in trials.iter_mut().take(6) {
        t.params.insert("extra".into(), ParamValue::Float(0.5));
        t.params.insert("fixed".into(), ParamValue::Int(3));
    }
    let sampler = small();
    let c = ctx(&trials, 12, Direction::Minimize);
    let relative = sampler.infer_relative_search_space(&c, &space);
    assert_eq!(relative.names().collect::<Vec<_>>(), ["x", "y"]);
    let p = ask(&sampler, &c, &space);
    assert_eq!(p["fixed"], ParamValue::Int(3));
    assert!(extra.to_internal(&p["extra"]).is_ok());
}

const MIXED: &str = "\
learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
batch_size: {type: categorical, choices: [16, 32, 64, 128]}
dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
freeze_depth: {type: int, low: 0, high: 4}
width: {type: int, low: 8, high: 512, log: true}
units: {type: int, low: 0, high: 200, step: 5}
";

fn mixed_loss(p: &BTreeMap<String, ParamValue>) -> f64 {
    let num = |n: &str| p[n].as_f64().unwrap();
    (num("learning_rate").log10() + 3.0).powi(2)
        + 0.1 * (num("weight_decay").log10() + 4.0).powi(2)
        + 4.0 * (num("dropout") - 0.2).powi(2)
        + 0.05 * (num("freeze_depth") - 2.0).powi(2)
        + 0.1 * (num("batch_size") / 32.0).log2().abs()
        + 0.2 * (num("width").log2() - 7.0).abs()
        + ((num("units") - 120.0) / 100.0).powi(2)
}

#[test]
fn mixed_space_suggestions_are_valid_on_grid_and_improve() {
    let space = SearchSpace::parse(MIXED, "mixed").unwrap();
    let mut new = NewStudy::new("mixed", Direction::Minimize, 11);
    new.sampler = SamplerConfig::Gp(GpConfig { n_preliminary_samples: 256, ..GpConfig::default() });
    let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
    let mut best_random = f64::INFINITY;
    let mut best = f64::INFINITY;
    for i in 0..30 {
        let trial = study.ask(&space).unwrap();
        for (name, dist) in space.iter() {
            let internal = dist.to_internal(&trial.params[name]).unwrap();
            assert!(dist.contains(internal), "{name} = {internal} off the grid of {dist}");
            assert_eq!(dist.snap(internal), internal, "{name}");
            match dist {
                Distribution::Int { .. } => assert!(matches!(trial.params[name], ParamValue::Int(_))),
                Distribution::Float { .. } => assert!(matches!(trial.params[name], ParamValue::Float(_))),
                Distribution::Categorical { .. } => assert!(matches!(trial.params[name], ParamValue::Int(_))),
            }
        }
        let loss = mixed_loss(&trial.params);
        if i < 10 {
            best_random = best_random.min(loss);
        }
        best = best.min(loss);
        study.tell(trial.number, TellOutcome::Value(loss)).unwrap();
    }
    assert!(best < 0.5 * best_random, "GP best {best} vs start-up best {best_random}");
}

#[test]
fn huge_and_wide_integer_ranges_stay_valid() {
    let space = SearchSpace::parse(
        "seed: {type: int, low: 0, high: 1000000000}\nsteps: {type: int, low: 10, high: 100000, step: 10}\nkind: {type: categorical, choices: [a, b]}\n",
        "ints",
    )
    .unwrap();
    let mut new = NewStudy::new("ints", Direction::Maximize, 2);
    new.sampler = SamplerConfig::Gp(GpConfig { n_startup_trials: 3, n_preliminary_samples: 64, ..GpConfig::default() });
    let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
    for _ in 0..8 {
        let trial = study.ask(&space).unwrap();
        for (name, dist) in space.iter() {
            assert!(dist.contains(dist.to_internal(&trial.params[name]).unwrap()), "{name}");
        }
        let value = (trial.params["steps"].as_f64().unwrap() / 1e5).sin();
        study.tell(trial.number, TellOutcome::Value(value)).unwrap();
    }
}

fn branin(x1: f64, x2: f64) -> f64 {
    let pi = std::f64::consts::PI;
    let (b, c, t) = (5.1 / (4.0 * pi * pi), 5.0 / pi, 1.0 / (8.0 * pi));
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

/// Best Branin value after 30 trials of a study with `sampler`.
fn branin_best(sampler: SamplerConfig, seed: u64) -> f64 {
    let space =
        SearchSpace::parse("x1: {type: float, low: -5.0, high: 10.0}\nx2: {type: float, low: 0.0, high: 15.0}\n", "b").unwrap();
    let mut new = NewStudy::new("branin", Direction::Minimize, seed);
    new.sampler = sampler;
    let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
    let mut best = f64::INFINITY;
    for _ in 0..30 {
        let t = study.ask(&space).unwrap();
        let v = branin(t.params["x1"].as_f64().unwrap(), t.params["x2"].as_f64().unwrap());
        best = best.min(v);
        study.tell(t.number, TellOutcome::Value(v)).unwrap();
    }
    best
}

#[test]
fn gp_finds_branins_minimum_in_30_trials_where_random_search_does_not() {
    const OPTIMUM: f64 = 0.397_887;
    let gp = SamplerConfig::Gp(GpConfig { n_preliminary_samples: 512, ..GpConfig::default() });
    let gp_regrets: Vec<f64> = (0..10).map(|s| branin_best(gp.clone(), s) - OPTIMUM).collect();
    let random_regrets: Vec<f64> = (0..10).map(|s| branin_best(SamplerConfig::Random, s) - OPTIMUM).collect();
    let hits = |r: &[f64], within: f64| r.iter().filter(|&&v| v < within).count();
    // Regret 0.5 is the bar asked for, but 30 random trials reach it on about half the seeds
    // (5/10 here), so the bar that separates the two is 0.05: GP ~10/10, random 1/10.
    assert!(hits(&gp_regrets, 0.5) >= 8, "GP regrets {gp_regrets:?}");
    assert!(hits(&gp_regrets, 0.05) >= 8, "GP regrets {gp_regrets:?}");
    assert!(hits(&random_regrets, 0.05) <= 2, "random regrets {random_regrets:?}");
}

/// Each ask leaves its fitted kernel on its trial; beyond 64 observations the next fit starts from
/// the latest kernel of the same joint parameters, read back from the history like any other input.
#[test]
fn asks_leave_their_kernel_for_the_next_fit_to_start_from() {
    let (space, mut trials) = bowl(70);
    trials.push(FrozenTrial::new(70, 70, TrialState::Running));
    let (params, notes) = small().sample_all_noted(&ctx(&trials, 70, Direction::Minimize), &space).unwrap();
    let note: KernelNote = serde_json::from_value(notes[attrs::GP_KERNEL].clone()).unwrap();
    assert_eq!(note.params, ["x", "y"]);
    let (x, y) = xy(&params);
    trials[70].state = TrialState::Complete;
    trials[70].value = Some((x - 0.3).powi(2) + (y + 0.2).powi(2));
    trials[70].params = params;
    trials[70].system_attrs.insert(attrs::GP_KERNEL.into(), notes[attrs::GP_KERNEL].clone());
    trials.push(FrozenTrial::new(71, 71, TrialState::Running));
    let next = ctx(&trials, 71, Direction::Minimize);
    assert_eq!(KernelNote::latest(&next, &["x", "y"]), Some(note.kernel.clone()));
    assert_eq!(KernelNote::latest(&next, &["x", "z"]), None);
    // A fresh sampler over the same stored history suggests the same (an `ask` in a new process).
    let first = ask(&small(), &next, &space);
    assert_eq!(first, ask(&small(), &next, &space));
    // A note that does not parse, or has other dimensions, is skipped for an older one or none.
    trials[69].system_attrs.insert(attrs::GP_KERNEL.into(), notes[attrs::GP_KERNEL].clone());
    trials[70].system_attrs.insert(attrs::GP_KERNEL.into(), serde_json::json!({"params": ["x", "y"], "scale": "big"}));
    assert_eq!(KernelNote::latest(&ctx(&trials, 71, Direction::Minimize), &["x", "y"]), Some(note.kernel.clone()));
    trials[69].system_attrs.insert(
        attrs::GP_KERNEL.into(),
        serde_json::json!({"params": ["x", "y"], "inv_sq_lengthscales": [1.0], "scale": 1.0, "noise_var": 1.0}),
    );
    assert_eq!(KernelNote::latest(&ctx(&trials, 71, Direction::Minimize), &["x", "y"]), None);
    let without_notes = ask(&small(), &ctx(&trials, 71, Direction::Minimize), &space);
    // A kernel no fit can start from (λ ≤ 0) is as good as none: the fit starts from the default.
    trials[70].system_attrs.insert(
        attrs::GP_KERNEL.into(),
        serde_json::json!({"params": ["x", "y"], "inv_sq_lengthscales": [-1.0, 0.0], "scale": 1.0, "noise_var": 1.0}),
    );
    assert_eq!(ask(&small(), &ctx(&trials, 71, Direction::Minimize), &space), without_notes);
}

#[test]
fn a_study_stores_each_gp_asks_kernel_on_its_trial() {
    let space = SearchSpace::parse("x: {type: float, low: -1.0, high: 1.0}\n", "s").unwrap();
    let mut new = NewStudy::new("kernel", Direction::Minimize, 3);
    new.sampler = SamplerConfig::Gp(GpConfig { n_preliminary_samples: 64, ..GpConfig::default() });
    let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
    for _ in 0..12 {
        let t = study.ask(&space).unwrap();
        let x = t.params["x"].as_f64().unwrap();
        study.tell(t.number, TellOutcome::Value((x - 0.25).powi(2))).unwrap();
    }
    let trials = study.trials().unwrap();
    // Start-up trials (10) are random and fit nothing; the GP's asks leave their kernel.
    assert!(trials[..10].iter().all(|t| !t.system_attrs.contains_key(attrs::GP_KERNEL)));
    for t in &trials[10..] {
        let note: KernelNote = serde_json::from_value(t.system_attrs[attrs::GP_KERNEL].clone()).unwrap();
        assert_eq!((note.params.as_slice(), note.kernel.inv_sq_lengthscales.len()), (["x".to_string()].as_slice(), 1));
    }
}

#[test]
fn config_parses_by_name_and_rejects_unknown_fields() {
    let kwargs = serde_json::json!({"n_startup_trials": 5, "deterministic_objective": true, "seed": 3});
    let config = SamplerConfig::from_name_and_kwargs("GPSampler", Some(&kwargs)).unwrap();
    assert_eq!(config, SamplerConfig::Gp(GpConfig { n_startup_trials: 5, deterministic_objective: true, ..GpConfig::default() }));
    assert_eq!(SamplerConfig::from_name_and_kwargs("gp", None).unwrap(), SamplerConfig::Gp(GpConfig::default()));
    assert!(SamplerConfig::from_name_and_kwargs("gp", Some(&serde_json::json!({"n_startup": 5}))).is_err());
    let yaml: SamplerConfig = serde_yaml::from_str("type: gp\nn_preliminary_samples: 512\n").unwrap();
    assert_eq!(yaml, SamplerConfig::Gp(GpConfig { n_preliminary_samples: 512, ..GpConfig::default() }));
}

use std::sync::Arc;

use rand::{Rng, SeedableRng};

use super::*;
use crate::storage::{InMemoryStorage, NewStudy};
use crate::study::{Study, TellOutcome};
use crate::trial::Direction;

fn x_dist() -> Distribution {
    Distribution::Float { low: -10.0, high: 10.0, log: false, step: None }
}

/// A finished (or running) trial with the given parameters.
fn trial(number: u64, state: TrialState, value: Option<f64>, params: &[(&str, &Distribution, ParamValue)]) -> FrozenTrial {
    let mut t = FrozenTrial::new(number as i64, number, state);
    t.value = value;
    for (name, dist, v) in params {
        t.params.insert(name.to_string(), v.clone());
        t.distributions.insert(name.to_string(), (*dist).clone());
    }
    t
}

fn ctx<'a>(trials: &'a [FrozenTrial], number: u64) -> SamplingContext<'a> {
    SamplingContext { study_name: "t", direction: Direction::Minimize, seed: 3, trials, trial_number: number }
}

/// Asks TPE for `x` in the one-parameter space, as the study would.
fn ask_x(sampler: &TpeSampler, trials: &[FrozenTrial], number: u64) -> f64 {
    let mut space = SearchSpace::new();
    space.insert("x", x_dist());
    let c = ctx(trials, number);
    let relative = sampler.infer_relative_search_space(&c, &space);
    let mut params = sampler.sample_relative(&c, &relative).unwrap();
    let v = match params.remove("x") {
        Some(v) => v,
        None => sampler.sample_independent(&c, "x", &x_dist()).unwrap(),
    };
    v.as_f64().unwrap()
}

/// `n` COMPLETE trials spread evenly over [-10, 10] with loss (x − 2)².
fn quadratic_history(n: usize) -> Vec<FrozenTrial> {
    let dist = x_dist();
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    (0..n)
        .map(|i| {
            let x: f64 = rng.random_range(-10.0..10.0);
            trial(i as u64, TrialState::Complete, Some((x - 2.0).powi(2)), &[("x", &dist, ParamValue::Float(x))])
        })
        .collect()
}

#[test]
fn gamma_values() {
    let cases = [(0, 0), (1, 1), (10, 1), (11, 2), (100, 10), (101, 11), (249, 25), (250, 25), (1000, 25)];
    for (n, want) in cases {
        assert_eq!(default_gamma(n), want, "gamma({n})");
    }
}

#[test]
fn weights_values() {
    assert_eq!(default_weights(0), Vec::<f64>::new());
    assert_eq!(default_weights(24), vec![1.0; 24]);
    assert_eq!(default_weights(25), vec![1.0; 25]);
    let w = default_weights(26);
    assert_eq!(w[0], 1.0 / 26.0);
    assert!(w[1..].iter().all(|&x| x == 1.0));
    let w = default_weights(30);
    // linspace(1/30, 1, 5) then 25 ones.
    let want =
        [1.0 / 30.0, 1.0 / 30.0 + 0.25 * 29.0 / 30.0, 1.0 / 30.0 + 0.5 * 29.0 / 30.0, 1.0 / 30.0 + 0.75 * 29.0 / 30.0, 1.0];
    for (a, b) in w.iter().zip(want) {
        assert!((a - b).abs() < 1e-12, "{w:?}");
    }
    assert!(w[5..].iter().all(|&x| x == 1.0));
}

#[test]
fn startup_phase_is_random_and_reproducible() {
    let history = quadratic_history(9);
    let tpe = TpeSampler::new(TpeConfig::default());
    let mut space = SearchSpace::new();
    space.insert("x", x_dist());
    assert!(tpe.infer_relative_search_space(&ctx(&history, 9), &space).is_empty());
    let mut seen = Vec::new();
    for number in 9..19 {
        let c = ctx(&history, number);
        let got = tpe.sample_independent(&c, "x", &x_dist()).unwrap();
        assert_eq!(got, RandomSampler.sample_independent(&c, "x", &x_dist()).unwrap());
        assert_eq!(got, tpe.sample_independent(&c, "x", &x_dist()).unwrap());
        seen.push(got.as_f64().unwrap());
    }
    seen.sort_by(f64::total_cmp);
    seen.dedup();
    assert_eq!(seen.len(), 10, "start-up suggestions must differ between trials");
    // The 10th finished trial ends the start-up phase.
    let history = quadratic_history(10);
    assert_eq!(tpe.infer_relative_search_space(&ctx(&history, 10), &space).len(), 1);
}

#[test]
fn suggestions_concentrate_where_good_trials_cluster() {
    let history = quadratic_history(60);
    let tpe = TpeSampler::new(TpeConfig::default());
    let xs: Vec<f64> = (60..160).map(|n| ask_x(&tpe, &history, n)).collect();
    let near = xs.iter().filter(|x| (**x - 2.0).abs() < 1.5).count();
    // Uniform sampling would put 7.5% of the points there.
    assert!(near >= 70, "only {near}/100 suggestions near 2: {xs:?}");
    // Deterministic: the same history and trial number give the same point.
    assert_eq!(ask_x(&tpe, &history, 77), xs[17]);
}

#[test]
fn maximize_mirrors_minimize() {
    let mut history = quadratic_history(60);
    for t in &mut history {
        t.value = t.value.map(|v| -v);
    }
    let tpe = TpeSampler::new(TpeConfig::default());
    let near = (60..160)
        .filter(|&n| {
            let c = SamplingContext { direction: Direction::Maximize, ..ctx(&history, n) };
            let v = tpe.sample_independent(&c, "x", &x_dist()).unwrap().as_f64().unwrap();
            (v - 2.0).abs() < 1.5
        })
        .count();
    assert!(near >= 70, "{near}");
}

#[test]
fn constant_liar_pushes_suggestions_away_from_running_points() {
    let mut history = quadratic_history(40);
    let dist = x_dist();
    let liar = TpeSampler::new(TpeConfig::default());
    let honest = TpeSampler::new(TpeConfig { constant_liar: false, ..TpeConfig::default() });
    let mut xs: Vec<f64> = (100..300).map(|n| ask_x(&liar, &history, n)).collect();
    xs.sort_by(f64::total_cmp);
    // Where TPE wants to go next; other workers are now evaluating points right there.
    let hot = xs[xs.len() / 2];
    let count_near =
        |trials: &[FrozenTrial], tpe: &TpeSampler| (100..300).filter(|&n| (ask_x(tpe, trials, n) - hot).abs() < 0.4).count();
    let before = count_near(&history, &liar);
    for i in 0..6 {
        let x = hot - 0.1 + 0.04 * i as f64;
        history.push(trial(40 + i, TrialState::Running, None, &[("x", &dist, ParamValue::Float(x))]));
    }
    let after = count_near(&history, &liar);
    assert!(before >= 60 && (after as f64) < 0.5 * before as f64, "near {hot}: {before} before, {after} after");
    // Without the liar, RUNNING trials are ignored.
    assert_eq!(count_near(&history, &honest), count_near(&history[..40], &honest));
    // The trial being sampled never lies to itself.
    let own = History::collect(&ctx(&history, 45), &[("x", &dist)], true, None);
    assert_eq!(own.len(), 45);
}

#[test]
fn pruned_trials_rank_by_deepest_step_then_value_nan_worst() {
    let dist = x_dist();
    let pruned = |number: u64, steps: &[(u64, f64)]| {
        let mut t = trial(number, TrialState::Pruned, None, &[("x", &dist, ParamValue::Float(number as f64))]);
        t.intermediate_values = steps.iter().copied().collect();
        t
    };
    let trials = vec![
        pruned(0, &[(1, 0.1), (5, 0.9)]),  // A: step 5
        pruned(1, &[(10, 0.8)]),           // B: step 10, 0.8
        pruned(2, &[(3, 0.0), (10, 0.3)]), // C: step 10, 0.3
        pruned(3, &[(10, f64::NAN)]),      // D: step 10, NaN
        pruned(4, &[]),                    // E: nothing reported
    ];
    let c = ctx(&trials, 99);
    let mut order: Vec<u64> = trials.iter().map(|t| t.number).collect();
    order.sort_by(|&a, &b| {
        let (ka, kb) = (pruned_key(&trials[a as usize], &c), pruned_key(&trials[b as usize], &c));
        ka.0.total_cmp(&kb.0).then(ka.1.total_cmp(&kb.1))
    });
    assert_eq!(order, [2, 1, 3, 0, 4]);
    let cmax = SamplingContext { direction: Direction::Maximize, ..c };
    let kb = pruned_key(&trials[1], &cmax);
    let kc = pruned_key(&trials[2], &cmax);
    assert!(kb < kc, "when maximising, 0.8 beats 0.3");

    // In the split, COMPLETE trials come first, then the best PRUNED ones: 11 finished → γ = 2.
    let mut all = trials.clone();
    for i in 5..10 {
        all.push(pruned(i, &[(1, 0.0)]));
    }
    all.push(trial(10, TrialState::Complete, Some(100.0), &[("x", &dist, ParamValue::Float(0.0))]));
    all.push(trial(11, TrialState::Fail, None, &[("x", &dist, ParamValue::Float(0.0))]));
    let h = History::collect(&ctx(&all, 12), &[("x", &dist)], true, None);
    assert_eq!(h.len(), 11, "FAIL trials are ignored");
    let below: Vec<usize> = (0..h.len()).filter(|&r| h.below[r]).collect();
    assert_eq!(below, [2, 10], "the complete trial and pruned C");
}

/// A FAIL trial that ran out of memory, at `x`.
fn oom(number: u64, x: f64) -> FrozenTrial {
    let mut t = trial(number, TrialState::Fail, None, &[("x", &x_dist(), ParamValue::Float(x))]);
    t.system_attrs.insert(crate::attrs::FAIL_KIND.into(), crate::attrs::FAIL_KIND_OOM.into());
    t
}

#[test]
fn out_of_memory_trials_are_infeasible_and_ranked_after_all_others() {
    let dist = x_dist();
    let complete = |n: u64, loss: f64| trial(n, TrialState::Complete, Some(loss), &[("x", &dist, ParamValue::Float(0.0))]);
    // 2 COMPLETE, 1 PRUNED, 18 out of memory, 1 other failure: 21 finished → γ = 3.
    let mut all = vec![complete(0, 5.0), complete(1, 3.0)];
    all.push(trial(2, TrialState::Pruned, None, &[("x", &dist, ParamValue::Float(1.0))]));
    all.extend((3..21).map(|n| oom(n, 9.0)));
    all.push(trial(21, TrialState::Fail, None, &[("x", &dist, ParamValue::Float(0.0))]));
    let h = History::collect(&ctx(&all, 22), &[("x", &dist)], true, None);
    assert_eq!(h.len(), 21, "out-of-memory trials count, other failures do not");
    let below: Vec<u64> = (0..h.len()).filter(|&r| h.below[r]).map(|r| h.numbers[r]).collect();
    assert_eq!(below, [0, 1, 2], "feasible trials fill the below group first");
    // With fewer feasible trials than γ, the earliest out-of-memory trials fill it up, as Optuna
    // fills it with the least violating infeasible trials.
    let few: Vec<FrozenTrial> = std::iter::once(complete(0, 1.0)).chain((1..31).map(|n| oom(n, 9.0))).collect();
    let h = History::collect(&ctx(&few, 31), &[("x", &dist)], true, None);
    let below: Vec<u64> = (0..h.len()).filter(|&r| h.below[r]).map(|r| h.numbers[r]).collect();
    assert_eq!(below, [0, 1, 2, 3]);
    // They count toward the start-up trials, so TPE takes over and steers away from them.
    let tpe = TpeSampler::new(TpeConfig::default());
    assert!(!tpe.in_startup(&ctx(&all, 22)));
    // The best feasible trial is at the region's edge (x = 4; out of memory from 5 on).
    let mut history: Vec<FrozenTrial> = (0..10).map(|n| complete(n, 9.5 - n as f64)).collect();
    for (i, t) in history.iter_mut().enumerate() {
        t.params.insert("x".into(), ParamValue::Float(-5.0 + i as f64));
    }
    history.extend((10..20).map(|n| oom(n, 5.0 + (n - 10) as f64 * 0.5)));
    let xs: Vec<f64> = (20..60).map(|n| ask_x(&tpe, &history, n)).collect();
    let inside = xs.iter().filter(|&&x| x >= 5.0).count();
    assert!(inside <= 2, "{inside} of 40 suggestions in the out-of-memory region: {xs:?}");
}

#[test]
fn categorical_favours_the_good_choice() {
    let dist =
        Distribution::Categorical { choices: ["a", "b", "c", "d"].iter().map(|s| ParamValue::Str(s.to_string())).collect() };
    let history: Vec<FrozenTrial> = (0..40u64)
        .map(|i| {
            let choice = ["a", "b", "c", "d"][(i * 7 % 4) as usize];
            let loss = if choice == "b" { 0.1 * (i % 3) as f64 } else { 1.0 + 0.1 * (i % 5) as f64 };
            trial(i, TrialState::Complete, Some(loss), &[("opt", &dist, ParamValue::Str(choice.into()))])
        })
        .collect();
    let tpe = TpeSampler::new(TpeConfig::default());
    let picks_b = (40..140)
        .filter(|&n| tpe.sample_independent(&ctx(&history, n), "opt", &dist).unwrap() == ParamValue::Str("b".into()))
        .count();
    assert!(picks_b >= 70, "{picks_b}/100");
}

#[test]
fn log_parameters_are_modelled_in_log_space() {
    let lr = Distribution::Float { low: 1e-5, high: 1e-1, log: true, step: None };
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let history: Vec<FrozenTrial> = (0..50u64)
        .map(|i| {
            let v: f64 = 10f64.powf(rng.random_range(-5.0..-1.0));
            trial(i, TrialState::Complete, Some((v.log10() + 3.0).powi(2)), &[("lr", &lr, ParamValue::Float(v))])
        })
        .collect();
    let tpe = TpeSampler::new(TpeConfig::default());
    let near = (50..150)
        .filter(|&n| {
            let v = tpe.sample_independent(&ctx(&history, n), "lr", &lr).unwrap().as_f64().unwrap();
            (v.log10() + 3.0).abs() < 0.5
        })
        .count();
    assert!(near >= 70, "{near}");
}

#[test]
fn groups_follow_which_parameters_trials_have() {
    let d = Distribution::Float { low: 0.0, high: 1.0, log: false, step: None };
    let p = |names: &[&'static str]| names.iter().map(|n| (*n, &d, ParamValue::Float(0.5))).collect::<Vec<_>>();
    let mut trials = Vec::new();
    for i in 0..12u64 {
        let names: &[&str] = if i % 2 == 0 { &["a", "b", "c"] } else { &["a", "d"] };
        trials.push(trial(i, TrialState::Complete, Some(i as f64), &p(names)));
    }
    let params = [("a", &d), ("b", &d), ("c", &d), ("d", &d)];
    let h = History::collect(&ctx(&trials, 12), &params, true, None);
    assert_eq!(h.groups(), vec![vec![0], vec![1, 2], vec![3]]);
    assert_eq!(h.intersection(), vec![0]);
    // The study path samples all four without error, each group jointly.
    let mut space = SearchSpace::new();
    for (name, dist) in params {
        space.insert(name, dist.clone());
    }
    let tpe = TpeSampler::new(TpeConfig { group: true, ..TpeConfig::default() });
    let c = ctx(&trials, 12);
    let relative = tpe.infer_relative_search_space(&c, &space);
    assert_eq!(relative.len(), 4);
    let sampled = tpe.sample_relative(&c, &relative).unwrap();
    assert_eq!(sampled.len(), 4);
    // Without `group` (the default) only the parameter every trial has is sampled jointly; the
    // others go one at a time through `sample_independent`.
    let plain = TpeSampler::new(TpeConfig::default());
    let relative = plain.infer_relative_search_space(&c, &space);
    assert_eq!(relative.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>(), vec!["a"]);
}

#[test]
fn defaults_are_optunas() {
    // Optuna 5.0's TPESampler, single objective: multivariate (when left at None), no group,
    // constant liar, 10 start-up trials, 24 candidates, prior weight 1, magic clip, no endpoints.
    let c = TpeConfig::default();
    assert_eq!(
        (c.n_startup_trials, c.n_ei_candidates, c.prior_weight, c.consider_magic_clip, c.consider_endpoints),
        (10, 24, 1.0, true, false)
    );
    assert_eq!((c.multivariate, c.group, c.constant_liar), (true, false, true));
}

#[test]
fn never_panics_on_degenerate_histories() {
    let x = x_dist();
    let int = Distribution::Int { low: 0, high: 4, log: false, step: 1 };
    let one = Distribution::Int { low: 3, high: 3, log: false, step: 1 };
    let step = Distribution::Float { low: 0.0, high: 0.5, log: false, step: Some(0.05) };
    let ilog = Distribution::Int { low: 1, high: 1024, log: true, step: 1 };
    let cat1 = Distribution::Categorical { choices: vec![ParamValue::Bool(true)] };
    let dists = [("x", &x), ("k", &int), ("one", &one), ("s", &step), ("units", &ilog), ("flag", &cat1)];
    let mut space = SearchSpace::new();
    for (name, dist) in dists {
        space.insert(name, dist.clone());
    }
    let params = |i: u64| -> Vec<(&str, &Distribution, ParamValue)> {
        vec![
            ("x", &x, ParamValue::Float(1.0)),
            ("k", &int, ParamValue::Int((i % 5) as i64)),
            ("one", &one, ParamValue::Int(3)),
            ("s", &step, ParamValue::Float(0.05 * (i % 11) as f64)),
            ("units", &ilog, ParamValue::Int(1 + (i as i64 * 37) % 1024)),
            ("flag", &cat1, ParamValue::Bool(true)),
        ]
    };
    let histories: Vec<Vec<FrozenTrial>> = vec![
        vec![],
        (0..30).map(|i| trial(i, TrialState::Complete, Some(f64::NAN), &params(i))).collect(),
        (0..30)
            .map(|i| trial(i, TrialState::Complete, Some(if i % 2 == 0 { f64::INFINITY } else { f64::NEG_INFINITY }), &params(i)))
            .collect(),
        (0..30).map(|i| trial(i, TrialState::Pruned, None, &params(i))).collect(),
        (0..30).map(|i| trial(i, TrialState::Fail, None, &params(i))).collect(),
        (0..30).map(|i| trial(i, TrialState::Complete, Some(1.0), &params(0))).collect(),
        (0..30).map(|i| trial(i, TrialState::Running, None, &params(i))).collect(),
    ];
    for config in [
        TpeConfig::default(),
        TpeConfig { n_startup_trials: 0, ..TpeConfig::default() },
        TpeConfig { multivariate: false, n_startup_trials: 0, ..TpeConfig::default() },
    ] {
        let tpe = TpeSampler::new(config);
        for history in &histories {
            for number in [100, 101] {
                let c = ctx(history, number);
                let relative = tpe.infer_relative_search_space(&c, &space);
                let mut got = tpe.sample_relative(&c, &relative).unwrap();
                for (name, dist) in space.iter() {
                    let v = match got.remove(name) {
                        Some(v) => v,
                        None => tpe.sample_independent(&c, name, dist).unwrap(),
                    };
                    assert!(dist.to_internal(&v).is_ok(), "{name} = {v} outside {dist}");
                }
            }
        }
    }
}

#[test]
fn study_with_tpe_beats_random_on_a_quadratic() {
    // A real ask/tell loop: TPE's best after 60 trials should be near the optimum, and better
    // than random search's on most seeds. Optuna 5.0's TPE, on this problem, beats random on 95%
    // of seeds 0..40 (median best 0.003 against 1.0); 20 seeds keep the test far from flaky.
    let space = SearchSpace::parse("x: {type: float, low: -10.0, high: 10.0}\ny: {type: int, low: -5, high: 5}\n", "t").unwrap();
    let mut wins = 0;
    for seed in 0..20 {
        let best = |sampler: crate::sampler::SamplerConfig| {
            let mut new = NewStudy::new("q", Direction::Minimize, seed);
            new.sampler = sampler;
            let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
            for _ in 0..60 {
                let t = study.ask(&space).unwrap();
                let x = t.params["x"].as_f64().unwrap();
                let y = t.params["y"].as_f64().unwrap();
                study.tell(t.number, TellOutcome::Value((x - 2.0).powi(2) + (y + 1.0).powi(2))).unwrap();
            }
            study.best_trial().unwrap().value.unwrap()
        };
        let tpe = best(crate::sampler::SamplerConfig::Tpe(TpeConfig::default()));
        let random = best(crate::sampler::SamplerConfig::Random);
        assert!(tpe < 1.0, "seed {seed}: TPE best {tpe}");
        wins += usize::from(tpe < random);
    }
    assert!(wins >= 16, "TPE beat random on {wins}/20 seeds");
}

#[test]
fn neighbouring_seeds_do_not_replay_each_other() {
    // (seed s, trial n) and (seed s + 1, trial n − 1) once mixed to the same generator.
    let dist = x_dist();
    let draw = |seed: u64, number: u64| {
        let c = SamplingContext { seed, ..ctx(&[], number) };
        RandomSampler.sample_independent(&c, "x", &dist).unwrap()
    };
    for seed in 0..20 {
        for number in 1..20 {
            assert_ne!(draw(seed, number - 1), draw(seed + 1, number), "seed {seed}, trial {number}");
        }
    }
}

#[test]
fn row_cache_gives_the_same_suggestions_as_a_fresh_sampler() {
    // One long-lived sampler (its row cache fills up) against a fresh one per ask, over a growing
    // history with RUNNING, PRUNED and FAIL trials and a conditional parameter.
    let x = x_dist();
    let k = Distribution::Int { low: 1, high: 64, log: true, step: 1 };
    let c = Distribution::Categorical { choices: vec![ParamValue::Str("a".into()), ParamValue::Str("b".into())] };
    let mut space = SearchSpace::new();
    space.insert("x", x.clone());
    space.insert("k", k.clone());
    space.insert("c", c.clone());
    let long_lived = TpeSampler::new(TpeConfig::default());
    let ask = |tpe: &TpeSampler, trials: &[FrozenTrial], number: u64| {
        let cx = ctx(trials, number);
        let relative = tpe.infer_relative_search_space(&cx, &space);
        let mut params = tpe.sample_relative(&cx, &relative).unwrap();
        for (name, dist) in space.iter() {
            if !params.contains_key(name) {
                params.insert(name.to_string(), tpe.sample_independent(&cx, name, dist).unwrap());
            }
        }
        params
    };
    let mut trials: Vec<FrozenTrial> = Vec::new();
    for number in 0..60u64 {
        trials.push(trial(number, TrialState::Running, None, &[]));
        let cached = ask(&long_lived, &trials, number);
        assert_eq!(cached, ask(&TpeSampler::new(TpeConfig::default()), &trials, number), "trial {number}");
        let xv = cached["x"].as_f64().unwrap();
        let mut params = vec![("x", &x, cached["x"].clone()), ("k", &k, cached["k"].clone())];
        if number % 3 != 0 {
            params.push(("c", &c, cached["c"].clone()));
        }
        let (state, value) = match number % 7 {
            2 => (TrialState::Pruned, Some(xv.abs())),
            4 => (TrialState::Fail, None),
            5 => (TrialState::Running, None),
            _ => (TrialState::Complete, Some((xv - 1.0).powi(2))),
        };
        *trials.last_mut().unwrap() = trial(number, state, value, &params);
    }
    // A different history under the same trial numbers (as another study would have: other
    // points, other values) is not served from the cache.
    for t in &mut trials {
        if let Some(ParamValue::Float(v)) = t.params.get_mut("x") {
            *v = -*v;
        }
        if let Some(v) = t.value.as_mut() {
            *v += 1.0;
        }
    }
    let number = trials.len() as u64;
    assert_eq!(ask(&long_lived, &trials, number), ask(&TpeSampler::new(TpeConfig::default()), &trials, number));
}

#[test]
fn cached_column_orders_match_a_fresh_sort() {
    // A row table kept across a growing history (inserting rows, with ties, RUNNING trials that
    // it does not hold, and a parameter some trials lack) orders every column as sorting does.
    let x = x_dist();
    let k = Distribution::Int { low: 0, high: 6, log: false, step: 1 };
    let params: [(&str, &Distribution); 2] = [("k", &k), ("x", &x)];
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let mut table = RowTable::new("t", &params);
    let mut trials = Vec::new();
    for number in 0..120u64 {
        let xv = ParamValue::Float((rng.random_range(-10.0..10.0f64) * 2.0).round() / 2.0);
        let kv = ParamValue::Int(rng.random_range(0..=6));
        let mut ps = vec![("k", &k, kv)];
        if number % 5 != 0 {
            ps.push(("x", &x, xv));
        }
        let state = if number % 9 == 4 { TrialState::Running } else { TrialState::Complete };
        let value = (state == TrialState::Complete).then(|| rng.random::<f64>());
        trials.push(trial(number, state, value, &ps));
        let cached = History::collect(&ctx(&trials, number + 1), &params, true, Some(&mut table));
        let fresh = History::collect(&ctx(&trials, number + 1), &params, true, None);
        assert_eq!(cached.orders, fresh.orders, "after trial {number}");
        assert_eq!(fresh.orders[1].len(), fresh.col(1).iter().filter(|v| !v.is_nan()).count());
    }
}

#[test]
fn one_read_of_the_history_samples_what_the_three_calls_sample() {
    // `sample_all_noted` against `sample_in_parts`, over a growing history with a conditional
    // parameter (so the joint space is smaller than the space), a single-valued one, RUNNING,
    // PRUNED, failed and out-of-memory trials; for the default options and the ones that fall
    // back to the three calls.
    let x = x_dist();
    let k = Distribution::Int { low: 1, high: 64, log: true, step: 1 };
    let c = Distribution::Categorical { choices: vec![ParamValue::Str("a".into()), ParamValue::Str("b".into())] };
    let one = Distribution::Int { low: 3, high: 3, log: false, step: 1 };
    let mut space = SearchSpace::new();
    for (name, dist) in [("x", &x), ("k", &k), ("c", &c), ("one", &one)] {
        space.insert(name, dist.clone());
    }
    let configs = [
        TpeConfig::default(),
        TpeConfig { constant_liar: false, ..TpeConfig::default() },
        TpeConfig { group: true, ..TpeConfig::default() },
        TpeConfig { multivariate: false, ..TpeConfig::default() },
    ];
    for config in configs {
        let (one_read, in_parts) = (TpeSampler::new(config.clone()), TpeSampler::new(config.clone()));
        let mut trials: Vec<FrozenTrial> = Vec::new();
        for number in 0..45u64 {
            trials.push(trial(number, TrialState::Running, None, &[]));
            let cx = ctx(&trials, number);
            let (params, notes) = one_read.sample_all_noted(&cx, &space).unwrap();
            assert_eq!((params.clone(), notes), sample_in_parts(&in_parts, &cx, &space).unwrap(), "{config:?}, trial {number}");
            let mut kept = vec![("x", &x, params["x"].clone()), ("one", &one, params["one"].clone())];
            if number % 4 != 1 {
                kept.push(("k", &k, params["k"].clone()));
            }
            if number % 3 != 0 {
                kept.push(("c", &c, params["c"].clone()));
            }
            let xv = params["x"].as_f64().unwrap();
            let (state, value) = match number % 9 {
                2 => (TrialState::Pruned, Some(xv.abs())),
                4 => (TrialState::Fail, None),
                5 => (TrialState::Running, None),
                _ => (TrialState::Complete, Some((xv - 1.0).powi(2))),
            };
            let mut done = trial(number, state, value, &kept);
            if number % 9 == 7 {
                done = oom(number, xv);
            }
            *trials.last_mut().unwrap() = done;
        }
    }
}

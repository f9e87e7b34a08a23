//! The storage conformance suite: every [`Storage`] backend runs it (memory, SQLite, PostgreSQL).
//!
//! Call [`run_conformance_suite`] from a backend's tests with a factory that returns a fresh,
//! empty storage each time. It panics (as tests do) on the first broken invariant.

use std::collections::BTreeMap;

use crate::error::Error;
use crate::pruner::PrunerConfig;
use crate::sampler::{SamplerConfig, TpeConfig};
use crate::space::{Distribution, ParamValue, SearchSpace};
use crate::storage::{NewStudy, NewTrial, Storage};
use crate::trial::{Direction, FrozenTrial, TrialState};

/// Runs every conformance check, each on a fresh storage from `make`.
pub fn run_conformance_suite(make: &dyn Fn() -> Box<dyn Storage>) {
    studies_round_trip(make().as_ref());
    trial_numbers_are_dense_per_study(make().as_ref());
    trial_data_round_trips(make().as_ref());
    finished_trials_are_immutable(make().as_ref());
    waiting_trials_are_claimed_once(make().as_ref());
    stale_trials_fail_once(make().as_ref());
    heartbeat_trials_beat_from_creation(make().as_ref());
    snapshots_do_not_change(make().as_ref());
    waiting_trials_are_claimed_oldest_first_per_study(make().as_ref());
    values_are_stored_faithfully(make().as_ref());
    floats_round_trip_bit_exactly(make().as_ref());
    attributes_and_params_follow_the_write_rules(make().as_ref());
    stale_trials_are_failed_per_study(make().as_ref());
    unknown_ids_are_errors(make().as_ref());
    the_budget_caps_running_trials(make().as_ref());
    deleted_studies_take_their_trials(make().as_ref());
    finished_trials_are_added_all_or_nothing(make().as_ref());
}

fn sample_study(name: &str) -> NewStudy {
    let mut study = NewStudy::new(name, Direction::Maximize, 1234);
    study.sampler = SamplerConfig::Tpe(TpeConfig { n_startup_trials: 3, ..TpeConfig::default() });
    study.pruner = PrunerConfig::default();
    study.search_space = Some(
        SearchSpace::parse(
            "lr: {type: float, low: 1.0e-5, high: 0.1, log: true}\nbs: {type: categorical, choices: [16, 'x', true]}\n",
            "t",
        )
        .unwrap(),
    );
    study.user_attrs.insert("spec".into(), serde_json::json!({"epochs": 3}));
    study
}

fn studies_round_trip(storage: &dyn Storage) {
    let created = storage.create_study(&sample_study("b-study")).unwrap();
    storage.create_study(&NewStudy::new("a-study", Direction::Minimize, 0)).unwrap();
    assert!(matches!(storage.create_study(&sample_study("b-study")), Err(Error::StudyExists(n)) if n == "b-study"));
    let loaded = storage.load_study("b-study").unwrap();
    assert_eq!(loaded, created);
    assert_eq!(loaded.seed, 1234);
    assert_eq!(loaded.direction, Direction::Maximize);
    assert_eq!(loaded.sampler, sample_study("x").sampler);
    assert_eq!(loaded.search_space, sample_study("x").search_space);
    assert_eq!(loaded.user_attrs["spec"], serde_json::json!({"epochs": 3}));
    assert!(matches!(storage.load_study("missing"), Err(Error::StudyNotFound(n)) if n == "missing"));
    let names: Vec<String> = storage.list_studies().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a-study", "b-study"]);
    storage.set_study_user_attr(created.id, "note", &"hi".into()).unwrap();
    assert_eq!(storage.load_study("b-study").unwrap().user_attrs["note"], "hi");
}

fn trial_numbers_are_dense_per_study(storage: &dyn Storage) {
    let a = storage.create_study(&sample_study("a")).unwrap();
    let b = storage.create_study(&sample_study("b")).unwrap();
    for i in 0..4u64 {
        assert_eq!(storage.create_trial(a.id, &NewTrial::default()).unwrap().number, i);
    }
    assert_eq!(storage.create_trial(b.id, &NewTrial::default()).unwrap().number, 0);
    let numbers: Vec<u64> = storage.trials(a.id, None).unwrap().iter().map(|t| t.number).collect();
    assert_eq!(numbers, [0, 1, 2, 3]);
    let ids: std::collections::HashSet<i64> =
        storage.trials(a.id, None).unwrap().iter().chain(storage.trials(b.id, None).unwrap().iter()).map(|t| t.id).collect();
    assert_eq!(ids.len(), 5, "trial ids are unique across studies");
    assert!(matches!(storage.trial(a.id, 99), Err(Error::TrialNotFound { number: 99, .. })));
    // Numbers by state, per study, as `trials` would list them.
    let finish = |number: u64, state: TrialState| {
        let id = storage.trial(a.id, number).unwrap().id;
        storage.finish_trial(id, state, (state == TrialState::Complete).then_some(1.0)).unwrap();
    };
    finish(1, TrialState::Complete);
    finish(3, TrialState::Complete);
    finish(2, TrialState::Pruned);
    assert_eq!(storage.trial_numbers(a.id, &[TrialState::Complete]).unwrap(), [1, 3]);
    assert_eq!(storage.trial_numbers(a.id, &[TrialState::Pruned, TrialState::Running]).unwrap(), [0, 2]);
    assert_eq!(storage.trial_numbers(b.id, &[TrialState::Complete]).unwrap(), Vec::<u64>::new());
    assert!(storage.trial_numbers(a.id + b.id + 100, &[TrialState::Complete]).is_err(), "an unknown study is an error");
}

fn trial_data_round_trips(storage: &dyn Storage) {
    let study = storage.create_study(&sample_study("s")).unwrap();
    let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    assert_eq!(t.state, TrialState::Running);
    assert!(t.started_at.is_some() && t.finished_at.is_none() && t.heartbeat_at.is_none());
    let lr = Distribution::Float { low: 1e-5, high: 0.1, log: true, step: None };
    let bs =
        Distribution::Categorical { choices: vec![ParamValue::Int(16), ParamValue::Str("x".into()), ParamValue::Bool(true)] };
    storage
        .set_trial_params(
            t.id,
            &[("lr".into(), lr.clone(), ParamValue::Float(0.00123)), ("bs".into(), bs.clone(), ParamValue::Bool(true))],
        )
        .unwrap();
    // Params already set keep their value.
    storage.set_trial_params(t.id, &[("lr".into(), lr.clone(), ParamValue::Float(0.05))]).unwrap();
    storage.report_intermediate(t.id, 0, 0.25).unwrap();
    storage.report_intermediate(t.id, 1, 0.5).unwrap();
    storage.report_intermediate(t.id, 1, 0.9).unwrap();
    storage.set_trial_attr(t.id, "note", &serde_json::json!({"a": [1, 2]}), false).unwrap();
    storage.set_trial_attr(t.id, "device", &"cpu:0".into(), true).unwrap();
    storage.heartbeat(t.id).unwrap();
    let got = storage.trial(study.id, t.number).unwrap();
    assert_eq!(got.params["lr"], ParamValue::Float(0.00123));
    assert_eq!(got.params["bs"], ParamValue::Bool(true));
    assert!(matches!(got.params["bs"], ParamValue::Bool(true)), "bools stay bools");
    assert_eq!(got.distributions["lr"], lr);
    assert_eq!(got.distributions["bs"], bs);
    assert_eq!(got.intermediate_values, BTreeMap::from([(0, 0.25), (1, 0.5)]));
    assert_eq!(got.user_attrs["note"], serde_json::json!({"a": [1, 2]}));
    assert_eq!(got.system_attrs["device"], "cpu:0");
    assert!(got.heartbeat_at.is_some());
    let done = storage.finish_trial(t.id, TrialState::Complete, Some(0.75)).unwrap();
    assert_eq!((done.state, done.value), (TrialState::Complete, Some(0.75)));
    assert!(done.finished_at.unwrap() >= done.started_at.unwrap());
    assert_eq!(storage.trial(study.id, 0).unwrap(), done);
    let complete = storage.trials(study.id, Some(&[TrialState::Complete])).unwrap();
    assert_eq!(complete.len(), 1);
    assert!(storage.trials(study.id, Some(&[TrialState::Running, TrialState::Fail])).unwrap().is_empty());
    // Extreme but legal values survive.
    let t2 = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    storage.report_intermediate(t2.id, u32::MAX as u64, -1e300).unwrap();
    storage.report_intermediate(t2.id, 2, f64::NAN).unwrap();
    let got = storage.trial(study.id, 1).unwrap();
    assert_eq!(got.intermediate_values[&(u32::MAX as u64)], -1e300);
    assert!(got.intermediate_values[&2].is_nan(), "NaN intermediate values are kept (pruners rank them worst)");
}

fn finished_trials_are_immutable(storage: &dyn Storage) {
    let study = storage.create_study(&sample_study("s")).unwrap();
    let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    storage.finish_trial(t.id, TrialState::Pruned, None).unwrap();
    let finished = |r: crate::Result<()>| matches!(r, Err(Error::TrialFinished { number: 0, state: TrialState::Pruned }));
    assert!(finished(storage.report_intermediate(t.id, 3, 1.0)));
    assert!(finished(storage.heartbeat(t.id)));
    assert!(finished(storage.set_trial_attr(t.id, "k", &1.into(), false)));
    assert!(finished(storage.finish_trial(t.id, TrialState::Complete, Some(1.0)).map(|_| ())));
    assert!(storage.finish_trial(t.id, TrialState::Running, None).is_err());
    assert_eq!(storage.trial(study.id, 0).unwrap().state, TrialState::Pruned);
}

fn waiting_trials_are_claimed_once(storage: &dyn Storage) {
    let study = storage.create_study(&sample_study("s")).unwrap();
    let bs = Distribution::Categorical { choices: vec![ParamValue::Int(16), ParamValue::Int(32)] };
    let queued = NewTrial { waiting: true, params: vec![("bs".into(), bs, ParamValue::Int(32))], ..NewTrial::default() };
    let w = storage.create_trial(study.id, &queued).unwrap();
    assert_eq!((w.number, w.state), (0, TrialState::Waiting));
    assert!(w.started_at.is_none());
    let claimed = storage.claim_waiting_trial(study.id, false).unwrap().expect("one waiting trial");
    assert_eq!((claimed.number, claimed.state), (0, TrialState::Running));
    assert_eq!(claimed.params["bs"], ParamValue::Int(32));
    assert!(claimed.started_at.is_some());
    assert!(storage.claim_waiting_trial(study.id, false).unwrap().is_none());
}

fn stale_trials_fail_once(storage: &dyn Storage) {
    let study = storage.create_study(&sample_study("s")).unwrap();
    let beating = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    let silent = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    storage.heartbeat(beating.id).unwrap();
    assert!(storage.fail_stale_trials(study.id, 3600.0).unwrap().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(30));
    let failed = storage.fail_stale_trials(study.id, 0.01).unwrap();
    assert_eq!(failed.iter().map(|t| t.number).collect::<Vec<_>>(), [beating.number]);
    assert_eq!(failed[0].state, TrialState::Fail);
    assert!(failed[0].system_attrs[crate::attrs::FAIL_REASON].as_str().unwrap().contains("heartbeat"));
    assert!(storage.fail_stale_trials(study.id, 0.01).unwrap().is_empty(), "failed exactly once");
    assert_eq!(storage.trial(study.id, silent.number).unwrap().state, TrialState::Running, "no heartbeat, no staleness");
}

/// A trial asked by a heartbeating caller is alive from its creation or claim on: if the caller
/// dies before its first explicit heartbeat, the trial still goes stale (no RUNNING zombie).
fn heartbeat_trials_beat_from_creation(storage: &dyn Storage) {
    let study = storage.create_study(&sample_study("s")).unwrap();
    let created = storage.create_trial(study.id, &NewTrial { heartbeat: true, ..NewTrial::default() }).unwrap();
    assert!(created.heartbeat_at.is_some());
    storage.create_trial(study.id, &NewTrial { waiting: true, ..NewTrial::default() }).unwrap();
    let claimed = storage.claim_waiting_trial(study.id, true).unwrap().expect("one waiting trial");
    assert!(claimed.heartbeat_at.is_some());
    let shell = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    assert!(shell.heartbeat_at.is_none());
    std::thread::sleep(std::time::Duration::from_millis(30));
    let failed: Vec<u64> = storage.fail_stale_trials(study.id, 0.01).unwrap().iter().map(|t| t.number).collect();
    assert_eq!(failed, [created.number, claimed.number]);
    assert_eq!(storage.trial(study.id, shell.number).unwrap().state, TrialState::Running);
}

fn snapshots_do_not_change(storage: &dyn Storage) {
    let study = storage.create_study(&sample_study("s")).unwrap();
    let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    let before = storage.trials(study.id, None).unwrap();
    storage.report_intermediate(t.id, 0, 1.0).unwrap();
    storage.finish_trial(t.id, TrialState::Complete, Some(2.0)).unwrap();
    assert_eq!(before[0].state, TrialState::Running);
    assert!(before[0].intermediate_values.is_empty());
}

fn waiting_trials_are_claimed_oldest_first_per_study(storage: &dyn Storage) {
    let a = storage.create_study(&sample_study("a")).unwrap();
    let b = storage.create_study(&sample_study("b")).unwrap();
    let waiting = NewTrial { waiting: true, ..NewTrial::default() };
    storage.create_trial(a.id, &waiting).unwrap();
    storage.create_trial(a.id, &NewTrial::default()).unwrap();
    storage.create_trial(a.id, &waiting).unwrap();
    storage.create_trial(b.id, &waiting).unwrap();
    assert_eq!(storage.claim_waiting_trial(a.id, false).unwrap().map(|t| t.number), Some(0));
    assert_eq!(storage.claim_waiting_trial(a.id, false).unwrap().map(|t| t.number), Some(2));
    assert!(storage.claim_waiting_trial(a.id, false).unwrap().is_none(), "never claims another study's trial");
    assert_eq!(storage.trial(b.id, 0).unwrap().state, TrialState::Waiting);
    // A waiting trial can be finished without being claimed (e.g. failed by hand).
    let w = storage.trial(b.id, 0).unwrap();
    assert_eq!(storage.finish_trial(w.id, TrialState::Fail, None).unwrap().state, TrialState::Fail);
    assert!(storage.claim_waiting_trial(b.id, false).unwrap().is_none());
}

fn values_are_stored_faithfully(storage: &dyn Storage) {
    let mut new = NewStudy::new("seeds", Direction::Minimize, u64::MAX);
    new.user_attrs.insert("unicode ✓".into(), serde_json::json!({"nested": [1, 2.5, null, "ü"]}));
    let study = storage.create_study(&new).unwrap();
    assert_eq!(storage.load_study("seeds").unwrap().seed, u64::MAX, "seeds use all 64 bits");
    assert_eq!(storage.load_study("seeds").unwrap().user_attrs, new.user_attrs);
    let values = [Some(f64::NAN), Some(f64::INFINITY), Some(f64::NEG_INFINITY), None, Some(-0.125)];
    for (number, value) in values.into_iter().enumerate() {
        let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
        storage.finish_trial(t.id, TrialState::Complete, value).unwrap();
        let got = storage.trial(study.id, number as u64).unwrap().value;
        assert_eq!(got.map(f64::to_bits), value.map(f64::to_bits), "trial value {value:?} came back as {got:?}");
    }
    let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    for (step, v) in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN, 0.0].into_iter().enumerate() {
        storage.report_intermediate(t.id, step as u64, v).unwrap();
    }
    let got = storage.trial(study.id, t.number).unwrap().intermediate_values;
    assert_eq!((got[&0], got[&1], got[&3]), (f64::INFINITY, f64::NEG_INFINITY, 0.0));
    assert!(got[&2].is_nan());
    // Whole-number floats stay floats and ints stay ints (samplers and reports tell them apart).
    let float = Distribution::Float { low: 0.0, high: 4.0, log: false, step: None };
    let int = Distribution::Int { low: 0, high: 4, log: false, step: 1 };
    let text = Distribution::Categorical { choices: vec![ParamValue::Str("a b".into()), ParamValue::Str("ü".into())] };
    storage
        .set_trial_params(
            t.id,
            &[
                ("f".into(), float, ParamValue::Float(2.0)),
                ("i".into(), int, ParamValue::Int(2)),
                ("s".into(), text, ParamValue::Str("ü".into())),
            ],
        )
        .unwrap();
    let got = storage.trial(study.id, t.number).unwrap();
    assert!(matches!(got.params["f"], ParamValue::Float(x) if x == 2.0), "{:?}", got.params["f"]);
    assert!(matches!(got.params["i"], ParamValue::Int(2)), "{:?}", got.params["i"]);
    assert!(matches!(&got.params["s"], ParamValue::Str(s) if s == "ü"));
}

/// Every float a sampler suggests or a trial reports comes back with the same bits. A backend that
/// keeps floats as JSON text must parse them correctly rounded: a value one ulp off changes the
/// samplers' input, so a study on that backend drifts away from the same study in memory.
fn floats_round_trip_bit_exactly(storage: &dyn Storage) {
    let study = storage.create_study(&NewStudy::new("bits", Direction::Minimize, 0)).unwrap();
    let dist = Distribution::Float { low: 1e-9, high: 1e9, log: true, step: None };
    // Fixed pseudo-random mantissas over many exponents: serde_json's default (not correctly
    // rounded) float parser returned about 9 % of such numbers one ulp off.
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let mantissa = (state >> 11) as f64 / (1u64 << 53) as f64;
        (mantissa * 10f64.powi((state % 13) as i32 - 6)).clamp(1e-9, 1e9)
    };
    for _ in 0..20 {
        let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
        let params: Vec<(String, Distribution, ParamValue)> =
            (0..8).map(|i| (format!("x{i}"), dist.clone(), ParamValue::Float(next()))).collect();
        storage.set_trial_params(t.id, &params).unwrap();
        let intermediate: Vec<f64> = (0..4).map(|_| next()).collect();
        for (step, &v) in intermediate.iter().enumerate() {
            storage.report_intermediate(t.id, step as u64, v).unwrap();
        }
        let value = next();
        storage.finish_trial(t.id, TrialState::Complete, Some(value)).unwrap();
        let got = storage.trial(study.id, t.number).unwrap();
        for (name, _, want) in &params {
            let (ParamValue::Float(want), ParamValue::Float(back)) = (want, &got.params[name]) else {
                panic!("{name} came back as {:?}", got.params[name]);
            };
            assert_eq!(back.to_bits(), want.to_bits(), "param {name} {want:?} came back as {back:?}");
        }
        for (step, &want) in intermediate.iter().enumerate() {
            let back = got.intermediate_values[&(step as u64)];
            assert_eq!(back.to_bits(), want.to_bits(), "intermediate {want:?} came back as {back:?}");
        }
        assert_eq!(got.value.map(f64::to_bits), Some(value.to_bits()), "value {value:?} came back as {:?}", got.value);
    }
}

fn attributes_and_params_follow_the_write_rules(storage: &dyn Storage) {
    let study = storage.create_study(&sample_study("s")).unwrap();
    let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    storage.set_trial_attr(t.id, "k", &"user".into(), false).unwrap();
    storage.set_trial_attr(t.id, "k", &"system".into(), true).unwrap();
    storage.set_trial_attr(t.id, "k", &"user again".into(), false).unwrap();
    let got = storage.trial(study.id, 0).unwrap();
    assert_eq!(got.user_attrs["k"], "user again", "setting an attribute replaces it");
    assert_eq!(got.system_attrs["k"], "system", "user and system attributes are separate namespaces");
    storage.set_study_user_attr(study.id, "spec", &serde_json::json!("replaced")).unwrap();
    assert_eq!(storage.load_study("s").unwrap().user_attrs["spec"], "replaced");
    // Enqueued params win over later sampled ones; a finished trial takes no params.
    let bs = Distribution::Categorical { choices: vec![ParamValue::Int(16), ParamValue::Int(32)] };
    let queued = NewTrial { waiting: true, params: vec![("bs".into(), bs.clone(), ParamValue::Int(16))], ..NewTrial::default() };
    let w = storage.create_trial(study.id, &queued).unwrap();
    storage.set_trial_params(w.id, &[("bs".into(), bs.clone(), ParamValue::Int(32))]).unwrap();
    assert_eq!(storage.claim_waiting_trial(study.id, false).unwrap().unwrap().params["bs"], ParamValue::Int(16));
    storage.finish_trial(t.id, TrialState::Complete, Some(1.0)).unwrap();
    let err = storage.set_trial_params(t.id, &[("bs".into(), bs, ParamValue::Int(32))]);
    assert!(matches!(err, Err(Error::TrialFinished { number: 0, state: TrialState::Complete })), "{err:?}");
    assert!(storage.trial(study.id, 0).unwrap().params.is_empty());
    assert!(storage.trials(study.id, Some(&[])).unwrap().is_empty(), "an empty state filter selects nothing");
}

fn stale_trials_are_failed_per_study(storage: &dyn Storage) {
    let a = storage.create_study(&sample_study("a")).unwrap();
    let b = storage.create_study(&sample_study("b")).unwrap();
    let in_a = storage.create_trial(a.id, &NewTrial::default()).unwrap();
    let in_b = storage.create_trial(b.id, &NewTrial::default()).unwrap();
    storage.heartbeat(in_a.id).unwrap();
    storage.heartbeat(in_b.id).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(storage.fail_stale_trials(a.id, 0.01).unwrap().len(), 1);
    assert_eq!(storage.trial(b.id, 0).unwrap().state, TrialState::Running, "another study's trials are left alone");
    // A fresh heartbeat keeps a trial alive.
    storage.heartbeat(in_b.id).unwrap();
    assert!(storage.fail_stale_trials(b.id, 10.0).unwrap().is_empty());
}

fn unknown_ids_are_errors(storage: &dyn Storage) {
    let study = storage.create_study(&sample_study("s")).unwrap();
    let missing_study = study.id + 1000;
    assert!(storage.create_trial(missing_study, &NewTrial::default()).is_err());
    assert!(storage.trials(missing_study, None).is_err());
    assert!(storage.trial(missing_study, 0).is_err());
    assert!(storage.set_study_user_attr(missing_study, "k", &1.into()).is_err());
    assert!(storage.heartbeat(12345).is_err());
    assert!(storage.report_intermediate(12345, 0, 1.0).is_err());
    assert!(storage.set_trial_attr(12345, "k", &1.into(), false).is_err());
    assert!(storage.finish_trial(12345, TrialState::Complete, Some(1.0)).is_err());
    assert!(storage.trials(study.id, None).unwrap().is_empty());
}

fn the_budget_caps_running_trials(storage: &dyn Storage) {
    let study = storage.create_study(&sample_study("s")).unwrap();
    let capped = NewTrial { max_trials: Some(3), ..NewTrial::default() };
    let waiting = NewTrial { waiting: true, max_trials: Some(3), ..NewTrial::default() };
    storage.create_trial(study.id, &capped).unwrap();
    storage.create_trial(study.id, &waiting).unwrap(); // not counted, not refused
    let t = storage.create_trial(study.id, &capped).unwrap();
    storage.finish_trial(t.id, TrialState::Fail, None).unwrap(); // finished trials count
    storage.create_trial(study.id, &capped).unwrap();
    let refused = storage.create_trial(study.id, &capped);
    assert!(matches!(&refused, Err(Error::BudgetReached { study, max_trials: 3 }) if study == "s"), "{refused:?}");
    assert_eq!(storage.trials(study.id, None).unwrap().len(), 4, "a refused trial leaves nothing behind");
    assert_eq!(storage.create_trial(study.id, &NewTrial::default()).unwrap().number, 4, "numbering goes on densely");
    assert!(storage.create_trial(study.id, &NewTrial { max_trials: Some(10), ..NewTrial::default() }).is_ok());
    storage.create_trial(study.id, &waiting).unwrap();
}

fn deleted_studies_take_their_trials(storage: &dyn Storage) {
    let gone = storage.create_study(&sample_study("gone")).unwrap();
    let kept = storage.create_study(&sample_study("kept")).unwrap();
    for study in [&gone, &kept] {
        let trial = storage.create_trial(study.id, &NewTrial::default()).unwrap();
        storage.report_intermediate(trial.id, 1, 0.5).unwrap();
        storage.finish_trial(trial.id, TrialState::Complete, Some(0.5)).unwrap();
    }
    storage.delete_study(gone.id).unwrap();
    assert!(matches!(storage.load_study("gone"), Err(Error::StudyNotFound(n)) if n == "gone"));
    let names: Vec<String> = storage.list_studies().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["kept"]);
    assert_eq!(storage.trials(kept.id, None).unwrap().len(), 1, "other studies keep their trials");
    let again = storage.create_study(&sample_study("gone")).unwrap();
    assert!(storage.trials(again.id, None).unwrap().is_empty(), "a new study of the same name starts empty");
    assert!(storage.delete_study(gone.id).is_err(), "deleting twice is an error");
}

/// `add_finished_trials` (an import) numbers the trials after the study's own, keeps everything
/// they carry, and writes all of them or none.
fn finished_trials_are_added_all_or_nothing(storage: &dyn Storage) {
    let study = storage.create_study(&NewStudy::new("import", Direction::Minimize, 0)).unwrap();
    let own = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    storage.finish_trial(own.id, TrialState::Fail, None).unwrap();
    let dist = Distribution::Float { low: 0.0, high: 1.0, log: false, step: None };
    let imported = |n: u64, state: TrialState, value: Option<f64>| {
        let mut t = FrozenTrial::new(99, 40 + n, state);
        t.params.insert("x".into(), ParamValue::Float(0.25 * n as f64));
        t.distributions.insert("x".into(), dist.clone());
        t.value = value;
        t.intermediate_values.insert(3, 0.5 + n as f64);
        t.user_attrs.insert("note".into(), serde_json::json!(format!("n{n}")));
        t.system_attrs.insert("origin".into(), serde_json::json!("optuna"));
        (t.started_at, t.finished_at) = (Some(1_700_000_000.5 + n as f64), Some(1_700_000_100.25 + n as f64));
        t
    };
    let good = [imported(0, TrialState::Complete, Some(0.1)), imported(1, TrialState::Pruned, Some(f64::NAN))];

    // A bad trial anywhere in the batch: nothing is written.
    let mut out_of_range = imported(2, TrialState::Complete, Some(0.3));
    out_of_range.params.insert("x".into(), ParamValue::Float(7.0));
    let running = imported(3, TrialState::Running, None);
    let mut no_distribution = imported(4, TrialState::Complete, Some(0.3));
    no_distribution.distributions.clear();
    for bad in [out_of_range, running, no_distribution, imported(5, TrialState::Complete, None)] {
        let batch = [good[0].clone(), good[1].clone(), bad];
        assert!(storage.add_finished_trials(study.id, &batch).is_err());
        assert_eq!(storage.trials(study.id, None).unwrap().len(), 1, "a refused batch leaves nothing behind");
    }
    assert!(storage.add_finished_trials(study.id + 1000, &good).is_err(), "an unknown study is an error");

    storage.add_finished_trials(study.id, &good).unwrap();
    let trials = storage.trials(study.id, None).unwrap();
    assert_eq!(trials.iter().map(|t| t.number).collect::<Vec<_>>(), [0, 1, 2]);
    for (want, got) in good.iter().zip(&trials[1..]) {
        assert_eq!((got.state, &got.params, &got.distributions), (want.state, &want.params, &want.distributions));
        assert_eq!(got.value.map(f64::to_bits), want.value.map(f64::to_bits));
        assert_eq!((&got.intermediate_values, &got.user_attrs), (&want.intermediate_values, &want.user_attrs));
        assert_eq!(got.system_attrs["origin"], "optuna");
        assert_eq!((got.started_at, got.finished_at), (want.started_at, want.finished_at));
        assert!(storage.report_intermediate(got.id, 9, 1.0).is_err(), "an added trial is finished");
    }
    // The next trial the study creates follows them.
    assert_eq!(storage.create_trial(study.id, &NewTrial::default()).unwrap().number, 3);
}

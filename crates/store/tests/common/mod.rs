//! The multi-process harness shared by the SQLite and PostgreSQL stress tests.
//!
//! Worker processes are the test binary run again (`current_exe() --exact <test> --nocapture`) with
//! [`WORKER_TARGET`] set (a database file or a PostgreSQL schema), so no extra binary is needed.
//! Workers start together at a given Unix time so that they collide.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nightshift_search::{
    Direction, NewStudy, NewTrial, SamplerConfig, SearchSpace, Storage, Study, TellOutcome, TrialState, now_unix,
};

/// Set in a worker process: the database file or schema to work on.
pub const WORKER_TARGET: &str = "NIGHTSHIFT_STORE_TEST_WORKER_TARGET";
/// Set in a worker process: its index.
pub const WORKER_ID: &str = "NIGHTSHIFT_STORE_TEST_WORKER_ID";
/// Set in a worker process: Unix time at which to start.
pub const WORKER_GO_AT: &str = "NIGHTSHIFT_STORE_TEST_WORKER_GO_AT";

/// Processes (and threads) per stress test, as the distributed issue asks: 16 on one study.
pub const WORKERS: usize = 16;
pub const TRIALS_PER_WORKER: usize = 50;

pub fn space() -> SearchSpace {
    SearchSpace::parse("x: {type: float, low: -5.0, high: 5.0}\nk: {type: int, low: 0, high: 9}", "t").unwrap()
}

pub fn new_study(name: &str) -> NewStudy {
    let mut new = NewStudy::new(name, Direction::Minimize, 3);
    new.sampler = SamplerConfig::Random;
    new.search_space = Some(space());
    new
}

/// Starts `count` worker processes running the named test of this binary against `target`.
pub fn start_workers(test: &str, target: &str, count: usize, go_at: f64) -> Vec<Child> {
    let exe = std::env::current_exe().unwrap();
    (0..count)
        .map(|i| {
            Command::new(&exe)
                .args(["--exact", test, "--nocapture", "--test-threads=1"])
                .env(WORKER_TARGET, target)
                .env(WORKER_ID, i.to_string())
                .env(WORKER_GO_AT, go_at.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a worker process")
        })
        .collect()
}

/// Runs [`WORKERS`] worker processes and waits for them all; each must succeed without printing any of
/// `contention` (e.g. "locked", "deadlock"): transient contention is the backend's to retry.
pub fn run_workers(test: &str, target: &str, go_at: f64, contention: &[&str]) -> Vec<Output> {
    let outputs: Vec<Output> =
        start_workers(test, target, WORKERS, go_at).into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for (i, out) in outputs.iter().enumerate() {
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "worker {i} failed ({}):\n{text}", out.status);
        for word in contention {
            assert!(!text.contains(word), "worker {i} surfaced contention ({word}):\n{text}");
        }
    }
    outputs
}

/// The worker role of a test: `Some((target, id, go_at))` in a worker process.
pub fn worker_role() -> Option<(String, usize, f64)> {
    let target = std::env::var(WORKER_TARGET).ok()?;
    let id = std::env::var(WORKER_ID).unwrap().parse().unwrap();
    let go_at = std::env::var(WORKER_GO_AT).unwrap().parse().unwrap();
    Some((target, id, go_at))
}

pub fn wait_until(unix: f64) {
    let now = now_unix();
    if unix > now {
        std::thread::sleep(Duration::from_secs_f64(unix - now));
    }
}

/// Prints a worker's result as `MARK<json>` on a line of its own (the harness prints "test … " first).
pub fn print_marked<T: serde::Serialize>(mark: &str, value: &T) {
    println!("\n{mark}{}", serde_json::to_string(value).unwrap());
}

/// What every worker printed under `mark` ([`print_marked`]), concatenated and sorted.
pub fn all_marked(outputs: &[Output], mark: &str) -> Vec<u64> {
    let mut all: Vec<u64> = outputs
        .iter()
        .flat_map(|out| {
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout
                .lines()
                .find_map(|l| l.split_once(mark).map(|(_, rest)| rest.to_string()))
                .unwrap_or_else(|| panic!("no {mark} line in:\n{stdout}"));
            serde_json::from_str::<Vec<u64>>(&line).unwrap()
        })
        .collect();
    all.sort();
    all
}

/// 50 ask + report + tell cycles through `Study`, as `nightshift ask` / `tell` in a shell loop do;
/// the told value encodes (worker, cycle) so that lost or crossed tells are visible.
pub fn ask_tell_loop(storage: Arc<dyn Storage>, worker: usize) {
    let study = Study::load(storage, "shared").unwrap();
    let space = space();
    for i in 0..TRIALS_PER_WORKER {
        let trial = study.ask(&space).unwrap();
        assert_eq!(trial.state, TrialState::Running);
        assert_eq!(trial.params.len(), 2);
        study.report(trial.number, 0, 1.0).unwrap();
        study.tell(trial.number, TellOutcome::Value((worker * 1000 + i) as f64)).unwrap();
    }
}

/// After [`ask_tell_loop`] in every worker: dense unique numbers, every trial COMPLETE with its own
/// told value, 50 per worker. Returns the number of trials.
pub fn check_shared_study(storage: &dyn Storage, study_id: i64) -> usize {
    let trials = storage.trials(study_id, None).unwrap();
    let numbers: Vec<u64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..(WORKERS * TRIALS_PER_WORKER) as u64).collect::<Vec<_>>(), "dense, unique numbers");
    let mut per_worker = BTreeMap::new();
    let mut values: Vec<i64> = Vec::new();
    for t in &trials {
        assert_eq!(t.state, TrialState::Complete, "trial {}", t.number);
        assert_eq!(t.intermediate_values.len(), 1);
        let v = t.value.unwrap() as i64;
        values.push(v);
        *per_worker.entry(v / 1000).or_insert(0) += 1;
    }
    values.sort();
    values.dedup();
    assert_eq!(values.len(), WORKERS * TRIALS_PER_WORKER, "every tell landed on its own trial");
    assert!(per_worker.len() == WORKERS && per_worker.values().all(|&n| n == TRIALS_PER_WORKER), "{per_worker:?}");
    trials.len()
}

/// A worker creating trials under a global budget until refused; returns the numbers it got.
pub fn create_until_budget(storage: &dyn Storage, study_id: i64, budget: u64) -> Vec<u64> {
    let capped = NewTrial { max_trials: Some(budget), ..NewTrial::default() };
    let mut mine = Vec::new();
    loop {
        match storage.create_trial(study_id, &capped) {
            Ok(t) => {
                storage.finish_trial(t.id, TrialState::Complete, Some(t.number as f64)).unwrap();
                mine.push(t.number);
            }
            Err(nightshift_search::Error::BudgetReached { max_trials, .. }) if max_trials == budget => return mine,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Creates `stale` heart-beaten RUNNING trials and one that never beat; returns the silent one's number.
pub fn make_stale_trials(storage: &dyn Storage, study_id: i64, stale: u64) -> u64 {
    for _ in 0..stale {
        let t = storage.create_trial(study_id, &NewTrial::default()).unwrap();
        storage.heartbeat(t.id).unwrap();
    }
    storage.create_trial(study_id, &NewTrial::default()).unwrap().number // no heartbeat: never stale
}

/// After the race to fail stale trials: each was failed by exactly one process, the silent one is left.
pub fn check_stale_race(storage: &dyn Storage, study_id: i64, failed: &[u64], stale: u64, silent: u64) {
    assert_eq!(failed, (0..stale).collect::<Vec<_>>(), "each stale trial is failed by exactly one process");
    for t in storage.trials(study_id, None).unwrap() {
        if t.number == silent {
            assert_eq!(t.state, TrialState::Running);
        } else {
            assert_eq!(t.state, TrialState::Fail);
            assert!(t.system_attrs[nightshift_search::attrs::FAIL_REASON].as_str().unwrap().contains("heartbeat"));
        }
    }
}

//! Many processes and threads on one SQLite file: dense, unique trial numbers, no lost tells, no
//! "database is locked", and stale trials failed exactly once.
//!
//! Worker processes are this test binary run again (`current_exe() --exact <test> --nocapture`)
//! with [`WORKER_DB`] set, so no extra binary is needed.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nightshift_search::{
    Direction, NewStudy, NewTrial, SamplerConfig, SearchSpace, Storage, Study, TellOutcome, TrialState, now_unix,
};
use nightshift_store::SqliteStorage;

/// Set in a worker process: the database file to work on.
const WORKER_DB: &str = "NIGHTSHIFT_STORE_TEST_WORKER_DB";
/// Set in a worker process: its index.
const WORKER_ID: &str = "NIGHTSHIFT_STORE_TEST_WORKER_ID";
/// Set in a worker process: Unix time at which to start, so that the workers collide.
const WORKER_GO_AT: &str = "NIGHTSHIFT_STORE_TEST_WORKER_GO_AT";

const WORKERS: usize = 8;
const TRIALS_PER_WORKER: usize = 50;

fn space() -> SearchSpace {
    SearchSpace::parse("x: {type: float, low: -5.0, high: 5.0}\nk: {type: int, low: 0, high: 9}", "t").unwrap()
}

fn new_study(name: &str) -> NewStudy {
    let mut new = NewStudy::new(name, Direction::Minimize, 3);
    new.sampler = SamplerConfig::Random;
    new.search_space = Some(space());
    new
}

/// Runs the named test of this binary as worker processes and waits for them all.
fn spawn_workers(test: &str, db: &Path, go_at: f64) -> Vec<Output> {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..WORKERS)
        .map(|i| {
            Command::new(&exe)
                .args(["--exact", test, "--nocapture", "--test-threads=1"])
                .env(WORKER_DB, db)
                .env(WORKER_ID, i.to_string())
                .env(WORKER_GO_AT, go_at.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a worker process")
        })
        .collect();
    let outputs: Vec<Output> = children.into_iter().map(|c| c.wait_with_output().unwrap()).collect();
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "worker {i} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(!text.contains("locked") && !text.contains("busy"), "worker {i} reported contention:\n{text}");
    }
    outputs
}

/// The worker role of a test: `Some((db, id, go_at))` in a worker process.
fn worker_role() -> Option<(String, usize, f64)> {
    let db = std::env::var(WORKER_DB).ok()?;
    let id = std::env::var(WORKER_ID).unwrap().parse().unwrap();
    let go_at = std::env::var(WORKER_GO_AT).unwrap().parse().unwrap();
    Some((db, id, go_at))
}

fn wait_until(unix: f64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64();
    if unix > now {
        std::thread::sleep(Duration::from_secs_f64(unix - now));
    }
}

/// 50 ask + tell cycles through `Study`, as `nightshift ask` / `tell` in a shell loop do; the told
/// value encodes (worker, cycle) so that lost or crossed tells are visible.
fn ask_tell_loop(storage: Arc<dyn Storage>, worker: usize) {
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

/// 400 trials, numbered 0..399 once each, every one COMPLETE with a distinct told value, 50 per worker.
fn check_shared_study(storage: &dyn Storage, study_id: i64) {
    let trials = storage.trials(study_id, None).unwrap();
    let numbers: Vec<u64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..(WORKERS * TRIALS_PER_WORKER) as u64).collect::<Vec<_>>());
    let mut per_worker = BTreeMap::new();
    let mut values: Vec<i64> = Vec::new();
    for t in &trials {
        assert_eq!(t.state, TrialState::Complete, "trial {}", t.number);
        let v = t.value.unwrap() as i64;
        values.push(v);
        *per_worker.entry(v / 1000).or_insert(0) += 1;
        assert_eq!(t.intermediate_values.len(), 1);
    }
    values.sort();
    values.dedup();
    assert_eq!(values.len(), WORKERS * TRIALS_PER_WORKER, "every tell landed on its own trial");
    assert_eq!(per_worker.len(), WORKERS);
    assert!(per_worker.values().all(|&n| n == TRIALS_PER_WORKER), "{per_worker:?}");
}

#[test]
fn eight_processes_ask_and_tell_on_one_file() {
    if let Some((db, worker, go_at)) = worker_role() {
        let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(db).unwrap());
        wait_until(go_at);
        return ask_tell_loop(storage, worker);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let storage = SqliteStorage::open(&db).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    let go_at = now_unix() + 0.3;
    spawn_workers("eight_processes_ask_and_tell_on_one_file", &db, go_at);
    let elapsed = now_unix() - go_at;
    check_shared_study(&storage, study.id);
    let cycles = WORKERS * TRIALS_PER_WORKER;
    eprintln!(
        "sqlite: {WORKERS} processes, {cycles} ask+report+tell cycles in {elapsed:.2} s = {:.0} asks/s",
        cycles as f64 / elapsed
    );
}

#[test]
fn eight_processes_open_a_new_file_at_once() {
    // Creating the schema and switching to WAL race too; all must succeed.
    if let Some((db, worker, go_at)) = worker_role() {
        wait_until(go_at);
        let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(db).unwrap());
        let study = Study::create_or_load(storage, &new_study("shared")).unwrap();
        let trial = study.ask(&space()).unwrap();
        study.tell(trial.number, TellOutcome::Value(worker as f64)).unwrap();
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fresh.db");
    spawn_workers("eight_processes_open_a_new_file_at_once", &db, now_unix() + 0.3);
    let storage = SqliteStorage::open(&db).unwrap();
    let study = storage.load_study("shared").unwrap();
    let numbers: Vec<u64> = storage.trials(study.id, Some(&[TrialState::Complete])).unwrap().iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..WORKERS as u64).collect::<Vec<_>>());
}

#[test]
fn eight_threads_with_their_own_connections_on_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("threads.db");
    let storage = SqliteStorage::open(&db).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    std::thread::scope(|scope| {
        for worker in 0..WORKERS {
            let db = &db;
            scope.spawn(move || ask_tell_loop(Arc::new(SqliteStorage::open(db).unwrap()), worker));
        }
    });
    check_shared_study(&storage, study.id);
}

#[test]
fn eight_threads_sharing_one_storage() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(SqliteStorage::open(dir.path().join("one.db")).unwrap());
    let study = storage.create_study(&new_study("shared")).unwrap();
    std::thread::scope(|scope| {
        for worker in 0..WORKERS {
            let storage: Arc<dyn Storage> = storage.clone();
            scope.spawn(move || ask_tell_loop(storage, worker));
        }
    });
    check_shared_study(storage.as_ref(), study.id);
}

const STALE: u64 = 20;
const FAILED_MARK: &str = "stale-worker-failed=";

#[test]
fn eight_processes_race_to_fail_stale_trials() {
    if let Some((db, _, go_at)) = worker_role() {
        let storage = SqliteStorage::open(db).unwrap();
        let study = storage.load_study("shared").unwrap();
        wait_until(go_at);
        let failed = storage.fail_stale_trials(study.id, 0.05).unwrap();
        let numbers: Vec<u64> = failed.iter().map(|t| t.number).collect();
        // The harness prints "test … " on the same line first: search for the marker.
        println!("\n{FAILED_MARK}{}", serde_json::to_string(&numbers).unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stale.db");
    let storage = SqliteStorage::open(&db).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    for _ in 0..STALE {
        let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
        storage.heartbeat(t.id).unwrap();
    }
    let silent = storage.create_trial(study.id, &NewTrial::default()).unwrap(); // no heartbeat: never stale
    let outputs = spawn_workers("eight_processes_race_to_fail_stale_trials", &db, now_unix() + 0.3);
    let mut all: Vec<u64> = Vec::new();
    for out in &outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.split_once(FAILED_MARK).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no result line in:\n{stdout}"));
        all.extend(serde_json::from_str::<Vec<u64>>(line).unwrap());
    }
    all.sort();
    assert_eq!(all, (0..STALE).collect::<Vec<_>>(), "each stale trial is failed by exactly one process");
    for t in storage.trials(study.id, None).unwrap() {
        if t.number == silent.number {
            assert_eq!(t.state, TrialState::Running);
        } else {
            assert_eq!(t.state, TrialState::Fail);
            assert!(t.system_attrs[nightshift_search::FAIL_REASON_ATTR].as_str().unwrap().contains("heartbeat"));
        }
    }
}

const CREATED_MARK: &str = "created-within-budget=";

#[test]
fn eight_processes_never_exceed_the_budget() {
    const BUDGET: u64 = 60;
    if let Some((db, _, go_at)) = worker_role() {
        let storage = SqliteStorage::open(db).unwrap();
        let study = storage.load_study("shared").unwrap();
        let capped = NewTrial { max_trials: Some(BUDGET), ..NewTrial::default() };
        wait_until(go_at);
        let mut mine = Vec::new();
        loop {
            match storage.create_trial(study.id, &capped) {
                Ok(t) => {
                    storage.finish_trial(t.id, TrialState::Complete, Some(t.number as f64)).unwrap();
                    mine.push(t.number);
                }
                Err(nightshift_search::Error::BudgetReached { max_trials: BUDGET, .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        println!("\n{CREATED_MARK}{}", serde_json::to_string(&mine).unwrap());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("budget.db");
    let storage = SqliteStorage::open(&db).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    let outputs = spawn_workers("eight_processes_never_exceed_the_budget", &db, now_unix() + 0.3);
    let mut all: Vec<u64> = Vec::new();
    for out in &outputs {
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .find_map(|l| l.split_once(CREATED_MARK).map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("no result line in:\n{stdout}"));
        all.extend(serde_json::from_str::<Vec<u64>>(line).unwrap());
    }
    all.sort();
    assert_eq!(all, (0..BUDGET).collect::<Vec<_>>(), "exactly the budget, numbered densely, across all processes");
    assert_eq!(storage.trials(study.id, None).unwrap().len() as u64, BUDGET);
}

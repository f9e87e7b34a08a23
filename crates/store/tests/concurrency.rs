//! Many processes and threads on one SQLite file: dense, unique trial numbers, no lost tells, no
//! "database is locked", a global budget never exceeded, and stale trials failed exactly once.
//! The multi-process harness is in `common/`.

mod common;

use std::sync::Arc;

use common::{
    WORKERS, all_marked, ask_tell_loop, check_shared_study, check_stale_race, create_until_budget, make_stale_trials, new_study,
    print_marked, run_workers, space, wait_until, worker_role,
};
use nightshift_search::{Storage, Study, TellOutcome, TrialState, now_unix};
use nightshift_store::SqliteStorage;

/// Words SQLite's contention errors contain; the backend retries them, so no worker may see one.
const CONTENTION: &[&str] = &["locked", "busy"];

#[test]
fn sixteen_processes_ask_and_tell_on_one_file() {
    const TEST: &str = "sixteen_processes_ask_and_tell_on_one_file";
    if let Some((db, worker, go_at)) = worker_role() {
        let storage: Arc<dyn Storage> = Arc::new(SqliteStorage::open(db).unwrap());
        wait_until(go_at);
        return ask_tell_loop(storage, worker);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let storage = SqliteStorage::open(&db).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    let go_at = now_unix() + 0.5;
    run_workers(TEST, db.to_str().unwrap(), go_at, CONTENTION);
    let elapsed = now_unix() - go_at;
    let cycles = check_shared_study(&storage, study.id);
    eprintln!(
        "sqlite: {WORKERS} processes, {cycles} ask+report+tell cycles in {elapsed:.2} s = {:.0} asks/s",
        cycles as f64 / elapsed
    );
}

#[test]
fn sixteen_processes_open_a_new_file_at_once() {
    // Creating the schema and switching to WAL race too; all must succeed.
    const TEST: &str = "sixteen_processes_open_a_new_file_at_once";
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
    run_workers(TEST, db.to_str().unwrap(), now_unix() + 0.5, CONTENTION);
    let storage = SqliteStorage::open(&db).unwrap();
    let study = storage.load_study("shared").unwrap();
    let numbers: Vec<u64> = storage.trials(study.id, Some(&[TrialState::Complete])).unwrap().iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..WORKERS as u64).collect::<Vec<_>>());
}

#[test]
fn sixteen_threads_with_their_own_connections_on_one_file() {
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
fn sixteen_threads_sharing_one_storage() {
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

const FAILED_MARK: &str = "stale-worker-failed=";

#[test]
fn sixteen_processes_race_to_fail_stale_trials() {
    const TEST: &str = "sixteen_processes_race_to_fail_stale_trials";
    const STALE: u64 = 20;
    if let Some((db, _, go_at)) = worker_role() {
        let storage = SqliteStorage::open(db).unwrap();
        let study = storage.load_study("shared").unwrap();
        wait_until(go_at);
        let failed = storage.fail_stale_trials(study.id, 0.05).unwrap();
        return print_marked(FAILED_MARK, &failed.iter().map(|t| t.number).collect::<Vec<_>>());
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stale.db");
    let storage = SqliteStorage::open(&db).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    let silent = make_stale_trials(&storage, study.id, STALE);
    let outputs = run_workers(TEST, db.to_str().unwrap(), now_unix() + 0.5, CONTENTION);
    check_stale_race(&storage, study.id, &all_marked(&outputs, FAILED_MARK), STALE, silent);
}

const CREATED_MARK: &str = "created-within-budget=";

#[test]
fn sixteen_processes_never_exceed_the_budget() {
    const TEST: &str = "sixteen_processes_never_exceed_the_budget";
    const BUDGET: u64 = 60;
    if let Some((db, _, go_at)) = worker_role() {
        let storage = SqliteStorage::open(db).unwrap();
        let study = storage.load_study("shared").unwrap();
        wait_until(go_at);
        return print_marked(CREATED_MARK, &create_until_budget(&storage, study.id, BUDGET));
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("budget.db");
    let storage = SqliteStorage::open(&db).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    let outputs = run_workers(TEST, db.to_str().unwrap(), now_unix() + 0.5, CONTENTION);
    let all = all_marked(&outputs, CREATED_MARK);
    assert_eq!(all, (0..BUDGET).collect::<Vec<_>>(), "exactly the budget, numbered densely, across all processes");
    assert_eq!(storage.trials(study.id, None).unwrap().len() as u64, BUDGET);
}

//! PostgresStorage against a real server: the conformance suite, migrations, and 16 worker
//! processes on one study (dense unique numbers, no lost tells, each stale or waiting trial
//! taken exactly once).
//!
//! The server comes from `NIGHTSHIFT_TEST_POSTGRES` (e.g.
//! `postgres://nightshift:nightshift@127.0.0.1/nightshift_test`; `.ci/run` sets one up on
//! loopback). Without it every test prints a `SKIPPED:` line and passes. Each test works in its
//! own fresh schema, so tests run in parallel. The multi-process harness is in `common/`.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{
    WORKERS, all_marked, ask_tell_loop, check_shared_study, check_stale_race, create_until_budget, make_stale_trials, new_study,
    print_marked, space, wait_until, worker_role,
};
use nightshift_search::{NewTrial, Storage, Study, TellOutcome, TrialState, now_unix};
use nightshift_store::{Error, POSTGRES_SCHEMA_VERSION, PostgresStorage};

const URL_VAR: &str = "NIGHTSHIFT_TEST_POSTGRES";

/// Errors PostgreSQL raises under contention that the backend must handle, never surface.
const CONTENTION: &[&str] = &["deadlock", "serializ"];

/// The server URL, or `None` after saying on stderr why the test is skipped.
fn server(test: &str) -> Option<String> {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            nightshift_testkit::skip(
                test,
                "a PostgreSQL server",
                &format!("set {URL_VAR}=postgres://user[:password]@127.0.0.1/db; .ci/run starts one"),
            );
            None
        }
    }
}

/// A schema name no other test or run uses.
fn fresh_schema(tag: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() % 1_000_000_000_000;
    format!("t_{tag}_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn run_workers(test: &str, schema: &str, go_at: f64) -> Vec<std::process::Output> {
    common::run_workers(test, schema, go_at, CONTENTION)
}

#[test]
fn postgres_passes_the_conformance_suite() {
    let Some(url) = server("postgres_passes_the_conformance_suite") else { return };
    nightshift_search::testing::run_conformance_suite(&|| {
        Box::new(PostgresStorage::open_in_schema(&url, &fresh_schema("conf")).unwrap())
    });
}

#[test]
fn open_storage_dispatches_postgres_urls() {
    let Some(url) = server("open_storage_dispatches_postgres_urls") else { return };
    let storage = nightshift_store::open_storage(&url).unwrap();
    let name = fresh_schema("study");
    let study = storage.create_study(&new_study(&name)).unwrap();
    let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    storage.finish_trial(t.id, TrialState::Complete, Some(f64::NAN)).unwrap();
    let again = nightshift_store::open_storage(&url).unwrap();
    let got = again.trial(again.load_study(&name).unwrap().id, 0).unwrap();
    assert!(got.value.unwrap().is_nan());
}

#[test]
fn reopening_migrates_nothing_and_a_newer_schema_is_refused() {
    let Some(url) = server("reopening_migrates_nothing_and_a_newer_schema_is_refused") else { return };
    let schema = fresh_schema("mig");
    let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
    let study = storage.create_study(&new_study("kept")).unwrap();
    drop(storage);
    let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
    assert_eq!(storage.load_study("kept").unwrap(), study);
    drop(storage);

    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client.batch_execute(&format!("UPDATE {schema}.nightshift_schema SET version = {}", POSTGRES_SCHEMA_VERSION + 1)).unwrap();
    let err = PostgresStorage::open_in_schema(&url, &schema).err().unwrap();
    assert!(matches!(err, Error::SchemaTooNew { found, .. } if found == POSTGRES_SCHEMA_VERSION + 1), "{err}");
    assert!(err.to_string().contains("upgrade nightshift"), "{err}");

    // A schema with someone else's tables is left alone.
    let foreign = fresh_schema("foreign");
    client.batch_execute(&format!("CREATE SCHEMA {foreign}; CREATE TABLE {foreign}.studies (study_id INT)")).unwrap();
    let err = PostgresStorage::open_in_schema(&url, &foreign).err().unwrap();
    assert!(matches!(err, Error::PostgresForeign { .. }), "{err}");
    assert!(err.to_string().contains("studies"), "{err}");
}

#[test]
fn open_if_current_creates_nothing_and_reads_a_current_storage() {
    let Some(url) = server("open_if_current_creates_nothing_and_reads_a_current_storage") else { return };
    PostgresStorage::open_if_current(&url).unwrap();
    // Nothing listens on port 1: refused, and said so.
    let refused = PostgresStorage::open_if_current("postgres://u:hunter2@127.0.0.1:1/db").err().unwrap();
    assert!(matches!(refused, Error::PostgresConnect { .. }) && !refused.to_string().contains("hunter2"), "{refused}");
    // A fresh schema: nothing to read, and it stays without tables (`open` would create them).
    let schema = fresh_schema("ifcurrent");
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client.batch_execute(&format!("CREATE SCHEMA {schema}")).unwrap();
    let in_schema = format!("{url}{}options=-csearch_path%3D{schema}", if url.contains('?') { "&" } else { "?" });
    assert!(PostgresStorage::open_if_current(&in_schema).unwrap().is_none());
    let tables = |client: &mut postgres::Client| -> i64 {
        client.query_one("SELECT count(*) FROM information_schema.tables WHERE table_schema = $1", &[&schema]).unwrap().get(0)
    };
    assert_eq!(tables(&mut client), 0);
    // Once a sweep has made its tables, the study reads back.
    let mut new = new_study("s");
    new.search_space = Some(space());
    PostgresStorage::open(&in_schema).unwrap().create_study(&new).unwrap();
    let read = PostgresStorage::open_if_current(&in_schema).unwrap().expect("current tables");
    assert_eq!(read.load_study("s").unwrap().search_space, Some(space()));
    // Tables of another version are not read (opening them would migrate).
    client.batch_execute(&format!("UPDATE {schema}.nightshift_schema SET version = version + 1")).unwrap();
    assert!(PostgresStorage::open_if_current(&in_schema).unwrap().is_none());
}

#[test]
fn a_dropped_connection_is_reconnected_and_the_write_goes_through() {
    // Found by an operator: `pg_terminate_backend` (or a server restart) failed the trial whose report was in
    // flight ("cannot record report: … db error"), or the whole sweep.
    let Some(url) = server("a_dropped_connection_is_reconnected_and_the_write_goes_through") else { return };
    let schema = fresh_schema("drop");
    let app = schema.clone();
    let tagged = format!("{url}{}application_name={app}", if url.contains('?') { "&" } else { "?" });
    let storage = PostgresStorage::open_in_schema(&tagged, &schema).unwrap();
    let study = storage.create_study(&new_study("s")).unwrap();
    let trial = storage.create_trial(study.id, &NewTrial { heartbeat: true, ..NewTrial::default() }).unwrap();
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    for step in 0..3u64 {
        let killed: i64 = admin
            .query_one(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) k",
                &[&app],
            )
            .unwrap()
            .get(0);
        assert_eq!(killed, 1, "the storage's one connection");
        storage.report_intermediate(trial.id, step, step as f64).unwrap();
        storage.heartbeat(trial.id).unwrap();
    }
    let stored = storage.trial(study.id, trial.number).unwrap();
    assert_eq!(stored.intermediate_values.len(), 3);
}

#[test]
fn a_wrong_password_is_not_printed() {
    let Some(url) = server("a_wrong_password_is_not_printed") else { return };
    let config: postgres::Config = url.parse().unwrap();
    let user = config.get_user().unwrap_or("nightshift");
    let db = config.get_dbname().unwrap_or("postgres");
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let bad = format!("postgres://{user}:wrong-Pa55word@127.0.0.1:{port}/{db}");
    match PostgresStorage::open(&bad) {
        // A server that trusts loopback lets any password in: nothing to check then.
        Ok(_) => eprintln!("note: the server does not check passwords on loopback"),
        Err(e) => {
            let message = e.to_string();
            assert!(!message.contains("wrong-Pa55word") && message.contains(":***@"), "{message}");
        }
    }
}

#[test]
fn sixteen_processes_ask_and_tell_on_one_study() {
    const TEST: &str = "sixteen_processes_ask_and_tell_on_one_study";
    let Some(url) = server(TEST) else { return };
    if let Some((schema, worker, go_at)) = worker_role() {
        let storage: Arc<dyn Storage> = Arc::new(PostgresStorage::open_in_schema(&url, &schema).unwrap());
        wait_until(go_at);
        return ask_tell_loop(storage, worker);
    }
    let schema = fresh_schema("stress");
    let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    let go_at = now_unix() + 1.0;
    run_workers(TEST, &schema, go_at);
    let elapsed = now_unix() - go_at;
    let cycles = check_shared_study(&storage, study.id);
    eprintln!(
        "postgres: {WORKERS} processes, {cycles} ask+report+tell cycles in {elapsed:.2} s = {:.0} asks/s",
        cycles as f64 / elapsed
    );
}

const CLAIMED_MARK: &str = "claimed-trials=";

#[test]
fn sixteen_processes_claim_each_waiting_trial_once() {
    const TEST: &str = "sixteen_processes_claim_each_waiting_trial_once";
    let Some(url) = server(TEST) else { return };
    if let Some((schema, _, go_at)) = worker_role() {
        let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
        let study = storage.load_study("shared").unwrap();
        wait_until(go_at);
        let mut mine = Vec::new();
        while let Some(t) = storage.claim_waiting_trial(study.id, false).unwrap() {
            assert_eq!(t.state, TrialState::Running);
            mine.push(t.number);
        }
        return print_marked(CLAIMED_MARK, &mine);
    }
    let schema = fresh_schema("claim");
    let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    let queued = NewTrial { waiting: true, ..NewTrial::default() };
    const QUEUED: u64 = 160;
    for _ in 0..QUEUED {
        storage.create_trial(study.id, &queued).unwrap();
    }
    let outputs = run_workers(TEST, &schema, now_unix() + 1.0);
    let all = all_marked(&outputs, CLAIMED_MARK);
    assert_eq!(all, (0..QUEUED).collect::<Vec<_>>(), "each waiting trial is claimed by exactly one process");
}

const FAILED_MARK: &str = "stale-worker-failed=";

#[test]
fn sixteen_processes_race_to_fail_stale_trials() {
    const TEST: &str = "sixteen_processes_race_to_fail_stale_trials";
    let Some(url) = server(TEST) else { return };
    if let Some((schema, _, go_at)) = worker_role() {
        let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
        let study = storage.load_study("shared").unwrap();
        wait_until(go_at);
        let failed = storage.fail_stale_trials(study.id, 0.05).unwrap();
        return print_marked(FAILED_MARK, &failed.iter().map(|t| t.number).collect::<Vec<_>>());
    }
    const STALE: u64 = 40;
    let schema = fresh_schema("stale");
    let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    let silent = make_stale_trials(&storage, study.id, STALE);
    let outputs = run_workers(TEST, &schema, now_unix() + 1.0);
    check_stale_race(&storage, study.id, &all_marked(&outputs, FAILED_MARK), STALE, silent);
}

#[test]
fn sixteen_processes_open_a_new_schema_at_once() {
    const TEST: &str = "sixteen_processes_open_a_new_schema_at_once";
    let Some(url) = server(TEST) else { return };
    if let Some((schema, worker, go_at)) = worker_role() {
        wait_until(go_at);
        let storage: Arc<dyn Storage> = Arc::new(PostgresStorage::open_in_schema(&url, &schema).unwrap());
        let study = Study::create_or_load(storage, &new_study("shared")).unwrap();
        let trial = study.ask(&space()).unwrap();
        study.tell(trial.number, TellOutcome::Value(worker as f64)).unwrap();
        return;
    }
    let schema = fresh_schema("fresh");
    run_workers(TEST, &schema, now_unix() + 1.0);
    let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
    let study = storage.load_study("shared").unwrap();
    let numbers: Vec<u64> = storage.trials(study.id, Some(&[TrialState::Complete])).unwrap().iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..WORKERS as u64).collect::<Vec<_>>());
}

const CREATED_MARK: &str = "created-within-budget=";

#[test]
fn sixteen_processes_never_exceed_the_budget() {
    const TEST: &str = "sixteen_processes_never_exceed_the_budget";
    const BUDGET: u64 = 100;
    let Some(url) = server(TEST) else { return };
    if let Some((schema, _, go_at)) = worker_role() {
        let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
        let study = storage.load_study("shared").unwrap();
        wait_until(go_at);
        return print_marked(CREATED_MARK, &create_until_budget(&storage, study.id, BUDGET));
    }
    let schema = fresh_schema("budget");
    let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    let outputs = run_workers(TEST, &schema, now_unix() + 1.0);
    let all = all_marked(&outputs, CREATED_MARK);
    assert_eq!(all, (0..BUDGET).collect::<Vec<_>>(), "exactly the budget, numbered densely, across all processes");
    assert_eq!(storage.trials(study.id, None).unwrap().len() as u64, BUDGET);
}

#[test]
fn a_killed_worker_is_failed_once_and_the_others_go_on() {
    const TEST: &str = "a_killed_worker_is_failed_once_and_the_others_go_on";
    const BEATERS: usize = 4;
    const GRACE: f64 = 2.0;
    let Some(url) = server(TEST) else { return };
    if let Some((schema, worker, _)) = worker_role() {
        // A worker mid-trial: heart-beating every 100 ms for 6 s, then done.
        let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
        let study = storage.load_study("shared").unwrap();
        let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
        storage.set_trial_attr(t.id, "worker", &worker.into(), false).unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(6) {
            storage.heartbeat(t.id).unwrap();
            std::thread::sleep(Duration::from_millis(100));
        }
        storage.finish_trial(t.id, TrialState::Complete, Some(worker as f64)).unwrap();
        return;
    }
    let schema = fresh_schema("kill");
    let storage = PostgresStorage::open_in_schema(&url, &schema).unwrap();
    let study = storage.create_study(&new_study("shared")).unwrap();
    let mut children = common::start_workers(TEST, &schema, BEATERS, 0.0);
    // Wait until every worker is mid-trial, then kill -9 worker 0.
    let deadline = Instant::now() + Duration::from_secs(30);
    let worker_of = |t: &nightshift_search::FrozenTrial| t.user_attrs.get("worker").and_then(|w| w.as_u64());
    while storage.trials(study.id, None).unwrap().iter().filter(|t| t.heartbeat_at.is_some() && worker_of(t).is_some()).count()
        < BEATERS
    {
        assert!(Instant::now() < deadline, "the workers did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    children[0].kill().unwrap(); // SIGKILL
    children[0].wait().unwrap();
    std::thread::sleep(Duration::from_secs_f64(GRACE + 0.5));
    // Several survivors notice at once; exactly one of them fails the dead worker's trial.
    let failed: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    let mine = PostgresStorage::open_in_schema(&url, &schema).unwrap();
                    mine.fail_stale_trials(study.id, GRACE).unwrap().iter().map(|t| t.number).collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let dead = storage.trials(study.id, None).unwrap().into_iter().find(|t| worker_of(t) == Some(0)).unwrap();
    let mut all: Vec<u64> = failed.into_iter().flatten().collect();
    all.sort();
    assert_eq!(all, [dead.number], "the killed worker's trial, failed exactly once");
    for child in children.drain(1..) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for t in storage.trials(study.id, None).unwrap() {
        let want = if t.number == dead.number { TrialState::Fail } else { TrialState::Complete };
        assert_eq!(t.state, want, "trial {} of worker {:?}", t.number, worker_of(&t));
    }
}

//! `SqliteStorage` on real files: the conformance suite, persistence across reopening, faithful
//! floats, and clear errors for files it cannot use.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use nightshift_search::{
    Direction, Distribution, Error as SearchError, NewStudy, NewTrial, ParamValue, SamplerConfig, SearchSpace, Storage,
    TrialState,
};
use nightshift_store::{Error, SqliteStorage, StorageUrl, open_storage};

#[test]
fn file_backed_storage_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let counter = AtomicUsize::new(0);
    nightshift_search::testing::run_conformance_suite(&|| {
        let path = dir.path().join(format!("conformance-{}.db", counter.fetch_add(1, Ordering::Relaxed)));
        Box::new(SqliteStorage::open(path).unwrap())
    });
}

#[test]
fn reopening_a_file_preserves_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keep.db");
    let (before_studies, before_trials, study_id) = {
        let storage = SqliteStorage::open(&path).unwrap();
        let mut new = NewStudy::new("keep", Direction::Minimize, u64::MAX - 3);
        new.sampler = SamplerConfig::Random;
        new.search_space = Some(
            SearchSpace::parse("lr: {type: float, low: 1.0e-5, high: 0.1, log: true}\nk: {type: int, low: 0, high: 4}", "t")
                .unwrap(),
        );
        new.user_attrs.insert("spec".into(), serde_json::json!({"epochs": 3, "name": "ünïcode ✓"}));
        let study = storage.create_study(&new).unwrap();
        storage.create_study(&NewStudy::new("other", Direction::Maximize, 0)).unwrap();
        storage.set_study_user_attr(study.id, "note", &serde_json::json!([1, 2.5, null])).unwrap();
        let lr = Distribution::Float { low: 1e-5, high: 0.1, log: true, step: None };
        let k = Distribution::Int { low: 0, high: 4, log: false, step: 1 };
        for i in 0..6u64 {
            let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
            storage
                .set_trial_params(
                    t.id,
                    &[
                        ("lr".into(), lr.clone(), ParamValue::Float(1e-3 * (i + 1) as f64)),
                        ("k".into(), k.clone(), ParamValue::Int(i as i64 % 5)),
                    ],
                )
                .unwrap();
            for step in 0..3 {
                storage.report_intermediate(t.id, step, i as f64 / (step + 1) as f64).unwrap();
            }
            storage.set_trial_attr(t.id, "u", &format!("user {i}").into(), false).unwrap();
            storage.set_trial_attr(t.id, "u", &format!("system {i}").into(), true).unwrap();
            storage.heartbeat(t.id).unwrap();
            match i % 3 {
                0 => drop(storage.finish_trial(t.id, TrialState::Complete, Some(i as f64 * 0.5)).unwrap()),
                1 => drop(storage.finish_trial(t.id, TrialState::Pruned, None).unwrap()),
                _ => {} // stays RUNNING
            }
        }
        let queued = NewTrial {
            waiting: true,
            params: vec![("k".into(), k, ParamValue::Int(2))],
            system_attrs: BTreeMap::from([("queued_by".into(), "cli".into())]),
            max_trials: None,
            heartbeat: false,
        };
        storage.create_trial(study.id, &queued).unwrap();
        (storage.list_studies().unwrap(), storage.trials(study.id, None).unwrap(), study.id)
    };
    let storage = SqliteStorage::open(&path).unwrap();
    assert_eq!(storage.list_studies().unwrap(), before_studies);
    assert_eq!(before_studies[0].seed, u64::MAX - 3, "seeds above i64::MAX survive");
    let after = storage.trials(study_id, None).unwrap();
    assert_eq!(after, before_trials);
    assert_eq!(after.len(), 7);
    assert!(matches!(after[1].params["k"], ParamValue::Int(1)), "ints stay ints");
    assert!(matches!(after[0].params["lr"], ParamValue::Float(_)), "floats stay floats");
    assert_eq!(after[6].state, TrialState::Waiting);
    assert_eq!(after[6].system_attrs["queued_by"], "cli");
    // Numbering continues after the reopen.
    assert_eq!(storage.create_trial(study_id, &NewTrial::default()).unwrap().number, 7);
    let done: Vec<u64> =
        storage.trials(study_id, Some(&[TrialState::Complete, TrialState::Pruned])).unwrap().iter().map(|t| t.number).collect();
    assert_eq!(done, [0, 1, 3, 4]);
}

#[test]
fn nan_and_infinities_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("floats.db");
    let values = [Some(f64::NAN), Some(f64::INFINITY), Some(f64::NEG_INFINITY), None, Some(0.0), Some(-1e-310), Some(f64::MAX)];
    let intermediates = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, f64::MIN_POSITIVE, -0.5];
    let study_id = {
        let storage = SqliteStorage::open(&path).unwrap();
        let study = storage.create_study(&NewStudy::new("floats", Direction::Minimize, 1)).unwrap();
        for value in values {
            let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
            for (step, v) in intermediates.iter().enumerate() {
                storage.report_intermediate(t.id, step as u64, *v).unwrap();
            }
            let done = storage.finish_trial(t.id, TrialState::Complete, value).unwrap();
            assert_eq!(done.value.map(f64::to_bits), value.map(f64::to_bits), "finish_trial returns the value stored");
        }
        study.id
    };
    let storage = SqliteStorage::open(&path).unwrap();
    let trials = storage.trials(study_id, None).unwrap();
    for (trial, want) in trials.iter().zip(values) {
        match want {
            Some(w) if w.is_nan() => assert!(trial.value.is_some_and(f64::is_nan), "NaN stays NaN, not None: {:?}", trial.value),
            _ => assert_eq!(trial.value, want),
        }
        for (step, want) in intermediates.iter().enumerate() {
            let got = trial.intermediate_values[&(step as u64)];
            assert!(got == *want || (got.is_nan() && want.is_nan()), "step {step}: {got} != {want}");
        }
    }
}

#[test]
fn a_file_that_is_not_sqlite_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.db");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let err = SqliteStorage::open(&path).err().expect("must fail");
    assert!(matches!(err, Error::NotADatabase { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("notes.db") && message.contains("is not a SQLite database"), "{message}");
    // Nothing was written over the user's file.
    assert!(std::fs::read_to_string(&path).unwrap().starts_with("these are my notes"));
}

#[test]
fn unusable_paths_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, "x").unwrap();
    // The parent "directory" is a file.
    let err = open_storage(&format!("sqlite:///{}", file.join("sub/x.db").display())).err().expect("must fail");
    assert!(matches!(err, Error::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains("plain-file"), "{err}");
    // The database path is a directory.
    let err = SqliteStorage::open(dir.path()).err().expect("must fail");
    assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
}

#[test]
fn open_storage_creates_parent_directories_and_shares_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c/studies.db");
    let url = format!("sqlite:///{}", path.display()); // an absolute path: four slashes in all
    assert!(url.starts_with("sqlite:////"));
    assert_eq!(StorageUrl::parse(&url).unwrap(), StorageUrl::Sqlite(path.clone()));
    let first = open_storage(&url).unwrap();
    first.create_study(&NewStudy::new("s", Direction::Minimize, 0)).unwrap();
    assert!(path.is_file());
    let second = open_storage(path.to_str().unwrap()).unwrap();
    assert_eq!(second.load_study("s").unwrap().name, "s");
    let memory = open_storage("sqlite://").unwrap();
    assert!(matches!(memory.load_study("s"), Err(SearchError::StudyNotFound(_))));
}

#[test]
fn corrupt_rows_become_errors_with_context_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.db");
    let storage = SqliteStorage::open(&path).unwrap();
    let study = storage.create_study(&NewStudy::new("s", Direction::Minimize, 0)).unwrap();
    let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    let dist = Distribution::Int { low: 0, high: 3, log: false, step: 1 };
    storage.set_trial_params(t.id, &[("k".into(), dist, ParamValue::Int(1))]).unwrap();
    // Another program damages a row.
    let raw = rusqlite::Connection::open(&path).unwrap();
    raw.execute("UPDATE trial_params SET distribution = '{\"type\": \"mystery\"}'", []).unwrap();
    raw.execute("UPDATE studies SET direction = 'sideways'", []).unwrap_err(); // the CHECK constraint holds
    let err = storage.trials(study.id, None).unwrap_err();
    let SearchError::Storage(source) = &err else { panic!("expected a storage error, got {err:?}") };
    // The store's typed error travels inside the search error.
    assert!(matches!(source.downcast_ref::<Error>(), Some(Error::CorruptData { .. })), "{source:?}");
    let message = err.to_string();
    assert!(
        message.contains("damaged.db") && message.contains("trials") && message.contains("parameter distribution"),
        "{message}"
    );
    assert!(storage.trial(study.id, 0).is_err());
    // Unknown ids are errors too.
    assert!(matches!(storage.heartbeat(999), Err(SearchError::Storage(m)) if m.to_string().contains("999")));
    assert!(matches!(storage.trials(999, None), Err(SearchError::Storage(m)) if m.to_string().contains("999")));
}

#[test]
fn non_finite_parameter_values_are_refused() {
    let storage = SqliteStorage::in_memory().unwrap();
    let study = storage.create_study(&NewStudy::new("s", Direction::Minimize, 0)).unwrap();
    let t = storage.create_trial(study.id, &NewTrial::default()).unwrap();
    let dist = Distribution::Float { low: 0.0, high: 1.0, log: false, step: None };
    let err = storage.set_trial_params(t.id, &[("x".into(), dist, ParamValue::Float(f64::NAN))]).unwrap_err();
    assert!(matches!(err, SearchError::Param { ref param, .. } if param == "x"), "{err:?}");
    assert!(storage.trial(study.id, 0).unwrap().params.is_empty(), "nothing half-written");
}

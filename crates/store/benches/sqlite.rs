//! Per-call latency of `SqliteStorage` on a WAL file: the calls of one ask + tell cycle, and
//! loading a 1000-trial study. Run: `cargo bench -p nightshift-store --bench sqlite`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use nightshift_search::{Direction, Distribution, NewStudy, NewTrial, ParamValue, Storage, TrialParam, TrialState};
use nightshift_store::SqliteStorage;

/// The 5-D mixed space, as one trial's parameters.
fn params(i: u64) -> Vec<TrialParam> {
    let f = |low, high, log, step| Distribution::Float { low, high, log, step };
    vec![
        ("learning_rate".into(), f(1e-5, 1e-1, true, None), ParamValue::Float(1e-4 * (1 + i % 100) as f64)),
        (
            "batch_size".into(),
            Distribution::Categorical { choices: [16, 32, 64, 128].map(ParamValue::Int).to_vec() },
            ParamValue::Int(32),
        ),
        ("dropout".into(), f(0.0, 0.5, false, Some(0.05)), ParamValue::Float(0.05 * (i % 10) as f64)),
        ("weight_decay".into(), f(1e-6, 1e-2, true, None), ParamValue::Float(1e-5)),
        ("freeze_depth".into(), Distribution::Int { low: 0, high: 4, log: false, step: 1 }, ParamValue::Int((i % 5) as i64)),
    ]
}

/// A study with `n` finished trials, each with 5 params and 10 intermediate values.
fn filled(n: u64) -> (tempfile::TempDir, SqliteStorage, i64) {
    let dir = tempfile::tempdir().unwrap();
    let storage = SqliteStorage::open(dir.path().join("bench.db")).unwrap();
    let study = storage.create_study(&NewStudy::new("bench", Direction::Minimize, 0)).unwrap();
    for i in 0..n {
        let t = storage.create_trial(study.id, &NewTrial { params: params(i), ..NewTrial::default() }).unwrap();
        for step in 0..10 {
            storage.report_intermediate(t.id, step, 1.0 / (step + 1) as f64).unwrap();
        }
        storage.finish_trial(t.id, TrialState::Complete, Some(i as f64)).unwrap();
    }
    (dir, storage, study.id)
}

fn calls(c: &mut Criterion) {
    let (_dir, storage, study) = filled(100);
    let mut g = c.benchmark_group("sqlite_call");
    g.bench_function("create_trial", |b| b.iter(|| storage.create_trial(study, &NewTrial::default()).unwrap()));
    g.bench_function("claim_waiting_trial_none", |b| b.iter(|| storage.claim_waiting_trial(study, false).unwrap()));
    g.bench_function("set_trial_params_5", |b| {
        b.iter_batched(
            || storage.create_trial(study, &NewTrial::default()).unwrap().id,
            |id| storage.set_trial_params(id, &params(id as u64)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    let running = storage.create_trial(study, &NewTrial::default()).unwrap();
    let mut step = 0;
    g.bench_function("report_intermediate", |b| {
        b.iter(|| {
            step += 1;
            storage.report_intermediate(running.id, step, 0.5).unwrap()
        })
    });
    g.bench_function("heartbeat", |b| b.iter(|| storage.heartbeat(running.id).unwrap()));
    g.bench_function("trial_by_number", |b| b.iter(|| storage.trial(study, 50).unwrap()));
    g.bench_function("finish_trial", |b| {
        b.iter_batched(
            || storage.create_trial(study, &NewTrial { params: params(1), ..NewTrial::default() }).unwrap().id,
            |id| storage.finish_trial(id, TrialState::Complete, Some(1.0)).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("create_set_params_finish_cycle", |b| {
        b.iter(|| {
            let t = storage.create_trial(study, &NewTrial::default()).unwrap();
            storage.set_trial_params(t.id, &params(7)).unwrap();
            storage.finish_trial(t.id, TrialState::Complete, Some(1.0)).unwrap()
        })
    });
    g.finish();
}

fn load(c: &mut Criterion) {
    let mut g = c.benchmark_group("sqlite_trials");
    g.sample_size(30);
    for n in [100, 1000] {
        let (_dir, storage, study) = filled(n);
        assert_eq!(storage.trials(study, None).unwrap().len(), n as usize);
        g.bench_function(format!("all_{n}_trials_5_params_10_values"), |b| b.iter(|| storage.trials(study, None).unwrap()));
        g.bench_function(format!("complete_of_{n}"), |b| {
            b.iter(|| storage.trials(study, Some(&[TrialState::Complete])).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, calls, load);
criterion_main!(benches);

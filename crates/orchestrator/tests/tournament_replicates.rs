//! A tournament with a built-in-trainer-like program: replicates get the trainer's extra arguments and are
//! scored on its test metric, search trials on the objective; every trial gets its seed.

use std::path::Path;
use std::sync::Arc;

use nightshift_orchestrator::spec::{ArgTemplate, BuiltinSections, BuiltinTrainer, FieldError, ReplicateEval};
use nightshift_orchestrator::{RunOptions, Shutdown, Spec, run};
use nightshift_search::{InMemoryStorage, Role, Storage, attrs};

/// A stand-in trainer: prints a result whose test metric is 0.9 when given `--test`, and echoes its seed.
struct ShellTrainer;

impl BuiltinTrainer for ShellTrainer {
    fn trial_program(&self, _: &BuiltinSections<'_>) -> Result<Vec<ArgTemplate>, FieldError> {
        let script = r#"test=0.1; [ "$1" = --test ] && test=0.9; echo "{\"result\": {\"value\": 0.5, \"metrics\": {\"test_accuracy\": $test, \"seed\": $SEED}}}""#;
        Ok(vec![
            ArgTemplate::literal("env"),
            ArgTemplate::parse("SEED={seed}").unwrap(),
            ArgTemplate::literal("sh"),
            ArgTemplate::literal("-c"),
            ArgTemplate::literal(script),
            ArgTemplate::literal("trial"),
        ])
    }

    fn replicate_eval(&self, _: &BuiltinSections<'_>) -> Option<ReplicateEval> {
        Some(ReplicateEval { args: vec![ArgTemplate::literal("--test")], metric: "test_accuracy".into() })
    }

    fn check_pretrain(&self, _: &serde_json::Value, _: &Path) -> Result<(), FieldError> {
        Ok(())
    }
}

#[test]
fn replicates_are_scored_on_the_test_metric_and_every_trial_is_seeded() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
study: t
objective: {metric: accuracy, direction: maximize}
sampler: {type: random, seed: 5}
budget: {trials: 4}
devices: {cpu: 2}
trial: {epochs: 1}
params:
  k: {type: categorical, choices: [a, b]}
  x: {type: float, low: 0.0, high: 1.0}
compare: {param: k, budget_per_arm: 2, replicate_top: 1, seeds: 2}
";
    let spec = Spec::parse_with(text, "t.yaml", dir.path(), &ShellTrainer).unwrap();
    let storage = Arc::new(InMemoryStorage::new());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let summary =
        rt.block_on(run(&spec, storage.clone(), RunOptions::new(dir.path().join("reports/t")), Shutdown::never())).unwrap();
    assert_eq!((summary.launched, summary.complete), (8, 8), "4 search trials and 2 × 2 replicates");
    let study = storage.load_study("t").unwrap();
    assert!(study.user_attrs.contains_key(attrs::STUDY_TOURNAMENT), "the tournament is stored with the study");
    for t in storage.trials(study.id, None).unwrap() {
        let want = if Role::of(&t) == Some(Role::Replicate) { 0.9 } else { 0.5 };
        assert_eq!(t.value, Some(want), "trial {} ({:?})", t.number, Role::of(&t));
        let seed = t.system_attrs[attrs::SEED].as_u64().unwrap();
        assert_eq!(t.system_attrs[attrs::METRICS]["seed"].as_u64(), Some(seed), "the program got the recorded seed");
        assert_eq!(seed, nightshift_search::trial_seed(study.seed, t.number));
    }
}

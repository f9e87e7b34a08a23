//! `nightshift check` and `nightshift run` refuse the common mistakes in a built-in-trainer spec before any
//! trial starts, naming the file, line and key and what would be valid.

mod common;

use common::Sandbox;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A valid built-in-trainer spec on the bundled tiny dataset; each case edits one line of it.
fn builtin_spec() -> String {
    format!(
        "study: mistakes
objective: {{metric: val_accuracy, direction: maximize}}
budget: {{trials: 2}}
devices: {{cpu: 1}}
trial:
  dataset: {ROOT}/data/fashion_mnist_tiny
  arch: small-cnn
  epochs: 1
params:
  learning_rate: {{type: float, low: 1.0e-4, high: 1.0e-1, log: true}}
  batch_size: {{type: categorical, choices: [16, 32]}}
  dropout: {{type: float, low: 0.0, high: 0.5}}
  freeze_depth: {{type: int, low: 0, high: 3}}
"
    )
}

#[test]
fn the_valid_spec_checks() {
    let sb = Sandbox::new();
    sb.file("s.yaml", &builtin_spec());
    let out = sb.ok(&["check", "s.yaml"]);
    assert!(out.contains("built-in trainer: ") && out.contains(" trial --out {trial_dir} --dataset "), "{out}");
    assert!(out.contains(": OK"), "{out}");
    assert!(
        out.contains("fashion_mnist_tiny: IDX files, 10 classes, ") && out.contains("training images, a t10k test split"),
        "{out}"
    );
}

#[test]
fn a_spec_searching_every_freeze_strategy_checks() {
    let sb = Sandbox::new();
    let spec = builtin_spec().replace("epochs: 1", "epochs: 4").replace(
        "  freeze_depth: {type: int, low: 0, high: 3}",
        "  freeze_strategy: {type: categorical, choices: [full, depth:2, linear_probe, lp_ft, gradual_unfreeze, \"layer_decay:0.8\"]}
  lp_fraction: {type: float, low: 0.2, high: 0.8}
  unfreeze_every: {type: int, low: 1, high: 2}",
    );
    sb.file("s.yaml", &spec);
    let out = sb.ok(&["check", "s.yaml"]);
    assert!(out.contains(": OK"), "{out}");
}

#[test]
fn common_mistakes_are_refused_before_any_trial() {
    let sb = Sandbox::new();
    let good = builtin_spec();
    let cases = [
        // (what the mistake is, from, to, expected fragments)
        (
            "a typo in a trial key",
            "  dataset:",
            "  datset:",
            vec!["s.yaml:6:3", "field `trial.datset`", "did you mean `dataset`?"],
        ),
        (
            "an unknown hyperparameter",
            "  dropout: {",
            "  dropuot: {",
            vec!["s.yaml:12:3", "field `params.dropuot`", "no hyperparameter `dropuot`", "did you mean `dropout`?"],
        ),
        (
            "an unknown resize",
            "  arch: small-cnn",
            "  arch: small-cnn\n  resize: crop",
            vec!["s.yaml:8:3", "field `trial.resize`", "unknown variant `crop`", "`squash` or `center_crop`"],
        ),
        (
            "an unknown arch",
            "arch: small-cnn",
            "arch: resnet19",
            vec!["s.yaml:7:3", "field `trial.arch`", "did you mean `resnet18`?", "efficientnet-lite0"],
        ),
        (
            "freeze_depth beyond the model's stages",
            "low: 0, high: 3}",
            "low: 0, high: 5}",
            vec!["s.yaml:13:3", "field `params.freeze_depth`", "5 but the model has 3 stages"],
        ),
        (
            "an unknown freeze strategy",
            "  freeze_depth: {type: int, low: 0, high: 3}",
            "  freeze_strategy: {type: categorical, choices: [full, lp-ft]}",
            vec!["s.yaml:13:3", "field `params.freeze_strategy`", "did you mean `lp_ft`?", "valid: full, depth:K, linear_probe"],
        ),
        (
            "a freeze strategy deeper than the model",
            "  freeze_depth: {type: int, low: 0, high: 3}",
            "  freeze_strategy: {type: categorical, choices: [full, \"depth:99\"]}",
            vec!["s.yaml:13:3", "field `params.freeze_strategy`", "the model has 3 stages (valid: depth:0 to depth:3)"],
        ),
        (
            "a layer decay above 1",
            "  freeze_depth: {type: int, low: 0, high: 3}",
            "  freeze_strategy: {type: categorical, choices: [\"layer_decay:1.5\"]}",
            vec!["s.yaml:13:3", "field `params.freeze_strategy`", "layer_decay:1.5", "(0, 1]"],
        ),
        (
            "lp_ft with one epoch",
            "  freeze_depth: {type: int, low: 0, high: 3}",
            "  freeze_strategy: {type: categorical, choices: [full, lp_ft]}",
            vec!["s.yaml:13:3", "field `params.freeze_strategy`", "`lp_ft` needs at least 2 epochs"],
        ),
        (
            "an lp_fraction of 1",
            "  freeze_depth: {type: int, low: 0, high: 3}",
            "  lp_fraction: {type: float, low: 0.5, high: 1.0}",
            vec!["s.yaml:13:3", "field `params.lp_fraction`", "lp_fraction = 1.0", "(0, 1)"],
        ),
        (
            "unfreezing every 0 epochs",
            "  freeze_depth: {type: int, low: 0, high: 3}",
            "  unfreeze_every: {type: int, low: 0, high: 2}",
            vec!["s.yaml:13:3", "field `params.unfreeze_every`", "unfreeze_every = 0", "at least 1"],
        ),
        (
            "freeze_depth and freeze_strategy together",
            "  dropout: {type: float, low: 0.0, high: 0.5}",
            "  freeze_strategy: {type: categorical, choices: [full]}",
            vec!["field `params.freeze_strategy`", "not both"],
        ),
        (
            "a batch size of 0",
            "choices: [16, 32]",
            "choices: [0, 32]",
            vec!["s.yaml:11:3", "field `params.batch_size`", "batch_size = 0", "at least 1"],
        ),
        (
            "dropout above 1",
            "low: 0.0, high: 0.5}",
            "low: 0.0, high: 1.5}",
            vec!["s.yaml:12:3", "field `params.dropout`", "dropout = 1.5", "[0, 1)"],
        ),
        (
            "a negative learning rate",
            "low: 1.0e-4, high: 1.0e-1, log: true}",
            "low: -1.0e-4, high: 1.0e-1}",
            vec!["s.yaml:10:3", "field `params.learning_rate`", "must be positive, got -0.0001"],
        ),
        (
            "an objective the trainer does not report (it would optimise val_accuracy under that name)",
            "metric: val_accuracy, direction: maximize",
            "metric: val_loss, direction: minimize",
            vec!["s.yaml:2:", "field `objective.metric`", "the built-in trainer optimises val_accuracy (maximize)"],
        ),
        (
            "val_accuracy minimised",
            "metric: val_accuracy, direction: maximize",
            "metric: val_accuracy, direction: minimize",
            vec!["s.yaml:2:", "field `objective.direction`", "the built-in trainer optimises val_accuracy (maximize)"],
        ),
    ];
    for (mistake, from, to, expect) in cases {
        assert!(good.contains(from), "{mistake}: the spec lacks {from:?}");
        sb.file("s.yaml", &good.replacen(from, to, 1));
        for verb in ["check", "run"] {
            let err = sb.fails(&[verb, "s.yaml"]);
            let missing: Vec<&&str> = expect.iter().filter(|e| !err.contains(**e)).collect();
            assert!(missing.is_empty(), "{verb}, {mistake}: {missing:?} not in: {err}");
        }
        assert!(!sb.path().join("reports/mistakes").exists(), "{mistake}: nothing ran");
    }
}

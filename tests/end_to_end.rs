//! The whole product through the real binary: pretrain, a built-in fine-tuning sweep with pruning,
//! the report, and every example spec in search-spaces/.

mod common;

use common::Sandbox;
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn trial_speaks_the_protocol_and_stops_when_pruned() {
    let sb = Sandbox::new();
    let dataset = format!("{ROOT}/data/fashion_mnist_tiny");
    let params = r#"{"learning_rate": 0.003, "batch_size": 32, "dropout": 0.1, "weight_decay": 0.0001, "freeze_depth": 0}"#;
    let mut child = sb
        .cmd(&["trial", "--dataset", &dataset, "--epochs", "3", "--out", "t0"])
        .env("NIGHTSHIFT_PARAMS", params)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::{BufRead, Write};
    let mut stdin = child.stdin.take().unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for line in stdout.lines() {
        let line = line.unwrap();
        let msg: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
        if msg.get("report").is_some() {
            // Continue after epoch 1, prune after epoch 2.
            let answer = if msg["report"]["step"] == 1 { r#"{"continue": true}"# } else { r#"{"prune": true}"# };
            writeln!(stdin, "{answer}").unwrap();
        }
        lines.push(msg);
    }
    assert!(child.wait().unwrap().success());
    let reports: Vec<&Value> = lines.iter().filter(|m| m.get("report").is_some()).collect();
    assert_eq!(reports.len(), 2, "pruned after the second epoch: {lines:?}");
    for key in ["val_accuracy", "val_loss", "train_loss", "macro_f1"] {
        assert!(reports[0]["report"]["metrics"][key].is_number(), "{key} missing: {:?}", reports[0]);
    }
    let acc = reports[1]["report"]["value"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let result = lines.iter().find(|m| m.get("result").is_some()).expect("a final result line");
    assert_eq!(result["result"]["pruned"], true);
    assert!(sb.path().join("t0/model.safetensors").exists(), "the best checkpoint is saved");
    assert!(sb.path().join("t0/model.json").exists());
}

#[test]
fn a_small_builtin_sweep_pretrains_prunes_and_reports() {
    let sb = Sandbox::new();
    let spec = format!(
        "study: e2e
objective: {{metric: val_accuracy, direction: maximize}}
sampler: {{type: tpe, seed: 1}}
pruner: {{type: median, n_startup_trials: 1, n_warmup_steps: 0}}
budget: {{trials: 6}}
devices: {{cpu: 2}}
pretrain: {{dataset: {ROOT}/data/mnist_tiny, epochs: 1, out: backbone, width: 8}}
trial: {{dataset: {ROOT}/data/fashion_mnist_tiny, init: backbone, epochs: 3}}
params:
  learning_rate: {{type: float, low: 1.0e-4, high: 1.0e-1, log: true}}
  batch_size: {{type: categorical, choices: [16, 32]}}
  dropout: {{type: float, low: 0.0, high: 0.5}}
  weight_decay: {{type: float, low: 1.0e-6, high: 1.0e-2, log: true}}
  freeze_depth: {{type: int, low: 0, high: 3}}
compare: freeze_depth
"
    );
    sb.file("e2e.yaml", &spec);
    let out = sb.ok(&["run", "e2e.yaml", "--quiet"]);
    assert!(out.contains("budget reached"), "{out}");
    assert!(sb.path().join("backbone/model.safetensors").exists(), "pretraining ran first");
    let trials: Value = serde_json::from_str(&sb.ok(&[
        "trials",
        "--storage",
        "sqlite:///reports/e2e/study.db",
        "--study-name",
        "e2e",
        "-f",
        "json",
    ]))
    .unwrap();
    let trials = trials.as_array().unwrap();
    assert_eq!(trials.len(), 6);
    assert!(trials.iter().all(|t| t["state"] == "COMPLETE" || t["state"] == "PRUNED"), "{trials:?}");
    let mut depths: Vec<i64> = trials.iter().map(|t| t["params"]["freeze_depth"].as_i64().unwrap()).collect();
    depths.sort_unstable();
    assert_eq!(depths, [0, 0, 1, 1, 2, 3], "compare: freeze_depth shares the trials out evenly");
    for t in trials {
        let steps = t["intermediate_values"].as_object().unwrap().len();
        if t["state"] == "PRUNED" {
            // The last epoch's report can be pruned too (its value then counts as pruned, not complete).
            assert!((1..=3).contains(&steps), "a pruned trial reported the epochs it trained: {t}");
        } else {
            assert_eq!(steps, 3, "a complete trial reported every epoch: {t}");
        }
    }
    let pruned = trials.iter().filter(|t| t["state"] == "PRUNED").count();
    assert!((1..6).contains(&pruned), "the median pruner stopped some trials, not all: {pruned} of 6 pruned");
    let index = std::fs::read_to_string(sb.path().join("reports/e2e/index.html")).unwrap();
    assert!(index.contains("Which won: freeze_depth"), "the report compares freeze depths");
    assert!(sb.path().join("reports/e2e/history.png").exists());
    // A second run reuses the backbone and, the budget being spent, launches nothing.
    let again = sb.ok(&["run", "e2e.yaml", "--quiet"]);
    assert!(again.contains("0 launched"), "{again}");
}

#[test]
fn every_example_in_search_spaces_is_valid() {
    let sb = Sandbox::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(format!("{ROOT}/search-spaces")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "efficientnet-fashion.yaml") {
            // Its weights are downloaded, not bundled: checked with and without them below.
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let file = path.display().to_string();
        if text.lines().any(|l| l.starts_with("study:")) {
            let out = sb.ok(&["check", &file]);
            assert!(out.contains(": OK"), "{file}: {out}");
            // A readable plan: words, not Rust `Debug` output.
            assert!(!out.contains("Config {") && !out.contains("Config("), "{file}: {out}");
            assert!(out.lines().any(|l| l.starts_with("pruner:   ")), "{file}: {out}");
            if text.contains("type: auto") {
                // `auto` explains which sampler it uses when, with its numbers.
                assert!(out.contains("sampler:  auto: 10 space-filling (Sobol) trials, then a Gaussian process"), "{out}");
            }
        } else {
            let asked: Value =
                serde_json::from_str(&sb.ok(&["ask", "--study-name", "x", "--search-space", &format!("@{file}")])).unwrap();
            assert!(!asked["params"].as_object().unwrap().is_empty(), "{file}");
        }
        checked += 1;
    }
    assert!(checked >= 2, "search-spaces/ holds the demo spec and a search space");
}

/// The real-backbone example, verbatim, in a sandbox laid out like the repository (`search-spaces/`, `data/`,
/// `models/`): without the downloaded weights `check` fails at `trial.init` and says how to fetch them; with
/// them (the repository's `models/` copy or the shared fixture, the same file) it passes.
#[test]
fn the_efficientnet_example_checks_and_says_how_to_get_its_weights() {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.path().join("search-spaces")).unwrap();
    std::fs::copy(
        format!("{ROOT}/search-spaces/efficientnet-fashion.yaml"),
        sb.path().join("search-spaces/efficientnet-fashion.yaml"),
    )
    .unwrap();
    std::os::unix::fs::symlink(format!("{ROOT}/data"), sb.path().join("data")).unwrap();
    let spec = "search-spaces/efficientnet-fashion.yaml";

    let err = sb.fails(&["check", spec]);
    let init_line =
        std::fs::read_to_string(sb.path().join(spec)).unwrap().lines().position(|l| l.starts_with("  init:")).unwrap();
    for expected in [
        format!("{spec}:{}:3: field `trial.init`", init_line + 1),
        "models/efficientnet-lite0.pth does not exist".into(),
        "scripts/fetch-efficientnet.sh".into(),
    ] {
        assert!(err.contains(&expected), "missing {expected:?} in: {err}");
    }
    assert!(sb.fails(&["run", spec, "--quiet"]).contains("scripts/fetch-efficientnet.sh"));

    let weights = [format!("{ROOT}/models/efficientnet-lite0.pth"), format!("{ROOT}/../shared/fixtures/efficientnet_lite0.pth")]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file());
    let Some(weights) = weights else {
        nightshift_testkit::skip(
            "the_efficientnet_example_checks_and_says_how_to_get_its_weights (with the weights)",
            "the EfficientNet-Lite0 weights (models/efficientnet-lite0.pth or ../shared/fixtures/efficientnet_lite0.pth)",
            "run scripts/fetch-efficientnet.sh",
        );
        return;
    };
    std::fs::create_dir(sb.path().join("models")).unwrap();
    std::os::unix::fs::symlink(weights, sb.path().join("models/efficientnet-lite0.pth")).unwrap();
    let out = sb.ok(&["check", spec]);
    assert!(out.contains(": OK"), "{out}");
    assert!(out.contains("--arch efficientnet-lite0") && !out.contains("init-hint"), "{out}");
    assert!(out.contains("compare:  tournament over freeze_strategy"), "{out}");
}

//! The Python protocol helper as a package (`python/`, `import nightshift_protocol`) and the
//! PyTorch example (`examples/pytorch/`) that uses it.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::Sandbox;
use serde_json::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        // Build leftovers of an in-tree `pip install ./python` are not part of the package source.
        if matches!(name.to_str(), Some("build" | "__pycache__")) || name.to_string_lossy().ends_with(".egg-info") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("spawn python");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// `pip install` of a copy of `python/`, offline (no index, no build isolation: the venv's own
/// setuptools and wheel build it), then the package's unittest file against the installed copy —
/// numpy scalars included, as CI's venv has numpy.
#[test]
fn protocol_package_installs_offline_and_passes_its_tests() {
    let test = "protocol_package_installs_offline_and_passes_its_tests";
    let Some(python) = nightshift_testkit::optuna_python(test) else { return };
    let (has_build_tools, _, _) = run(Command::new(&python).args(["-c", "import setuptools, wheel, numpy"]));
    if !has_build_tools {
        nightshift_testkit::skip(test, "setuptools, wheel and numpy in that Python", "pip install wheel numpy (.ci/run does)");
        return;
    }
    let sb = Sandbox::new();
    let source = sb.path().join("python");
    copy_dir(&Path::new(REPO).join("python"), &source);
    let site = sb.path().join("site");
    let (ok, _, err) = run(Command::new(&python)
        .args(["-m", "pip", "install", "-q", "--no-index", "--no-build-isolation", "--no-deps", "--target"])
        .arg(&site)
        .arg(&source));
    assert!(ok, "pip install ./python failed offline: {err}");

    let env = |cmd: &mut Command| {
        cmd.current_dir(sb.path()).env("PYTHONPATH", &site).env_remove("NIGHTSHIFT_PARAMS");
    };
    let mut where_from = Command::new(&python);
    where_from.args(["-c", "import nightshift_protocol as ns; print(ns.__file__)"]);
    env(&mut where_from);
    let (ok, file, err) = run(&mut where_from);
    assert!(ok && Path::new(file.trim()).starts_with(&site), "imported from {file}, not the installed package: {err}");

    let mut tests = Command::new(&python);
    tests.args(["-m", "unittest", "discover", "-v", "-s"]).arg(source.join("tests"));
    env(&mut tests);
    let (ok, _, report) = run(&mut tests);
    assert!(ok, "the package's tests failed:\n{report}");
    assert!(report.contains("Ran 8 tests"), "{report}");
    assert!(
        report.contains("test_numpy_scalars_and_one_element_arrays") && !report.contains("numpy is not installed"),
        "{report}"
    );
}

/// A Python with PyTorch for the example, or `None` after a loud skip.
///
/// CI has no PyTorch (a 2 GB wheel), so this cannot use `nightshift_testkit::skip`, which fails
/// under CI's strict mode: when PyTorch is missing and `NIGHTSHIFT_TEST_TORCH` is unset, the test
/// says SKIPPED (stderr and the skip log) and passes even in strict mode. Setting
/// `NIGHTSHIFT_TEST_TORCH=/path/to/python` names the interpreter and makes PyTorch required: then
/// a missing torch fails the test.
fn torch_python(test: &str) -> Option<PathBuf> {
    let required = std::env::var_os("NIGHTSHIFT_TEST_TORCH").map(PathBuf::from);
    let candidates: Vec<PathBuf> = match &required {
        Some(python) => vec![python.clone()],
        None => std::env::var_os(nightshift_testkit::PYTHON_VAR)
            .map(PathBuf::from)
            .into_iter()
            .chain([PathBuf::from("python3")])
            .collect(),
    };
    for python in &candidates {
        if run(Command::new(python).args(["-c", "import torch"])).0 {
            return Some(python.clone());
        }
    }
    if let Some(python) = required {
        panic!("NIGHTSHIFT_TEST_TORCH={} cannot import torch", python.display());
    }
    nightshift_testkit::skip_optional(
        test,
        "a Python with PyTorch",
        "set NIGHTSHIFT_TEST_TORCH=/path/to/python with torch installed; CI has none, so this skip never fails it",
    );
    None
}

/// examples/pytorch/spec.yaml, shrunk to 2 trials of 2 epochs on one CPU slot, run by
/// `nightshift run`: the script trains the tiny CNN and reports a 0-d tensor every epoch through
/// the package; both trials complete with per-epoch accuracies well above chance.
#[test]
fn pytorch_example_runs_through_nightshift() {
    let test = "pytorch_example_runs_through_nightshift";
    let Some(python) = torch_python(test) else { return };
    let sb = Sandbox::new();
    let example = Path::new(REPO).join("examples/pytorch");
    let mut spec: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(example.join("spec.yaml")).unwrap()).expect("the example spec is YAML");
    let db = sb.path().join("study.db");
    spec["storage"] = format!("sqlite:///{}", db.display()).into();
    spec["budget"] = serde_yaml::from_str("{trials: 2, trial_timeout: 10m}").unwrap();
    spec["devices"] = serde_yaml::from_str("{cpu: 1}").unwrap();
    let data = Path::new(REPO).join("data/fashion_mnist_100");
    let command = [python.display().to_string(), example.join("train.py").display().to_string()].into_iter().chain([
        "--epochs".into(),
        "2".into(),
        "--data".into(),
        data.display().to_string(),
    ]);
    spec["command"] = serde_yaml::Value::Sequence(command.map(Into::into).collect());
    sb.file("spec.yaml", &serde_yaml::to_string(&spec).unwrap());

    let out = common::output_within(
        sb.cmd(&["run", "spec.yaml"]).env("PYTHONPATH", Path::new(REPO).join("python/src")),
        common::HUNG_AFTER,
    );
    assert!(out.status.success(), "nightshift run failed: {}", String::from_utf8_lossy(&out.stderr));
    let storage = format!("sqlite:///{}", db.display());
    let trials: Value =
        serde_json::from_str(&sb.ok(&["trials", "--storage", &storage, "--study-name", "pytorch-fmnist", "-f", "json"])).unwrap();
    let trials = trials.as_array().unwrap();
    assert_eq!(trials.len(), 2, "{trials:?}");
    for trial in trials {
        assert_eq!(trial["state"], "COMPLETE", "{trial}");
        let epochs = trial["intermediate_values"].as_object().unwrap();
        assert_eq!(epochs.keys().collect::<Vec<_>>(), vec!["1", "2"], "{trial}");
        let value = trial["value"].as_f64().unwrap();
        assert!((0.2..=1.0).contains(&value), "10 classes: chance is 0.1, two epochs reach more: {trial}");
    }
}

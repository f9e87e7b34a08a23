//! `nightshift import` / `nightshift export` against real Python Optuna 5.0 (CI's venv, see
//! nightshift_testkit::optuna_python), and the one-line errors for bad input (no Python needed).

mod common;

use std::path::Path;
use std::process::Command;

use common::Sandbox;
use serde_json::{Value, json};

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Runs `script` with `python` in `dir`; returns its stdout parsed as JSON.
fn python_json(python: &Path, dir: &Path, script: &str) -> Value {
    let out = Command::new(python).current_dir(dir).args(["-c", script]).output().expect("run python");
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    json(&String::from_utf8_lossy(&out.stdout))
}

/// Optuna builds one study twice (a journal file and an RDB SQLite file): float, log-float,
/// stepped int and mixed categorical parameters, intermediate values, pruned and failed trials,
/// user attributes, and one trial left RUNNING. Prints the trials as Optuna sees them.
const MAKE_OPTUNA_STUDIES: &str = r#"
import json, optuna
optuna.logging.set_verbosity(optuna.logging.WARNING)

def objective(t):
    x = t.suggest_float("x", -5.0, 5.0)
    lr = t.suggest_float("lr", 1e-5, 1e-1, log=True)
    n = t.suggest_int("n", 1, 9, step=2)
    opt = t.suggest_categorical("opt", ["adam", "sgd", 3])
    t.set_user_attr("tag", "t%d" % t.number)
    for step in range(3):
        t.report(x + step, step)
    if t.number % 5 == 3:
        raise optuna.TrialPruned()
    if t.number % 5 == 4:
        raise RuntimeError("boom")
    return -(x - 1.0) ** 2 + n

def local(d):
    return None if d is None else (d.astimezone() if d.tzinfo else d).strftime("%Y-%m-%d %H:%M:%S")

datetimes = {}
for format, storage in [
    ("optuna-journal", optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend("optuna.log"))),
    ("optuna-sqlite", "sqlite:///optuna.db"),
]:
    study = optuna.create_study(study_name="src", storage=storage, direction="maximize",
                                sampler=optuna.samplers.RandomSampler(seed=1))
    study.set_user_attr("owner", "ci")
    study.optimize(objective, n_trials=10, catch=(RuntimeError,))
    study.ask()  # left RUNNING: not imported
    datetimes[format] = [[local(t.datetime_start), local(t.datetime_complete)]
                         for t in study.trials if t.state.is_finished()]

print(json.dumps({
    "datetimes": datetimes,
    "best": study.best_trial.number,
    "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
                "user_attrs": t.user_attrs} for t in study.trials if t.state.is_finished()],
}))
"#;

/// Loads the exported journal with Optuna and prints what Optuna sees.
const LOAD_EXPORT: &str = r#"
import json, optuna
storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend("back.log"))
study = optuna.load_study(study_name="imported", storage=storage)
def local(d):
    return None if d is None else (d.astimezone() if d.tzinfo else d).strftime("%Y-%m-%d %H:%M:%S")
print(json.dumps({
    "direction": study.direction.name,
    "user_attrs": study.user_attrs,
    "best": study.best_trial.number,
    "best_value": study.best_value,
    "trials": [{"number": t.number, "state": t.state.name, "value": t.value, "params": t.params,
                "distributions": {k: optuna.distributions.distribution_to_json(d) for k, d in t.distributions.items()},
                "intermediate_values": {str(k): v for k, v in t.intermediate_values.items()},
                "user_attrs": t.user_attrs, "system_attrs": t.system_attrs,
                "datetime_start": local(t.datetime_start),
                "datetime_complete": local(t.datetime_complete)}
               for t in study.trials],
}))
"#;

fn same_trials(ours: &[Value], optuna: &[Value], what: &str) {
    assert_eq!(ours.len(), optuna.len(), "{what}: trial count");
    for (n, o) in ours.iter().zip(optuna) {
        for key in ["state", "value", "params", "intermediate_values", "user_attrs"] {
            assert_eq!(n[key], o[key], "{what}: trial {} field {key}", o["number"]);
        }
    }
}

#[test]
fn optuna_studies_import_and_export_round_trip() {
    let Some(python) = nightshift_testkit::optuna_python("optuna_studies_import_and_export_round_trip") else { return };
    let sb = Sandbox::new();
    let expected = python_json(&python, sb.path(), MAKE_OPTUNA_STUDIES);
    let expected_trials = expected["trials"].as_array().unwrap();
    assert_eq!(expected_trials.len(), 10);
    let storage = "sqlite:///ns.db";

    // Import from both Optuna formats.
    for (format, file, name) in [("optuna-journal", "optuna.log", "imported"), ("optuna-sqlite", "optuna.db", "from_rdb")] {
        let args = ["import", "--storage", storage, "--from", format, file, "--study-name", name, "--optuna-study-name", "src"];
        let summary = json(&sb.ok(&args));
        assert_eq!(summary["imported"], 10, "{format}: {summary}");
        assert_eq!(summary["skipped_unfinished"], 1, "{format}: the RUNNING trial stays behind: {summary}");
        assert_eq!(summary["created"], true);
        let trials = json(&sb.ok(&["trials", "--storage", storage, "--study-name", name, "-f", "json"]));
        same_trials(trials.as_array().unwrap(), expected_trials, format);
        // Optuna's start and end times are kept (printed in local time to the second, as both CLIs do).
        for (t, want) in trials.as_array().unwrap().iter().zip(expected["datetimes"][format].as_array().unwrap()) {
            assert_eq!(json!([t["datetime_start"], t["datetime_complete"]]), *want, "{format}: trial {}", t["number"]);
        }
        let best = json(&sb.ok(&["best-trial", "--storage", storage, "--study-name", name, "-f", "json"]));
        assert_eq!(best["number"], expected["best"], "{format}: best trial");
    }

    // The same trials again go into the existing study (same search space): 20 trials, and the
    // sampler's next ask continues from that history.
    let again = ["import", "--storage", storage, "--from", "optuna-journal", "optuna.log", "--study-name", "imported"];
    let again: Vec<&str> = again.iter().copied().chain(["--optuna-study-name", "src"]).collect();
    let summary = json(&sb.ok(&again));
    assert_eq!((summary["created"].clone(), summary["imported"].clone()), (Value::Bool(false), Value::from(10)));
    let asked = json(&sb.ok(&["ask", "--storage", storage, "--study-name", "imported"]));
    assert_eq!(asked["number"], 20, "{asked}");
    let params = asked["params"].as_object().unwrap();
    assert_eq!(params.len(), 4, "the imported search space is the study's: {asked}");
    sb.ok(&["tell", "--storage", storage, "--study-name", "imported", "--trial-number", "20", "--values", "-1e9"]);

    // Export, and Optuna sees the same study.
    let export = ["export", "--storage", storage, "--study-name", "imported", "--format", "optuna-journal", "--out", "back.log"];
    let exported = json(&sb.ok(&export));
    assert_eq!(exported["trials"], 21);
    let seen = python_json(&python, sb.path(), LOAD_EXPORT);
    let ours = json(&sb.ok(&["trials", "--storage", storage, "--study-name", "imported", "-f", "json"]));
    let ours = ours.as_array().unwrap();
    let theirs = seen["trials"].as_array().unwrap();
    same_trials(ours, theirs, "export");
    same_trials(&ours[..10], expected_trials, "export of the imported trials");
    assert_eq!(seen["direction"], "MAXIMIZE");
    assert_eq!(seen["user_attrs"]["owner"], "ci");
    let best = json(&sb.ok(&["best-trial", "--storage", storage, "--study-name", "imported", "-f", "json"]));
    assert_eq!((seen["best"].clone(), seen["best_value"].clone()), (best["number"].clone(), best["value"].clone()));
    for (n, o) in ours.iter().zip(theirs) {
        // Both print local time to the second, as Optuna's CLI does.
        for key in ["datetime_start", "datetime_complete"] {
            assert_eq!(n[key], o[key], "trial {}: {key}", n["number"]);
        }
        assert_eq!(n["system_attrs"], o["system_attrs"], "trial {}", n["number"]);
    }
    let opt = &theirs[0]["distributions"]["opt"];
    assert!(opt.as_str().unwrap().contains(r#""choices": ["adam", "sgd", 3]"#), "categorical choices as Optuna's: {opt}");

    // A second export to the same file is refused rather than appended.
    let err = sb.fails(&export);
    assert!(err.contains("back.log already exists"), "{err}");
}

const START: &str = "{\"op_code\":0,\"worker_id\":\"w\",\"study_name\":\"s\",\"directions\":[1]}\n";

fn create_trial(params: &str, distributions: &str) -> String {
    format!(
        "{{\"op_code\":4,\"worker_id\":\"w\",\"study_id\":0,\"datetime_start\":\"2026-01-01T00:00:00.000000+00:00\",\
         \"datetime_complete\":\"2026-01-01T00:00:01.000000+00:00\",\"state\":1,\"value\":0.5,\"values\":null,\
         \"params\":{params},\"distributions\":{distributions}}}\n"
    )
}

fn float_trial(high: f64) -> String {
    let dist = format!(
        r#"{{"x": "{{\"name\": \"FloatDistribution\", \"attributes\": {{\"low\": 0.0, \"high\": {high:?}, \"step\": null, \"log\": false}}}}"}}"#
    );
    create_trial(r#"{"x": 0.5}"#, &dist)
}

#[test]
fn bad_optuna_input_gets_one_line_and_imports_nothing() {
    let sb = Sandbox::new();
    let storage = "sqlite:///ns.db";
    let import = |file: &str, name: &str| {
        vec!["import", "--storage", storage, "--from", "optuna-journal", file, "--study-name", name, "--optuna-study-name", "s"]
            .into_iter()
            .map(String::from)
            .collect::<Vec<_>>()
    };
    let fails = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let err = sb.fails(&args);
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        err
    };

    let err = fails(import("missing.log", "a"));
    assert!(err.contains("missing.log") && err.contains("No such file"), "{err}");
    sb.file("garbage.log", &format!("{START}{{not json\n"));
    let err = fails(import("garbage.log", "a"));
    assert!(err.contains("garbage.log:2: not a JSON object"), "{err}");
    sb.file("opcode.log", &format!("{START}{}{{\"op_code\":99,\"worker_id\":\"w\"}}\n", float_trial(1.0)));
    let err = fails(import("opcode.log", "a"));
    assert!(err.contains("opcode.log:3: unknown op_code 99 (valid: 0 to 10"), "{err}");
    let none_choice = create_trial(
        r#"{"c": 1}"#,
        r#"{"c": "{\"name\": \"CategoricalDistribution\", \"attributes\": {\"choices\": [\"a\", null]}}"}"#,
    );
    sb.file("none.log", &format!("{START}{}{none_choice}", float_trial(1.0)));
    let err = fails(import("none.log", "a"));
    assert!(err.contains("none.log:3: parameter 'c'") && err.contains("choice 1 is None"), "{err}");
    sb.file("multi.log", "{\"op_code\":0,\"worker_id\":\"w\",\"study_name\":\"s\",\"directions\":[1,2]}\n");
    let err = fails(import("multi.log", "a"));
    assert!(err.contains("2 objectives"), "{err}");
    let err = fails(vec!["import".into(), "--from".into(), "optuna-csv".into(), "x".into(), "--study-name".into(), "a".into()]);
    assert!(err.contains("unknown format 'optuna-csv' (valid: optuna-journal FILE, optuna-sqlite FILE)"), "{err}");
    // None of the failures above created a study, nor even the database file.
    assert!(!sb.path().join("ns.db").exists(), "a refused import created {storage}");

    // A clash with an existing study's search space or direction: refused, nothing added.
    sb.file("good.log", &format!("{START}{}{}", float_trial(1.0), float_trial(1.0)));
    assert_eq!(json(&sb.ok(&import("good.log", "b").iter().map(String::as_str).collect::<Vec<_>>()))["imported"], 2);
    sb.file("wider.log", &format!("{START}{}{}", float_trial(1.0), float_trial(2.0)));
    let err = fails(import("wider.log", "b"));
    assert!(err.contains("wider.log:3: trial 1 parameter 'x' is float [0, 2]") && err.contains("nothing imported"), "{err}");
    sb.file("max.log", &format!("{}{}", START.replace("[1]", "[2]"), float_trial(1.0)));
    let err = fails(import("max.log", "b"));
    assert!(err.contains("is to maximize but study 'b' is to minimize"), "{err}");
    let trials = json(&sb.ok(&["trials", "--storage", storage, "--study-name", "b", "-f", "json"]));
    assert_eq!(trials.as_array().unwrap().len(), 2, "the refused imports added nothing");
    let err = fails(import("good.log", "b").into_iter().map(|a| if a == "s" { "other".into() } else { a }).collect());
    assert!(err.contains("no study named 'other' (it has: s"), "{err}");
}

/// An imported trial keeps Optuna's start and end times (not the time of the import).
#[test]
fn imported_trials_keep_their_optuna_times() {
    let sb = Sandbox::new();
    sb.file("j.log", &format!("{START}{}", float_trial(1.0)));
    let storage = "sqlite:///ns.db";
    let import =
        ["import", "--storage", storage, "--from", "optuna-journal", "j.log", "--study-name", "t", "--optuna-study-name", "s"];
    sb.ok(&import);
    let out = sb.cmd(&["trials", "--storage", storage, "--study-name", "t", "-f", "json"]).env("TZ", "UTC").output().unwrap();
    let trials = json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(trials[0]["datetime_start"], "2026-01-01 00:00:00", "{trials}");
    assert_eq!(trials[0]["datetime_complete"], "2026-01-01 00:00:01", "{trials}");
    assert_eq!(trials[0]["duration"], "0:00:01", "{trials}");
}

//! The same shell loop against Python Optuna's `optuna` CLI and `nightshift`: every verb's output
//! has the same shape (keys, value types, datetime and duration formats) in json, yaml and value.
//! Our tables differ by design; the extra keys we print are listed in EXTRA_KEYS.

mod common;

use std::path::Path;
use std::process::Command;

use common::{HUNG_AFTER, Sandbox, output_within};
use serde_json::{Map, Value};

/// Keys nightshift prints that Optuna does not (Optuna prints `user_attrs` only when some are set).
const EXTRA_KEYS: [&str; 6] = ["user_attrs", "intermediate_values", "system_attrs", "best_value", "best_params", "storage"];

/// A single-choice categorical, so both tools pick the same value; keys in sorted order, as both print them.
const SPACE: &str = r#"{"c": {"name": "CategoricalDistribution", "attributes": {"choices": ["b"]}}, "x": {"name": "FloatDistribution", "attributes": {"low": 0.0, "high": 1.0, "log": false, "step": null}}}"#;

/// Runs one CLI's loop in `dir` and returns (command line, stdout) for each step.
fn run_loop(dir: &Path, cli: &dyn Fn(&[&str]) -> Command) -> Vec<(String, String)> {
    let storage = "sqlite:///loop.db";
    let mut steps: Vec<Vec<&str>> = vec![
        vec!["create-study", "--study-name", "s"],
        vec!["ask", "--study-name", "s", "--search-space", SPACE],
        vec!["ask", "--study-name", "s", "-f", "yaml"],
        vec!["ask", "--study-name", "s", "-f", "value"],
        vec!["ask", "--study-name", "s", "-f", "json", "--flatten"],
        vec!["tell", "--study-name", "s", "--trial-number", "0", "--values", "0.5"],
        vec!["tell", "--study-name", "s", "--trial-number", "1", "--state", "pruned"],
        // Optuna's argparse takes a negative number in exponent form only after `=` (it reads
        // `--values -6.7e-06` as an option); nightshift takes both spellings (tests/cli_study.rs).
        vec!["tell", "--study-name", "s", "--trial-number", "3", "--values=-6.762234605393754e-06"],
        vec!["study", "set-user-attr", "--study-name", "s", "--key", "k", "--value", "v"],
    ];
    for format in ["json", "yaml", "value"] {
        for verb in ["trials", "best-trial", "best-trials"] {
            steps.push(vec![verb, "--study-name", "s", "-f", format]);
        }
        steps.push(vec!["studies", "-f", format]);
        steps.push(vec!["study-names", "-f", format]);
    }
    steps.push(vec!["trials", "--study-name", "s", "-f", "json", "--flatten"]);
    steps.push(vec!["delete-study", "--study-name", "s"]);
    steps.push(vec!["study-names", "-f", "json"]);
    steps
        .into_iter()
        .map(|step| {
            let mut args = step.clone();
            args.extend(["--storage", storage]);
            let mut cmd = cli(&args);
            cmd.current_dir(dir);
            let out = output_within(&mut cmd, HUNG_AFTER);
            let line = step.join(" ");
            assert!(out.status.success(), "{line} failed: {}", String::from_utf8_lossy(&out.stderr));
            (line, String::from_utf8(out.stdout).expect("utf-8 stdout"))
        })
        .collect()
}

/// The shape of a value: its keys and the kinds of its leaves.
fn shape(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), shape(v))).collect::<Map<_, _>>()),
        Value::Array(items) => Value::Array(items.iter().map(shape).collect()),
        Value::Null => "null".into(),
        Value::Bool(_) => "bool".into(),
        Value::Number(_) => "number".into(),
        Value::String(s) => string_kind(s).into(),
    }
}

fn string_kind(s: &str) -> &'static str {
    let digits_at = |pattern: &str| {
        s.len() >= pattern.len()
            && pattern.chars().zip(s.chars()).all(|(p, c)| if p == '0' { c.is_ascii_digit() } else { p == c })
    };
    if s.len() == 19 && digits_at("0000-00-00 00:00:00") {
        "datetime"
    } else if digits_at("0:00:00") && (s.len() == 7 || (s.len() == 14 && s.as_bytes()[7] == b'.')) {
        "duration"
    } else {
        "string"
    }
}

/// Optuna's keys all present with the same shapes; ours beyond them only from EXTRA_KEYS.
fn assert_same_shape(step: &str, optuna: &Value, ours: &Value) {
    match (optuna, ours) {
        (Value::Object(o), Value::Object(n)) => {
            for (key, value) in o {
                let mine = n.get(key).unwrap_or_else(|| panic!("{step}: we lack Optuna's key '{key}' in {ours}"));
                // Inside params and attributes the values are the user's; compare them too.
                assert_same_shape(&format!("{step} .{key}"), value, mine);
            }
            for key in n.keys().filter(|k| !o.contains_key(*k)) {
                let extra = EXTRA_KEYS.iter().any(|e| key == e || key.starts_with(&format!("{e}_")));
                assert!(extra, "{step}: key '{key}' is neither Optuna's nor one of our documented extras");
            }
        }
        (Value::Array(o), Value::Array(n)) => {
            assert_eq!(o.len(), n.len(), "{step}: list lengths differ: {optuna} vs {ours}");
            for (a, b) in o.iter().zip(n) {
                assert_same_shape(step, a, b);
            }
        }
        _ => assert_eq!(shape(optuna), shape(ours), "{step}: {optuna} vs {ours}"),
    }
}

/// A `value` line with every number replaced by N: the layout without the values.
fn value_layout(text: &str) -> String {
    let mut out = String::new();
    let mut number = String::new();
    let flush = |number: &mut String, out: &mut String| {
        if number.chars().any(|c| c.is_ascii_digit()) {
            out.push('N');
        } else {
            out.push_str(number);
        }
        number.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e') && !number.is_empty() {
            number.push(c);
        } else {
            flush(&mut number, &mut out);
            out.push(c);
        }
    }
    flush(&mut number, &mut out);
    out
}

#[test]
fn the_study_verbs_print_what_optunas_cli_prints() {
    let Some(python) = nightshift_testkit::optuna_python("the_study_verbs_print_what_optunas_cli_prints") else { return };
    let (optuna_dir, ours_dir) = (Sandbox::new(), Sandbox::new());
    let optuna = run_loop(optuna_dir.path(), &|args| {
        let mut cmd = Command::new(&python);
        cmd.args(["-c", "import sys; from optuna.cli import main; sys.exit(main())"]).args(args);
        cmd.env("PYTHONWARNINGS", "ignore");
        cmd
    });
    let ours = run_loop(ours_dir.path(), &|args| ours_dir.cmd(args));
    for ((step, theirs), (_, mine)) in optuna.iter().zip(&ours) {
        if step.contains("yaml") {
            let parse = |text: &str| -> Value { serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{step}: {e}: {text}")) };
            assert_same_shape(step, &parse(theirs), &parse(mine));
        } else if step.contains("-f value") || step.starts_with("study-names -f value") {
            assert_eq!(value_layout(theirs.trim_end()), value_layout(mine.trim_end()), "{step}:\n{theirs}\n{mine}");
        } else if theirs.trim_start().starts_with(['{', '[']) {
            let parse = |text: &str| -> Value { serde_json::from_str(text).unwrap_or_else(|e| panic!("{step}: {e}: {text}")) };
            assert_same_shape(step, &parse(theirs), &parse(mine));
            // Spaced as Python's json.dumps spaces it, for scripts that match `"number": ` (found by a user).
            let spacing = |text: &str| (text.contains("\": "), text.contains("\":") && !text.contains("\": "));
            assert_eq!(spacing(theirs), spacing(mine), "{step}: spacing\n{theirs}\n{mine}");
        } else {
            assert_eq!(theirs, mine, "{step}: plain output");
        }
    }
    // The loop did what it says: four trials, then nothing left after delete-study.
    let trials = &ours.iter().find(|(s, _)| s == "trials --study-name s -f json").unwrap().1;
    assert_eq!(serde_json::from_str::<Value>(trials).unwrap().as_array().unwrap().len(), 4);
    assert_eq!(ours.last().unwrap().1.trim(), "[]");
}

//! The bad-input corpus: every file in tests/bad_inputs/ is run as tests/bad_inputs/cases.yaml says
//! and must give a clear error (the file, line or field, and what would be valid) — never a panic,
//! never a hang, never a damaged study. Trial programs that break the protocol must end as FAIL
//! trials with the reason recorded.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{Sandbox, assert_integrity, command_spec, output_within, reason, study_db, study_trials};
use serde::Deserialize;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// No bad input may take longer than this to be rejected (trial cases: the whole sweep).
const LIMIT: Duration = Duration::from_secs(60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    file: String,
    #[serde(default)]
    run: Option<Vec<String>>,
    #[serde(default)]
    trial: bool,
    expect: Vec<String>,
}

fn corpus() -> PathBuf {
    Path::new(ROOT).join("tests/bad_inputs")
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(corpus().join("cases.yaml")).expect("tests/bad_inputs/cases.yaml");
    serde_yaml::from_str(&text).expect("cases.yaml parses")
}

/// Runs a `run:` case: the command fails, in time, without a panic, with every fragment.
fn run_command_case(case: &Case, args: &[String]) -> Result<(), String> {
    let sb = Sandbox::new();
    let file = corpus().join(&case.file);
    let args: Vec<String> =
        args.iter().map(|a| a.replace("{file}", &file.display().to_string()).replace("{root}", ROOT)).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = output_within(&mut sb.cmd(&args), LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        return Err(format!("succeeded; stdout: {}", String::from_utf8_lossy(&out.stdout)));
    }
    if stderr.contains("panicked") {
        return Err(format!("panicked: {stderr}"));
    }
    let missing: Vec<&String> = case.expect.iter().filter(|e| !stderr.contains(e.as_str())).collect();
    if !missing.is_empty() {
        return Err(format!("error lacks {missing:?}: {stderr}"));
    }
    // A command that opened the study file must have left it intact.
    let db = sb.path().join("s.db");
    if db.exists() {
        assert_integrity(&db);
    }
    Ok(())
}

/// Runs a `trial: true` case: a one-trial sweep of the program ends (with exit code 1: no trial
/// completed), the trial is a FAIL with every fragment in its reason, and the study file is intact.
fn run_trial_case(case: &Case) -> Result<(), String> {
    let sb = Sandbox::new();
    let program = corpus().join(&case.file);
    let command = format!("[python3, \"{}\"]", program.display());
    // Only silent_hang.py should meet the trial timeout; 15 s leaves the others room to start
    // Python and answer on a loaded 2-core machine (2 s timed out 9 of them under load).
    let budget = "{trials: 1, trial_timeout: 15s, max_consecutive_failures: 5}";
    sb.file("s.yaml", &command_spec("bad", budget, "{cpu: 1}", &command, ""));
    let out = output_within(&mut sb.cmd(&["run", "s.yaml", "--quiet"]), LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Its only trial failed, so the sweep has no result: exit code 1 and a message that says so.
    if out.status.code() != Some(1) || !stderr.contains("no trial completed") || stderr.contains("panicked") {
        return Err(format!("the sweep did not end as a sweep without a result ({}): {stderr}", out.status));
    }
    assert_integrity(&study_db(&sb, "bad"));
    let trials = study_trials(&sb, "bad");
    let [trial] = trials.as_slice() else { return Err(format!("one trial expected: {trials:?}")) };
    if trial["state"] != "FAIL" {
        return Err(format!("state {} (want FAIL): {trial}", trial["state"]));
    }
    let why = reason(trial);
    let missing: Vec<&String> = case.expect.iter().filter(|e| !why.contains(e.as_str())).collect();
    if !missing.is_empty() {
        return Err(format!("fail reason lacks {missing:?}: {why:?}"));
    }
    // However much the trial printed, the recorded reason stays readable.
    if why.len() > 2000 {
        return Err(format!("fail reason is {} bytes long", why.len()));
    }
    Ok(())
}

#[test]
fn every_bad_input_gives_a_clear_error() {
    let cases = cases();
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    // Run them a few at a time: each is its own process (or sweep) in its own sandbox.
    let failures: Vec<String> = std::thread::scope(|scope| {
        let chunks: Vec<&[Case]> = cases.chunks(cases.len().div_ceil(4)).collect();
        let workers: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    let mut failed = Vec::new();
                    for case in chunk {
                        let result = match (&case.run, case.trial) {
                            (Some(args), false) => run_command_case(case, args),
                            (None, true) => run_trial_case(case),
                            _ => Err("give exactly one of `run` and `trial: true`".into()),
                        };
                        if let Err(e) = result {
                            failed.push(format!("{}: {e}", case.file));
                        }
                    }
                    failed
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().expect("case runner")).collect()
    });
    assert!(failures.is_empty(), "{} of {} bad inputs misbehaved:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn every_file_of_the_corpus_is_a_case() {
    let listed: BTreeSet<String> = cases().into_iter().map(|c| c.file).collect();
    let mut on_disk = BTreeSet::new();
    for kind in ["spec", "space", "dataset", "checkpoint", "protocol"] {
        for entry in std::fs::read_dir(corpus().join(kind)).expect("corpus directory") {
            on_disk.insert(format!("{kind}/{}", entry.unwrap().file_name().to_string_lossy()));
        }
    }
    assert_eq!(on_disk, listed, "files in tests/bad_inputs/ and cases in cases.yaml differ");
}

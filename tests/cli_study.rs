//! The Optuna-style study verbs, driven through the real binary.

mod common;

use common::Sandbox;
use nightshift_search::Storage;
use serde_json::Value;

const SPACE: &str = r#"{"x": {"type": "float", "low": -10.0, "high": 10.0}, "k": {"type": "int", "low": 0, "high": 4}, "opt": {"type": "categorical", "choices": ["adam", "sgd"]}}"#;

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn ask_tell_loop_finds_the_minimum_and_lists_trials() {
    let sb = Sandbox::new();
    let storage = "sqlite:///study.db";
    sb.ok(&[
        "create-study",
        "--storage",
        storage,
        "--study-name",
        "quad",
        "--direction",
        "minimize",
        "--seed",
        "3",
        "--search-space",
        SPACE,
    ]);
    for i in 0..30u64 {
        let asked = json(&sb.ok(&["ask", "--storage", storage, "--study-name", "quad"]));
        assert_eq!(asked["number"], i);
        let x = asked["params"]["x"].as_f64().unwrap();
        assert!((-10.0..=10.0).contains(&x));
        assert!(asked["params"]["k"].is_i64(), "ints print as integers: {asked}");
        let value = (x - 2.0).powi(2);
        sb.ok(&[
            "tell",
            "--storage",
            storage,
            "--study-name",
            "quad",
            "--trial-number",
            &i.to_string(),
            "--values",
            &value.to_string(),
        ]);
    }
    let best = json(&sb.ok(&["best-trial", "--storage", storage, "--study-name", "quad", "--format", "json"]));
    let trials = json(&sb.ok(&["trials", "--storage", storage, "--study-name", "quad", "-f", "json"]));
    assert_eq!(trials.as_array().unwrap().len(), 30);
    let lowest = trials.as_array().unwrap().iter().map(|t| t["value"].as_f64().unwrap()).fold(f64::INFINITY, f64::min);
    assert_eq!(best["value"].as_f64().unwrap(), lowest, "best-trial is the lowest value told: {best}");
    assert!(trials.as_array().unwrap().iter().all(|t| t["state"] == "COMPLETE"));
    let table = sb.ok(&["trials", "--storage", storage, "--study-name", "quad"]);
    assert_eq!(table.lines().count(), 32, "header, rule and 30 rows:\n{table}");
    assert!(table.starts_with("number  state"));
    let studies = sb.ok(&["studies", "--storage", storage]);
    assert!(studies.contains("quad") && studies.contains("minimize") && studies.contains("30"), "{studies}");
}

#[test]
fn ask_creates_the_study_like_optuna_and_accepts_optuna_json() {
    let sb = Sandbox::new();
    let optuna = r#"{"lr": {"name": "FloatDistribution", "attributes": {"low": 1e-05, "high": 0.1, "log": true, "step": null}}, "bs": {"name": "CategoricalDistribution", "attributes": {"choices": [16, 32]}}}"#;
    let ask_tpe =
        ["ask", "--study-name", "s", "--search-space", optuna, "--sampler", "TPESampler", "--sampler-kwargs", r#"{"seed": 3}"#];
    let a = json(&sb.ok(&ask_tpe));
    assert_eq!(a["number"], 0);
    let lr = a["params"]["lr"].as_f64().unwrap();
    assert!((1e-5..=0.1).contains(&lr));
    assert!(sb.path().join("nightshift.db").exists(), "the default storage is a SQLite file in the working directory");
    // Another process with the same seed and the same history reproduces the suggestion for the
    // next number; start-up trials are not all the same point.
    let b = json(&sb.ok(&["ask", "--study-name", "s", "--search-space", optuna, "--sampler-kwargs", r#"{"seed": 3}"#]));
    assert_eq!(b["number"], 1);
    assert_ne!(a["params"], b["params"]);
    let sb2 = Sandbox::new();
    let a2 = json(&sb2.ok(&ask_tpe));
    assert_eq!(a2, a, "same seed, trial number and history → same suggestion in a brand-new process");
}

#[test]
fn tell_states_and_report_value() {
    let sb = Sandbox::new();
    sb.ok(&[
        "create-study",
        "--study-name",
        "p",
        "--direction",
        "maximize",
        "--pruner",
        "MedianPruner",
        "--pruner-kwargs",
        r#"{"n_startup_trials": 0}"#,
        "--search-space",
        SPACE,
    ]);
    let t0 = json(&sb.ok(&["ask", "--study-name", "p"]));
    assert_eq!(t0["number"], 0);
    // No completed trial yet: `best-trials` lists none, as Optuna's.
    assert_eq!(json(&sb.ok(&["best-trials", "--study-name", "p", "-f", "json"])), serde_json::json!([]));
    let r = json(&sb.ok(&["report-value", "--study-name", "p", "--trial-number", "0", "--step", "1", "--value", "0.9"]));
    assert_eq!(r["prune"], false);
    // A step reported again keeps its first value, and the answer says which value counts.
    let out =
        sb.cmd(&["report-value", "--study-name", "p", "--trial-number", "0", "--step", "1", "--value", "0.2"]).output().unwrap();
    assert_eq!(json(&String::from_utf8_lossy(&out.stdout))["value"], 0.9);
    assert!(String::from_utf8_lossy(&out.stderr).contains("0.9: that value is kept, 0.2 is ignored"));
    // Optuna refuses a value with a pruned or failed state, and a state it does not know (a usage error).
    let err = sb.fails(&["tell", "--study-name", "p", "--trial-number", "0", "--state", "pruned", "--values", "3"]);
    assert!(err.contains("--values cannot be given with --state pruned"), "{err}");
    let out = sb.cmd(&["tell", "--study-name", "p", "--trial-number", "0", "--state", "prunned"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.code() == Some(2) && err.contains("[possible values: complete, pruned, fail]"), "{err}");
    sb.ok(&["tell", "--study-name", "p", "--trial-number", "0", "--values", "0.9"]);
    sb.ok(&["ask", "--study-name", "p"]);
    sb.ok(&["tell", "--study-name", "p", "--trial-number", "1", "--state", "pruned"]);
    sb.ok(&["ask", "--study-name", "p"]);
    sb.ok(&["tell", "--study-name", "p", "--trial-number", "2", "--state", "fail"]);
    let err = sb.fails(&["tell", "--study-name", "p", "--trial-number", "2", "--values", "1"]);
    assert!(err.contains("already finished"), "{err}");
    sb.ok(&["tell", "--study-name", "p", "--trial-number", "2", "--values", "1", "--skip-if-finished"]);
    let trials = json(&sb.ok(&["trials", "--study-name", "p", "-f", "json"]));
    let states: Vec<&str> = trials.as_array().unwrap().iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["COMPLETE", "PRUNED", "FAIL"]);
    assert_eq!(trials[0]["intermediate_values"]["1"], 0.9);
}

#[test]
fn bad_input_gives_clear_errors() {
    let sb = Sandbox::new();
    let bad_space = sb.file("space.yaml", "lr: {type: float, low: 0.1, high: 0.01}\n");
    let err = sb.fails(&["ask", "--study-name", "s", "--search-space", &format!("@{}", bad_space.display())]);
    assert!(err.contains("space.yaml:1:1") && err.contains("'lr'") && err.contains("less than high"), "{err}");
    let err = sb.fails(&["tell", "--study-name", "nope", "--trial-number", "0", "--values", "1"]);
    assert!(err.contains("study 'nope' not found"), "{err}");
    let err = sb.fails(&["ask", "--study-name", "s", "--search-space", SPACE, "--sampler", "cmaes"]);
    assert!(err.contains("unknown sampler 'cmaes'"), "{err}");
    let err = sb.fails(&["ask", "--study-name", "s", "--search-space", SPACE, "--sampler-kwargs", "{seed: 3"]);
    assert!(err.contains("--sampler-kwargs is not valid JSON"), "{err}");
    let err = sb.fails(&["ask", "--study-name", "s", "--search-space", SPACE, "--sampler-kwargs", r#"{"n_ei_candidate": 3}"#]);
    assert!(err.contains("n_ei_candidate"), "{err}");
    let err = sb.fails(&["create-study", "--study-name", "s", "--direction", "sideways"]);
    assert!(err.contains("sideways"), "{err}");
    let err = sb.fails(&["ask", "--study-name", "s", "--search-space", "@missing.yaml"]);
    assert!(err.contains("missing.yaml"), "{err}");
    sb.ok(&["create-study", "--study-name", "dup"]);
    let err = sb.fails(&["create-study", "--study-name", "dup"]);
    assert!(err.contains("already exists"), "{err}");
    sb.ok(&["create-study", "--study-name", "dup", "--skip-if-exists"]);
    let err = sb.fails(&["tell", "--study-name", "dup", "--trial-number", "7", "--values", "1"]);
    assert!(err.contains("trial 7"), "{err}");
    let err = sb.fails(&["best-trial", "--study-name", "dup"]);
    assert!(err.contains("no completed trials"), "{err}");
    let not_db = sb.file("garbage.db", "this is not a database, just text that is long enough to look like a header......");
    let err = sb.fails(&["studies", "--storage", &not_db.display().to_string()]);
    assert!(err.contains("garbage.db"), "{err}");
    let err = sb.fails(&[
        "create-study",
        "--study-name",
        "g",
        "--sampler",
        "GridSampler",
        "--sampler-kwargs",
        r#"{"search_space": {"x": [0, 1]}}"#,
    ]);
    assert!(err.contains("the grid sampler takes no options besides seed, got: search_space"), "{err}");
    let err = sb.fails(&["create-study", "--study-name", ""]);
    assert!(err.contains("a study name cannot be empty"), "{err}");
    let err = sb.fails(&["create-study", "--study-name", "two\nlines"]);
    assert!(err.contains("control characters"), "{err}");
    // A negative number is a bad value of its option, not an unknown flag.
    let err = sb.fails(&["predict", "--weights", "w.safetensors", "--image", "x.png", "--top", "-1"]);
    assert!(err.contains("'-1'") && err.contains("--top") && err.contains("not in 1.."), "{err}");
    let err = sb.fails(&["trial", "--dataset", "d", "--epochs", "-3"]);
    assert!(err.contains("'-3'") && err.contains("--epochs") && !err.contains("unexpected argument"), "{err}");
    assert!(err.contains("expected a whole number, 0 or more") && !err.contains("invalid digit"), "{err}");
    let err = sb.fails(&["trials", "--study-name", "s", "--trial-number", "1.5"]);
    let err = if err.contains("unexpected argument") {
        sb.fails(&["tell", "--study-name", "s", "--trial-number", "1.5", "--values", "1"])
    } else {
        err
    };
    assert!(err.contains("'1.5'") && err.contains("expected a whole number") && !err.contains("0 or more"), "{err}");
    // An argument that is not UTF-8 (a Latin-1 file name) is an error naming it, not a panic.
    {
        use std::os::unix::ffi::OsStringExt;
        let latin1 = std::ffi::OsString::from_vec(b"caf\xe9.yaml".to_vec());
        let out = common::output_within(sb.cmd(&["check"]).arg(&latin1), common::HUNG_AFTER);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.code() == Some(1) && err.contains("cannot read spec caf\u{fffd}.yaml"), "{err}");
    }
    // A name longer than a table cell can be padded by `format!` (65,535) still lists.
    let long = "n".repeat(70_000);
    sb.ok(&["create-study", "--study-name", &long]);
    assert!(sb.ok(&["studies"]).contains(&long));
}

#[test]
fn eight_processes_ask_and_tell_on_one_sqlite_file() {
    let sb = Sandbox::new();
    let storage = format!("sqlite:///{}", "shared.db");
    sb.ok(&["create-study", "--storage", &storage, "--study-name", "c", "--seed", "1", "--search-space", SPACE]);
    let exe = env!("CARGO_BIN_EXE_nightshift");
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let dir = sb.path().to_path_buf();
            let storage = storage.clone();
            std::thread::spawn(move || {
                let mut numbers = Vec::new();
                for _ in 0..50 {
                    let out = std::process::Command::new(exe)
                        .current_dir(&dir)
                        .args(["ask", "--storage", &storage, "--study-name", "c"])
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "ask failed: {}", String::from_utf8_lossy(&out.stderr));
                    let asked: Value = serde_json::from_slice(&out.stdout).unwrap();
                    let n = asked["number"].as_u64().unwrap();
                    let x = asked["params"]["x"].as_f64().unwrap();
                    let out = std::process::Command::new(exe)
                        .current_dir(&dir)
                        .args([
                            "tell",
                            "--storage",
                            &storage,
                            "--study-name",
                            "c",
                            "--trial-number",
                            &n.to_string(),
                            "--values",
                            &(x * x).to_string(),
                        ])
                        .output()
                        .unwrap();
                    let stderr = String::from_utf8_lossy(&out.stderr);
                    assert!(out.status.success(), "tell failed: {stderr}");
                    assert!(!stderr.contains("locked"), "{stderr}");
                    numbers.push(n);
                }
                numbers
            })
        })
        .collect();
    let mut all: Vec<u64> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    all.sort_unstable();
    assert_eq!(all, (0..400).collect::<Vec<_>>(), "400 distinct trial numbers");
    let trials = json(&sb.ok(&["trials", "--storage", &storage, "--study-name", "c", "-f", "json"]));
    assert!(trials.as_array().unwrap().iter().all(|t| t["state"] == "COMPLETE"));
}

#[test]
fn values_parse_as_optunas_cli_and_ask_needs_no_space() {
    let sb = Sandbox::new();
    // Optuna's `ask` on a study without a search space returns a trial with empty params.
    let t0 = json(&sb.ok(&["ask", "--study-name", "e"]));
    assert_eq!(t0["params"], serde_json::json!({}), "{t0}");
    // Negative numbers in exponent syntax, which clap alone takes for flags.
    sb.ok(&["tell", "--study-name", "e", "--trial-number", "0", "--values", "-6.762234605393754e-06"]);
    sb.ok(&["ask", "--study-name", "e"]);
    let r = json(&sb.ok(&["report-value", "--study-name", "e", "--trial-number", "1", "--step", "1", "--value", "-3.3e-05"]));
    assert_eq!(r["value"], -3.3e-05);
    sb.ok(&["tell", "--study-name", "e", "--trial-number", "1", "--values", "-1e+300"]);
    let trials = json(&sb.ok(&["trials", "--study-name", "e", "-f", "json"]));
    assert_eq!(trials[0]["value"], -6.762234605393754e-06);
    assert_eq!(trials[1]["value"], -1e300);
    let err = sb.fails(&["tell", "--study-name", "e", "--trial-number", "0", "--values", "-x1"]);
    assert!(err.contains("'-x1' is not a number"), "{err}");
}

#[test]
fn the_default_sampler_is_auto_and_check_explains_it() {
    let sb = Sandbox::new();
    sb.ok(&["create-study", "--study-name", "d", "--search-space", SPACE]);
    let asked = json(&sb.ok(&["ask", "--study-name", "d"]));
    assert_eq!(asked["number"], 0);
    // GPSampler by Optuna's name, and auto by ours.
    sb.ok(&["create-study", "--study-name", "g", "--sampler", "GPSampler", "--search-space", SPACE]);
    sb.ok(&["create-study", "--study-name", "a", "--sampler", "auto", "--sampler-kwargs", r#"{"gp_max_trials": 50}"#]);
    let err = sb.fails(&["create-study", "--study-name", "b", "--sampler", "auto", "--sampler-kwargs", r#"{"n_ei": 3}"#]);
    assert!(err.contains("n_ei"), "{err}");
}

#[test]
fn studies_made_by_run_are_found_by_name_and_reads_create_no_file() {
    let sb = Sandbox::new();
    // A study where `nightshift run` keeps it, made here with the study verbs themselves.
    std::fs::create_dir_all(sb.path().join("reports/demo")).unwrap();
    let run_db = "sqlite:///reports/demo/study.db";
    sb.ok(&["create-study", "--storage", run_db, "--study-name", "demo", "--search-space", SPACE]);
    let asked = json(&sb.ok(&["ask", "--study-name", "demo"]));
    sb.ok(&["tell", "--study-name", "demo", "--trial-number", &asked["number"].to_string(), "--values", "1.5"]);
    assert!(!sb.path().join("nightshift.db").exists(), "ask and tell used the run's storage");
    let best = json(&sb.ok(&["best-trial", "--study-name", "demo", "-f", "json"]));
    assert_eq!(best["value"], 1.5);
    sb.ok(&["create-study", "--study-name", "loop"]);
    assert!(sb.path().join("nightshift.db").exists(), "new studies of the study verbs go to ./nightshift.db");
    let studies = json(&sb.ok(&["studies", "-f", "json"]));
    let listed: Vec<(&str, &str)> =
        studies.as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap(), s["storage"].as_str().unwrap())).collect();
    assert_eq!(listed, [("loop", "sqlite:///nightshift.db"), ("demo", "sqlite:///reports/demo/study.db")]);
    assert_eq!(sb.ok(&["study-names"]), "loop\ndemo\n");

    // Reading a study that is nowhere creates nothing and says where it looked and what is there.
    let fresh = Sandbox::new();
    for verb in [&["trials", "--study-name", "nope"][..], &["best-trial", "--study-name", "nope"], &["report", "nope"]] {
        let err = fresh.fails(verb);
        assert!(err.contains("study 'nope' not found in sqlite:///reports/nope/study.db or sqlite:///nightshift.db"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // A sweep whose spec named its own `storage:` left reports/<study>/ without a study file: say where to look.
    let elsewhere = Sandbox::new();
    std::fs::create_dir_all(elsewhere.path().join("reports/nope/trials")).unwrap();
    let err = elsewhere.fails(&["trials", "--study-name", "nope"]);
    assert!(
        err.contains("reports/nope exists without a study.db: if its spec names a `storage:`, pass that URL with --storage"),
        "{err}"
    );
    let err = sb.fails(&["trials", "--study-name", "nope"]);
    assert!(err.contains("studies there: loop"), "{err}");
    // A mistyped name is shown the studies of the other runs' files too.
    assert!(err.contains("; other studies: demo (sqlite:///reports/demo/study.db)"), "{err}");
    let err = fresh.fails(&["trials", "--storage", "sqlite:///other.db", "--study-name", "nope"]);
    assert!(err.contains("no database at 'other.db'") && err.contains("create-study"), "{err}");
    fresh.ok(&["studies"]);
    let left: Vec<_> = std::fs::read_dir(fresh.path()).unwrap().collect();
    assert!(left.is_empty(), "read-only verbs created {left:?}");
}

/// Runs `nightshift args` in `sb` as a user who cannot write the study's directory: as root,
/// the unprivileged user `nobody` (via util-linux's `setpriv`); otherwise ourselves, the caller
/// having taken the write permissions away.
fn as_reader(sb: &Sandbox, args: &[&str]) -> std::process::Output {
    let mut cmd = if running_as_root() {
        let mut cmd = std::process::Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_nightshift")]);
        cmd
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_nightshift"))
    };
    cmd.current_dir(sb.path()).args(args).env_remove("NIGHTSHIFT_STORAGE");
    common::output_within(&mut cmd, common::HUNG_AFTER)
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")))
}

#[test]
fn a_user_who_cannot_write_the_study_reads_it_and_is_told_why_writes_fail() {
    use std::os::unix::fs::PermissionsExt;
    const TEST: &str = "a_user_who_cannot_write_the_study_reads_it_and_is_told_why_writes_fail";
    if running_as_root() && std::process::Command::new("setpriv").arg("--version").output().is_err() {
        return nightshift_testkit::skip(
            TEST,
            "util-linux's `setpriv` (to read as an unprivileged user)",
            "apt-get install util-linux",
        );
    }
    let sb = Sandbox::new();
    let storage = "sqlite:///shared/s.db";
    sb.ok(&["create-study", "--storage", storage, "--study-name", "s", "--search-space", SPACE]);
    sb.ok(&["ask", "--storage", storage, "--study-name", "s"]);
    sb.ok(&["tell", "--storage", storage, "--study-name", "s", "--trial-number", "0", "--values", "2.5"]);
    sb.ok(&["ask", "--storage", storage, "--study-name", "s"]);
    let mode = |path: &std::path::Path, mode: u32| std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    mode(sb.path(), 0o755);
    let shared = sb.path().join("shared");
    let stdout = |out: &std::process::Output| {
        assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    };

    // A team's directory anyone may write: reading creates nothing beside the file. (SQLite made its
    // -wal and -shm files there, owned by the reader, and the owner's next write then failed: found by a
    // user.)
    mode(&shared, 0o777);
    if !running_as_root() {
        mode(&shared.join("s.db"), 0o444);
    }
    let listing = || -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(&shared).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    };
    stdout(&as_reader(&sb, &["trials", "--storage", storage, "--study-name", "s", "-f", "json"]));
    stdout(&as_reader(&sb, &["studies", "--storage", storage]));
    assert_eq!(listing(), ["s.db"]);
    if !running_as_root() {
        mode(&shared, 0o555);
    } else {
        mode(&shared, 0o755);
    }

    // No writer has the file open: no -wal or -shm file, and none can be made beside it.
    let read = |sb: &Sandbox| {
        let trials = json(&stdout(&as_reader(sb, &["trials", "--storage", storage, "--study-name", "s", "-f", "json"])));
        let best = json(&stdout(&as_reader(sb, &["best-trial", "--storage", storage, "--study-name", "s", "-f", "json"])));
        assert_eq!(stdout(&as_reader(sb, &["study-names", "--storage", storage])), "s\n");
        (trials.as_array().unwrap().len(), best["value"].as_f64().unwrap())
    };
    assert_eq!(read(&sb), (2, 2.5));
    let tell = as_reader(&sb, &["tell", "--storage", storage, "--study-name", "s", "--trial-number", "1", "--values", "1"]);
    let err = String::from_utf8_lossy(&tell.stderr);
    assert!(!tell.status.success() && err.contains("could only be opened read-only"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // The owner's sweep is running: its open connection has just committed, and the commit sits in
    // the -wal file, not yet copied into the database. The reader sees it all the same.
    if running_as_root() {
        let owner = nightshift_store::SqliteStorage::open(shared.join("s.db")).unwrap();
        let study = owner.load_study("s").unwrap();
        let trial = owner.trial(study.id, 1).unwrap();
        owner.finish_trial(trial.id, nightshift_search::TrialState::Complete, Some(1.0)).unwrap();
        assert!(std::fs::metadata(shared.join("s.db-wal")).unwrap().len() > 0, "the commit is in the -wal file");
        assert_eq!(read(&sb), (2, 1.0));
    } else {
        // We are the reader ourselves (the owner's side needs a second user): give the directory back.
        mode(&shared, 0o755);
    }
}

#[test]
fn delete_study_and_set_user_attr_as_optuna() {
    let sb = Sandbox::new();
    sb.ok(&["create-study", "--study-name", "a", "--search-space", SPACE]);
    sb.ok(&["create-study", "--study-name", "b"]);
    sb.ok(&["ask", "--study-name", "a"]);
    sb.ok(&["study", "set-user-attr", "--study-name", "a", "-k", "owner", "--value", "-ana"]);
    let studies = json(&sb.ok(&["studies", "-f", "json"]));
    assert_eq!(studies[0]["user_attrs"]["owner"], "-ana");
    assert_eq!(studies[0]["direction"], serde_json::json!(["MINIMIZE"]));
    let out = sb.ok(&["delete-study", "--study-name", "a"]);
    assert_eq!(out, "", "delete-study prints nothing on stdout, as Optuna's");
    assert_eq!(sb.ok(&["study-names"]), "b\n");
    let err = sb.fails(&["delete-study", "--study-name", "a"]);
    assert!(err.contains("study 'a' not found") && err.contains("studies there: b"), "{err}");
    // The name is free again, and the new study starts empty.
    sb.ok(&["create-study", "--study-name", "a"]);
    assert_eq!(json(&sb.ok(&["trials", "--study-name", "a", "-f", "json"])), serde_json::json!([]));
}

#[test]
fn formats_yaml_value_and_flatten() {
    let sb = Sandbox::new();
    sb.ok(&["create-study", "--study-name", "f", "--search-space", r#"{"x": {"type": "float", "low": 0.0, "high": 1.0}}"#]);
    let value = sb.ok(&["ask", "--study-name", "f", "-f", "value"]);
    assert!(value.starts_with("0 {'x': 0.") && value.ends_with("}\n"), "{value:?}");
    let yaml = sb.ok(&["ask", "--study-name", "f", "-f", "yaml", "--flatten"]);
    let parsed: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(parsed["number"], 1);
    assert!(parsed["params_x"].is_f64(), "{yaml}");
    sb.ok(&["tell", "--study-name", "f", "--trial-number", "0", "--values", "0.25"]);
    let best = sb.ok(&["best-trial", "--study-name", "f", "-f", "value"]);
    let fields: Vec<&str> = best.split(' ').collect();
    assert_eq!((fields[0], fields[1]), ("0", "0.25"), "{best}");
    assert!(best.trim_end().ends_with(" COMPLETE"), "{best}");
    let trials: serde_json::Value = serde_yaml::from_str(&sb.ok(&["trials", "--study-name", "f", "-f", "yaml"])).unwrap();
    assert_eq!(trials[1]["state"], "RUNNING");
    assert!(trials[1]["datetime_complete"].is_null());
    let start = trials[0]["datetime_start"].as_str().unwrap();
    assert!(start.len() == 19 && start.as_bytes()[10] == b' ', "Optuna's %Y-%m-%d %H:%M:%S: {start}");
    let duration = trials[0]["duration"].as_str().unwrap();
    assert!(duration.starts_with("0:00:"), "Python's timedelta: {duration}");
}

#[test]
fn results_on_stdout_logs_on_stderr_and_colours_on_request() {
    let sb = Sandbox::new();
    sb.ok(&["create-study", "--study-name", "c"]);
    sb.ok(&["ask", "--study-name", "c"]);
    let out = sb.cmd(&["tell", "--study-name", "c", "--trial-number", "0", "--values", "1"]).output().unwrap();
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("trial 0 finished: COMPLETE value=1"));
    let out = sb.cmd(&["-q", "ask", "--study-name", "c"]).output().unwrap();
    assert!(out.stderr.is_empty(), "-q: {}", String::from_utf8_lossy(&out.stderr));
    let err = |args: &[&str], no_color: bool| {
        let mut cmd = sb.cmd(args);
        if no_color {
            cmd.env("NO_COLOR", "1");
        } else {
            cmd.env_remove("NO_COLOR");
        }
        String::from_utf8(cmd.output().unwrap().stderr).unwrap()
    };
    assert!(err(&["--color", "always", "trials", "--study-name", "x"], true).starts_with("\x1b[1;31merror\x1b[0m: "));
    assert!(err(&["trials", "--study-name", "x", "--color=never"], false).starts_with("error: "));
    assert!(err(&["trials", "--study-name", "x"], true).starts_with("error: "), "NO_COLOR");
    assert!(err(&["trials", "--study-name", "x"], false).starts_with("error: "), "auto: stderr is not a terminal");
}

#[test]
fn shell_completions_name_the_verbs() {
    let sb = Sandbox::new();
    let bash = sb.ok(&["completions", "bash"]);
    for verb in ["create-study", "delete-study", "set-user-attr", "best-trials", "study-names", "run", "report"] {
        assert!(bash.contains(verb), "the bash script completes {verb}");
    }
    assert!(sb.ok(&["completions", "zsh"]).contains("#compdef nightshift"));
    assert!(sb.ok(&["completions", "fish"]).contains("complete -c nightshift"));
    let err = sb.fails(&["completions", "tcsh"]);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
}

/// The sampler comparison's objective on SPACE: separable, minimum 0 at x = 2, k = 3, opt = adam.
fn sampler_objective(params: &Value) -> f64 {
    let x = params["x"].as_f64().unwrap();
    let k = params["k"].as_i64().unwrap() as f64;
    let penalty = if params["opt"] == "sgd" { 25.0 } else { 0.0 };
    (x - 2.0).powi(2) + 4.0 * (k - 3.0).powi(2) + penalty
}

/// The best value after `budget` ask/tell pairs of `sampler` (seeded), each call a fresh process as in a
/// shell loop.
fn best_after(sampler: &str, seed: u64, budget: u64) -> f64 {
    let sb = Sandbox::new();
    let seed = seed.to_string();
    sb.ok(&["create-study", "--study-name", "cmp", "--sampler", sampler, "--seed", &seed, "--search-space", SPACE]);
    let mut best = f64::INFINITY;
    for _ in 0..budget {
        let asked = json(&sb.ok(&["ask", "--study-name", "cmp"]));
        let value = sampler_objective(&asked["params"]);
        let number = asked["number"].to_string();
        sb.ok(&["tell", "--study-name", "cmp", "--trial-number", &number, "--values", &value.to_string()]);
        best = best.min(value);
    }
    best
}

/// TPE must do what random search cannot: with the same budget, reach a better point on (nearly) every
/// seed. Measured with this objective and budget (seeds 0-19, 2026-12-01): TPE beat random search with the
/// same seed on 20 of 20 (both share the 10 random start-up trials, so TPE must improve on them); random
/// search (seed s) beat random search (seed s + 1000) on 7 of 20. A sampler no better than random passes
/// 9 of 10 with probability about 1 % (binomial, p = 1/2). At 20 trials TPE won only 21 of 30: too few
/// trials after the start-up. (The test this replaces, "within 1 of the optimum after 30 trials", was
/// passed by random search about 96 % of the time.)
#[test]
fn tpe_beats_random_search_on_nine_of_ten_seeds() {
    const BUDGET: u64 = 40;
    let runs: Vec<_> = (0..10u64)
        .map(|seed| std::thread::spawn(move || (best_after("tpe", seed, BUDGET), best_after("random", seed, BUDGET))))
        .collect();
    let results: Vec<(f64, f64)> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let wins = results.iter().filter(|(tpe, random)| tpe < random).count();
    assert!(wins >= 9, "TPE beat random search on {wins} of 10 seeds (best values, TPE vs random): {results:?}");
}

#[test]
fn an_ask_that_creates_its_study_says_so() {
    // Found by a user: a typo in `--study-name` made a new study silently (Optuna's ask refuses).
    let sb = Sandbox::new();
    let out = sb.cmd(&["ask", "--study-name", "typo"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("created study 'typo': it did not exist"), "{stderr}");
    let again = sb.cmd(&["ask", "--study-name", "typo"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&again.stderr).contains("created study"), "said once");
}

#[test]
fn delete_study_refuses_a_study_a_sweep_is_running_on() {
    // Found by a user: the delete succeeded and the sweep stopped with "no trial with id 3".
    let sb = Sandbox::new();
    sb.ok(&["create-study", "--study-name", "busy", "--search-space", SPACE]);
    let storage = nightshift_store::SqliteStorage::open(sb.path().join("nightshift.db")).unwrap();
    let study = storage.load_study("busy").unwrap();
    let beating = nightshift_search::NewTrial { heartbeat: true, ..Default::default() };
    storage.create_trial(study.id, &beating).unwrap();
    let err = sb.fails(&["delete-study", "--study-name", "busy"]);
    assert!(err.contains("study 'busy' has trials running now ([0]") && err.contains("stop it first"), "{err}");
    // A trial asked by hand (no heartbeat) does not hold a delete up.
    sb.ok(&["create-study", "--study-name", "asked", "--search-space", SPACE]);
    sb.ok(&["ask", "--study-name", "asked"]);
    sb.ok(&["delete-study", "--study-name", "asked"]);
}

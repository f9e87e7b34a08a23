//! `nightshift run / resume / check`, driven through the real binary with fake trial programs
//! (tests/fixtures/fake_trial.py). Heartbeats and grace periods are short so the suite stays fast.

mod common;

use common::{HUNG_AFTER, Sandbox, count, events, output_within, reason, run_with_workers, spec, study_trials, wait_for_events};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

#[test]
fn never_more_than_k_trials_per_device() {
    let sb = Sandbox::new();
    // The first four trials wait for one another, so all four slots are provably busy at once whatever the load.
    let args = "--steps, 2, --sleep, 0.05, --wait-for-starts, 4";
    sb.fake_nvidia_smi(&common::smi_listing(2));
    sb.file("s.yaml", &spec("k2", "{trials: 10}", "{gpu: [0, 1], trials_per_device: 2}", args, ""));
    let out = sb.ok(&["run", "s.yaml"]);
    assert!(out.contains("budget reached"), "{out}");
    let trials = study_trials(&sb, "k2");
    assert_eq!(trials.len(), 10);
    assert!(trials.iter().all(|t| t["state"] == "COMPLETE"), "{trials:?}");
    // Concurrency as the children saw it: sweep start/end events per GPU.
    let ev = events(&sb);
    assert!(!ev.iter().any(|e| e["event"] == "gate-timeout"), "four trials never ran at once: {ev:?}");
    let mut timeline: Vec<(f64, i32, String)> = ev
        .iter()
        .filter(|e| e["event"] == "start" || e["event"] == "end")
        .map(|e| (e["t"].as_f64().unwrap(), if e["event"] == "start" { 1 } else { -1 }, e["gpu"].as_str().unwrap().to_string()))
        .collect();
    timeline.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut now: BTreeMap<String, i32> = BTreeMap::new();
    let (mut peak_total, mut peak_dev) = (0, 0);
    for (_, delta, gpu) in &timeline {
        *now.entry(gpu.clone()).or_default() += delta;
        peak_dev = peak_dev.max(now[gpu]);
        peak_total = peak_total.max(now.values().sum::<i32>());
    }
    assert!(peak_dev <= 2, "a device ran {peak_dev} trials at once");
    assert_eq!(peak_total, 4, "all 4 slots should have been busy at some point");
    assert!(trials.iter().all(|t| t["system_attrs"]["device"] == "cuda:0" || t["system_attrs"]["device"] == "cuda:1"));
}

#[test]
fn prune_answers_are_honoured_and_ignoring_them_escalates() {
    let sb = Sandbox::new();
    // Threshold pruner: any report below 0.5 is pruned at once.
    let extra = "pruner: {type: threshold, lower: 0.5}\n";
    sb.file("s.yaml", &spec("prune", "{trials: 8}", "{cpu: 2}", "--steps, 4, --sleep, 0.05", extra));
    sb.ok(&["run", "s.yaml", "--quiet"]);
    let trials = study_trials(&sb, "prune");
    assert_eq!(trials.len(), 8);
    let ev = events(&sb);
    for t in &trials {
        let x = t["params"]["x"].as_f64().unwrap();
        let n = t["number"].as_u64().unwrap();
        if x + 0.01 < 0.5 {
            assert_eq!(t["state"], "PRUNED", "{t}");
            assert_eq!(t["intermediate_values"].as_object().unwrap().len(), 1, "pruned at the first report: {t}");
            assert!(ev.iter().any(|e| e["trial"] == n && e["event"] == "pruned"), "the child saw the prune answer");
        } else {
            assert_eq!(t["state"], "COMPLETE", "{t}");
            assert_eq!(t["intermediate_values"].as_object().unwrap().len(), 4);
        }
    }
    assert!(trials.iter().any(|t| t["state"] == "PRUNED") && trials.iter().any(|t| t["state"] == "COMPLETE"), "seed gives both");

    // A child that ignores the prune answer and SIGTERM: SIGKILL after 2 × kill_grace.
    let sb = Sandbox::new();
    let extra = "pruner: {type: threshold, lower: 5.0}\n";
    sb.file("s.yaml", &spec("stubborn", "{trials: 2}", "{cpu: 2}", "--mode, ignore_prune, --steps, 4, --sleep, 0.05", extra));
    // Both trials pruned: the sweep has no result.
    sb.no_result(&["run", "s.yaml", "--quiet"]);
    for t in study_trials(&sb, "stubborn") {
        assert_eq!(t["state"], "PRUNED", "{t}");
        assert!(t["system_attrs"]["exit"].as_str().unwrap().contains("SIGKILL"), "{t}");
    }
}

#[test]
fn failures_are_recorded_with_their_reasons() {
    let cases = [
        (
            "crash",
            "",
            "exited with code 3; last stderr: Traceback (most recent call last): | ZeroDivisionError: division by zero",
        ),
        ("nan", "", "diverged: NaN at step 2"),
        ("garbage", "", "protocol error: `report.step` must be an integer from 0 to 9223372036854775807"),
        ("noresult", "", "exited with code 0 without reporting a result"),
        ("hang", "trial_timeout: 1s, ", "timed out after 1s"),
    ];
    for (mode, budget_extra, want) in cases {
        let sb = Sandbox::new();
        let budget = format!("{{{budget_extra}trials: 2, max_consecutive_failures: 10}}");
        sb.file("s.yaml", &spec(mode, &budget, "{cpu: 2}", &format!("--mode, {mode}, --sleep, 0.05"), ""));
        sb.no_result(&["run", "s.yaml", "--quiet"]);
        let trials = study_trials(&sb, mode);
        assert_eq!(trials.len(), 2, "{mode}");
        for t in &trials {
            assert_eq!(t["state"], "FAIL", "{mode}: {t}");
            assert!(reason(t).starts_with(want), "{mode}: reason {:?} should start with {want:?}", reason(t));
        }
        let log = std::fs::read_to_string(sb.path().join(format!("reports/{mode}/nightshift.log"))).unwrap();
        assert!(log.contains("trial finished"), "{mode}: tracing log is written");
        assert!(!log.contains("Some("), "{mode}: plain values, not debug forms: {log}");
    }
}

#[test]
fn a_trial_asked_by_hand_and_never_told_does_not_hold_up_a_sweep() {
    // Found by a user: a killed `ask` loop left one RUNNING trial without heartbeats, and every later
    // `run` whose budget it filled waited for it, silently, until it was told.
    let sb = Sandbox::new();
    sb.file("s.yaml", &spec("asked", "{trials: 2}", "{cpu: 1}", "", ""));
    sb.ok(&["run", "s.yaml", "--quiet"]);
    sb.file("s.yaml", &spec("asked", "{trials: 4}", "{cpu: 1}", "", ""));
    let asked = sb.ok(&["ask", "--study-name", "asked"]);
    assert!(asked.contains("\"number\": 2"), "{asked}");
    let start = std::time::Instant::now();
    let out = output_within(&mut sb.cmd(&["run", "s.yaml"]), std::time::Duration::from_secs(60));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(start.elapsed() < std::time::Duration::from_secs(50), "it waited for the asked trial");
    let states: Vec<String> = study_trials(&sb, "asked").iter().map(|t| t["state"].as_str().unwrap().to_string()).collect();
    assert_eq!(states, ["COMPLETE", "COMPLETE", "RUNNING", "COMPLETE"]);
}

#[test]
fn a_sweep_stopped_by_an_error_leaves_no_trial_running() {
    // Found by a user: a trial directory that could not be made (or a full disk) ended the run with the
    // other slot's live trial left RUNNING, for the next run to fail as stale after 30 s.
    let sb = Sandbox::new();
    sb.file("s.yaml", &spec("blocked", "{trials: 4}", "{cpu: 2}", "--sleep, 2", ""));
    std::fs::create_dir_all(sb.path().join("reports/blocked/trials")).unwrap();
    std::fs::write(sb.path().join("reports/blocked/trials/1"), "a file where trial 1's directory goes").unwrap();
    let err = sb.fails(&["run", "s.yaml", "--quiet"]);
    assert!(err.contains("trials/1"), "{err}");
    let trials = study_trials(&sb, "blocked");
    assert!(trials.iter().all(|t| t["state"] != "RUNNING"), "{trials:?}");
    let (zero, one) = (&trials[0], &trials[1]);
    assert_eq!(
        (zero["state"].as_str(), zero["system_attrs"]["fail_reason"].as_str()),
        (Some("FAIL"), Some("interrupted")),
        "{zero}"
    );
    assert!(one["system_attrs"]["fail_reason"].as_str().is_some_and(|r| r.starts_with("not started: ")), "{one}");
    assert!(trials.iter().any(|t| t["state"] == "WAITING" && t["system_attrs"]["retry_of"] == 0), "re-enqueued: {trials:?}");
}

#[test]
fn consecutive_failures_stop_the_sweep_with_a_clear_message() {
    let sb = Sandbox::new();
    sb.file(
        "s.yaml",
        &spec("broken", "{trials: 20, max_consecutive_failures: 3}", "{cpu: 1}", "--mode, crash, --sleep, 0.01", ""),
    );
    let err = sb.fails(&["run", "s.yaml", "--quiet"]);
    assert!(err.contains("3 consecutive failed trials") && err.contains("ZeroDivisionError"), "{err}");
    assert_eq!(study_trials(&sb, "broken").len(), 3);
    // It names the last failed trial's own log, which holds the traceback.
    assert!(err.contains("reports/broken/trials/2/stderr.log"), "{err}");
    let log = std::fs::read_to_string(sb.path().join("reports/broken/trials/2/stderr.log")).unwrap();
    assert!(log.contains("ZeroDivisionError"), "{log}");
    // Said as it happens ("stopping:") and as the error, not a third time in the summary.
    let out = output_within(&mut sb.cmd(&["resume", "broken"]), HUNG_AFTER);
    let both = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(both.matches("3 consecutive failed trials").count(), 2, "{both}");
}

#[test]
fn kill_9_mid_sweep_then_resume() {
    let sb = Sandbox::new();
    let budget = 10;
    // Trials 0-2 complete; 3 and 4 report once, then hold until `release` exists: the kill finds them mid-flight.
    let args = "--steps, 3, --sleep, 0.05, --hold-from, 3";
    sb.file("s.yaml", &spec("crashy", &format!("{{trials: {budget}}}"), "{cpu: 2}", args, ""));
    let mut child = sb.cmd(&["run", "s.yaml", "--quiet"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    wait_for_events(&sb, "three trials ended and two are held", |ev| count(ev, "end") >= 3 && count(ev, "held") >= 2);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    sb.file("release", "");
    let before = study_trials(&sb, "crashy");
    let running: Vec<u64> = before.iter().filter(|t| t["state"] == "RUNNING").map(|t| t["number"].as_u64().unwrap()).collect();
    let complete: Vec<Value> = before.iter().filter(|t| t["state"] == "COMPLETE").cloned().collect();
    assert_eq!(running, [3, 4], "killed with the held trials mid-flight: {before:?}");
    assert_eq!(complete.len(), 3, "{before:?}");

    let out = sb.ok(&["resume", "crashy"]);
    assert!(out.contains("budget reached"), "{out}");
    let after = study_trials(&sb, "crashy");
    let numbers: Vec<u64> = after.iter().map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..budget).collect::<Vec<_>>(), "no duplicate or missing trial numbers");
    for n in &running {
        let t = &after[*n as usize];
        assert_eq!(t["state"], "FAIL", "stale trial {n}: {t}");
        assert!(reason(t).contains("heartbeat"), "stale reason: {}", reason(t));
    }
    for c in &complete {
        let n = c["number"].as_u64().unwrap() as usize;
        assert_eq!(after[n]["value"], c["value"], "completed trials are intact");
        assert_eq!(after[n]["params"], c["params"]);
    }
    assert!(after.iter().all(|t| t["state"] != "RUNNING"), "no zombie RUNNING trials");
    let states: BTreeSet<&str> = after.iter().map(|t| t["state"].as_str().unwrap()).collect();
    assert_eq!(states, BTreeSet::from(["COMPLETE", "FAIL"]));
}

#[test]
fn compare_gives_each_stratum_an_equal_share() {
    let sb = Sandbox::new();
    let text = spec("strata", "{trials: 9}", "{cpu: 2}", "--steps, 1, --sleep, 0.01", "compare: k\n")
        .replace("params:\n", "params:\n  k: {type: categorical, choices: [a, b, c]}\n");
    sb.file("s.yaml", &text);
    sb.ok(&["run", "s.yaml", "--quiet"]);
    let trials = study_trials(&sb, "strata");
    for k in ["a", "b", "c"] {
        assert_eq!(trials.iter().filter(|t| t["params"]["k"] == k).count(), 3, "{k}: {trials:?}");
    }
}

/// `nightshift run` starts a study; workers join it with nothing but the storage URL and the study
/// name, each with its own `--devices`; together they run exactly the budget, strata included.
fn workers_share_one_budget(sb: &Sandbox, storage: &str, study: &str) -> Vec<Value> {
    let budget = 12;
    let text = spec(study, &format!("{{trials: {budget}}}"), "{cpu: 1}", "--steps, 2, --sleep, 0.1", "compare: k\n")
        .replace("params:\n", "params:\n  k: {type: categorical, choices: [a, b, c]}\n");
    sb.file("s.yaml", &text);
    run_with_workers(sb, "s.yaml", storage, study);
    let out = sb.ok(&["trials", "--storage", storage, "--study-name", study, "-f", "json"]);
    let trials: Vec<Value> = serde_json::from_str::<Value>(out.trim()).unwrap().as_array().unwrap().clone();
    let numbers: Vec<u64> = trials.iter().map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..budget).collect::<Vec<_>>(), "exactly the budget, numbered once each");
    assert!(trials.iter().all(|t| t["state"] == "COMPLETE"), "{trials:?}");
    // The workers' own --devices (two slots each) were used, not the spec's single slot.
    assert!(trials.iter().any(|t| t["system_attrs"]["slot"] == 1), "{trials:?}");
    for k in ["a", "b", "c"] {
        assert!(trials.iter().any(|t| t["params"]["k"] == k), "stratum {k} never ran");
    }
    trials
}

#[test]
fn workers_join_by_name_and_share_the_budget_on_sqlite() {
    let sb = Sandbox::new();
    workers_share_one_budget(&sb, "sqlite:///reports/pool/study.db", "pool");
}

#[test]
fn workers_join_by_name_and_share_the_budget_on_postgres() {
    let Some(url) = postgres_server("workers_join_by_name_and_share_the_budget_on_postgres") else { return };
    let study = format!("pool-{}-{}", std::process::id(), nightshift_search::now_unix() as u64);
    workers_share_one_budget(&Sandbox::new(), &url, &study);
}

#[test]
fn bad_device_flags_are_refused_with_the_valid_forms() {
    let sb = Sandbox::new();
    sb.file("s.yaml", &spec("flags", "{trials: 1}", "{cpu: 1}", "", ""));
    let err = sb.fails(&["run", "s.yaml", "--devices", "gpu:x"]);
    assert!(err.contains("--devices") && err.contains("valid: auto, cpu, cpu:N, gpu:0,1"), "{err}");
    let err = sb.fails(&["worker", "--storage", "sqlite:///nope.db", "--study", "s", "--trials-per-device", "2"]);
    assert!(err.contains("--devices"), "{err}");
}

#[test]
fn check_and_bad_specs() {
    let sb = Sandbox::new();
    sb.file("good.yaml", &spec("good", "{trials: 4, timeout: 2h}", "{cpu: 2}", "--steps, 1", ""));
    let out = sb.ok(&["check", "good.yaml"]);
    assert!(
        out.contains("2 slot(s): cpu, cpu") && out.contains("4 trials, timeout 7200s") && out.contains("x: float [0, 1]"),
        "{out}"
    );
    assert!(out.contains("sampler:  random (seed 1)"), "{out}");
    assert!(!sb.path().join("reports/good").exists(), "check runs nothing");

    let bad = [
        (spec("b", "{trials: 4, timeout: soon}", "{cpu: 2}", "", ""), "bad.yaml:4:", "invalid duration"),
        (spec("b", "{trials: 4}", "{cpu: 2}", "\"{lr}\"", ""), "bad.yaml:6:1: field `command`", "unknown placeholder {lr}"),
        (spec("b", "{trials: 4}", "{cpu: 2}", "", "reenqueue_stail: true\n"), "bad.yaml:11:", "unknown field `reenqueue_stail`"),
        (
            spec("b", "{trials: 4}", "{cpu: 2}", "", "").replace("high: 1.0", "high: -1.0"),
            "bad.yaml:8:3: field `params.x`",
            "low",
        ),
        (spec("b", "{trials: 4}", "{gpus: 2}", "", ""), "field `devices`", "valid: auto"),
        (
            spec("b", "{trials: 4}", "{cpu: 2}", "", "").replace("python3", "no-such-program-xyz"),
            "bad.yaml:6:1: field `command`",
            "no-such-program-xyz' not found",
        ),
    ];
    for (text, location, message) in bad {
        sb.file("bad.yaml", &text);
        let err = sb.fails(&["check", "bad.yaml"]);
        assert!(err.contains(location) && err.contains(message), "want {location:?} and {message:?} in: {err}");
        let err = sb.fails(&["run", "bad.yaml"]);
        assert!(err.contains(location) && err.contains(message), "run validates the same way: {err}");
    }
}

#[test]
fn keys_a_trial_misspells_are_named_in_a_warning() {
    let sb = Sandbox::new();
    // `metric` for `metrics`: the value still counts, the metrics would be lost without a word.
    sb.file(
        "t.py",
        "import json\n\
         print(json.dumps({'report': {'step': 1, 'value': 0.5, 'metric': {'loss': 1.0}}}), flush=True)\n\
         print(json.dumps({'result': {'value': 0.5}}), flush=True)\n",
    );
    sb.file("s.yaml", &common::command_spec("typo", "{trials: 1}", "{cpu: 1}", "[python3, t.py]", ""));
    let out = output_within(&mut sb.cmd(&["run", "s.yaml", "--quiet"]), HUNG_AFTER);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("trial 0: its protocol lines had keys nightshift does not read: report.metric"), "{stderr}");
    let log = std::fs::read_to_string(sb.path().join("reports/typo/nightshift.log")).expect("nightshift.log");
    assert!(log.contains("report.metric"), "the study's log has it too: {log}");
    assert_eq!(study_trials(&sb, "typo")[0]["state"], "COMPLETE");
}

#[test]
fn a_resume_with_another_search_space_says_what_changed() {
    space_change_is_said("moved", "sqlite:///reports/moved/study.db");
}

#[test]
fn a_resume_with_another_search_space_says_what_changed_on_postgres() {
    let Some(url) = postgres_server("a_resume_with_another_search_space_says_what_changed_on_postgres") else { return };
    // `check` reads the study there without creating or migrating anything.
    space_change_is_said(&format!("moved-{}-{}", std::process::id(), nightshift_search::now_unix() as u64), &url);
}

/// `check` and `run` of a spec whose `params` differ from those `study` was created with (in
/// `storage`) say what changed; unchanged, nothing is said.
fn space_change_is_said(study: &str, storage: &str) {
    let sb = Sandbox::new();
    let first = spec(study, "{trials: 2}", "{cpu: 1}", "", &format!("storage: \"{storage}\"\n"));
    sb.file("s.yaml", &first);
    sb.ok(&["run", "s.yaml", "--quiet"]);
    // Unchanged: nothing said.
    assert!(!sb.ok(&["check", "s.yaml"]).contains("search space differs"));
    let widened = first.replace("{trials: 2}", "{trials: 3}").replace(
        "x: {type: float, low: 0.0, high: 1.0}",
        "x: {type: float, low: 0.0, high: 2.0}\n  y: {type: int, low: 1, high: 3}",
    );
    sb.file("s.yaml", &widened);
    let check = sb.ok(&["check", "s.yaml"]);
    let said = format!(
        "the search space differs from the one study '{study}' was created with (x was float [0, 1], now float [0, 2]; y is new)"
    );
    assert!(check.contains(&said), "{check}");
    let out = output_within(&mut sb.cmd(&["run", "s.yaml"]), HUNG_AFTER);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let both = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(both.contains(&said), "{both}");
    let trials = sb.ok(&["trials", "--storage", storage, "--study-name", study, "-f", "json"]);
    assert_eq!(serde_json::from_str::<serde_json::Value>(trials.trim()).unwrap().as_array().unwrap().len(), 3);

    // The other direction: `check` refuses it, at its line, as `run` would (found by a user: check said OK).
    let flipped = widened.replace("direction: maximize", "direction: minimize");
    assert_ne!(flipped, widened);
    sb.file("s.yaml", &flipped);
    for verb in ["check", "run"] {
        let err = sb.fails(&[verb, "s.yaml"]);
        let said = format!("study '{study}' already exists with direction maximize, and this spec says minimize");
        assert!(err.contains("s.yaml:") && err.contains("field `objective.direction`") && err.contains(&said), "{verb}: {err}");
    }
}

/// CI's PostgreSQL server (`NIGHTSHIFT_TEST_POSTGRES`); `None` after saying loudly that `test` skips
/// (a failure under `NIGHTSHIFT_TEST_STRICT`).
fn postgres_server(test: &str) -> Option<String> {
    let url = std::env::var("NIGHTSHIFT_TEST_POSTGRES").ok();
    if url.is_none() {
        nightshift_testkit::skip(
            test,
            "a PostgreSQL server",
            "set NIGHTSHIFT_TEST_POSTGRES=postgres://user@host/db; .ci/run starts one",
        );
    }
    url
}

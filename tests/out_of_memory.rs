//! Out of memory as an outcome of its own, through the real binary: trials that run out of memory
//! (the fake trial raises what `torch.cuda.OutOfMemoryError` is, and the protocol helper's
//! `catch_out_of_memory` reports it) are stored as FAIL with reason `oom`, do not stop the sweep
//! as consecutive failures, are retried once alone when they shared their GPU, and are avoided by
//! the sampler afterwards.

mod common;

use common::{FAKE, Sandbox, command_spec, events, reason, study_trials};
use serde_json::Value;

fn is_oom(t: &Value) -> bool {
    t["state"] == "FAIL" && t["system_attrs"]["fail_kind"] == "oom" && reason(t).starts_with("oom: CUDA out of memory")
}

fn fake(args: &str) -> String {
    format!("[python3, \"{FAKE}\", \"--log\", \"events.jsonl\", \"--steps\", \"1\", \"--sleep\", \"0.01\", {args}]")
}

/// (start, end) times of each trial's process, from the fake trial's event log.
fn spans(ev: &[Value]) -> std::collections::BTreeMap<u64, (f64, f64)> {
    let mut spans = std::collections::BTreeMap::new();
    for e in ev {
        let (n, t) = (e["trial"].as_u64().unwrap(), e["t"].as_f64().unwrap());
        let span = spans.entry(n).or_insert((f64::NAN, f64::NAN));
        match e["event"].as_str() {
            Some("start") => span.0 = t,
            Some("end") => span.1 = t,
            _ => {}
        }
    }
    spans
}

#[test]
fn the_sampler_learns_to_avoid_batches_that_ran_out_of_memory() {
    let sb = Sandbox::new();
    // Larger batches score a little higher, so the search is pulled toward the region that does not fit.
    let params = "  batch_size: {type: categorical, choices: [16, 32, 64, 128, 256, 512]}\n";
    let spec =
        command_spec("oom-avoid", "{trials: 30, max_consecutive_failures: 3}", "{cpu: 2}", &fake("\"--oom-from\", \"128\""), "")
            .replace("sampler: {type: random, seed: 1}", "sampler: {type: auto, seed: 3}")
            .replace("params:\n", &format!("params:\n{params}"));
    sb.file("s.yaml", &spec);
    let out = sb.ok(&["run", "s.yaml"]);
    assert!(out.contains("budget reached"), "out-of-memory trials do not count as consecutive failures: {out}");
    assert!(out.contains("out of memory)"), "the summary counts them: {out}");
    let trials = study_trials(&sb, "oom-avoid");
    assert_eq!(trials.len(), 30);
    let batch = |t: &Value| t["params"]["batch_size"].as_f64().unwrap();
    for t in &trials {
        assert_eq!(is_oom(t), batch(t) >= 128.0, "{t}");
        if batch(t) < 128.0 {
            assert_eq!(t["state"], "COMPLETE", "{t}");
        }
    }
    // After the 10 space-filling start-up trials, and once a trial has run out of memory.
    let first_oom =
        trials.iter().find(|t| is_oom(t)).map(|t| t["number"].as_u64().unwrap()).expect("some trial ran out of memory");
    let later: Vec<f64> = trials.iter().filter(|t| t["number"].as_u64().unwrap() > first_oom.max(10)).map(batch).collect();
    let avoided = later.iter().filter(|&&b| b < 128.0).count();
    eprintln!("auto through `nightshift run`: {avoided} of {} later trials avoided the out-of-memory region", later.len());
    assert!(avoided as f64 >= 0.9 * later.len() as f64, "{avoided} of {}: {later:?}", later.len());
    // The trials table says why.
    let table = sb.ok(&["trials", "--storage", "sqlite:///reports/oom-avoid/study.db", "--study-name", "oom-avoid"]);
    assert!(table.contains("oom: CUDA out of memory"), "{table}");
}

/// Runs a sweep of fake trials with `args` on one GPU shared by two trials; returns its trials.
/// `all_oom`: every trial runs out of memory, so the sweep ends with no result, an error.
fn run_on_one_shared_gpu(sb: &Sandbox, study: &str, trials: u64, args: &str, all_oom: bool) -> Vec<Value> {
    let budget = format!("{{trials: {trials}, max_consecutive_failures: 1}}");
    sb.file("s.yaml", &command_spec(study, &budget, "{gpu: [0], trials_per_device: 2}", &fake(args), ""));
    let args = ["run", "s.yaml", "--quiet"];
    let stdout = if all_oom {
        let (stdout, stderr) = sb.no_result(&args);
        assert!(stderr.contains("every trial ran out of memory"), "{stderr}");
        stdout
    } else {
        sb.ok(&args)
    };
    // max_consecutive_failures 1: a failure counted as one would have stopped the sweep.
    assert!(stdout.contains("budget reached"), "out-of-memory trials are not consecutive failures: {stdout}");
    study_trials(sb, study)
}

#[test]
fn out_of_memory_beside_another_trial_is_retried_once_alone() {
    let sb = Sandbox::new();
    // Trials 0 and 1 start together on one GPU (each waits for the other) and run out of memory;
    // later trials fit.
    let trials = run_on_one_shared_gpu(&sb, "oom-retry", 4, "\"--wait-for-starts\", \"2\", \"--oom-below-trial\", \"2\"", false);
    let by_number = |n: u64| trials.iter().find(|t| t["number"] == n).unwrap_or_else(|| panic!("trial {n}: {trials:?}"));
    assert!(is_oom(by_number(0)) && is_oom(by_number(1)), "{trials:?}");
    let ev = events(&sb);
    assert!(!ev.iter().any(|e| e["event"] == "gate-timeout"), "trials 0 and 1 never shared the GPU: {ev:?}");
    let spans = spans(&ev);
    let retries: Vec<&Value> = trials.iter().filter(|t| t["system_attrs"]["retry_of"].is_u64()).collect();
    let mut retried: Vec<u64> = retries.iter().map(|t| t["system_attrs"]["retry_of"].as_u64().unwrap()).collect();
    retried.sort();
    assert_eq!(retried, [0, 1], "each out-of-memory trial is retried once: {trials:?}");
    for retry in &retries {
        assert_eq!(retry["state"], "COMPLETE", "{retry}");
        assert_eq!(retry["system_attrs"]["run_alone"], true, "{retry}");
        assert_eq!(retry["params"], by_number(retry["system_attrs"]["retry_of"].as_u64().unwrap())["params"]);
        let n = retry["number"].as_u64().unwrap();
        let (start, end) = spans[&n];
        for (other, (s, e)) in spans.iter().filter(|(m, _)| **m != n) {
            assert!(*e < start || *s > end, "trial {other} ran beside the retry {n}: {spans:?}");
        }
    }
    // The budget of 4 counts the re-runs in place of the trials they retry: 2 more ran normally.
    assert_eq!(trials.len(), 6, "{trials:?}");
}

#[test]
fn a_retry_that_runs_out_of_memory_alone_is_not_retried_again() {
    let sb = Sandbox::new();
    let trials = run_on_one_shared_gpu(&sb, "oom-always", 3, "\"--wait-for-starts\", \"2\", \"--mode\", \"oom\"", true);
    assert!(trials.iter().all(is_oom), "{trials:?}");
    let retries: Vec<u64> = trials.iter().filter_map(|t| t["system_attrs"]["retry_of"].as_u64()).collect();
    assert_eq!(retries.len(), 2, "trials 0 and 1 shared the GPU and are retried, their retries are not: {trials:?}");
    assert!(retries.iter().all(|&r| r < 2), "{trials:?}");
    // 0, 1, their two retries, and one more trial for the budget of 3 (which ran alone: no retry).
    assert_eq!(trials.len(), 5, "{trials:?}");
}

//! Tournament mode (`compare: {param, budget_per_arm, replicate_top, seeds}`): the verdict's calibration with
//! a stand-in objective whose arms have known true means, run in-process through the same tournament steps
//! the sweep takes; then end-to-end through `nightshift run`, a `kill -9` and `resume`, and shared workers,
//! with the fake trial's stand-in mode (tests/fixtures/fake_trial.py `--arm-means`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use common::{Sandbox, count, events, run_with_workers, spec, study_trials, wait_for_events};
use nightshift_report::verdict::{ArmOutcome, verdict};
use nightshift_search::sampler::mix_seed;
use nightshift_search::{
    Direction, FrozenTrial, InMemoryStorage, NewStudy, ParamValue, PrunerConfig, Role, SamplerConfig, SearchSpace, Study,
    TellOutcome, Tournament,
};
use serde_json::Value;

/// A standard normal draw from a seed (Box–Muller on two mixed uniforms).
fn gauss(seed: u64) -> f64 {
    let u = |salt: &str| ((mix_seed(seed, 0, salt) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    (-2.0 * u("u1").ln()).sqrt() * (std::f64::consts::TAU * u("u2")).cos()
}

/// One tournament in memory over arms with true means `means` and noise `sd`; returns the winner's index.
fn tournament_winner(means: &[f64], sd: f64, seeds: u64, study_seed: u64) -> Option<usize> {
    let arms: Vec<ParamValue> = (0..means.len()).map(|i| ParamValue::Str(format!("arm{i}"))).collect();
    let choices: Vec<String> = (0..means.len()).map(|i| format!("arm{i}")).collect();
    let space = SearchSpace::parse(
        &format!("k: {{type: categorical, choices: [{}]}}\nx: {{type: float, low: 0.0, high: 1.0}}\n", choices.join(", ")),
        "t",
    )
    .unwrap();
    let mut new = NewStudy::new("calibration", Direction::Maximize, study_seed);
    new.sampler = SamplerConfig::Random;
    new.pruner = PrunerConfig::None;
    new.search_space = Some(space.clone());
    let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
    let tournament = Tournament { param: "k".into(), arms, budget_per_arm: 6, replicate_top: 1, seeds };
    study
        .run_tournament(&tournament, &space, |trial, seed| {
            let arm = tournament.arm_of(trial).expect("every trial has an arm");
            TellOutcome::Value(means[arm] + sd * gauss(seed))
        })
        .unwrap();
    let trials = study.trials().unwrap();
    // Exactly the budget: 6 search trials per arm, one configuration per arm with `seeds` replicates.
    for arm in 0..means.len() {
        assert_eq!(trials.iter().filter(|t| tournament.in_arm(t, arm)).count(), 6);
    }
    let replicates: Vec<&FrozenTrial> = trials.iter().filter(|t| Role::of(t) == Some(Role::Replicate)).collect();
    assert_eq!(replicates.len() as u64, means.len() as u64 * seeds);
    let values: Vec<ArmOutcome> = (0..means.len())
        .map(|arm| {
            let values = replicates.iter().filter(|t| tournament.arm_of(t) == Some(arm)).map(|t| t.value.unwrap()).collect();
            ArmOutcome::from_replicates(values)
        })
        .collect();
    verdict(&values, Direction::Maximize).winner
}

/// How often the verdict names arm 0 / names nobody over 40 seeded tournaments.
fn rates(means: &[f64], seeds: u64) -> (usize, usize) {
    let winners: Vec<Option<usize>> = (0..40).map(|s| tournament_winner(means, 0.01, seeds, 1000 + s)).collect();
    (winners.iter().filter(|w| **w == Some(0)).count(), winners.iter().filter(|w| w.is_none()).count())
}

#[test]
fn calibration_a_clear_winner_is_named_and_equal_arms_tie() {
    // Three arms, the first ahead by 4 noise SDs, its best configuration re-run with 5 seeds (with 3 seeds the
    // Welch tests have too few degrees of freedom: such a winner was named in 31/40).
    let (named, _) = rates(&[0.84, 0.80, 0.80], 5);
    let (wrong, ties) = rates(&[0.80, 0.80, 0.80], 5);
    println!("clear winner (margin 4 SD, 5 seeds): named in {named}/40; equal arms: tie in {ties}/40, arm 0 named in {wrong}/40");
    assert!(named >= 38, "a 4-SD winner was named in only {named}/40 tournaments (need ≥ 95%)");
    assert!(ties >= 36, "equal arms were called a tie in only {ties}/40 tournaments (need ≥ 90%)");
}

fn tournament_spec(study: &str, args: &str, extra: &str) -> String {
    spec(
        study,
        "{trials: 9}",
        "{cpu: 2}",
        args,
        &format!("compare: {{param: k, budget_per_arm: 3, replicate_top: 1, seeds: 3}}\n{extra}"),
    )
    .replace("params:\n", "params:\n  k: {type: categorical, choices: [a, b, c]}\n")
}

const ARMS: &str = "--steps, 2, --sleep, 0.01, --arm-means, \"a=0.9,b=0.5,c=0.5\", --noise, 0.01";

fn role(t: &Value) -> &str {
    t["system_attrs"]["tournament"].as_str().unwrap_or("")
}

/// Every arm ran its 3 search places once, and every (arm's best configuration, seed) one COMPLETE replicate.
fn assert_tournament_complete(trials: &[Value]) {
    let fresh = |r: &str| trials.iter().filter(|t| role(t) == r && t["system_attrs"].get("retry_of").is_none()).count();
    assert_eq!((fresh("search"), fresh("replicate")), (9, 9), "{trials:?}");
    for k in ["a", "b", "c"] {
        let search: Vec<&Value> = trials
            .iter()
            .filter(|t| role(t) == "search" && t["params"]["k"] == k && t["system_attrs"].get("retry_of").is_none())
            .collect();
        assert_eq!(search.len(), 3, "arm {k}: {trials:?}");
        let best = search
            .iter()
            .filter(|t| t["state"] == "COMPLETE")
            .max_by(|a, b| a["value"].as_f64().unwrap().total_cmp(&b["value"].as_f64().unwrap()))
            .unwrap();
        let replicates: Vec<&Value> =
            trials.iter().filter(|t| role(t) == "replicate" && t["params"]["k"] == k && t["state"] == "COMPLETE").collect();
        assert_eq!(replicates.len(), 3, "arm {k}: three replicates: {trials:?}");
        for r in &replicates {
            assert_eq!(r["system_attrs"]["replicate_of"], best["number"], "replicates re-run the arm's best: {r}");
            assert_eq!(r["params"], best["params"], "with its parameters: {r}");
            assert!(r["intermediate_values"].as_object().unwrap().len() == 2, "never pruned: {r}");
        }
    }
    let seeds: BTreeSet<u64> =
        trials.iter().map(|t| t["system_attrs"]["seed"].as_u64().expect("every trial has a seed")).collect();
    assert_eq!(seeds.len(), trials.len(), "every trial its own seed");
}

#[test]
fn a_tournament_runs_end_to_end_and_names_the_clear_winner() {
    let sb = Sandbox::new();
    // One slot: trials run in number order, so which trials the pruner has seen is the same every run.
    let text = tournament_spec("duel", ARMS, "pruner: {type: median, n_startup_trials: 1}\n").replace("{cpu: 2}", "{cpu: 1}");
    sb.file("s.yaml", &text);
    let out = sb.ok(&["check", "s.yaml"]);
    assert!(out.contains("tournament over k (3 arms × 3 search trials = 9"), "{out}");
    let out = sb.ok(&["run", "s.yaml"]);
    assert!(out.contains("budget reached"), "{out}");
    let trials = study_trials(&sb, "duel");
    assert_eq!(trials.len(), 18, "9 search trials and 9 replicates, counted apart from budget.trials: {trials:?}");
    assert_tournament_complete(&trials);
    // The seed the trial saw is the one recorded, and replicates knew they were.
    for e in events(&sb).iter().filter(|e| e["event"] == "start") {
        let t = &trials[e["trial"].as_u64().unwrap() as usize];
        assert_eq!(e["seed"].as_str().unwrap(), t["system_attrs"]["seed"].as_u64().unwrap().to_string());
        assert_eq!(e["replicate"] == "1", role(t) == "replicate", "{e}");
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path().join("reports/duel/summary.json")).unwrap()).unwrap();
    let c = &summary["comparison"];
    assert_eq!((c["param"].as_str(), c["winner"].as_str()), (Some("k"), Some("a")), "{summary}");
    let arms = c["arms"].as_array().unwrap();
    assert_eq!(arms.iter().map(|a| a["value"].as_str().unwrap()).collect::<Vec<_>>(), ["a", "b", "c"]);
    for a in arms {
        assert_eq!((a["trials"].as_u64(), a["replicates"].as_array().unwrap().len()), (Some(3), 3), "{a}");
        let (mean, lo, hi) = (a["mean"].as_f64().unwrap(), a["ci95"][0].as_f64().unwrap(), a["ci95"][1].as_f64().unwrap());
        assert!(lo < mean && mean < hi, "{a}");
        let epochs: u64 =
            trials.iter().filter(|t| t["params"]["k"] == a["value"]).map(|t| t["system_attrs"]["epochs"].as_u64().unwrap()).sum();
        assert_eq!(a["epochs_spent"].as_u64(), Some(epochs), "the arm's search trials and replicates: {a}");
        assert!(a["best_params"]["x"].is_number(), "{a}");
    }
    // The pruner compared each trial with its own arm: an arm-a trial was pruned with a value no trial of
    // arms b and c comes near (their true means are 0.4 lower).
    let others_best =
        trials.iter().filter(|t| t["params"]["k"] != "a").filter_map(|t| t["value"].as_f64()).fold(f64::MIN, f64::max);
    assert!(
        trials.iter().any(|t| t["params"]["k"] == "a" && t["state"] == "PRUNED" && t["value"].as_f64().unwrap() > others_best),
        "no arm-a trial pruned within its arm: {trials:?}"
    );
    let html = std::fs::read_to_string(sb.path().join("reports/duel/index.html")).unwrap();
    assert!(html.contains("winner: k = a") && html.contains("(tournament)"), "the page says it");
    assert_eq!(html.matches("(replicate of #").count(), 9, "the trial table marks the replicates");
}

#[test]
fn kill_9_mid_tournament_then_resume_finishes_every_place_once() {
    let sb = Sandbox::new();
    // Trials 10 and 11 (replicates) report once, then hold until `release` exists: the kill finds them mid-flight.
    let args = format!("{ARMS}, --hold-from, 10");
    sb.file("s.yaml", &tournament_spec("crashy", &args, "reenqueue_stale: true\n"));
    let mut child = sb.cmd(&["run", "s.yaml", "--quiet"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    wait_for_events(&sb, "two replicates held", |ev| count(ev, "held") >= 2);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    sb.file("release", "");
    let before = study_trials(&sb, "crashy");
    let running: Vec<u64> = before.iter().filter(|t| t["state"] == "RUNNING").map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(running, [10, 11], "killed with the held replicates mid-flight: {before:?}");
    assert!(running.iter().all(|&n| role(&before[n as usize]) == "replicate"));

    let out = sb.ok(&["resume", "crashy"]);
    assert!(out.contains("budget reached"), "{out}");
    let after = study_trials(&sb, "crashy");
    let numbers: Vec<u64> = after.iter().map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..20).collect::<Vec<_>>(), "18 places plus the 2 re-runs of the killed replicates: {after:?}");
    for n in running {
        assert_eq!(after[n as usize]["state"], "FAIL");
        let retry: Vec<&Value> = after.iter().filter(|t| t["system_attrs"]["retry_of"] == n).collect();
        assert_eq!(retry.len(), 1, "trial {n} re-run once");
        assert_eq!((role(retry[0]), &retry[0]["params"]), ("replicate", &after[n as usize]["params"]));
    }
    assert_tournament_complete(&after);
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(sb.path().join("reports/crashy/summary.json")).unwrap()).unwrap();
    assert_eq!(summary["comparison"]["winner"], "a", "{summary}");
}

#[test]
fn workers_share_a_tournament() {
    let sb = Sandbox::new();
    let storage = "sqlite:///reports/pool/study.db";
    // Four processes on a loaded machine: heartbeats roomy enough that no live trial is taken for dead.
    let text = tournament_spec("pool", ARMS, "")
        .replace("{cpu: 2}", "{cpu: 1}")
        .replace("heartbeat: {interval: 200ms, stale_after: 1s}", "heartbeat: {interval: 250ms, stale_after: 20s}");
    assert!(text.contains("stale_after: 20s"), "{text}");
    sb.file("s.yaml", &text);
    run_with_workers(&sb, "s.yaml", storage, "pool");
    let trials = study_trials(&sb, "pool");
    assert_eq!(trials.len(), 18, "no place taken twice: {trials:?}");
    assert!(trials.iter().all(|t| t["state"] == "COMPLETE"), "{trials:?}");
    assert_tournament_complete(&trials);
    let mut starts: BTreeMap<u64, usize> = BTreeMap::new();
    for e in events(&sb).iter().filter(|e| e["event"] == "start") {
        *starts.entry(e["trial"].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(starts.len(), 18);
    assert!(starts.values().all(|&n| n == 1), "every trial launched once: {starts:?}");
}

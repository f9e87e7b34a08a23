//! One trial from ask to record: ask the study (with `compare:` strata and re-runs), build its command and
//! environment, judge its reports, record its outcome; and stale trials of dead orchestrators.

use nightshift_search::attrs;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use nightshift_search::{
    Error as SearchError, FrozenTrial, Params, PruneSession, Role, Step, Study, TellOutcome, Tournament, TrialState, now_unix,
    trial_seed,
};
use serde_json::Value;

use super::budget::{budget_used, next_stratum};
use super::events::{Event, Observer};
use super::{RunOptions, blocking};
use crate::error::{Error, Result};
use crate::pool::Slot;
use crate::process::{Judge, Outcome, TrialLaunch, TrialRun, kill_leftovers};
use crate::protocol::{Answer, Report};
use crate::spec::Spec;

/// Records reports through the study and asks its pruner.
pub(super) struct StudyJudge {
    pub(super) study: Arc<Study>,
    pub(super) number: u64,
    pub(super) trial_id: i64,
    pub(super) slot: Slot,
    pub(super) observer: Arc<dyn Observer>,
    pub(super) peers: Peers,
    /// The trial's reports and the finished trials its pruner compares with, kept between reports.
    pub(super) pruning: std::sync::Mutex<PruneSession>,
}

/// Which trials the pruner compares a trial with.
pub(super) enum Peers {
    /// Every trial of the study.
    All,
    /// The search trials of its tournament arm.
    Arm(Tournament, usize),
    /// None: a tournament replicate is never pruned.
    NeverPrune,
}

impl Peers {
    /// The peers of `trial` under `spec`.
    pub(super) fn of(spec: &Spec, trial: &FrozenTrial) -> Self {
        let Some(tournament) = spec.compare.as_ref().and_then(|c| c.tournament.as_ref()) else { return Peers::All };
        match (Role::of(trial), tournament.arm_of(trial)) {
            (Some(Role::Search), Some(arm)) => Peers::Arm(tournament.clone(), arm),
            (Some(Role::Replicate), _) => Peers::NeverPrune,
            _ => Peers::All,
        }
    }
}

impl Judge for StudyJudge {
    fn judge(&self, report: &Report, value: f64) -> std::result::Result<Answer, String> {
        self.record(report, value)?;
        crate::fault_point("mid-trial");
        self.observer.event(&Event::TrialReport { slot: &self.slot, number: self.number, step: report.step, value });
        // Reports of one trial are judged one at a time: the lock is never contended.
        let mut pruning = self.pruning.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        pruning.record(report.step, value);
        let prune = match &self.peers {
            Peers::All => pruning.should_prune(&self.study, &|_| true),
            Peers::Arm(tournament, arm) => pruning.should_prune(&self.study, &|t| tournament.in_arm(t, *arm)),
            Peers::NeverPrune => Ok(false),
        }
        .map_err(|e| format!("cannot ask the pruner: {e}"))?;
        Ok(if prune { Answer::Prune } else { Answer::Continue })
    }

    fn record(&self, report: &Report, value: f64) -> std::result::Result<(), String> {
        // By id: looking the trial up by number would read all its reports again for each one.
        self.study
            .storage()
            .report_intermediate(self.trial_id, report.step, value)
            .map_err(|e| format!("cannot record report: {e}"))?;
        if !report.metrics.is_empty() {
            let metrics: serde_json::Map<String, Value> = report.metrics.clone().into_iter().collect();
            let _ = self.study.storage().set_trial_attr(self.trial_id, attrs::METRICS, &Value::Object(metrics), true);
        }
        Ok(())
    }
}

pub(super) struct Running {
    /// A tournament replicate (scored on the test split, never pruned).
    pub(super) replicate: bool,
    pub(super) slot: Slot,
    pub(super) trial_id: i64,
    pub(super) attempt: u64,
    pub(super) launched: Instant,
    /// Another trial ran on the same GPU at some point of this one's run.
    pub(super) shared: bool,
    /// This trial re-runs one that ran out of memory beside another ([`attrs::RUN_ALONE`]).
    pub(super) run_alone: bool,
}

/// Whether `trial` must run alone on its device (it re-runs an out-of-memory trial).
pub(super) fn runs_alone(trial: &FrozenTrial) -> bool {
    trial.system_attrs.get(attrs::RUN_ALONE).and_then(Value::as_bool) == Some(true)
}

/// Asks the next trial (an enqueued one first; with `compare`, fixing the least-used stratum; in a
/// tournament, the next place of its current phase), and marks it alive, placed and seeded.
pub(super) async fn ask_next(study: &Arc<Study>, spec: &Spec, trials: &[FrozenTrial], slot: &Slot) -> Result<FrozenTrial> {
    let study = study.clone();
    let slot = slot.clone();
    let space = spec.space.clone();
    if let Some(tournament) = spec.compare.as_ref().and_then(|c| c.tournament.clone()) {
        let direction = study.record().direction;
        let role = match tournament.next(trials, direction) {
            Step::Launch(role) => role,
            Step::Wait | Step::Done => Role::Search,
        };
        let max_trials = tournament.max_trials(trials, role, direction);
        return blocking(move || -> Result<FrozenTrial> {
            let trial = study.ask_tournament(&tournament, &space, role, max_trials, true)?;
            crate::fault_point("during-ask");
            place(&study, &trial, slot)
        })
        .await?;
    }
    let fixed: Option<Params> = match &spec.compare {
        Some(compare) if !trials.iter().any(|t| t.state == TrialState::Waiting) => {
            let value = next_stratum(trials, &compare.param, &compare.values).clone();
            Some([(compare.param.clone(), value)].into())
        }
        _ => None,
    };
    // The storage counts every non-WAITING trial; the budget does not count trials replaced by a
    // re-run, so allow one more per replaced (finished) trial. Replacements only grow, so an old snapshot
    // errs on the safe side: all workers together never exceed `budget.trials`.
    let counted = trials.iter().filter(|t| t.state != TrialState::Waiting).count() as u64;
    let max_trials = spec.budget.trials.saturating_add(counted.saturating_sub(budget_used(trials)));
    blocking(move || -> Result<FrozenTrial> {
        // Beating from its creation on: if we die before the first tick, the trial still goes stale.
        let trial = study.ask_fixed(&space, &fixed.unwrap_or_default(), Some(max_trials), true)?;
        crate::fault_point("during-ask");
        place(&study, &trial, slot)
    })
    .await?
}

/// Records where and when an asked trial runs, and its seed.
fn place(study: &Study, trial: &FrozenTrial, slot: Slot) -> Result<FrozenTrial> {
    let storage = study.storage();
    storage.set_trial_attr(trial.id, attrs::DEVICE, &slot.device.to_string().into(), true)?;
    storage.set_trial_attr(trial.id, attrs::SLOT, &slot.index.into(), true)?;
    storage.set_trial_attr(trial.id, attrs::START, &now_unix().into(), true)?;
    storage.set_trial_attr(trial.id, attrs::SEED, &trial_seed(study.record().seed, trial.number).into(), true)?;
    Ok(storage.trial(study.record().id, trial.number)?)
}

/// Fails stale RUNNING trials, kills what is left of their processes on this machine, and
/// re-enqueues their parameters when the spec says so.
pub(super) async fn recover_stale(study: &Arc<Study>, spec: &Spec, reports_dir: &Path, at_start: bool) -> Result<Vec<u64>> {
    let study = study.clone();
    let grace = spec.heartbeat.stale_after.as_secs_f64();
    let reenqueue = spec.reenqueue_stale;
    let reports_dir = reports_dir.to_path_buf();
    blocking(move || -> Result<Vec<u64>> {
        let stale = study.storage().fail_stale_trials(study.record().id, grace)?;
        for trial in &stale {
            let leftovers = kill_leftovers(&trial_dir(&reports_dir, trial.number)?);
            tracing::warn!(
                trial = trial.number,
                at_start,
                leftovers,
                "trial was RUNNING with a stale heartbeat (its orchestrator died): failed"
            );
            if reenqueue {
                requeue(&study, trial, runs_alone(trial))?;
            }
        }
        Ok(stale.iter().map(|t| t.number).collect())
    })
    .await?
}

/// Enqueues `trial`'s parameters again as a new trial that replaces it in the budget (and in its
/// tournament place: the role and a replicate's source go with it); `alone`: it is to run with no
/// other trial on its device.
fn requeue(study: &Study, trial: &FrozenTrial, alone: bool) -> Result<FrozenTrial> {
    let params: Params = trial
        .params
        .iter()
        .filter(|(k, _)| study.record().search_space.as_ref().is_some_and(|s| s.get(k).is_some()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let attempt = trial.system_attrs.get(attrs::ATTEMPT).and_then(Value::as_u64).unwrap_or(0) + 1;
    let mut marks: BTreeMap<String, Value> =
        [(attrs::RETRY_OF.to_string(), trial.number.into()), (attrs::ATTEMPT.to_string(), attempt.into())].into();
    for key in [attrs::TOURNAMENT_ROLE, attrs::REPLICATE_OF] {
        if let Some(v) = trial.system_attrs.get(key) {
            marks.insert(key.to_string(), v.clone());
        }
    }
    if alone {
        marks.insert(attrs::RUN_ALONE.to_string(), true.into());
    }
    Ok(study.enqueue_with(&params, marks)?)
}

pub(super) async fn record_outcome(
    study: &Arc<Study>,
    spec: &Spec,
    number: u64,
    r: &Running,
    run: &TrialRun,
) -> Result<(FrozenTrial, bool)> {
    let study = study.clone();
    let outcome = run.outcome.clone();
    let (trial_id, attempt, retries) = (r.trial_id, r.attempt, spec.budget.retries as u64);
    // Out of memory beside another trial on the same GPU may be the neighbour's doing: once, alone.
    let (oom_retry, run_alone) = (r.shared && !r.run_alone, r.run_alone);
    let (epochs, exit) = (run.last_step, run.exit.clone());
    // A tournament replicate is scored on the test split when the trainer reported it.
    let test_metric = spec.program.replicate_metric().filter(|_| r.replicate).map(str::to_string);
    blocking(move || -> Result<(FrozenTrial, bool)> {
        let storage = study.storage();
        let set = |k: &str, v: Value| storage.set_trial_attr(trial_id, k, &v, true);
        let attrs = (|| -> nightshift_search::Result<()> {
            set(attrs::END, now_unix().into())?;
            if let Some(e) = epochs {
                set(attrs::EPOCHS, e.into())?;
            }
            if let Some(exit) = exit {
                set(attrs::EXIT, exit.into())?;
            }
            if let Outcome::Complete { metrics, .. } = &outcome
                && !metrics.is_empty()
            {
                set(attrs::METRICS, Value::Object(metrics.clone().into_iter().collect()))?;
            }
            Ok(())
        })();
        crate::fault_point("during-tell");
        // (what to tell, re-run it?, alone?)
        let (tell, retry, alone) = match &outcome {
            Outcome::Complete { value, metrics } => {
                let test = test_metric.as_ref().and_then(|m| metrics.get(m)).and_then(Value::as_f64);
                (TellOutcome::Value(test.unwrap_or(*value)), false, false)
            }
            Outcome::Pruned { .. } => (TellOutcome::Pruned, false, false),
            Outcome::Fail { reason, infrastructure } => {
                (TellOutcome::Fail(reason.clone()), *infrastructure && attempt < retries, false)
            }
            Outcome::OutOfMemory { message } => (TellOutcome::OutOfMemory(message.clone()), oom_retry, true),
            Outcome::Interrupted => (TellOutcome::Fail(attrs::FAIL_REASON_INTERRUPTED.into()), true, run_alone),
        };
        let finished = match attrs.and_then(|()| study.tell(number, tell)) {
            Ok(t) => t,
            Err(SearchError::TrialFinished { state, .. }) => {
                // Someone else (a stale-trial sweep) finished it first; the stored state stands.
                tracing::warn!(trial = number, %state, "trial was already finished elsewhere; its result is dropped");
                storage.trial(study.record().id, number)?
            }
            Err(e) => return Err(e.into()),
        };
        let rerun = retry && finished.state == TrialState::Fail;
        if rerun {
            let again = requeue(&study, &finished, alone)?;
            tracing::info!(trial = number, retry = again.number, alone, "re-enqueued");
        }
        Ok((finished, rerun))
    })
    .await?
}

/// The command, environment and directory of one trial.
pub(super) fn build_launch(
    spec: &Spec,
    options: &RunOptions,
    trial: &FrozenTrial,
    study_seed: u64,
    slot: &Slot,
    cpu_threads: usize,
) -> Result<TrialLaunch> {
    let trial_dir = trial_dir(&options.reports_dir, trial.number)?;
    std::fs::create_dir_all(&trial_dir).map_err(|e| Error::io("create", &trial_dir, e))?;
    let cache_dir = cache_dir(&options.reports_dir)?;
    std::fs::create_dir_all(&cache_dir).map_err(|e| Error::io("create", &cache_dir, e))?;
    let params_json = serde_json::to_string(&trial.params).map_err(|e| Error::Internal(e.to_string()))?;
    let params_file = trial_dir.join("params.json");
    std::fs::write(&params_file, &params_json).map_err(|e| Error::io("write", &params_file, e))?;
    let seed = trial_seed(study_seed, trial.number);
    let replicate = Role::of(trial) == Some(Role::Replicate);
    let vars: BTreeMap<&str, String> = [
        ("trial_number", trial.number.to_string()),
        ("trial_dir", trial_dir.display().to_string()),
        // What the child opens (`cuda:0` under its own CUDA_VISIBLE_DEVICES), and the physical GPU.
        ("device", slot.device.child_name()),
        ("gpu_index", slot.device.gpu_index().unwrap_or_default()),
        ("seed", seed.to_string()),
    ]
    .into();
    let argv_template = if replicate { spec.program.replicate_argv() } else { spec.program.argv().to_vec() };
    let argv = argv_template.iter().map(|a| a.render(&trial.params, &vars)).collect();
    let mut env = vec![
        ("NIGHTSHIFT_STUDY".to_string(), spec.study.clone()),
        ("NIGHTSHIFT_PARAMS".into(), params_json),
        ("NIGHTSHIFT_PARAMS_FILE".into(), params_file.display().to_string()),
        ("NIGHTSHIFT_TRIAL_NUMBER".into(), trial.number.to_string()),
        ("NIGHTSHIFT_TRIAL_DIR".into(), trial_dir.display().to_string()),
        (CACHE_DIR_ENV.into(), cache_dir.display().to_string()),
        ("NIGHTSHIFT_OBJECTIVE".into(), spec.objective.metric.clone()),
        ("NIGHTSHIFT_SEED".into(), seed.to_string()),
        // Replicates are the tournament's final measurements: a program evaluates them on its test split.
        ("NIGHTSHIFT_REPLICATE".into(), if replicate { "1" } else { "0" }.into()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
    ];
    env.extend(slot.device.env(cpu_threads));
    Ok(TrialLaunch { number: trial.number, argv, env, cwd: spec.base_dir.clone(), trial_dir })
}

/// The variable that tells every trial of a study where the study's shared caches live.
pub const CACHE_DIR_ENV: &str = "NIGHTSHIFT_CACHE_DIR";

/// `<reports_dir>/cache`, absolute: the directory the trials of a study share their caches in
/// (the built-in trainer's frozen-prefix and dataset caches).
fn cache_dir(reports_dir: &Path) -> Result<PathBuf> {
    std::path::absolute(reports_dir.join("cache")).map_err(|e| Error::io("resolve", reports_dir, e))
}

/// `<reports_dir>/trials/<number>`, absolute (it is also the trial's `NIGHTSHIFT_TRIAL_DIR`).
pub(super) fn trial_dir(reports_dir: &Path, number: u64) -> Result<PathBuf> {
    std::path::absolute(reports_dir.join("trials").join(number.to_string())).map_err(|e| Error::io("resolve", reports_dir, e))
}

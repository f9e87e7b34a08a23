//! The sweep loop: launch a trial whenever a slot frees, record how each ends, stop when the
//! spec says so, survive crashes (heartbeats + stale-trial recovery) and Ctrl-C.
//!
//! Layout: [`run`] here sets the sweep up (slots, the study, stale trials) and hands it to `sweep.rs`'s
//! `Sweep`, one method per event; `launch.rs` asks, launches and records one trial; `budget.rs` says when
//! to stop ([`StopReason`]); `shutdown.rs` holds the two-stage [`Shutdown`]; `events.rs` what a display
//! is told ([`Event`], [`Observer`]).

use nightshift_search::attrs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_search::{FrozenTrial, NewStudy, Storage, Study, TrialState};

use crate::error::{Error, Result};
use crate::gpus::{Host, available_cores};
use crate::pool::{Device, DevicePool, Slot, plan_slots};
use crate::spec::Spec;

mod budget;
mod events;
mod launch;
mod shutdown;
mod sweep;

pub use budget::{StopReason, budget_used, next_stratum, until_clock};
pub use events::{Event, NoObserver, Observer, ReportHook};
pub use launch::CACHE_DIR_ENV;
pub use shutdown::{Shutdown, ShutdownLevel, ShutdownTrigger};

use budget::deadline;
use launch::recover_stale;
use sweep::Sweep;

/// How [`run`] behaves beyond the spec.
pub struct RunOptions {
    /// `reports/<study>`: trial directories go to `trials/<number>/` under it.
    pub reports_dir: PathBuf,
    /// Overrides the slots the spec's `devices` would give (a caller that planned them already, with
    /// [`crate::plan_slots`], and told the user its notes).
    pub slots: Option<Vec<Slot>>,
    /// Told what happens (the binary draws progress from it); [`NoObserver`] by default.
    pub observer: Arc<dyn Observer>,
    /// Called to write the report during and after the run; none by default.
    pub report_hook: Option<ReportHook>,
    /// Call the hook after this many finished trials (and at the end).
    pub refresh_every: usize,
    /// Each trial's stdout.log and stderr.log stop growing at this size (16 MiB by default).
    pub log_cap_bytes: u64,
}

impl RunOptions {
    /// Options with the defaults: slots from the spec, no observer, no report hook.
    pub fn new(reports_dir: impl Into<PathBuf>) -> Self {
        Self {
            reports_dir: reports_dir.into(),
            slots: None,
            observer: Arc::new(NoObserver),
            report_hook: None,
            refresh_every: 4,
            log_cap_bytes: 16 << 20,
        }
    }
}

/// One trial's timings, relative to the start of the run.
#[derive(Clone, Debug)]
pub struct TrialTiming {
    /// The trial's number.
    pub number: u64,
    /// The index of the slot it ran on.
    pub slot: usize,
    /// When the slot was taken (before `ask`).
    pub launched: Duration,
    /// When its process was started.
    pub spawned: Duration,
    /// When its first report arrived, if one did.
    pub first_report: Option<Duration>,
    /// When it had exited.
    pub ended: Duration,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    /// The study's name.
    pub study: String,
    /// Why the run ended.
    pub stop: StopReason,
    /// Trials this run launched.
    pub launched: u64,
    /// Of those, the ones that completed.
    pub complete: u64,
    /// Of those, the ones pruned.
    pub pruned: u64,
    /// Of those, the ones that failed.
    pub failed: u64,
    /// Of the failed trials, those that ran out of memory.
    pub out_of_memory: u64,
    /// Trials found stale (orchestrator died) and failed by this run.
    pub stale_failed: Vec<u64>,
    /// The study's best trial at the end (of every run, not only this one).
    pub best: Option<FrozenTrial>,
    /// Each trial this run finished, in the order they finished.
    pub timings: Vec<TrialTiming>,
    /// How many slots it ran on.
    pub slots: usize,
    /// Its wall-clock time.
    pub wall: Duration,
}

impl RunSummary {
    /// Busy slot-time ÷ (wall time × slots).
    pub fn utilisation(&self) -> f64 {
        let busy: f64 = self.timings.iter().map(|t| (t.ended - t.spawned).as_secs_f64()).sum();
        busy / (self.wall.as_secs_f64() * self.slots.max(1) as f64).max(1e-9)
    }
}

/// Runs (or continues) the sweep described by `spec` until its budget, a stop condition or `shutdown`.
pub async fn run(spec: &Spec, storage: Arc<dyn Storage>, options: RunOptions, shutdown: Shutdown) -> Result<RunSummary> {
    let t0 = Instant::now();
    let observer = options.observer.clone();
    let slots = match &options.slots {
        Some(slots) => slots.clone(),
        None => {
            let host = Host::probe(spec.devices.lists_gpus());
            let plan =
                plan_slots(&spec.devices, &spec.program.runs(), &host).map_err(|e| Error::NoSlots(format!("devices: {e}")))?;
            for note in &plan.notes {
                observer.event(&Event::Notice(note));
            }
            plan.slots
        }
    };
    if slots.is_empty() {
        return Err(Error::NoSlots(format!("devices {:?} gives no slot", spec.devices)));
    }
    let cpu_slots = slots.iter().filter(|s| s.device == Device::Cpu).count().max(1);
    let cpu_threads = (available_cores() / cpu_slots).max(1);
    let pool = DevicePool::new(slots.clone());

    let study = {
        let new = NewStudy {
            name: spec.study.clone(),
            direction: spec.objective.direction,
            seed: spec.seed.unwrap_or_else(random_seed),
            sampler: spec.sampler.clone(),
            pruner: spec.pruner.clone(),
            search_space: Some(spec.space.clone()),
            // Stored with the study in the same step, so `resume` works however early a crash comes.
            user_attrs: [(attrs::STUDY_SPEC.to_string(), spec.to_stored())].into(),
        };
        let storage = storage.clone();
        Arc::new(blocking(move || Study::create_or_load(storage, &new)).await??)
    };
    crate::fault_point("study-created");
    let record = study.record().clone();
    spec.check_direction(&record)?;
    if let Some(note) = record.search_space.as_ref().and_then(|created| spec.space_changes_since(created)) {
        observer.event(&Event::Notice(&note));
    }
    if record.sampler != spec.sampler || record.pruner != spec.pruner {
        observer.event(&Event::Notice("the study already exists: its stored sampler and pruner are used, not the spec's"));
    }
    let sampler_line = format!("sampler: {}", record.sampler.describe());
    observer.event(&Event::Notice(&sampler_line));
    {
        let (storage, stored) = (storage.clone(), spec.to_stored());
        // The tournament goes with the study too: reports and `nightshift trials` read it without the spec.
        let tournament = spec.compare.as_ref().and_then(|c| c.tournament.as_ref()).map(serde_json::to_value).transpose();
        let tournament = tournament.map_err(|e| Error::Internal(format!("cannot store the tournament: {e}")))?;
        blocking(move || -> nightshift_search::Result<()> {
            storage.set_study_user_attr(record.id, attrs::STUDY_SPEC, &stored)?;
            if let Some(t) = tournament {
                storage.set_study_user_attr(record.id, attrs::STUDY_TOURNAMENT, &t)?;
            }
            Ok(())
        })
        .await??;
    }

    // Trials whose orchestrator died: fail them (once, even with several workers) and maybe re-run.
    let stale_failed = recover_stale(&study, spec, &options.reports_dir, true).await?;
    let trials = trials_of(&study).await?;
    if let Some(note) = queued_outside(&spec.space, &trials) {
        observer.event(&Event::Notice(&note));
    }
    // A tournament runs its search trials and then up to its replicates, counted apart from budget.trials.
    let planned = match spec.compare.as_ref().and_then(|c| c.tournament.as_ref()) {
        Some(t) => t.search_budget() + t.max_replicates(),
        None => spec.budget.trials,
    };
    observer.event(&Event::Started {
        study: &record,
        slots: &slots,
        budget: planned,
        used: budget_used(&trials),
        stale: &stale_failed,
        best: nightshift_search::best_of(&trials, record.direction).map(|t| (t.number, t.value.unwrap_or(f64::NAN))),
    });
    tracing::info!(study = %record.name, slots = slots.len(), budget = spec.budget.trials, used = budget_used(&trials), stale = ?stale_failed, "run started");

    let deadline = deadline(&spec.budget, t0, &chrono::Local::now());
    let summary = RunSummary {
        study: record.name.clone(),
        stop: StopReason::Budget { trials: spec.budget.trials },
        launched: 0,
        complete: 0,
        pruned: 0,
        failed: 0,
        out_of_memory: 0,
        stale_failed,
        best: None,
        timings: Vec::new(),
        slots: slots.len(),
        wall: Duration::ZERO,
    };
    Sweep::new(spec, &options, study, pool, cpu_threads, t0, deadline, summary).drive(shutdown).await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("blocking task failed: {e}")))
}

async fn trials_of(study: &Arc<Study>) -> Result<Vec<FrozenTrial>> {
    let study = study.clone();
    Ok(blocking(move || study.trials()).await??)
}

/// Rewrites the report on a blocking thread (reading every trial and drawing the charts would
/// otherwise hold up launches); `None` without a hook. A report that cannot be written never
/// stops the sweep.
fn refresh_in_background(study: &Arc<Study>, options: &RunOptions) -> Option<tokio::task::JoinHandle<()>> {
    let hook = options.report_hook.clone()?;
    let study = study.clone();
    Some(tokio::task::spawn_blocking(move || match study.trials() {
        Ok(trials) => hook(study.record(), &trials),
        Err(e) => tracing::warn!("cannot read the trials for the report: {e}"),
    }))
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nightshift_search::sampler::mix_seed(nanos, std::process::id() as u64, "seed")
}

/// A line on the queued trials (re-runs of interrupted or stale ones) whose parameters the search space,
/// changed since they were asked, no longer holds: they run as they were queued. `None` when there are none.
fn queued_outside(space: &nightshift_search::SearchSpace, trials: &[FrozenTrial]) -> Option<String> {
    let outside: Vec<String> = trials
        .iter()
        .filter(|t| t.state == TrialState::Waiting)
        .filter_map(|t| {
            let (name, value) = t.params.iter().find(|(name, value)| {
                space.get(name).is_some_and(|dist| dist.to_internal(value).map_or(true, |x| !dist.contains(x)))
            })?;
            Some(format!("#{} ({name} = {value})", t.number))
        })
        .collect();
    (!outside.is_empty()).then(|| {
        format!(
            "{} queued re-run(s) have parameters outside the changed search space and run as they were queued: {}",
            outside.len(),
            outside.join(", ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_search::ParamValue;

    #[test]
    fn queued_re_runs_outside_a_changed_space_are_named() {
        // Found by a user: after Ctrl-C twice and a narrower `x`, the re-runs ran their old x unsaid.
        let space = nightshift_search::SearchSpace::parse("x: {type: float, low: 0.0, high: 0.5}\n", "t").unwrap();
        let queued = |number: u64, x: f64| {
            let mut t = FrozenTrial::new(number as i64, number, TrialState::Waiting);
            t.params.insert("x".into(), ParamValue::Float(x));
            t
        };
        let mut done = queued(2, 0.9);
        done.state = TrialState::Complete;
        assert_eq!(queued_outside(&space, &[queued(0, 0.25), done.clone()]), None);
        let note = queued_outside(&space, &[queued(0, 0.25), queued(1, 0.81), done]).unwrap();
        assert!(note.starts_with("1 queued re-run(s) have parameters outside") && note.ends_with("#1 (x = 0.81)"), "{note}");
    }
}

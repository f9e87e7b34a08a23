//! The sweep loop: launch a trial whenever a slot frees, record how each ends, stop when the
//! spec says so, survive crashes (heartbeats + stale-trial recovery) and Ctrl-C.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_search::{
    Direction, Error as SearchError, FrozenTrial, NewStudy, Params, Storage, Study, StudyRecord, TellOutcome, TrialState,
    now_unix,
};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::error::{Error, Result};
use crate::pool::{Device, DevicePool, Slot, available_cores, discover_cuda_gpus, slots_for};
use crate::process::{Judge, Outcome, TrialLaunch, TrialLimits, TrialRun, kill_leftovers, run_trial};
use crate::protocol::{Answer, Report};
use crate::spec::{DeviceSpec, Spec};

/// System attribute on a re-run trial naming the trial it replaces (which then no longer counts
/// toward the budget).
pub const RETRY_OF_ATTR: &str = "retry_of";

/// Called with the study and all its trials every few finished trials and at the end (the CLI
/// renders the report with it; the orchestrator does not know the report crate).
pub type ReportHook = Box<dyn Fn(&StudyRecord, &[FrozenTrial]) + Send + Sync>;

/// What happens during a run, for progress displays.
#[derive(Debug)]
pub enum Event<'a> {
    Started { study: &'a StudyRecord, slots: &'a [Slot], budget: u64, used: u64, stale: &'a [u64] },
    TrialStarted { slot: Slot, trial: &'a FrozenTrial },
    TrialReport { slot: Slot, number: u64, step: u64, value: f64 },
    TrialFinished { slot: Slot, trial: &'a FrozenTrial },
    Stopping { reason: &'a StopReason },
    Notice(&'a str),
}

/// Receives [`Event`]s (from several threads).
pub trait Observer: Send + Sync {
    fn event(&self, event: &Event<'_>);
}

/// Ignores everything.
pub struct NoObserver;

impl Observer for NoObserver {
    fn event(&self, _event: &Event<'_>) {}
}

/// How [`run`] behaves beyond the spec.
pub struct RunOptions {
    /// `reports/<study>`: trial directories go to `trials/<number>/` under it.
    pub reports_dir: PathBuf,
    /// Overrides the slots the spec's `devices` would give.
    pub slots: Option<Vec<Slot>>,
    pub observer: Arc<dyn Observer>,
    pub report_hook: Option<ReportHook>,
    /// Call the hook after this many finished trials (and at the end).
    pub refresh_every: usize,
    pub log_cap_bytes: u64,
}

impl RunOptions {
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

/// How far a shutdown has gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ShutdownLevel {
    None,
    /// Stop launching; running trials finish.
    Drain,
    /// Stop running trials too (recorded FAIL "interrupted" and re-enqueued).
    Kill,
}

/// The shutdown parameter of [`run`]: two-stage, so a first Ctrl-C drains and a second kills.
pub struct Shutdown(watch::Receiver<ShutdownLevel>);

/// The sending half of a [`Shutdown`].
#[derive(Clone)]
pub struct ShutdownTrigger(Arc<watch::Sender<ShutdownLevel>>);

impl Shutdown {
    pub fn channel() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(ShutdownLevel::None);
        (ShutdownTrigger(Arc::new(tx)), Shutdown(rx))
    }

    /// A shutdown that never comes.
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(ShutdownLevel::None);
        std::mem::forget(tx);
        Shutdown(rx)
    }

    /// Drains when `drain` completes, kills when `kill` completes afterwards.
    pub fn from_futures(
        drain: impl Future<Output = ()> + Send + 'static,
        kill: impl Future<Output = ()> + Send + 'static,
    ) -> Shutdown {
        let (trigger, shutdown) = Self::channel();
        tokio::spawn(async move {
            drain.await;
            trigger.set(ShutdownLevel::Drain);
            kill.await;
            trigger.set(ShutdownLevel::Kill);
        });
        shutdown
    }
}

impl ShutdownTrigger {
    pub fn set(&self, level: ShutdownLevel) {
        self.0.send_if_modified(|current| {
            let raise = level > *current;
            if raise {
                *current = level;
            }
            raise
        });
    }

    /// Drain on the first call, kill on the second (what Ctrl-C does); returns the new level.
    pub fn escalate(&self) -> ShutdownLevel {
        let next = match *self.0.borrow() {
            ShutdownLevel::None => ShutdownLevel::Drain,
            _ => ShutdownLevel::Kill,
        };
        self.set(next);
        next
    }
}

/// Why a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    Budget { trials: u64 },
    Timeout(Duration),
    StopAt(u32, u32),
    Target { value: f64, trial: u64 },
    ConsecutiveFailures { count: u32, last_reason: String },
    SpaceExhausted(String),
    Shutdown,
    Interrupted,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Budget { trials } => write!(f, "budget reached: the study has {trials} trials"),
            Self::Timeout(d) => {
                write!(f, "timeout reached ({}); running trials were allowed to finish", crate::process::fmt_duration(*d))
            }
            Self::StopAt(h, m) => write!(f, "stop time {h:02}:{m:02} reached; running trials were allowed to finish"),
            Self::Target { value, trial } => write!(f, "target reached: trial {trial} scored {value}"),
            Self::ConsecutiveFailures { count, last_reason } => write!(
                f,
                "stopped after {count} consecutive failed trials (last: {last_reason}); look at reports/<study>/trials/<n>/stderr.log, fix the trial program, then `nightshift resume`"
            ),
            Self::SpaceExhausted(m) => write!(f, "search space exhausted: {m}"),
            Self::Shutdown => write!(f, "stopped by request; running trials finished (`nightshift resume` continues)"),
            Self::Interrupted => {
                write!(f, "interrupted; running trials were stopped and re-enqueued (`nightshift resume` continues)")
            }
        }
    }
}

/// One trial's timings, relative to the start of the run.
#[derive(Clone, Debug)]
pub struct TrialTiming {
    pub number: u64,
    pub slot: usize,
    /// When the slot was taken (before `ask`).
    pub launched: Duration,
    pub spawned: Duration,
    pub first_report: Option<Duration>,
    pub ended: Duration,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub study: String,
    pub stop: StopReason,
    pub launched: u64,
    pub complete: u64,
    pub pruned: u64,
    pub failed: u64,
    /// Trials found stale (orchestrator died) and failed by this run.
    pub stale_failed: Vec<u64>,
    pub best: Option<FrozenTrial>,
    pub timings: Vec<TrialTiming>,
    pub slots: usize,
    pub wall: Duration,
}

impl RunSummary {
    /// Busy slot-time ÷ (wall time × slots).
    pub fn utilisation(&self) -> f64 {
        let busy: f64 = self.timings.iter().map(|t| (t.ended - t.spawned).as_secs_f64()).sum();
        busy / (self.wall.as_secs_f64() * self.slots.max(1) as f64).max(1e-9)
    }
}

/// Trials that count toward the budget: everything but WAITING trials and trials replaced by a re-run.
pub fn budget_used(trials: &[FrozenTrial]) -> u64 {
    let replaced: HashSet<u64> = trials.iter().filter_map(|t| t.system_attrs.get(RETRY_OF_ATTR)?.as_u64()).collect();
    trials.iter().filter(|t| t.state != TrialState::Waiting && !replaced.contains(&t.number)).count() as u64
}

/// Time from `now` until the next local `hh:mm` (tomorrow's when today's has passed).
pub fn until_clock(now: chrono::NaiveDateTime, (h, m): (u32, u32)) -> Duration {
    let today = now.date().and_hms_opt(h, m, 0).expect("validated clock time");
    let at = if today > now { today } else { today + chrono::Duration::days(1) };
    (at - now).to_std().unwrap_or_default()
}

/// The stratum value the next trial should take: the least used so far (ties: first listed).
pub fn next_stratum<'a>(
    trials: &[FrozenTrial],
    param: &str,
    values: &'a [nightshift_search::ParamValue],
) -> &'a nightshift_search::ParamValue {
    let replaced: HashSet<u64> = trials.iter().filter_map(|t| t.system_attrs.get(RETRY_OF_ATTR)?.as_u64()).collect();
    let count = |v: &nightshift_search::ParamValue| {
        trials.iter().filter(|t| !replaced.contains(&t.number) && t.params.get(param) == Some(v)).count()
    };
    values.iter().min_by_key(|v| count(v)).expect("compare has values")
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Error::Internal(format!("blocking task failed: {e}")))
}

/// Records reports through the study and asks its pruner.
struct StudyJudge {
    study: Arc<Study>,
    number: u64,
    trial_id: i64,
    slot: Slot,
    observer: Arc<dyn Observer>,
}

impl Judge for StudyJudge {
    fn judge(&self, report: &Report, value: f64) -> std::result::Result<Answer, String> {
        self.study.report(self.number, report.step, value).map_err(|e| format!("cannot record report: {e}"))?;
        crate::fault_point("mid-trial");
        if !report.metrics.is_empty() {
            let metrics: serde_json::Map<String, Value> = report.metrics.clone().into_iter().collect();
            let _ = self.study.storage().set_trial_attr(self.trial_id, "metrics", &Value::Object(metrics), true);
        }
        self.observer.event(&Event::TrialReport { slot: self.slot, number: self.number, step: report.step, value });
        let prune = self.study.should_prune(self.number).map_err(|e| format!("cannot ask the pruner: {e}"))?;
        Ok(if prune { Answer::Prune } else { Answer::Continue })
    }
}

struct Running {
    slot: Slot,
    trial_id: i64,
    attempt: u64,
    launched: Instant,
}

/// Runs (or continues) the sweep described by `spec` until its budget, a stop condition or `shutdown`.
pub async fn run(spec: &Spec, storage: Arc<dyn Storage>, options: RunOptions, mut shutdown: Shutdown) -> Result<RunSummary> {
    let t0 = Instant::now();
    let observer = options.observer.clone();
    let slots = match &options.slots {
        Some(slots) => slots.clone(),
        None => {
            let gpus = if spec.devices == DeviceSpec::Auto { discover_cuda_gpus() } else { Vec::new() };
            slots_for(&spec.devices, available_cores(), &gpus)
        }
    };
    if slots.is_empty() {
        return Err(Error::NoSlots(format!("devices {:?} gives no slot", spec.devices)));
    }
    let cpu_slots = slots.iter().filter(|s| s.device == Device::Cpu).count().max(1);
    let cpu_threads = (available_cores() / cpu_slots).max(1);
    let mut pool = DevicePool::new(slots.clone());

    let study = {
        let new = NewStudy {
            name: spec.study.clone(),
            direction: spec.objective.direction,
            seed: spec.seed.unwrap_or_else(random_seed),
            sampler: spec.sampler.clone(),
            pruner: spec.pruner.clone(),
            search_space: Some(spec.space.clone()),
            // Stored with the study in the same step, so `resume` works however early a crash comes.
            user_attrs: [("spec".to_string(), spec.to_stored())].into(),
        };
        let storage = storage.clone();
        Arc::new(blocking(move || Study::create_or_load(storage, &new)).await??)
    };
    crate::fault_point("study-created");
    let record = study.record().clone();
    if record.direction != spec.objective.direction {
        return Err(Error::Spec {
            location: spec.origin.clone(),
            field: "objective.direction".into(),
            message: format!(
                "study '{}' already exists and maximises/minimises differently ({}); use another study name",
                record.name, record.direction
            ),
        });
    }
    if record.sampler != spec.sampler || record.pruner != spec.pruner {
        observer.event(&Event::Notice("the study already exists: its stored sampler and pruner are used, not the spec's"));
    }
    let sampler_line = format!("sampler: {}", record.sampler.describe());
    observer.event(&Event::Notice(&sampler_line));
    {
        let (storage, stored) = (storage.clone(), spec.to_stored());
        blocking(move || storage.set_study_user_attr(record.id, "spec", &stored)).await??;
    }

    // Trials whose orchestrator died: fail them (once, even with several workers) and maybe re-run.
    let stale_failed = recover_stale(&study, spec, &options.reports_dir, true).await?;
    let trials = trials_of(&study).await?;
    observer.event(&Event::Started {
        study: &record,
        slots: &slots,
        budget: spec.budget.trials,
        used: budget_used(&trials),
        stale: &stale_failed,
    });
    tracing::info!(study = %record.name, slots = slots.len(), budget = spec.budget.trials, used = budget_used(&trials), stale = ?stale_failed, "run started");

    let deadline: Option<(Instant, StopReason)> = {
        let mut candidates = Vec::new();
        if let Some(t) = spec.budget.timeout {
            candidates.push((t0 + t, StopReason::Timeout(t)));
        }
        if let Some((h, m)) = spec.budget.stop_at {
            candidates.push((t0 + until_clock(chrono::Local::now().naive_local(), (h, m)), StopReason::StopAt(h, m)));
        }
        candidates.into_iter().min_by_key(|(at, _)| *at)
    };

    let (kill_tx, kill_rx) = watch::channel(false);
    let mut tasks: JoinSet<(u64, TrialRun)> = JoinSet::new();
    let mut running: HashMap<u64, Running> = HashMap::new();
    let mut tick = tokio::time::interval(spec.heartbeat.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stop: Option<StopReason> = None;
    let mut shutdown_open = true;
    let mut consecutive_failures = 0u32;
    let mut since_refresh = 0usize;
    let mut summary = RunSummary {
        study: record.name.clone(),
        stop: StopReason::Budget { trials: spec.budget.trials },
        launched: 0,
        complete: 0,
        pruned: 0,
        failed: 0,
        stale_failed: stale_failed.clone(),
        best: None,
        timings: Vec::new(),
        slots: slots.len(),
        wall: Duration::ZERO,
    };
    let mut others_running = 0usize;
    let mut budget_full = false;
    let mut announced = false;

    loop {
        if let Some((at, reason)) = &deadline
            && stop.is_none()
            && Instant::now() >= *at
        {
            stop = Some(reason.clone());
        }
        // Launch while a slot is free and nothing says stop.
        while stop.is_none() && pool.has_free() {
            let trials = trials_of(&study).await?;
            others_running = trials.iter().filter(|t| t.state == TrialState::Running && !running.contains_key(&t.number)).count();
            if let Some(reason) = target_reached(spec, &trials) {
                stop = Some(reason);
                break;
            }
            budget_full = budget_used(&trials) >= spec.budget.trials;
            if budget_full {
                break;
            }
            let slot = pool.acquire().expect("a free slot");
            let launched = Instant::now();
            let trial = match ask_next(&study, spec, &trials, slot).await {
                Ok(trial) => trial,
                Err(Error::Search(SearchError::GridExhausted(n))) => {
                    pool.release(slot);
                    stop = Some(StopReason::SpaceExhausted(format!("all {n} grid points were tried")));
                    break;
                }
                // Workers elsewhere took the last places of the budget since our snapshot.
                Err(Error::Search(SearchError::BudgetReached { .. })) => {
                    pool.release(slot);
                    budget_full = true;
                    break;
                }
                Err(e) => {
                    pool.release(slot);
                    stop_all(&kill_tx, &mut tasks).await;
                    return Err(e);
                }
            };
            let attempt = trial.system_attrs.get("attempt").and_then(Value::as_u64).unwrap_or(0);
            let launch = build_launch(spec, &options, &trial, slot, cpu_threads)?;
            observer.event(&Event::TrialStarted { slot, trial: &trial });
            tracing::info!(trial = trial.number, device = %slot.device, slot = slot.index, params = %json!(trial.params), "trial started");
            let judge: Arc<dyn Judge> = Arc::new(StudyJudge {
                study: study.clone(),
                number: trial.number,
                trial_id: trial.id,
                slot,
                observer: observer.clone(),
            });
            let limits = TrialLimits {
                timeout: spec.budget.trial_timeout,
                kill_grace: spec.kill_grace,
                log_cap_bytes: options.log_cap_bytes,
                objective_metric: spec.objective.metric.clone(),
            };
            let number = trial.number;
            let kill = kill_rx.clone();
            tasks.spawn(async move { (number, run_trial(launch, limits, judge, kill).await) });
            running.insert(number, Running { slot, trial_id: trial.id, attempt, launched });
            summary.launched += 1;
        }

        if running.is_empty() && (stop.is_some() || (budget_full && others_running == 0)) {
            break;
        }

        let deadline_at = deadline.as_ref().map(|(at, _)| *at).filter(|_| stop.is_none());
        tokio::select! {
            Some(joined) = tasks.join_next() => {
                let (number, trial_run) = joined.map_err(|e| Error::Internal(format!("trial task failed: {e}")))?;
                let Some(r) = running.remove(&number) else { continue };
                pool.release(r.slot);
                summary.timings.push(TrialTiming {
                    number,
                    slot: r.slot.index,
                    launched: r.launched - t0,
                    spawned: trial_run.spawned.saturating_duration_since(t0),
                    first_report: trial_run.first_report.map(|t| t - t0),
                    ended: trial_run.ended - t0,
                });
                let finished = record_outcome(&study, spec, number, &r, &trial_run).await?;
                match finished.state {
                    TrialState::Complete => { summary.complete += 1; consecutive_failures = 0; }
                    TrialState::Pruned => { summary.pruned += 1; consecutive_failures = 0; }
                    _ => {
                        summary.failed += 1;
                        if !matches!(trial_run.outcome, Outcome::Interrupted) {
                            consecutive_failures += 1;
                        }
                    }
                }
                tracing::info!(trial = number, state = %finished.state, value = ?finished.value, reason = ?finished.system_attrs.get("fail_reason"), "trial finished");
                observer.event(&Event::TrialFinished { slot: r.slot, trial: &finished });
                if consecutive_failures >= spec.budget.max_consecutive_failures && stop.is_none() {
                    let last_reason = finished.system_attrs.get("fail_reason").and_then(Value::as_str).unwrap_or("unknown").to_string();
                    stop = Some(StopReason::ConsecutiveFailures { count: consecutive_failures, last_reason });
                }
                since_refresh += 1;
                if since_refresh >= options.refresh_every.max(1) {
                    since_refresh = 0;
                    refresh(&study, &options).await?;
                }
            }
            _ = tick.tick() => {
                let ids: Vec<i64> = running.values().map(|r| r.trial_id).collect();
                let storage = study.storage().clone();
                blocking(move || for id in ids {
                    if let Err(e) = storage.heartbeat(id) { tracing::warn!("heartbeat failed: {e}"); }
                }).await?;
                let failed = recover_stale(&study, spec, &options.reports_dir, false).await?;
                summary.stale_failed.extend(failed);
                let trials = trials_of(&study).await?;
                others_running = trials.iter().filter(|t| t.state == TrialState::Running && !running.contains_key(&t.number)).count();
                budget_full = budget_used(&trials) >= spec.budget.trials;
            }
            changed = shutdown.0.changed(), if shutdown_open => {
                if changed.is_err() { shutdown_open = false; continue; }
                let level = *shutdown.0.borrow();
                match level {
                    ShutdownLevel::Drain => {
                        if stop.is_none() { stop = Some(StopReason::Shutdown); }
                        observer.event(&Event::Notice("stopping: no new trials; running trials finish (Ctrl-C again stops them)"));
                    }
                    ShutdownLevel::Kill => {
                        stop = Some(StopReason::Interrupted);
                        announced = false;
                        let _ = kill_tx.send(true);
                    }
                    ShutdownLevel::None => {}
                }
            }
            _ = sleep_opt(deadline_at), if deadline_at.is_some() => {}
        }
        if let Some(reason) = &stop
            && !announced
        {
            announced = true;
            tracing::info!(%reason, "stopping");
            observer.event(&Event::Stopping { reason });
        }
    }

    let trials = trials_of(&study).await?;
    summary.stop = stop.unwrap_or(StopReason::Budget { trials: budget_used(&trials) });
    summary.best = nightshift_search::best_of(&trials, record.direction).cloned();
    summary.wall = t0.elapsed();
    refresh(&study, &options).await?;
    tracing::info!(stop = %summary.stop, launched = summary.launched, complete = summary.complete, pruned = summary.pruned, failed = summary.failed, "run finished");
    Ok(summary)
}

async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn stop_all(kill_tx: &watch::Sender<bool>, tasks: &mut JoinSet<(u64, TrialRun)>) {
    let _ = kill_tx.send(true);
    while tasks.join_next().await.is_some() {}
}

async fn trials_of(study: &Arc<Study>) -> Result<Vec<FrozenTrial>> {
    let study = study.clone();
    Ok(blocking(move || study.trials()).await??)
}

fn target_reached(spec: &Spec, trials: &[FrozenTrial]) -> Option<StopReason> {
    let target = spec.budget.target?;
    let best = nightshift_search::best_of(trials, spec.objective.direction)?;
    let value = best.value?;
    let reached = match spec.objective.direction {
        Direction::Maximize => value >= target,
        Direction::Minimize => value <= target,
    };
    reached.then_some(StopReason::Target { value, trial: best.number })
}

/// Asks the next trial (an enqueued one first; with `compare`, fixing the least-used stratum),
/// and marks it alive and placed.
async fn ask_next(study: &Arc<Study>, spec: &Spec, trials: &[FrozenTrial], slot: Slot) -> Result<FrozenTrial> {
    let study = study.clone();
    let space = spec.space.clone();
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
        let storage = study.storage();
        storage.set_trial_attr(trial.id, "device", &slot.device.to_string().into(), true)?;
        storage.set_trial_attr(trial.id, "slot", &slot.index.into(), true)?;
        storage.set_trial_attr(trial.id, "start", &now_unix().into(), true)?;
        Ok(storage.trial(study.record().id, trial.number)?)
    })
    .await?
}

/// Fails stale RUNNING trials, kills what is left of their processes on this machine, and
/// re-enqueues their parameters when the spec says so.
async fn recover_stale(study: &Arc<Study>, spec: &Spec, reports_dir: &Path, at_start: bool) -> Result<Vec<u64>> {
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
                requeue(&study, trial)?;
            }
        }
        Ok(stale.iter().map(|t| t.number).collect())
    })
    .await?
}

/// Enqueues `trial`'s parameters again as a new trial that replaces it in the budget.
fn requeue(study: &Study, trial: &FrozenTrial) -> Result<FrozenTrial> {
    let params: Params = trial
        .params
        .iter()
        .filter(|(k, _)| study.record().search_space.as_ref().is_some_and(|s| s.get(k).is_some()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let new = study.enqueue(&params)?;
    let storage = study.storage();
    storage.set_trial_attr(new.id, RETRY_OF_ATTR, &trial.number.into(), true)?;
    let attempt = trial.system_attrs.get("attempt").and_then(Value::as_u64).unwrap_or(0) + 1;
    storage.set_trial_attr(new.id, "attempt", &attempt.into(), true)?;
    Ok(new)
}

async fn record_outcome(study: &Arc<Study>, spec: &Spec, number: u64, r: &Running, run: &TrialRun) -> Result<FrozenTrial> {
    let study = study.clone();
    let outcome = run.outcome.clone();
    let (trial_id, attempt, retries) = (r.trial_id, r.attempt, spec.budget.retries as u64);
    let (epochs, exit) = (run.last_step, run.exit.clone());
    blocking(move || -> Result<FrozenTrial> {
        let storage = study.storage();
        let set = |k: &str, v: Value| storage.set_trial_attr(trial_id, k, &v, true);
        let attrs = (|| -> nightshift_search::Result<()> {
            set("end", now_unix().into())?;
            if let Some(e) = epochs {
                set("epochs", e.into())?;
            }
            if let Some(exit) = exit {
                set("exit", exit.into())?;
            }
            if let Outcome::Complete { metrics, .. } = &outcome
                && !metrics.is_empty()
            {
                set("metrics", Value::Object(metrics.clone().into_iter().collect()))?;
            }
            Ok(())
        })();
        crate::fault_point("during-tell");
        let (tell, retry) = match &outcome {
            Outcome::Complete { value, .. } => (TellOutcome::Value(*value), false),
            Outcome::Pruned { .. } => (TellOutcome::Pruned, false),
            Outcome::Fail { reason, infrastructure } => (TellOutcome::Fail(reason.clone()), *infrastructure && attempt < retries),
            Outcome::Interrupted => (TellOutcome::Fail("interrupted".into()), true),
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
        if retry && finished.state == TrialState::Fail {
            let again = requeue(&study, &finished)?;
            tracing::info!(trial = number, retry = again.number, "re-enqueued");
        }
        Ok(finished)
    })
    .await?
}

async fn refresh(study: &Arc<Study>, options: &RunOptions) -> Result<()> {
    let Some(hook) = &options.report_hook else { return Ok(()) };
    let trials = trials_of(study).await?;
    hook(study.record(), &trials);
    Ok(())
}

/// The command, environment and directory of one trial.
fn build_launch(spec: &Spec, options: &RunOptions, trial: &FrozenTrial, slot: Slot, cpu_threads: usize) -> Result<TrialLaunch> {
    let trial_dir = trial_dir(&options.reports_dir, trial.number)?;
    std::fs::create_dir_all(&trial_dir).map_err(|e| Error::io("create", &trial_dir, e))?;
    let params_json = serde_json::to_string(&trial.params).map_err(|e| Error::Internal(e.to_string()))?;
    let params_file = trial_dir.join("params.json");
    std::fs::write(&params_file, &params_json).map_err(|e| Error::io("write", &params_file, e))?;
    let vars: BTreeMap<&str, String> = [
        ("trial_number", trial.number.to_string()),
        ("trial_dir", trial_dir.display().to_string()),
        ("device", slot.device.to_string()),
    ]
    .into();
    let argv = spec.program.argv().iter().map(|a| a.render(&trial.params, &vars)).collect();
    let mut env = vec![
        ("NIGHTSHIFT_STUDY".to_string(), spec.study.clone()),
        ("NIGHTSHIFT_PARAMS".into(), params_json),
        ("NIGHTSHIFT_PARAMS_FILE".into(), params_file.display().to_string()),
        ("NIGHTSHIFT_TRIAL_NUMBER".into(), trial.number.to_string()),
        ("NIGHTSHIFT_TRIAL_DIR".into(), trial_dir.display().to_string()),
        ("NIGHTSHIFT_OBJECTIVE".into(), spec.objective.metric.clone()),
        ("PYTHONUNBUFFERED".into(), "1".into()),
    ];
    env.extend(slot.device.env(cpu_threads));
    Ok(TrialLaunch { number: trial.number, argv, env, cwd: spec.base_dir.clone(), trial_dir })
}

/// `<reports_dir>/trials/<number>`, absolute (it is also the trial's `NIGHTSHIFT_TRIAL_DIR`).
fn trial_dir(reports_dir: &Path, number: u64) -> Result<PathBuf> {
    std::path::absolute(reports_dir.join("trials").join(number.to_string())).map_err(|e| Error::io("resolve", reports_dir, e))
}

fn random_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nightshift_search::sampler::mix_seed(nanos, std::process::id() as u64, "seed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_search::ParamValue;

    fn trial(number: u64, state: TrialState, k: i64) -> FrozenTrial {
        let mut t = FrozenTrial::new(number as i64, number, state);
        t.params.insert("k".into(), ParamValue::Int(k));
        t
    }

    #[test]
    fn budget_skips_waiting_and_replaced_trials() {
        let mut trials = vec![trial(0, TrialState::Complete, 0), trial(1, TrialState::Fail, 1), trial(2, TrialState::Waiting, 1)];
        assert_eq!(budget_used(&trials), 2);
        trials[2].system_attrs.insert(RETRY_OF_ATTR.into(), 1.into());
        assert_eq!(budget_used(&trials), 1, "trial 1 is replaced by its re-run, which is still waiting");
        trials[2].state = TrialState::Running;
        assert_eq!(budget_used(&trials), 2);
    }

    #[test]
    fn strata_get_equal_shares() {
        let values = [ParamValue::Int(0), ParamValue::Int(1), ParamValue::Int(2)];
        let mut trials = Vec::new();
        for n in 0..9 {
            let v = next_stratum(&trials, "k", &values).clone();
            let ParamValue::Int(k) = v else { panic!() };
            trials.push(trial(n, TrialState::Complete, k));
        }
        for k in 0..3 {
            assert_eq!(trials.iter().filter(|t| t.params["k"] == ParamValue::Int(k)).count(), 3);
        }
    }

    #[test]
    fn clock_deadlines_roll_over_to_tomorrow() {
        let at = |h, m| chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap().and_hms_opt(h, m, 0).unwrap();
        assert_eq!(until_clock(at(23, 0), (7, 0)), Duration::from_secs(8 * 3600));
        assert_eq!(until_clock(at(6, 30), (7, 0)), Duration::from_secs(1800));
        assert_eq!(until_clock(at(7, 0), (7, 0)), Duration::from_secs(24 * 3600));
    }
}

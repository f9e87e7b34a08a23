//! [`Sweep`]: the state of one run and one method per event — a slot is free, a trial finished, the
//! heartbeat ticked, a shutdown was requested — driven by [`Sweep::drive`].

use nightshift_search::attrs;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use nightshift_search::{Error as SearchError, FrozenTrial, Role, Study, TellOutcome, TrialState};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};

use super::budget::{Room, StopReason, budget_used, room, target_reached};
use super::events::{Event, Observer};
use super::launch::{Peers, Running, StudyJudge, ask_next, build_launch, record_outcome, recover_stale, runs_alone, trial_dir};
use super::shutdown::{Shutdown, ShutdownLevel};
use super::{RunOptions, RunSummary, TrialTiming, blocking, refresh_in_background, trials_of};
use crate::error::{Error, Result};
use crate::pool::DevicePool;
use crate::process::{Judge, Outcome, TrialLimits, TrialRun, run_trial};
use crate::spec::Spec;

/// One run of the sweep loop.
pub(super) struct Sweep<'a> {
    spec: &'a Spec,
    options: &'a RunOptions,
    study: Arc<Study>,
    observer: Arc<dyn Observer>,
    pool: DevicePool,
    /// Threads each CPU trial may use.
    cpu_threads: usize,
    /// When the run started; timings are relative to it.
    t0: Instant,
    /// The earliest of `timeout` and `stop_at`, with the reason it gives.
    deadline: Option<(Instant, StopReason)>,
    summary: RunSummary,
    /// Tells running trials to stop (a second Ctrl-C, or an error).
    kill: watch::Sender<bool>,
    tasks: JoinSet<(u64, TrialRun)>,
    running: HashMap<u64, Running>,
    stop: Option<StopReason>,
    stop_announced: bool,
    consecutive_failures: u32,
    finished_since_refresh: usize,
    /// The report being rewritten in the background, if any.
    report: Option<tokio::task::JoinHandle<()>>,
    /// RUNNING trials of other workers, as of the last look at the study.
    others_running: usize,
    /// Whether "waiting for other processes' trials" was said.
    waiting_said: bool,
    budget_full: bool,
}

impl<'a> Sweep<'a> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        spec: &'a Spec,
        options: &'a RunOptions,
        study: Arc<Study>,
        pool: DevicePool,
        cpu_threads: usize,
        t0: Instant,
        deadline: Option<(Instant, StopReason)>,
        summary: RunSummary,
    ) -> Self {
        Self {
            spec,
            options,
            study,
            observer: options.observer.clone(),
            pool,
            cpu_threads,
            t0,
            deadline,
            summary,
            kill: watch::channel(false).0,
            tasks: JoinSet::new(),
            running: HashMap::new(),
            stop: None,
            stop_announced: false,
            consecutive_failures: 0,
            finished_since_refresh: 0,
            report: None,
            others_running: 0,
            waiting_said: false,
            budget_full: false,
        }
    }

    /// Runs the loop until nothing runs and nothing more may be launched; returns the summary. On an
    /// error (a storage gone, a directory that cannot be made), the running trials are stopped and, as
    /// far as the storage still allows, recorded as interrupted and re-enqueued, as a second Ctrl-C does:
    /// not left RUNNING for a later run to fail as stale.
    pub(super) async fn drive(mut self, shutdown: Shutdown) -> Result<RunSummary> {
        match self.run_loop(shutdown).await {
            Ok(()) => self.finish().await,
            Err(e) => {
                tracing::error!(error = %e, running = self.running.len(), "stopping on an error");
                self.stop = Some(StopReason::Interrupted);
                let _ = self.kill.send(true);
                while let Some(joined) = self.tasks.join_next().await {
                    if let Err(record) = self.on_trial_finished(joined).await {
                        tracing::warn!(error = %record, "cannot record a trial stopped on the error");
                    }
                }
                Err(e)
            }
        }
    }

    async fn run_loop(&mut self, mut shutdown: Shutdown) -> Result<()> {
        let mut tick = tokio::time::interval(self.spec.heartbeat.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown_open = true;
        loop {
            self.on_deadline();
            self.launch_while_free().await?;
            if self.is_over() {
                break;
            }
            let deadline_at = self.deadline.as_ref().map(|(at, _)| *at).filter(|_| self.stop.is_none());
            tokio::select! {
                Some(joined) = self.tasks.join_next() => self.on_trial_finished(joined).await?,
                _ = tick.tick() => self.on_tick().await?,
                level = shutdown.next_level(), if shutdown_open => match level {
                    Some(level) => self.on_shutdown(level),
                    None => shutdown_open = false,
                },
                _ = sleep_until(deadline_at), if deadline_at.is_some() => {}
            }
            self.announce_stop();
        }
        Ok(())
    }

    /// Once the deadline passes, no more trials are launched.
    fn on_deadline(&mut self) {
        if let Some((at, reason)) = &self.deadline
            && self.stop.is_none()
            && Instant::now() >= *at
        {
            self.stop = Some(reason.clone());
        }
    }

    /// Launches trials while a slot is free and nothing says stop.
    async fn launch_while_free(&mut self) -> Result<()> {
        while self.stop.is_none() && self.pool.has_free() {
            let trials = trials_of(&self.study).await?;
            self.note_others(&trials);
            if let Some(reason) = target_reached(self.spec, &trials) {
                self.stop = Some(reason);
                break;
            }
            let room = room(self.spec, &trials, self.study.record().direction);
            self.budget_full = room == Room::Full;
            if room != Room::Open {
                break;
            }
            // A re-run of a trial that ran out of memory beside another is claimed first (WAITING
            // trials go in order of number) and needs a whole idle GPU: until one is, launch nothing.
            let next_alone = trials.iter().find(|t| t.state == TrialState::Waiting).is_some_and(runs_alone);
            let slot = if next_alone {
                match self.pool.acquire_alone() {
                    Some(slot) => slot,
                    None => break,
                }
            } else {
                self.pool.acquire().expect("a free slot")
            };
            let launched = Instant::now();
            let trial = match ask_next(&self.study, self.spec, &trials, &slot).await {
                Ok(trial) => trial,
                Err(Error::Search(SearchError::GridExhausted(n))) => {
                    self.pool.release(&slot);
                    self.stop = Some(StopReason::SpaceExhausted(format!("all {n} grid points were tried")));
                    break;
                }
                // Workers elsewhere took the last places of the budget since our snapshot.
                Err(Error::Search(SearchError::BudgetReached { .. })) => {
                    self.pool.release(&slot);
                    self.budget_full = true;
                    break;
                }
                Err(e) => {
                    self.pool.release(&slot);
                    return Err(e);
                }
            };
            self.start(trial, slot, launched)?;
        }
        Ok(())
    }

    /// Spawns the process of an asked trial on `slot`.
    fn start(&mut self, trial: FrozenTrial, slot: crate::pool::Slot, launched: Instant) -> Result<()> {
        let attempt = trial.system_attrs.get(attrs::ATTEMPT).and_then(Value::as_u64).unwrap_or(0);
        let launch = match build_launch(self.spec, self.options, &trial, self.study.record().seed, &slot, self.cpu_threads) {
            Ok(launch) => launch,
            Err(e) => {
                // Asked but never started: not left RUNNING.
                self.pool.release(&slot);
                let _ = self.study.tell(trial.number, TellOutcome::Fail(format!("not started: {e}")));
                return Err(e);
            }
        };
        self.observer.event(&Event::TrialStarted { slot: &slot, trial: &trial });
        tracing::info!(trial = trial.number, device = %slot.device, slot = slot.index, params = %json!(trial.params), "trial started");
        let judge: Arc<dyn Judge> = Arc::new(StudyJudge {
            study: self.study.clone(),
            number: trial.number,
            trial_id: trial.id,
            slot: slot.clone(),
            observer: self.observer.clone(),
            peers: Peers::of(self.spec, &trial),
            pruning: std::sync::Mutex::new(self.study.prune_session(trial.clone())),
        });
        let limits = TrialLimits {
            timeout: self.spec.budget.trial_timeout,
            kill_grace: self.spec.kill_grace,
            log_cap_bytes: self.options.log_cap_bytes,
            objective_metric: self.spec.objective.metric.clone(),
        };
        let (number, kill) = (trial.number, self.kill.subscribe());
        self.tasks.spawn(async move { (number, run_trial(launch, limits, judge, kill).await) });
        // Trials overlapping on one GPU share its memory: an out-of-memory failure may be the other's doing.
        let mut shared = false;
        for other in self.running.values_mut().filter(|r| r.slot.device == slot.device && slot.device.is_gpu()) {
            other.shared = true;
            shared = true;
        }
        let run_alone = runs_alone(&trial);
        let replicate = Role::of(&trial) == Some(Role::Replicate);
        self.running.insert(number, Running { replicate, slot, trial_id: trial.id, attempt, launched, shared, run_alone });
        self.summary.launched += 1;
        Ok(())
    }

    /// A trial process ended: free its slot, record its outcome, count failures, refresh the report.
    async fn on_trial_finished(&mut self, joined: std::result::Result<(u64, TrialRun), JoinError>) -> Result<()> {
        let (number, trial_run) = joined.map_err(|e| Error::Internal(format!("trial task failed: {e}")))?;
        let Some(r) = self.running.remove(&number) else { return Ok(()) };
        self.pool.release(&r.slot);
        let t0 = self.t0;
        self.summary.timings.push(TrialTiming {
            number,
            slot: r.slot.index,
            launched: r.launched - t0,
            spawned: trial_run.spawned.saturating_duration_since(t0),
            first_report: trial_run.first_report.map(|t| t - t0),
            ended: trial_run.ended - t0,
        });
        let (finished, rerun) = record_outcome(&self.study, self.spec, number, &r, &trial_run).await?;
        match finished.state {
            TrialState::Complete => {
                self.summary.complete += 1;
                self.consecutive_failures = 0;
            }
            TrialState::Pruned => {
                self.summary.pruned += 1;
                self.consecutive_failures = 0;
            }
            _ => {
                self.summary.failed += 1;
                match trial_run.outcome {
                    // Out of memory says the parameters were too big, not that the program is broken.
                    Outcome::OutOfMemory { .. } => self.summary.out_of_memory += 1,
                    Outcome::Interrupted => {}
                    _ => self.consecutive_failures += 1,
                }
            }
        }
        let reason = finished.system_attrs.get(attrs::FAIL_REASON).and_then(Value::as_str);
        // Plain values in nightshift.log, not Rust's debug form (`Some(String("…"))`).
        let value = finished.value.map_or_else(|| "none".to_string(), |v| v.to_string());
        tracing::info!(trial = number, state = %finished.state, value = %value, reason = reason.unwrap_or(""), "trial finished");
        self.observer.event(&Event::TrialFinished { slot: &r.slot, trial: &finished, rerun });
        if self.consecutive_failures >= self.spec.budget.max_consecutive_failures && self.stop.is_none() {
            let last_reason = reason.unwrap_or("unknown").to_string();
            let trial_dir = trial_dir(&self.options.reports_dir, number)?;
            self.stop = Some(StopReason::ConsecutiveFailures { count: self.consecutive_failures, last_reason, trial_dir });
        }
        self.finished_since_refresh += 1;
        // One rewrite at a time: while one runs, the count grows and the next finished trial tries again.
        if self.finished_since_refresh >= self.options.refresh_every.max(1)
            && self.report.as_ref().is_none_or(|r| r.is_finished())
        {
            self.finished_since_refresh = 0;
            self.report = refresh_in_background(&self.study, self.options);
        }
        Ok(())
    }

    /// The heartbeat: beat for our running trials, fail stale ones, look at what other workers do.
    async fn on_tick(&mut self) -> Result<()> {
        let ids: Vec<i64> = self.running.values().map(|r| r.trial_id).collect();
        let storage = self.study.storage().clone();
        blocking(move || {
            for id in ids {
                if let Err(e) = storage.heartbeat(id) {
                    tracing::warn!("heartbeat failed: {e}");
                }
            }
        })
        .await?;
        let failed = recover_stale(&self.study, self.spec, &self.options.reports_dir, false).await?;
        self.summary.stale_failed.extend(failed);
        let trials = trials_of(&self.study).await?;
        self.note_others(&trials);
        self.budget_full = room(self.spec, &trials, self.study.record().direction) == Room::Full;
        Ok(())
    }

    /// First request: launch nothing more; second: stop the running trials too.
    fn on_shutdown(&mut self, level: ShutdownLevel) {
        match level {
            ShutdownLevel::Drain => {
                if self.stop.is_none() {
                    self.stop = Some(StopReason::Shutdown);
                    // This notice says it: no second "stopping:" line.
                    self.stop_announced = true;
                    tracing::info!(reason = %StopReason::Shutdown, "stopping");
                }
                self.observer.event(&Event::Notice(
                    "stopping: no new trials; running trials finish (a second Ctrl-C or SIGTERM stops them)",
                ));
            }
            ShutdownLevel::Kill => {
                self.stop = Some(StopReason::Interrupted);
                self.stop_announced = false;
                let _ = self.kill.send(true);
            }
            ShutdownLevel::None => {}
        }
    }

    /// Counts the trials other workers run. A RUNNING trial without heartbeats was asked by a study verb
    /// (`nightshift ask`), whose caller tells it, maybe never: a sweep does not wait for it.
    fn note_others(&mut self, trials: &[FrozenTrial]) {
        let others: Vec<u64> = trials
            .iter()
            .filter(|t| t.state == TrialState::Running && t.heartbeat_at.is_some() && !self.running.contains_key(&t.number))
            .map(|t| t.number)
            .collect();
        if self.running.is_empty() && self.budget_full && !others.is_empty() && !self.waiting_said {
            self.waiting_said = true;
            let line = format!(
                "budget full: waiting for trial(s) {others:?}, running in other processes (one may fail and need a re-run)"
            );
            self.observer.event(&Event::Notice(&line));
        }
        self.others_running = others.len();
    }

    /// Over when none of ours runs and we stop, or the budget is full and no other worker's trial runs
    /// (one of theirs may still fail and free a place).
    fn is_over(&self) -> bool {
        self.running.is_empty() && (self.stop.is_some() || (self.budget_full && self.others_running == 0))
    }

    fn announce_stop(&mut self) {
        if let Some(reason) = &self.stop
            && !self.stop_announced
        {
            self.stop_announced = true;
            tracing::info!(%reason, "stopping");
            self.observer.event(&Event::Stopping { reason });
        }
    }

    async fn finish(mut self) -> Result<RunSummary> {
        let trials = trials_of(&self.study).await?;
        self.summary.stop = self.stop.take().unwrap_or(StopReason::Budget { trials: budget_used(&trials) });
        self.summary.best = nightshift_search::best_of(&trials, self.study.record().direction).cloned();
        self.summary.wall = self.t0.elapsed();
        // The last report waits for the one in progress and sees every trial.
        if let Some(report) = self.report.take() {
            let _ = report.await;
        }
        if let Some(report) = refresh_in_background(&self.study, self.options) {
            let _ = report.await;
        }
        let s = &self.summary;
        tracing::info!(stop = %s.stop, launched = s.launched, complete = s.complete, pruned = s.pruned, failed = s.failed, "run finished");
        Ok(self.summary)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

//! `Study`: ask / tell / report / should_prune over any [`Storage`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::pruner::{PruneContext, Pruner, Reads};
use crate::sampler::{Sampler, SamplingContext};
use crate::space::{Params, SearchSpace};
use crate::storage::{NewStudy, NewTrial, Storage, StudyRecord, TrialParam, attrs};
use crate::tournament::{Assignment, Role, Step, Tournament};
use crate::trial::{FrozenTrial, TrialState};

/// How a trial ended, for [`Study::tell`].
#[derive(Clone, Debug, PartialEq)]
pub enum TellOutcome {
    /// COMPLETE with this objective value (a NaN value fails the trial, as in Optuna).
    Value(f64),
    /// PRUNED; its value becomes the last intermediate value.
    Pruned,
    /// FAIL, with a reason kept in the trial's system attributes.
    Fail(String),
    /// FAIL because the trial ran out of (device) memory, with the trial's message: the reason
    /// is `oom: <message>` and the kind [`attrs::FAIL_KIND_OOM`], which the samplers treat as
    /// infeasible ([`FrozenTrial::is_oom`]).
    OutOfMemory(String),
}

/// A study bound to its storage, sampler and pruner.
pub struct Study {
    storage: Arc<dyn Storage>,
    record: StudyRecord,
    sampler: Box<dyn Sampler>,
    pruner: Box<dyn Pruner>,
}

impl Study {
    /// Creates a new study in `storage`.
    pub fn create(storage: Arc<dyn Storage>, new: &NewStudy) -> Result<Self> {
        let record = storage.create_study(new)?;
        Ok(Self::from_record(storage, record))
    }

    /// Loads an existing study, rebuilding its sampler and pruner from the stored configuration.
    pub fn load(storage: Arc<dyn Storage>, name: &str) -> Result<Self> {
        let record = storage.load_study(name)?;
        Ok(Self::from_record(storage, record))
    }

    /// Loads the study if it exists, else creates it. A concurrent creator racing us is fine.
    pub fn create_or_load(storage: Arc<dyn Storage>, new: &NewStudy) -> Result<Self> {
        match storage.create_study(new) {
            Ok(record) => Ok(Self::from_record(storage, record)),
            Err(Error::StudyExists(_)) => Self::load(storage, &new.name),
            Err(e) => Err(e),
        }
    }

    fn from_record(storage: Arc<dyn Storage>, record: StudyRecord) -> Self {
        let sampler = record.sampler.build();
        let pruner = record.pruner.build();
        Self { storage, record, sampler, pruner }
    }

    /// Replaces the sampler (e.g. a per-process override); the stored configuration is unchanged.
    pub fn with_sampler(mut self, sampler: Box<dyn Sampler>) -> Self {
        self.sampler = sampler;
        self
    }

    /// Replaces the seed used by this process's sampling (Optuna's per-process `sampler-kwargs` seed).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.record.seed = seed;
        self
    }

    /// The study as stored.
    pub fn record(&self) -> &StudyRecord {
        &self.record
    }

    /// The study's name.
    pub fn name(&self) -> &str {
        &self.record.name
    }

    /// The storage it lives in.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// The stored search space, or an error telling the user to pass one.
    pub fn search_space(&self) -> Result<&SearchSpace> {
        self.record.search_space.as_ref().ok_or_else(|| Error::Space {
            location: String::new(),
            param: None,
            message: format!("study '{}' has no stored search space; pass one", self.record.name),
        })
    }

    /// Starts a trial: claims an enqueued one or creates a new one, then samples every parameter
    /// of `space` that it does not have yet.
    pub fn ask(&self, space: &SearchSpace) -> Result<FrozenTrial> {
        self.ask_within(space, None, false)
    }

    /// [`Study::ask`] under a global budget: a new trial is refused with
    /// [`Error::BudgetReached`] once the study has `max_trials` non-WAITING trials, counted
    /// atomically in the storage (so across every worker). Enqueued trials are still claimed.
    /// `heartbeat`: the caller heartbeats its trials (see [`NewTrial::heartbeat`]).
    pub fn ask_within(&self, space: &SearchSpace, max_trials: Option<u64>, heartbeat: bool) -> Result<FrozenTrial> {
        self.ask_fixed(space, &Params::new(), max_trials, heartbeat)
    }

    /// [`Study::ask_within`] with some parameters fixed (e.g. the stratum of a comparison): an
    /// enqueued trial is still claimed first; otherwise the new trial is created with `fixed` in
    /// the same atomic step that checks the budget (enqueue-then-claim would bypass it).
    pub fn ask_fixed(
        &self,
        space: &SearchSpace,
        fixed: &Params,
        max_trials: Option<u64>,
        heartbeat: bool,
    ) -> Result<FrozenTrial> {
        let study_id = self.record.id;
        let trial = match self.storage.claim_waiting_trial(study_id, heartbeat)? {
            Some(trial) => trial,
            None => {
                // A trial created only to fail would count as a failure in every report.
                if fixed.is_empty()
                    && self.sampler.can_run_out()
                    && let Some(e) = self.sampler.exhausted(&self.storage.trials(study_id, None)?, space)
                {
                    return Err(e);
                }
                let params = with_distributions(Some(space), fixed)?;
                self.storage.create_trial(study_id, &NewTrial { params, max_trials, heartbeat, ..NewTrial::default() })?
            }
        };
        let params = match self.sample(space, &trial) {
            Ok(params) => params,
            Err(e) => {
                // Never leave a RUNNING trial behind that nobody will tell.
                let _ = self.fail(trial.number, &format!("sampling failed: {e}"));
                return Err(e);
            }
        };
        if !params.is_empty() {
            self.storage.set_trial_params(trial.id, &params)?;
        }
        self.storage.trial(study_id, trial.number)
    }

    fn sample(&self, space: &SearchSpace, trial: &FrozenTrial) -> Result<Vec<TrialParam>> {
        self.sample_among(space, trial, &|_| true)
    }

    /// Samples `trial`'s missing parameters from the history that `keep` lets through (a tournament arm's
    /// trials; the trial itself is always in it), and stores the sampler's notes on the trial.
    fn sample_among(
        &self,
        space: &SearchSpace,
        trial: &FrozenTrial,
        keep: &dyn Fn(&FrozenTrial) -> bool,
    ) -> Result<Vec<TrialParam>> {
        let all: Vec<FrozenTrial> =
            self.storage.trials(self.record.id, None)?.into_iter().filter(|t| t.number == trial.number || keep(t)).collect();
        let name = &self.record.name;
        let bracket = self.pruner.bracket(name, trial.number, &all);
        let history: Vec<FrozenTrial> = match bracket {
            Some(b) => all.iter().filter(|t| self.pruner.bracket(name, t.number, &all) == Some(b)).cloned().collect(),
            None => all,
        };
        let ctx = SamplingContext {
            study_name: &self.record.name,
            direction: self.record.direction,
            seed: self.record.seed,
            trials: &history,
            trial_number: trial.number,
        };
        let missing: SearchSpace = {
            let mut s = SearchSpace::new();
            for (name, dist) in space.iter().filter(|(n, _)| !trial.params.contains_key(*n)) {
                s.insert(name, dist.clone());
            }
            s
        };
        let (mut sampled, notes) = self.sampler.sample_all_noted(&ctx, &missing)?;
        for (key, value) in &notes {
            self.storage.set_trial_attr(trial.id, key, value, true)?;
        }
        let mut params = Vec::with_capacity(missing.len());
        for (name, dist) in missing.iter() {
            let Some(value) = sampled.remove(name) else { continue };
            // A sampler bug must not put an out-of-range value into the study.
            dist.to_internal(&value).map_err(|_| Error::Param {
                param: name.to_string(),
                message: format!("sampler produced {value}, which is outside {dist}"),
            })?;
            params.push((name.to_string(), dist.clone(), value));
        }
        Ok(params)
    }

    /// Starts a trial of `tournament`: claims a waiting re-run, or creates a trial of `role` under the
    /// storage-wide cap `max_trials` and gives it its place ([`Tournament::assign`]): a search trial gets its
    /// arm's value and the rest sampled from that arm's search trials only; a replicate gets its source's
    /// parameters and [`attrs::REPLICATE_OF`]. Past the tournament's end the new trial is failed and
    /// [`Error::BudgetReached`] returned.
    pub fn ask_tournament(
        &self,
        tournament: &Tournament,
        space: &SearchSpace,
        role: Role,
        max_trials: u64,
        heartbeat: bool,
    ) -> Result<FrozenTrial> {
        let study_id = self.record.id;
        let (trial, created) = match self.storage.claim_waiting_trial(study_id, heartbeat)? {
            Some(trial) => (trial, false),
            None => {
                // The role is written with the trial, in the step that numbers it: every worker's ranks agree.
                let system_attrs = [(attrs::TOURNAMENT_ROLE.to_string(), role.as_str().into())].into();
                let new = NewTrial { max_trials: Some(max_trials), heartbeat, system_attrs, ..NewTrial::default() };
                (self.storage.create_trial(study_id, &new)?, true)
            }
        };
        let filled = (|| -> Result<FrozenTrial> {
            let mut fixed = Params::new();
            if created {
                let all = self.storage.trials(study_id, None)?;
                match tournament.assign(&all, trial.number, role, self.record.direction) {
                    Assignment::Search { arm } => {
                        fixed.insert(tournament.param.clone(), tournament.arms[arm].clone());
                    }
                    Assignment::Replicate { source, .. } => {
                        let source = all.iter().find(|t| t.number == source).expect("a replicate's source is a trial");
                        fixed.extend(
                            source.params.iter().filter(|(k, _)| space.get(k).is_some()).map(|(k, v)| (k.clone(), v.clone())),
                        );
                        self.storage.set_trial_attr(trial.id, attrs::REPLICATE_OF, &source.number.into(), true)?;
                    }
                    Assignment::Over => {
                        return Err(Error::BudgetReached { study: self.record.name.clone(), max_trials });
                    }
                }
            }
            let fixed = with_distributions(Some(space), &fixed)?;
            if !fixed.is_empty() {
                self.storage.set_trial_params(trial.id, &fixed)?;
            }
            let trial = self.storage.trial(study_id, trial.number)?;
            let arm = tournament.arm_of(&trial);
            let params = self.sample_among(space, &trial, &|t| arm.is_some_and(|a| tournament.in_arm(t, a)))?;
            if !params.is_empty() {
                self.storage.set_trial_params(trial.id, &params)?;
            }
            self.storage.trial(study_id, trial.number)
        })();
        filled.inspect_err(|e| {
            // Never leave a RUNNING trial behind that nobody will tell.
            let _ = self.fail(trial.number, &format!("cannot start the tournament trial: {e}"));
        })
    }

    /// Runs a whole tournament in this process, one trial at a time: `objective` gets each trial and its seed
    /// ([`crate::tournament::trial_seed`]) and says how it ended. For tests and in-process searches; the
    /// sweep does the same steps with many processes.
    pub fn run_tournament(
        &self,
        tournament: &Tournament,
        space: &SearchSpace,
        mut objective: impl FnMut(&FrozenTrial, u64) -> TellOutcome,
    ) -> Result<()> {
        loop {
            let trials = self.trials()?;
            let role = match tournament.next(&trials, self.record.direction) {
                Step::Launch(role) => role,
                Step::Done => return Ok(()),
                Step::Wait => unreachable!("one trial at a time: nothing else runs"),
            };
            let max_trials = tournament.max_trials(&trials, role, self.record.direction);
            let trial = self.ask_tournament(tournament, space, role, max_trials, false)?;
            let outcome = objective(&trial, crate::tournament::trial_seed(self.record.seed, trial.number));
            self.tell(trial.number, outcome)?;
        }
    }

    /// Enqueues a trial with fixed parameters (others are sampled when it is asked).
    pub fn enqueue(&self, params: &Params) -> Result<FrozenTrial> {
        self.enqueue_with(params, BTreeMap::new())
    }

    /// [`Study::enqueue`] with system attributes written in the same step (a re-run's [`attrs::RETRY_OF`]:
    /// no moment exists where it is not yet marked).
    pub fn enqueue_with(&self, params: &Params, system_attrs: BTreeMap<String, serde_json::Value>) -> Result<FrozenTrial> {
        let fixed = with_distributions(self.record.search_space.as_ref(), params)?;
        self.storage.create_trial(self.record.id, &NewTrial { waiting: true, params: fixed, system_attrs, ..NewTrial::default() })
    }

    /// Finishes a trial.
    pub fn tell(&self, number: u64, outcome: TellOutcome) -> Result<FrozenTrial> {
        let trial = self.storage.trial(self.record.id, number)?;
        if trial.state.is_finished() {
            return Err(Error::TrialFinished { number, state: trial.state });
        }
        match outcome {
            TellOutcome::Value(v) if v.is_finite() => self.storage.finish_trial(trial.id, TrialState::Complete, Some(v)),
            TellOutcome::Value(v) => {
                self.storage.set_trial_attr(trial.id, attrs::FAIL_REASON, &format!("objective value is {v}").into(), true)?;
                self.storage.finish_trial(trial.id, TrialState::Fail, None)
            }
            TellOutcome::Pruned => {
                let value = trial.last_step().map(|(_, v)| v).filter(|v| v.is_finite());
                self.storage.finish_trial(trial.id, TrialState::Pruned, value)
            }
            TellOutcome::Fail(reason) => {
                self.storage.set_trial_attr(trial.id, attrs::FAIL_REASON, &reason.into(), true)?;
                self.storage.finish_trial(trial.id, TrialState::Fail, None)
            }
            TellOutcome::OutOfMemory(message) => {
                let reason = if message.is_empty() { attrs::FAIL_KIND_OOM.to_string() } else { format!("oom: {message}") };
                self.storage.set_trial_attr(trial.id, attrs::FAIL_KIND, &attrs::FAIL_KIND_OOM.into(), true)?;
                self.storage.set_trial_attr(trial.id, attrs::FAIL_REASON, &reason.into(), true)?;
                self.storage.finish_trial(trial.id, TrialState::Fail, None)
            }
        }
    }

    fn fail(&self, number: u64, reason: &str) -> Result<FrozenTrial> {
        self.tell(number, TellOutcome::Fail(reason.to_string()))
    }

    /// Records an intermediate value (e.g. validation accuracy after an epoch).
    pub fn report(&self, number: u64, step: u64, value: f64) -> Result<()> {
        let trial = self.storage.trial(self.record.id, number)?;
        self.storage.report_intermediate(trial.id, step, value)
    }

    /// Asks the pruner whether a running trial should stop, from its latest report.
    pub fn should_prune(&self, number: u64) -> Result<bool> {
        self.should_prune_among(number, &|_| true)
    }

    /// [`Study::should_prune`] comparing the trial only with the trials `keep` lets through (its tournament arm).
    pub fn should_prune_among(&self, number: u64, keep: &dyn Fn(&FrozenTrial) -> bool) -> Result<bool> {
        // Reading the history costs more with every report in the study: skip it when it cannot matter.
        if self.pruner.reads() == Reads::Nothing {
            return Ok(false);
        }
        let trials: Vec<FrozenTrial> =
            self.storage.trials(self.record.id, None)?.into_iter().filter(|t| t.number == number || keep(t)).collect();
        let trial = trials
            .iter()
            .find(|t| t.number == number)
            .ok_or_else(|| Error::TrialNotFound { study: self.record.name.clone(), number })?;
        let ctx = PruneContext { study_name: &self.record.name, direction: self.record.direction, trials: &trials };
        Ok(self.pruner.prune(&ctx, trial))
    }

    /// The pruner's side of a running `trial`, for the length of the trial: see [`PruneSession`].
    pub fn prune_session(&self, trial: FrozenTrial) -> PruneSession {
        PruneSession::new(trial)
    }

    /// All trials, ordered by number.
    pub fn trials(&self) -> Result<Vec<FrozenTrial>> {
        self.storage.trials(self.record.id, None)
    }

    /// The best COMPLETE trial (the earliest one on ties).
    pub fn best_trial(&self) -> Result<FrozenTrial> {
        let complete = self.storage.trials(self.record.id, Some(&[TrialState::Complete]))?;
        best_of(&complete, self.record.direction).cloned().ok_or(Error::NoCompletedTrials)
    }
}

/// A running trial's side of the pruner, kept while the trial runs, so that a report does not read
/// every report of the study again ([`Study::should_prune_among`] does): the trial's own reports
/// are kept here as they are recorded, and each finished trial the pruner compares with is fetched
/// once (a finished trial never changes). Only trials still running elsewhere, which successive
/// halving and Hyperband compare with, are read again at each report. The decisions are
/// [`Study::should_prune_among`]'s.
pub struct PruneSession {
    /// The judged trial and the trials the pruner compares it with, ordered by number.
    trials: Vec<FrozenTrial>,
    /// The judged trial's number.
    number: u64,
    /// Finished trials already looked at, kept or not.
    seen: HashSet<u64>,
    /// Unfinished trials in `trials` besides the judged one: replaced at each report.
    unfinished: Vec<u64>,
}

impl PruneSession {
    fn new(trial: FrozenTrial) -> Self {
        Self { number: trial.number, trials: vec![trial], seen: HashSet::new(), unfinished: Vec::new() }
    }

    fn judged(&self) -> usize {
        self.trials.partition_point(|t| t.number < self.number)
    }

    fn insert(&mut self, trial: FrozenTrial) {
        let at = self.trials.partition_point(|t| t.number < trial.number);
        self.trials.insert(at, trial);
    }

    /// Notes a report that the storage has recorded; like the storage, a step keeps its first value.
    pub fn record(&mut self, step: u64, value: f64) {
        let judged = self.judged();
        self.trials[judged].intermediate_values.entry(step).or_insert(value);
    }

    /// Whether the trial should stop now, compared with the trials `keep` lets through (the same
    /// `keep` at every call: the trials kept are remembered).
    pub fn should_prune(&mut self, study: &Study, keep: &dyn Fn(&FrozenTrial) -> bool) -> Result<bool> {
        use TrialState::{Complete, Fail, Pruned, Running, Waiting};
        let record = study.record();
        let reads = study.pruner.reads();
        let finished: &[TrialState] = match reads {
            Reads::Nothing => return Ok(false),
            Reads::OwnReports => &[],
            Reads::CompleteTrials => &[Complete],
            Reads::AllTrials => &[Complete, Pruned, Fail],
        };
        let storage = study.storage();
        let unfinished = std::mem::take(&mut self.unfinished);
        self.trials.retain(|t| !unfinished.contains(&t.number));
        if !finished.is_empty() {
            for number in storage.trial_numbers(record.id, finished)? {
                if number != self.number && self.seen.insert(number) {
                    let trial = storage.trial(record.id, number)?;
                    if keep(&trial) {
                        self.insert(trial);
                    }
                }
            }
        }
        if reads == Reads::AllTrials {
            for number in storage.trial_numbers(record.id, &[Running, Waiting])? {
                if number == self.number {
                    continue;
                }
                let trial = storage.trial(record.id, number)?;
                if keep(&trial) {
                    self.unfinished.push(number);
                    self.insert(trial);
                }
            }
        }
        let ctx = PruneContext { study_name: &record.name, direction: record.direction, trials: &self.trials };
        Ok(study.pruner.prune(&ctx, &self.trials[self.judged()]))
    }
}

/// The best COMPLETE trial of `trials` by value in `direction`; ties go to the lowest trial number,
/// whatever the order of `trials`. NaN values and tournament replicates never win.
pub fn best_of(trials: &[FrozenTrial], direction: crate::trial::Direction) -> Option<&FrozenTrial> {
    // A tournament's replicate is scored on the test split for the verdict: not a search result.
    let candidate = |t: &&FrozenTrial| {
        t.state == TrialState::Complete
            && t.value.is_some_and(|v| !v.is_nan())
            && crate::tournament::Role::of(t) != Some(crate::tournament::Role::Replicate)
    };
    trials.iter().filter(candidate).min_by(|a, b| {
        let loss = |t: &FrozenTrial| direction.to_loss(t.value.unwrap_or(f64::NAN));
        loss(a).total_cmp(&loss(b)).then(a.number.cmp(&b.number))
    })
}

/// Pairs each given value with its distribution from `space`, checking that it fits.
fn with_distributions(space: Option<&SearchSpace>, params: &Params) -> Result<Vec<TrialParam>> {
    let mut fixed = Vec::new();
    for (name, value) in params {
        let dist = space
            .and_then(|s| s.get(name))
            .cloned()
            .ok_or_else(|| Error::Param { param: name.clone(), message: "not in the study's search space".into() })?;
        dist.to_internal(value).map_err(|e| Error::Param { param: name.clone(), message: e.to_string() })?;
        fixed.push((name.clone(), dist, value.clone()));
    }
    Ok(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::{Distribution, ParamValue};
    use crate::storage::InMemoryStorage;
    use crate::trial::Direction;

    fn space() -> SearchSpace {
        SearchSpace::parse("x: {type: float, low: -5.0, high: 5.0}\nk: {type: int, low: 0, high: 4}\n", "t").unwrap()
    }

    fn study(direction: Direction) -> Study {
        let mut new = NewStudy::new("s", direction, 11);
        new.search_space = Some(space());
        Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap()
    }

    #[test]
    fn ask_within_stops_new_trials_at_the_budget_but_claims_enqueued_ones() {
        let study = study(Direction::Minimize);
        let space = space();
        for _ in 0..2 {
            let t = study.ask_within(&space, Some(2), false).unwrap();
            study.tell(t.number, TellOutcome::Value(1.0)).unwrap();
        }
        let err = study.ask_within(&space, Some(2), false).unwrap_err();
        assert!(matches!(&err, Error::BudgetReached { max_trials: 2, .. }), "{err}");
        assert_eq!(study.trials().unwrap().len(), 2, "a refused ask leaves no trial behind");
        // A re-run enqueued by hand is still claimed: it replaces a trial, it does not add one.
        study.enqueue(&[("k".to_string(), ParamValue::Int(3))].into()).unwrap();
        let claimed = study.ask_within(&space, Some(2), false).unwrap();
        assert_eq!((claimed.number, claimed.params["k"].clone()), (2, ParamValue::Int(3)));
    }

    #[test]
    fn ask_fixed_keeps_the_fixed_values_and_respects_the_budget() {
        let study = study(Direction::Minimize);
        let space = space();
        let fixed: Params = [("k".to_string(), ParamValue::Int(1))].into();
        let t = study.ask_fixed(&space, &fixed, Some(1), false).unwrap();
        assert_eq!(t.params["k"], ParamValue::Int(1));
        assert!(t.params.contains_key("x"), "the rest is sampled");
        // The fixed trial counted: the next one is refused and nothing is left WAITING to be claimed later.
        let err = study.ask_fixed(&space, &fixed, Some(1), false).unwrap_err();
        assert!(matches!(&err, Error::BudgetReached { max_trials: 1, .. }), "{err}");
        assert!(study.trials().unwrap().iter().all(|t| t.state != TrialState::Waiting));
        let outside: Params = [("nope".to_string(), ParamValue::Int(1))].into();
        assert!(matches!(study.ask_fixed(&space, &outside, None, false), Err(Error::Param { .. })));
    }

    #[test]
    fn without_a_pruner_a_report_reads_no_history() {
        // Reading the history grows with every report in the study; `none` needs none of it, so not
        // even a trial that does not exist is looked up.
        let study = study(Direction::Minimize);
        assert!(!study.should_prune(99).unwrap());
        let mut new = NewStudy::new("m", Direction::Minimize, 11);
        new.pruner = crate::pruner::PrunerConfig::Median(Default::default());
        let median = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
        assert!(matches!(median.should_prune(99), Err(Error::TrialNotFound { number: 99, .. })));
    }

    #[test]
    fn a_prune_session_decides_as_reading_the_whole_study_does() {
        let configs = [
            "{type: median, n_startup_trials: 2}",
            "{type: percentile, percentile: 25.0, n_startup_trials: 1, n_warmup_steps: 2, interval_steps: 2}",
            "{type: threshold, lower: 0.3, upper: 0.9}",
            "{type: patient, patience: 2}",
            "{type: patient, patience: 1, wrapped: {type: median, n_startup_trials: 1}}",
            "{type: successive_halving, min_resource: 1}",
            "{type: hyperband, max_resource: 20}",
            "{type: none}",
        ];
        // A small deterministic stream of values in [0, 1).
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        for (config, direction) in configs.iter().flat_map(|c| [(c, Direction::Minimize), (c, Direction::Maximize)]) {
            let mut new = NewStudy::new("s", direction, 5);
            new.search_space = Some(space());
            new.pruner = serde_yaml::from_str(config).unwrap();
            let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
            let finish_one = |next: &mut dyn FnMut() -> f64| {
                let t = study.ask(&space()).unwrap();
                let steps = 3 + (next() * 20.0) as u64;
                for step in 0..steps {
                    study.report(t.number, step, next()).unwrap();
                }
                let outcome = match (next() * 4.0) as u32 {
                    0 => TellOutcome::Pruned,
                    1 => TellOutcome::Fail("crashed".into()),
                    _ => TellOutcome::Value(next()),
                };
                study.tell(t.number, outcome).unwrap();
            };
            for _ in 0..6 {
                finish_one(&mut next);
            }
            let judged = study.ask(&space()).unwrap();
            // Trials running beside it, with better values: successive halving and Hyperband compare with them.
            let neighbours: Vec<u64> = (0..3).map(|_| study.ask(&space()).unwrap().number).collect();
            let every = |_: &FrozenTrial| true;
            let some = |t: &FrozenTrial| t.number % 3 != 1;
            let mut sessions = [study.prune_session(judged.clone()), study.prune_session(judged.clone())];
            let mut decisions = Vec::new();
            for step in 0..30u64 {
                // A step reported twice keeps its first value, in the study and in the session.
                let step = if step % 7 == 6 { step - 1 } else { step };
                // In the middle of the finished trials' values and behind the running ones', so that
                // the pruners' answers depend on both.
                let value = 0.2 + 0.6 * next();
                study.report(judged.number, step, value).unwrap();
                for &n in &neighbours {
                    let better = match direction {
                        Direction::Minimize => next() * 0.2,
                        Direction::Maximize => 0.8 + next() * 0.2,
                    };
                    study.report(n, step, better).unwrap();
                }
                for (session, keep) in sessions.iter_mut().zip([&every as &dyn Fn(&FrozenTrial) -> bool, &some]) {
                    session.record(step, value);
                    let whole = study.should_prune_among(judged.number, keep).unwrap();
                    assert_eq!(session.should_prune(&study, keep).unwrap(), whole, "{config} {direction:?} step {step}");
                    decisions.push(whole);
                }
                if step % 5 == 4 {
                    finish_one(&mut next); // a trial finishing between two reports is seen by the next one
                }
            }
            // Both answers came up, so that the comparison means something (`none` never prunes).
            let pruned = decisions.iter().filter(|&&d| d).count();
            assert!(pruned < decisions.len(), "{config} {direction:?} pruned at every report");
            assert!(pruned > 0 || config.contains("none"), "{config} {direction:?} never pruned");
        }
    }

    #[test]
    fn a_prune_session_compares_with_the_trials_running_beside_it() {
        // Successive halving (halving at step 1): the judged trial reports 0.45 at steps 0 and 1,
        // with `finished` trials COMPLETE and `running` ones RUNNING, each having reported its value at step 1.
        let decide = |finished: &[f64], running: &[f64]| {
            let mut new = NewStudy::new("s", Direction::Minimize, 5);
            new.search_space = Some(space());
            new.pruner = serde_yaml::from_str("{type: successive_halving, min_resource: 1, reduction_factor: 2}").unwrap();
            let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
            for &v in finished {
                let t = study.ask(&space()).unwrap();
                study.report(t.number, 1, v).unwrap();
                study.tell(t.number, TellOutcome::Value(v)).unwrap();
            }
            let judged = study.ask(&space()).unwrap();
            for &v in running {
                study.report(study.ask(&space()).unwrap().number, 1, v).unwrap();
            }
            let mut session = study.prune_session(judged.clone());
            let mut decisions = Vec::new();
            for step in 0..2 {
                study.report(judged.number, step, 0.45).unwrap();
                session.record(step, 0.45);
                let whole = study.should_prune(judged.number).unwrap();
                assert_eq!(session.should_prune(&study, &|_| true).unwrap(), whole, "step {step}");
                decisions.push(whole);
            }
            decisions
        };
        // Behind the three running trials: pruned (by the finished trials alone it would go on).
        assert_eq!(decide(&[0.5, 0.6, 0.7], &[0.1, 0.2, 0.3]), [false, true]);
        // Third of six: promoted (counting the running trials once per report, not once per report so far).
        assert_eq!(decide(&[0.5, 0.6], &[0.1, 0.2, 0.9]), [false, false]);
    }

    #[test]
    fn ask_tell_best_in_both_directions() {
        for direction in [Direction::Minimize, Direction::Maximize] {
            let study = study(direction);
            let space = space();
            for i in 0..5 {
                let trial = study.ask(&space).unwrap();
                assert_eq!(trial.number, i);
                assert_eq!(trial.state, TrialState::Running);
                assert_eq!(trial.params.len(), 2);
                let x = trial.params["x"].as_f64().unwrap();
                study.tell(trial.number, TellOutcome::Value(x)).unwrap();
            }
            let xs: Vec<f64> = study.trials().unwrap().iter().map(|t| t.value.unwrap()).collect();
            let want = match direction {
                Direction::Minimize => xs.iter().cloned().fold(f64::INFINITY, f64::min),
                Direction::Maximize => xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
            };
            assert_eq!(study.best_trial().unwrap().value, Some(want));
        }
    }

    #[test]
    fn nan_fails_pruned_takes_last_value_and_finished_trials_are_final() {
        let study = study(Direction::Minimize);
        let a = study.ask(&space()).unwrap();
        assert_eq!(study.tell(a.number, TellOutcome::Value(f64::NAN)).unwrap().state, TrialState::Fail);
        let b = study.ask(&space()).unwrap();
        study.report(b.number, 1, 0.7).unwrap();
        study.report(b.number, 2, 0.5).unwrap();
        let pruned = study.tell(b.number, TellOutcome::Pruned).unwrap();
        assert_eq!((pruned.state, pruned.value), (TrialState::Pruned, Some(0.5)));
        assert!(matches!(study.tell(b.number, TellOutcome::Value(1.0)), Err(Error::TrialFinished { .. })));
        assert!(matches!(study.best_trial(), Err(Error::NoCompletedTrials)));
    }

    #[test]
    fn enqueued_params_are_kept_and_the_rest_sampled() {
        let study = study(Direction::Minimize);
        let fixed: Params = [("k".to_string(), ParamValue::Int(3))].into();
        study.enqueue(&fixed).unwrap();
        let trial = study.ask(&space()).unwrap();
        assert_eq!(trial.number, 0);
        assert_eq!(trial.params["k"], ParamValue::Int(3));
        assert!(trial.params.contains_key("x"));
        let bad: Params = [("k".to_string(), ParamValue::Int(9))].into();
        assert!(study.enqueue(&bad).is_err());
    }

    #[test]
    fn best_of_breaks_ties_by_number_in_any_order_and_skips_nan() {
        let trial = |number, value| {
            let mut t = FrozenTrial::new(number as i64, number, TrialState::Complete);
            t.value = Some(value);
            t
        };
        let trials = vec![trial(3, 1.0), trial(2, f64::NAN), trial(1, 1.0), trial(0, 5.0)];
        assert_eq!(best_of(&trials, Direction::Minimize).unwrap().number, 1);
        assert_eq!(best_of(&trials, Direction::Maximize).unwrap().number, 0);
        assert!(best_of(&[trial(0, f64::NAN)], Direction::Minimize).is_none());
        // A tournament's replicate (scored on the test split) is never the best trial.
        let mut replicate = trial(2, -100.0);
        replicate.system_attrs.insert(crate::attrs::TOURNAMENT_ROLE.into(), "replicate".into());
        let with_replicate = [trials[0].clone(), trials[2].clone(), replicate];
        assert_eq!(best_of(&with_replicate, Direction::Minimize).unwrap().number, 1);
    }

    #[test]
    fn reproducible_across_fresh_study_objects() {
        let storage: Arc<dyn Storage> = Arc::new(InMemoryStorage::new());
        let mut new = NewStudy::new("r", Direction::Minimize, 5);
        new.search_space = Some(space());
        let a = Study::create(storage.clone(), &new).unwrap();
        let first = a.ask(&space()).unwrap();
        // Same seed, same trial number, same history → same suggestion in another "process".
        let other: Arc<dyn Storage> = Arc::new(InMemoryStorage::new());
        let b = Study::create(other, &new).unwrap();
        assert_eq!(b.ask(&space()).unwrap().params, first.params);
        let second = a.ask(&space()).unwrap();
        assert_ne!(second.params, first.params);
        let _ = Distribution::Int { low: 0, high: 1, log: false, step: 1 };
    }
}

//! The storage seam: where studies and trials live (memory, SQLite, PostgreSQL).

/// The trial attribute keys nightshift writes.
pub mod attrs;
mod memory;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::pruner::PrunerConfig;
use crate::sampler::SamplerConfig;
use crate::space::{Distribution, ParamValue, SearchSpace};
use crate::trial::{Direction, FrozenTrial, TrialState};

pub use memory::InMemoryStorage;

/// A study as stored: its identity and everything needed to rebuild its sampler and pruner in
/// any process.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StudyRecord {
    /// Storage-wide identifier.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// Whether the objective is minimised or maximised.
    pub direction: Direction,
    /// Seed of every sampler and pruner decision.
    pub seed: u64,
    /// The sampler, rebuilt from this in any process.
    pub sampler: SamplerConfig,
    /// The pruner, rebuilt from this in any process.
    pub pruner: PrunerConfig,
    /// The search space, when the study was created with one (the CLI may pass it per `ask`).
    pub search_space: Option<SearchSpace>,
    /// Attributes the user sets.
    pub user_attrs: BTreeMap<String, serde_json::Value>,
    /// Unix seconds.
    pub created_at: f64,
}

/// What [`Storage::create_study`] needs.
#[derive(Clone, Debug, PartialEq)]
pub struct NewStudy {
    /// Unique name.
    pub name: String,
    /// Whether the objective is minimised or maximised.
    pub direction: Direction,
    /// Seed of every sampler and pruner decision.
    pub seed: u64,
    /// The sampler.
    pub sampler: SamplerConfig,
    /// The pruner.
    pub pruner: PrunerConfig,
    /// The search space, if the study has a fixed one.
    pub search_space: Option<SearchSpace>,
    /// Attributes the user sets.
    pub user_attrs: BTreeMap<String, serde_json::Value>,
}

impl NewStudy {
    /// The record a backend stores for this study, with the id it assigned and the creation time now.
    pub fn to_record(&self, id: i64) -> StudyRecord {
        StudyRecord {
            id,
            name: self.name.clone(),
            direction: self.direction,
            seed: self.seed,
            sampler: self.sampler.clone(),
            pruner: self.pruner.clone(),
            search_space: self.search_space.clone(),
            user_attrs: self.user_attrs.clone(),
            created_at: crate::trial::now_unix(),
        }
    }

    /// A study with the default sampler and pruner, no search space and no attributes.
    pub fn new(name: impl Into<String>, direction: Direction, seed: u64) -> Self {
        Self {
            name: name.into(),
            direction,
            seed,
            sampler: SamplerConfig::default(),
            pruner: PrunerConfig::default(),
            search_space: None,
            user_attrs: BTreeMap::new(),
        }
    }
}

/// One parameter of a trial: name, distribution and value.
pub type TrialParam = (String, Distribution, ParamValue);

/// A trial to create: RUNNING (an `ask`) or WAITING (enqueued with fixed parameters).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NewTrial {
    /// Enqueue as WAITING (claimed by a later ask) instead of RUNNING.
    pub waiting: bool,
    /// Parameters known up front (enqueued trials).
    pub params: Vec<TrialParam>,
    /// System attributes written with the trial (see [`attrs`]).
    pub system_attrs: BTreeMap<String, serde_json::Value>,
    /// A global budget: refuse a RUNNING trial with [`crate::Error::BudgetReached`] when the
    /// study already has this many non-WAITING trials. Checked in the same atomic step as the
    /// numbering, so workers on many machines together never exceed it. WAITING trials are
    /// neither counted nor refused (claiming one does not grow the count past what was enqueued).
    pub max_trials: Option<u64>,
    /// A RUNNING trial whose asker sends heartbeats (an orchestrator): its first heartbeat is
    /// recorded in the same atomic step as its creation, so if the asker dies at once the trial
    /// still goes stale instead of staying RUNNING forever. Trials asked from a shell loop
    /// (`nightshift ask`) never beat and leave this false.
    pub heartbeat: bool,
}

impl NewTrial {
    /// The snapshot of this trial created now as trial `number`: its state, start and first heartbeat
    /// times, parameters (the first of a repeated name wins) and system attributes. Its `id` is 0 until
    /// the backend stores it and sets the id it got.
    pub fn snapshot(&self, number: u64) -> FrozenTrial {
        let state = if self.waiting { TrialState::Waiting } else { TrialState::Running };
        let mut trial = FrozenTrial::new(0, number, state);
        if !self.waiting {
            let now = crate::trial::now_unix();
            trial.started_at = Some(now);
            trial.heartbeat_at = self.heartbeat.then_some(now);
        }
        for (name, dist, value) in &self.params {
            if !trial.params.contains_key(name) {
                trial.params.insert(name.clone(), value.clone());
                trial.distributions.insert(name.clone(), dist.clone());
            }
        }
        trial.system_attrs = self.system_attrs.clone();
        trial
    }

    /// Whether a study with `used` non-WAITING trials must refuse this trial.
    pub fn over_budget(&self, used: u64) -> bool {
        !self.waiting && self.max_trials.is_some_and(|max| used >= max)
    }
}

/// Where studies live. Every backend passes the conformance suite in [`crate::testing`].
///
/// Invariants every implementation keeps, also across processes sharing one database:
/// - Trial numbers are 0, 1, 2, … per study, each given out exactly once (atomic numbering),
///   and a WAITING trial is claimed by exactly one caller.
/// - A finished trial (COMPLETE, PRUNED, FAIL) never changes again: writes to it fail with
///   [`crate::Error::TrialFinished`].
/// - Returned values are snapshots; later writes never change them.
/// - Trials are returned ordered by number.
/// - Errors are reported, never panicked; transient contention (e.g. SQLite's "database is
///   locked") is retried inside the backend and does not surface.
pub trait Storage: Send + Sync {
    /// Creates a study; fails with [`crate::Error::StudyExists`] if the name is taken.
    fn create_study(&self, study: &NewStudy) -> Result<StudyRecord>;
    /// Loads a study by name; [`crate::Error::StudyNotFound`] if absent.
    fn load_study(&self, name: &str) -> Result<StudyRecord>;
    /// All studies, ordered by name.
    fn list_studies(&self) -> Result<Vec<StudyRecord>>;
    /// Sets (or replaces) a study-level user attribute.
    fn set_study_user_attr(&self, study_id: i64, key: &str, value: &serde_json::Value) -> Result<()>;
    /// Deletes a study and all its trials in one step; the name becomes free for a new study.
    fn delete_study(&self, study_id: i64) -> Result<()>;

    /// Creates a trial with the next number. RUNNING trials get their start time, and a first
    /// heartbeat when [`NewTrial::heartbeat`] is set.
    /// With `max_trials`, fails with [`crate::Error::BudgetReached`] instead when the budget is used up.
    fn create_trial(&self, study_id: i64, trial: &NewTrial) -> Result<FrozenTrial>;
    /// Atomically turns the oldest WAITING trial into a RUNNING one and returns it, if any.
    /// With `heartbeat`, the claimed trial gets its first heartbeat in the same atomic step.
    fn claim_waiting_trial(&self, study_id: i64, heartbeat: bool) -> Result<Option<FrozenTrial>>;
    /// Records parameters of a RUNNING trial (params already set keep their value).
    fn set_trial_params(&self, trial_id: i64, params: &[TrialParam]) -> Result<()>;
    /// Records an intermediate value; a step reported twice keeps its first value (as Optuna).
    fn report_intermediate(&self, trial_id: i64, step: u64, value: f64) -> Result<()>;
    /// Sets (or replaces) a trial attribute; `system` picks the system namespace over the user's.
    fn set_trial_attr(&self, trial_id: i64, key: &str, value: &serde_json::Value, system: bool) -> Result<()>;
    /// Finishes a RUNNING (or WAITING) trial and returns its final snapshot.
    fn finish_trial(&self, trial_id: i64, state: TrialState, value: Option<f64>) -> Result<FrozenTrial>;
    /// Records that a RUNNING trial is alive now.
    fn heartbeat(&self, trial_id: i64) -> Result<()>;
    /// Fails every RUNNING trial of the study whose last heartbeat is older than `grace_seconds`
    /// (trials that never sent a heartbeat are left alone), recording the reason; returns them.
    /// Each stale trial is failed exactly once, even when several processes call this at once.
    fn fail_stale_trials(&self, study_id: i64, grace_seconds: f64) -> Result<Vec<FrozenTrial>>;

    /// Adds finished trials (COMPLETE, PRUNED or FAIL — an import) after the study's last one,
    /// numbered in order, with their parameters, value, intermediate values, attributes and
    /// start/finish times (their ids and numbers are ignored). All or nothing: when one cannot be
    /// written, none is ([`finished_trial_params`] checks each before anything is written).
    fn add_finished_trials(&self, study_id: i64, trials: &[FrozenTrial]) -> Result<()>;

    /// One trial by number.
    fn trial(&self, study_id: i64, number: u64) -> Result<FrozenTrial>;
    /// All trials of a study, ordered by number, optionally only those in `states`.
    fn trials(&self, study_id: i64, states: Option<&[TrialState]>) -> Result<Vec<FrozenTrial>>;

    /// The numbers of the study's trials in `states`, ascending: what [`Storage::trials`] would
    /// return, without reading the trials (a backend on disk overrides this with a cheap query).
    fn trial_numbers(&self, study_id: i64, states: &[TrialState]) -> Result<Vec<u64>> {
        Ok(self.trials(study_id, Some(states))?.into_iter().map(|t| t.number).collect())
    }
}

/// Checks a trial for [`Storage::add_finished_trials`] — a final state, a value when COMPLETE,
/// every parameter with its distribution and inside it — and returns its parameters as written.
pub fn finished_trial_params(trial: &FrozenTrial) -> Result<Vec<TrialParam>> {
    let at = |message: String| crate::Error::storage(format!("trial {}: {message}", trial.number));
    if !trial.state.is_finished() {
        return Err(at(format!("only finished trials can be added, not {}", trial.state)));
    }
    if trial.state == TrialState::Complete && trial.value.is_none() {
        return Err(at("a COMPLETE trial needs a value".into()));
    }
    trial
        .params
        .iter()
        .map(|(name, value)| {
            let dist = trial.distributions.get(name).ok_or_else(|| at(format!("parameter '{name}' has no distribution")))?;
            dist.to_internal(value).map_err(|e| at(format!("parameter '{name}': {e}")))?;
            Ok((name.clone(), dist.clone(), value.clone()))
        })
        .collect()
}

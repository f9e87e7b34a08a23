//! # nightshift-search
//!
//! The search engine of nightshift, pure logic with no I/O: what to try next and when to stop.
//!
//! ## Layout
//! - [`SearchSpace`] / [`Distribution`] / [`ParamValue`] (`space.rs`): parameters parsed from YAML or
//!   JSON (ours or Optuna's `--search-space` format) and validated, with errors that name the
//!   parameter and line.
//! - [`FrozenTrial`], [`TrialState`], [`Direction`] (`trial.rs`): immutable snapshots of trials.
//! - [`Sampler`] (`sampler/`): [`AutoSampler`] (`sampler/auto.rs`, the default: GP while it pays
//!   off, TPE beyond), [`TpeSampler`] (`sampler/tpe/`), [`GpSampler`] (`sampler/gp/`,
//!   Gaussian-process Bayesian optimisation), [`RandomSampler`], grid, QMC.
//! - [`Pruner`] (`pruner/`): median, percentile, successive halving, Hyperband, patient, threshold.
//! - [`Storage`] (`storage/`): the persistence seam, with [`InMemoryStorage`]; the SQLite and
//!   PostgreSQL backends live in `nightshift-store` and pass the same [`testing`] suite.
//!   [`attrs`] names the trial attribute keys every crate writes and reads (`device`, `slot`, …).
//! - [`Study`] (`study.rs`): ask / tell / report / should_prune / best trial.
//! - [`python_json`]: reading JSON as Python writes it (bare `NaN`, `Infinity`).
//!
//! ## Example
//! ```
//! use std::sync::Arc;
//! use nightshift_search::{Direction, InMemoryStorage, NewStudy, SearchSpace, Study, TellOutcome};
//!
//! let space = SearchSpace::parse("x: {type: float, low: -10.0, high: 10.0}", "example").unwrap();
//! let study = Study::create(Arc::new(InMemoryStorage::new()), &NewStudy::new("quadratic", Direction::Minimize, 42)).unwrap();
//! for _ in 0..30 {
//!     let trial = study.ask(&space).unwrap();
//!     let x = trial.params["x"].as_f64().unwrap();
//!     study.tell(trial.number, TellOutcome::Value((x - 2.0).powi(2))).unwrap();
//! }
//! assert!(study.best_trial().unwrap().value.unwrap() < 1.0);
//! ```

#![warn(missing_docs)]

mod error;
/// Pruners: when to stop a trial early.
pub mod pruner;
/// Reading JSON as Python writes it (bare `NaN`, `Infinity`).
pub mod python_json;
/// Samplers: what to try next.
pub mod sampler;
/// Search spaces and parameter values.
pub mod space;
/// The storage seam and the in-memory backend.
pub mod storage;
mod study;
/// The conformance suite every storage backend passes.
pub mod testing;
/// Budget-matched tournaments between the values of one parameter, with replicated winners.
pub mod tournament;
mod trial;

pub use error::{Error, Result};

/// A configuration serialised as `{type: name, option: value, …}` in words: `name (option value,
/// …)`, or just `name` without options — what `nightshift check` prints for samplers and pruners.
pub(crate) fn describe_tagged(config: &impl serde::Serialize) -> String {
    let Ok(serde_json::Value::Object(map)) = serde_json::to_value(config) else { return String::new() };
    let name = map.get("type").and_then(|t| t.as_str()).unwrap_or_default().to_string();
    let options: Vec<String> = map.iter().filter(|(k, _)| *k != "type").map(|(k, v)| format!("{k} {v}")).collect();
    if options.is_empty() { name } else { format!("{name} ({})", options.join(", ")) }
}
pub use pruner::{
    HyperbandConfig, HyperbandPruner, MedianConfig, MedianPruner, NopPruner, PatientConfig, PatientPruner, PercentileConfig,
    PercentilePruner, PruneContext, Pruner, PrunerConfig, Reads, Resource, SuccessiveHalvingConfig, SuccessiveHalvingPruner,
    ThresholdConfig, ThresholdPruner,
};
pub use sampler::{
    AutoConfig, AutoSampler, GpConfig, GpSampler, GridSampler, QmcConfig, QmcSampler, RandomSampler, Sampler, SamplerConfig,
    SamplingContext, TpeConfig, TpeSampler,
};
pub use space::{Distribution, ParamValue, Params, SearchSpace};
pub use storage::{InMemoryStorage, NewStudy, NewTrial, Storage, StudyRecord, TrialParam, attrs, finished_trial_params};
pub use study::{PruneSession, Study, TellOutcome, best_of};
pub use tournament::{Role, Step, Tournament, trial_seed};
pub use trial::{Direction, FrozenTrial, TrialState, now_unix};

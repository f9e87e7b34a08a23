//! The search crate's error type.

use crate::trial::TrialState;

/// Everything that can go wrong in the search engine, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A search space (YAML, JSON or Optuna JSON) that cannot be used. `location` is
    /// `file:line:column`, `line N` or empty when unknown.
    #[error("invalid search space{}: {message}", fmt_location(.location, .param))]
    Space { location: String, param: Option<String>, message: String },
    /// A sampler or pruner configuration that cannot be used.
    #[error("invalid {what} configuration: {message}")]
    Config { what: &'static str, message: String },
    #[error("study '{0}' not found (create it first with `nightshift create-study`, or list them with `nightshift studies`)")]
    StudyNotFound(String),
    #[error("study '{0}' already exists (pass --skip-if-exists to reuse it)")]
    StudyExists(String),
    #[error("trial {number} of study '{study}' not found")]
    TrialNotFound { study: String, number: u64 },
    #[error("trial {number} is already finished ({state}); a finished trial cannot be changed")]
    TrialFinished { number: u64, state: TrialState },
    #[error("trial {number}: {message}")]
    InvalidTrialUpdate { number: u64, message: String },
    #[error("parameter '{param}': {message}")]
    Param { param: String, message: String },
    #[error("the study has no completed trials yet")]
    NoCompletedTrials,
    #[error("grid exhausted: all {0} combinations of the grid have been sampled")]
    GridExhausted(usize),
    /// `create_trial` with `max_trials` found the study's budget used up (across all workers).
    #[error("budget reached: study '{study}' already has its {max_trials} trials")]
    BudgetReached { study: String, max_trials: u64 },
    /// Failure inside a storage backend (SQLite, PostgreSQL, …).
    #[error("storage: {0}")]
    Storage(String),
}

fn fmt_location(location: &str, param: &Option<String>) -> String {
    let mut out = String::new();
    if !location.is_empty() {
        out.push_str(" at ");
        out.push_str(location);
    }
    if let Some(p) = param {
        out.push_str(&format!(", parameter '{p}'"));
    }
    out
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

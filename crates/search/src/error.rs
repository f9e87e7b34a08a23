//! The search crate's error type.

use crate::trial::TrialState;

/// Everything that can go wrong in the search engine, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A search space (YAML, JSON or Optuna JSON) that cannot be used. `location` is
    /// `file:line:column`, `line N` or empty when unknown.
    #[error("invalid search space{}: {message}", fmt_location(.location, .param))]
    Space {
        /// Where in the input: file:line:column, line N, or empty.
        location: String,
        /// The parameter concerned, when there is one.
        param: Option<String>,
        /// What is wrong, in words.
        message: String,
    },
    /// A sampler or pruner configuration that cannot be used.
    #[error("invalid {what} configuration: {message}")]
    Config {
        /// Which configuration: "sampler" or "pruner".
        what: &'static str,
        /// What is wrong, in words.
        message: String,
    },
    /// No study has this name.
    #[error("study '{0}' not found (create it first with `nightshift create-study`, or list them with `nightshift studies`)")]
    StudyNotFound(String),
    /// A study with this name exists already.
    #[error("study '{0}' already exists (pass --skip-if-exists to reuse it)")]
    StudyExists(String),
    /// The study has no trial with this number.
    #[error("trial {number} of study '{study}' not found")]
    TrialNotFound {
        /// The study name.
        study: String,
        /// The trial number.
        number: u64,
    },
    /// A write to a trial that is COMPLETE, PRUNED or FAIL.
    #[error("trial {number} is already finished ({state}); a finished trial cannot be changed")]
    TrialFinished {
        /// The trial number.
        number: u64,
        /// The state the trial finished in.
        state: TrialState,
    },
    /// A report or tell the trial cannot take (a step out of order, a value of the wrong kind).
    #[error("trial {number}: {message}")]
    InvalidTrialUpdate {
        /// The trial number.
        number: u64,
        /// What is wrong, in words.
        message: String,
    },
    /// A parameter value that does not fit its distribution, or cannot be stored.
    #[error("parameter '{param}': {message}")]
    Param {
        /// The parameter concerned, when there is one.
        param: String,
        /// What is wrong, in words.
        message: String,
    },
    /// A best trial was asked for before any trial completed.
    #[error("the study has no completed trials yet")]
    NoCompletedTrials,
    /// The grid sampler has handed out every combination.
    #[error("grid exhausted: all {0} combinations of the grid have been sampled")]
    GridExhausted(usize),
    /// `create_trial` with `max_trials` found the study's budget used up (across all workers).
    #[error("budget reached: study '{study}' already has its {max_trials} trials")]
    BudgetReached {
        /// The study name.
        study: String,
        /// The budget: the most trials the study may have.
        max_trials: u64,
    },
    /// Failure inside a storage backend (SQLite, PostgreSQL, …). The backend's own error is kept
    /// as the source (downcast it to tell a busy database from a full disk); the message quotes it.
    #[error("storage: {0}")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// A storage failure told in words: an id no study or trial has, a value the backend cannot hold.
    pub fn storage(message: impl Into<String>) -> Self {
        Error::Storage(message.into().into())
    }
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

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

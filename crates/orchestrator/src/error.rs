//! The orchestrator's error type.

use std::path::PathBuf;

/// Everything that can stop a sweep from starting or running, with the context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sweep spec that cannot be used. `location` is `file:line:column` (or the file alone when
    /// the line is unknown); `field` is the dotted path of the offending field (`budget.timeout`).
    #[error("{location}: {}{message}", fmt_field(.field))]
    Spec { location: String, field: String, message: String },
    #[error("cannot {action} {}: {source}", .path.display())]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Search(#[from] nightshift_search::Error),
    #[error("study '{0}' has no stored spec: it was not started with `nightshift run` (run the spec file instead)")]
    NoStoredSpec(String),
    #[error("no device slots: {0}")]
    NoSlots(String),
    #[error("internal: {0}")]
    Internal(String),
}

fn fmt_field(field: &str) -> String {
    if field.is_empty() { String::new() } else { format!("field `{field}`: ") }
}

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { action, path: path.into(), source }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

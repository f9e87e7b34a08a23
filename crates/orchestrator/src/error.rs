//! The orchestrator's error type.

use std::path::PathBuf;

/// Everything that can stop a sweep from starting or running, with the context to fix it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A sweep spec that cannot be used. `location` is `file:line:column` (or the file alone when
    /// the line is unknown); `field` is the dotted path of the offending field (`budget.timeout`).
    #[error("{location}: {}{message}", fmt_field(.field))]
    Spec {
        /// Where: `file:line:column`, or the file alone.
        location: String,
        /// The dotted path of the field, empty when the error is not about one field.
        field: String,
        /// What is wrong, and where it helps, what would be right.
        message: String,
    },
    /// A file or directory the sweep needs could not be read, written or created.
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. `create` or `read`.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The search engine or the storage refused (a study that exists, a budget reached, a storage failure).
    #[error(transparent)]
    Search(#[from] nightshift_search::Error),
    /// `resume`/`worker` on a study that holds no spec (it was made by the study verbs, not `nightshift run`).
    #[error("study '{0}' has no stored spec: it was not started with `nightshift run` (run the spec file instead)")]
    NoStoredSpec(String),
    /// The spec's `devices:` give no slot to run a trial on here.
    #[error("no device slots: {0}")]
    NoSlots(String),
    /// A broken invariant of the orchestrator itself (a bug).
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

/// The orchestrator's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

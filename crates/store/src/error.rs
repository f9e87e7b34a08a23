//! The store crate's error type: every failure names the database and the operation.

use std::path::PathBuf;

/// What can go wrong opening or using a persistent storage.
///
/// At the [`nightshift_search::Storage`] boundary these become
/// [`nightshift_search::Error::Storage`] with this message (domain errors such as
/// `StudyNotFound` or `TrialFinished` pass through unchanged).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid storage URL '{url}': {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "storage URL '{url}': PostgreSQL support is not built yet; use a SQLite URL such as sqlite:///nightshift.db (a relative file) or sqlite:////abs/path/nightshift.db"
    )]
    PostgresNotBuilt { url: String },
    #[error("cannot create directory {} for the database: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("cannot open SQLite database {location}: {source}")]
    Open { location: String, source: rusqlite::Error },
    #[error("{location} is not a SQLite database, or it is corrupt ({source})")]
    NotADatabase { location: String, source: rusqlite::Error },
    #[error(
        "{location} is a SQLite database but not a nightshift one (it already has tables: {tables}); point the storage at a new file"
    )]
    ForeignDatabase { location: String, tables: String },
    #[error(
        "{location} has schema version {found}, but this nightshift supports only up to version {supported}; upgrade nightshift to use it"
    )]
    SchemaTooNew { location: String, found: i64, supported: i64 },
    #[error("migrating {location} to schema version {version}: {source}")]
    Migration { location: String, version: i64, source: rusqlite::Error },
    #[error("SQLite {location}: {op}: {source}")]
    Sqlite { location: String, op: &'static str, source: rusqlite::Error },
    #[error("SQLite {location}: {op}: stored data cannot be read: {message}")]
    CorruptData { location: String, op: &'static str, message: String },
    #[error(
        "SQLite {location}: {op}: another process kept the database busy for {waited_s:.0} s; is one stuck holding a transaction open?"
    )]
    Busy { location: String, op: &'static str, waited_s: f64 },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for nightshift_search::Error {
    fn from(e: Error) -> Self {
        nightshift_search::Error::Storage(e.to_string())
    }
}

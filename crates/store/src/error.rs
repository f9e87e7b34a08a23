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
    #[error("storage URL '{url}' names a PostgreSQL database, not a SQLite file; open it with open_storage or PostgresStorage")]
    NotSqlite { url: String },
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
    #[error(
        "SQLite {location}: {op}: {source}. Did the disk holding it fail, fill up or go read-only? Fix that, then `nightshift resume`; `sqlite3 {location} 'PRAGMA integrity_check'` tells whether the file itself is damaged"
    )]
    SqliteDisk { location: String, op: &'static str, source: rusqlite::Error },
    #[error("SQLite {location}: {op}: stored data cannot be read: {message}")]
    CorruptData { location: String, op: &'static str, message: String },
    #[error(
        "SQLite {location}: {op}: another process kept the database busy for {waited_s:.0} s; is one stuck holding a transaction open?"
    )]
    Busy { location: String, op: &'static str, waited_s: f64 },
    #[error("cannot connect to PostgreSQL {location}: {source}")]
    PostgresConnect { location: String, source: postgres::Error },
    #[error("PostgreSQL {location}: {op}: {source}")]
    Postgres { location: String, op: &'static str, source: postgres::Error },
    #[error("migrating PostgreSQL {location} to schema version {version}: {source}")]
    PostgresMigration { location: String, version: i64, source: postgres::Error },
    #[error(
        "PostgreSQL {location}: the schema already has tables but no nightshift_schema ({tables}); use a new database or schema"
    )]
    PostgresForeign { location: String, tables: String },
    #[error("PostgreSQL {location}: {op}: stored data cannot be read: {message}")]
    PostgresCorruptData { location: String, op: &'static str, message: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for nightshift_search::Error {
    fn from(e: Error) -> Self {
        nightshift_search::Error::Storage(e.to_string())
    }
}

//! The store crate's error type: every failure names the database and the operation.

use std::path::PathBuf;

/// What can go wrong opening or using a persistent storage.
///
/// At the [`nightshift_search::Storage`] boundary these become
/// [`nightshift_search::Error::Storage`] holding this error (domain errors such as
/// `StudyNotFound` or `TrialFinished` pass through unchanged).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A storage URL that cannot be parsed or names an unsupported scheme (password redacted).
    #[error("invalid storage URL '{url}': {reason}")]
    InvalidUrl {
        /// The URL as given, its password redacted.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A PostgreSQL URL given where only a SQLite file can be opened.
    #[error("storage URL '{url}' names a PostgreSQL database, not a SQLite file; open it with open_storage or PostgresStorage")]
    NotSqlite {
        /// The URL as given, its password redacted.
        url: String,
    },
    /// The directory for a new SQLite file cannot be created.
    #[error("cannot create directory {} for the database: {source}", path.display())]
    CreateDir {
        /// The path concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// SQLite cannot open the file.
    #[error("cannot open SQLite database {location}: {source}")]
    Open {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// The file exists but is not a SQLite database.
    #[error("{location} is not a SQLite database, or it is corrupt ({source})")]
    NotADatabase {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// A SQLite database with tables of another program: left untouched.
    #[error(
        "{location} is a SQLite database but not a nightshift one (it already has tables: {tables}); point the storage at a new file"
    )]
    ForeignDatabase {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The tables found, comma-separated.
        tables: String,
    },
    /// A database written by a newer nightshift.
    #[error(
        "{location} has schema version {found}, but this nightshift supports only up to version {supported}; upgrade nightshift to use it"
    )]
    SchemaTooNew {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The version found.
        found: i64,
        /// The newest version this build supports.
        supported: i64,
    },
    /// A database opened read-only needs a schema upgrade, which needs write access.
    #[error(
        "{location} has schema version {found} and this nightshift reads version {supported}: the upgrade needs write access to the file and its directory, which this user lacks; run any nightshift verb on it once as a user who can write there"
    )]
    ReadOnlyNeedsUpgrade {
        /// The database file.
        location: String,
        /// The version found.
        found: i64,
        /// The version this build reads.
        supported: i64,
    },
    /// A write to a SQLite database that was opened read-only.
    #[error(
        "SQLite {location} could only be opened read-only (this user cannot write the file or its directory, or its disk is read-only): {op} needs write access"
    )]
    ReadOnly {
        /// The database file.
        location: String,
        /// The operation refused.
        op: &'static str,
    },
    /// A SQLite schema migration failed; the database keeps its old version.
    #[error("migrating {location} to schema version {version}: {source}")]
    Migration {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The version being migrated to.
        version: i64,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// A SQLite operation failed.
    #[error("SQLite {location}: {op}: {source}")]
    Sqlite {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The operation that failed.
        op: &'static str,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// A SQLite operation failed in a way that points at the disk (I/O error, full, read-only).
    #[error(
        "SQLite {location}: {op}: {source}. Did the disk holding it fail, fill up or go read-only? Fix that, then `nightshift resume`; `sqlite3 {location} 'PRAGMA integrity_check'` tells whether the file itself is damaged"
    )]
    SqliteDisk {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The operation that failed.
        op: &'static str,
        /// The underlying error.
        source: rusqlite::Error,
    },
    /// A SQLite row holds data that does not decode (edited or damaged by another program).
    #[error("SQLite {location}: {op}: stored data cannot be read: {message}")]
    CorruptData {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The operation that failed.
        op: &'static str,
        /// What is wrong, in words.
        message: String,
    },
    /// Lock contention outlasted the retry loop.
    #[error(
        "SQLite {location}: {op}: another process kept the database busy for {waited_s:.0} s; is one stuck holding a transaction open?"
    )]
    Busy {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The operation that failed.
        op: &'static str,
        /// How long the retries waited, in seconds.
        waited_s: f64,
    },
    /// The PostgreSQL server cannot be reached or refuses the login.
    #[error("cannot connect to PostgreSQL {location}: {source}")]
    PostgresConnect {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The underlying error.
        source: postgres::Error,
    },
    /// A PostgreSQL operation failed.
    #[error("PostgreSQL {location}: {op}: {source}")]
    Postgres {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The operation that failed.
        op: &'static str,
        /// The underlying error.
        source: postgres::Error,
    },
    /// A PostgreSQL schema migration failed; the database keeps its old version.
    #[error("migrating PostgreSQL {location} to schema version {version}: {source}")]
    PostgresMigration {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The version being migrated to.
        version: i64,
        /// The underlying error.
        source: postgres::Error,
    },
    /// A PostgreSQL schema with tables of another program: left untouched.
    #[error(
        "PostgreSQL {location}: the schema already has tables but no nightshift_schema ({tables}); use a new database or schema"
    )]
    PostgresForeign {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The tables found, comma-separated.
        tables: String,
    },
    /// A PostgreSQL row holds data that does not decode.
    #[error("PostgreSQL {location}: {op}: stored data cannot be read: {message}")]
    PostgresCorruptData {
        /// The database: the file path, or the URL with its password redacted.
        location: String,
        /// The operation that failed.
        op: &'static str,
        /// What is wrong, in words.
        message: String,
    },
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for nightshift_search::Error {
    fn from(e: Error) -> Self {
        nightshift_search::Error::Storage(Box::new(e))
    }
}

//! # nightshift-store
//!
//! Persistent storages for nightshift studies: the implementations of
//! [`nightshift_search::Storage`] that outlive a process and are shared between processes.
//!
//! ## Layout
//! - [`open_storage`] / [`StorageUrl`] (`lib.rs`): a storage from a URL as users write it,
//!   `sqlite:///relative.db`, `sqlite:////abs/path.db` or a plain path (SQLAlchemy's convention,
//!   so Optuna command lines port unchanged), or `postgres://user[:password]@host[:port]/db`.
//! - [`SqliteStorage`] (`sqlite.rs`): the embedded default. WAL mode, `BEGIN IMMEDIATE` write
//!   transactions, busy timeout plus retry, so many processes can ask and tell on one file.
//! - [`PostgresStorage`] (`postgres.rs`): one database for workers on many machines; row locks,
//!   `FOR UPDATE SKIP LOCKED` claiming, retried serialization failures.
//! - [`optuna`] (`optuna/`): Python Optuna's JournalStorage file (written and read) and RDB SQLite
//!   file (read), for `nightshift export` / `nightshift import`.
//! - [`SCHEMA_VERSION`] (`schema.rs`): the tables and their migrations.
//! - [`Error`] (`error.rs`): what went wrong, naming the file and the operation; it becomes
//!   [`nightshift_search::Error::Storage`] at the trait boundary.
//!
//! ## Example
//! ```
//! use nightshift_search::{Direction, NewStudy, SearchSpace, Study, TellOutcome};
//!
//! let dir = tempfile::tempdir().unwrap();
//! let url = format!("sqlite:///{}", dir.path().join("studies/demo.db").display());
//! let space = SearchSpace::parse("x: {type: float, low: -10.0, high: 10.0}", "example").unwrap();
//!
//! let storage = nightshift_store::open_storage(&url).unwrap();
//! let study = Study::create(storage, &NewStudy::new("demo", Direction::Minimize, 7)).unwrap();
//! for _ in 0..5 {
//!     let trial = study.ask(&space).unwrap();
//!     let x = trial.params["x"].as_f64().unwrap();
//!     study.tell(trial.number, TellOutcome::Value(x * x)).unwrap();
//! }
//!
//! // Another process (here: another connection) sees everything.
//! let again = Study::load(nightshift_store::open_storage(&url).unwrap(), "demo").unwrap();
//! assert_eq!(again.trials().unwrap().len(), 5);
//! ```

mod attempt;
mod error;
pub mod optuna;
mod postgres;
mod schema;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

use nightshift_search::Storage;

pub use error::{Error, Result};
pub use postgres::{POSTGRES_SCHEMA_VERSION, PostgresStorage, redact_url};
pub use schema::SCHEMA_VERSION;
pub use sqlite::SqliteStorage;

/// A parsed storage URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageUrl {
    /// A SQLite file: `sqlite:///relative.db`, `sqlite:////abs/path.db`, or a plain path.
    Sqlite(PathBuf),
    /// A private in-memory SQLite database: `sqlite://` or `sqlite:///:memory:`.
    SqliteMemory,
    /// `postgres://…` or `postgresql://…`.
    Postgres(String),
}

impl StorageUrl {
    /// Parses a URL the way SQLAlchemy (and so Optuna) reads it: after `sqlite://` comes an
    /// empty host and `/`, then the path, so three slashes start a relative path and four an
    /// absolute one. Anything without `://` is a file path.
    pub fn parse(url: &str) -> Result<Self> {
        // The URL may hold a password even when it is not a PostgreSQL one: never echo it.
        let invalid = |reason: &str| Error::InvalidUrl { url: redact_url(url), reason: reason.to_string() };
        let trimmed = url.trim();
        if trimmed.is_empty() {
            return Err(invalid("it is empty; give sqlite:///file.db or a file path"));
        }
        let Some((scheme, rest)) = trimmed.split_once("://") else {
            if let Some(rest) = trimmed.strip_prefix("sqlite:") {
                return Err(invalid(&format!(
                    "a SQLite URL starts with sqlite:/// (relative path) or sqlite://// (absolute path), e.g. sqlite:///{rest}"
                )));
            }
            return Ok(Self::Sqlite(PathBuf::from(trimmed)));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok(Self::Postgres(trimmed.to_string())),
            "sqlite" => {
                if rest.contains('?') {
                    return Err(invalid("query parameters (?…) are not supported for SQLite"));
                }
                if rest.is_empty() {
                    return Ok(Self::SqliteMemory);
                }
                let Some(path) = rest.strip_prefix('/') else {
                    return Err(invalid(
                        "a SQLite URL has no host: use sqlite:///relative/path.db (three slashes) or sqlite:////absolute/path.db (four)",
                    ));
                };
                match path {
                    "" => Err(invalid("the file path is missing: use sqlite:///file.db")),
                    ":memory:" => Ok(Self::SqliteMemory),
                    path => Ok(Self::Sqlite(PathBuf::from(path))),
                }
            }
            other => Err(invalid(&format!(
                "unsupported scheme '{other}' (supported: sqlite:///relative.db, sqlite:////abs/path.db, a plain file path, postgres://user@host/db)"
            ))),
        }
    }
}

/// Opens the storage a URL names, creating a SQLite file and its parent directories if needed.
///
/// `url` is `sqlite:///relative.db`, `sqlite:////abs/path.db`, `sqlite://` (memory), a plain
/// path, or `postgres://user[:password]@host[:port]/db` (the database must exist; its tables
/// are created or migrated). Errors never show the password.
pub fn open_storage(url: &str) -> Result<Arc<dyn Storage>> {
    match StorageUrl::parse(url)? {
        StorageUrl::Sqlite(path) => Ok(Arc::new(SqliteStorage::open(path)?)),
        StorageUrl::SqliteMemory => Ok(Arc::new(SqliteStorage::in_memory()?)),
        StorageUrl::Postgres(url) => Ok(Arc::new(PostgresStorage::open(&url)?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_follow_sqlalchemy() {
        let sqlite = |p: &str| StorageUrl::Sqlite(PathBuf::from(p));
        assert_eq!(StorageUrl::parse("sqlite:///x.db").unwrap(), sqlite("x.db"));
        assert_eq!(StorageUrl::parse("sqlite:///runs/x.db").unwrap(), sqlite("runs/x.db"));
        assert_eq!(StorageUrl::parse("sqlite:////abs/x.db").unwrap(), sqlite("/abs/x.db"));
        assert_eq!(StorageUrl::parse("SQLite:///x.db").unwrap(), sqlite("x.db"));
        assert_eq!(StorageUrl::parse("x.db").unwrap(), sqlite("x.db"));
        assert_eq!(StorageUrl::parse("/tmp/dir/x.db").unwrap(), sqlite("/tmp/dir/x.db"));
        assert_eq!(StorageUrl::parse(" ./x.db ").unwrap(), sqlite("./x.db"));
        assert_eq!(StorageUrl::parse("sqlite://").unwrap(), StorageUrl::SqliteMemory);
        assert_eq!(StorageUrl::parse("sqlite:///:memory:").unwrap(), StorageUrl::SqliteMemory);
        assert_eq!(StorageUrl::parse("postgresql://u@h/db").unwrap(), StorageUrl::Postgres("postgresql://u@h/db".into()));
    }

    #[test]
    fn bad_urls_say_what_to_write() {
        let message = |url: &str| StorageUrl::parse(url).unwrap_err().to_string();
        assert!(message("").contains("empty"));
        assert!(message("sqlite:x.db").contains("sqlite:///x.db"));
        assert!(message("sqlite://host/x.db").contains("three slashes"));
        assert!(message("sqlite:///").contains("path is missing"));
        assert!(message("sqlite:///x.db?timeout=5").contains("query parameters"));
        assert!(message("mysql://u@h/db").contains("unsupported scheme 'mysql'"));
        let mysql = message("mysql://u:hunter2@h/db");
        assert!(mysql.contains("mysql://u:***@h/db") && !mysql.contains("hunter2"), "{mysql}");
        // Nothing listens on port 1: the error names the server but never the password.
        let postgres = open_storage("postgres://u:hunter2@127.0.0.1:1/db").err().unwrap();
        assert!(matches!(postgres, Error::PostgresConnect { .. }), "{postgres}");
        let message = postgres.to_string();
        assert!(message.contains("postgres://u:***@127.0.0.1:1/db") && !message.contains("hunter2"), "{message}");
        let not_sqlite = SqliteStorage::open_url("postgres://u:hunter2@h/db").err().unwrap().to_string();
        assert!(not_sqlite.contains("PostgreSQL") && !not_sqlite.contains("hunter2"), "{not_sqlite}");
    }
}

//! # nightshift-store
//!
//! Persistent storages for nightshift studies: the implementations of
//! [`nightshift_search::Storage`] that outlive a process and are shared between processes.
//!
//! ## Layout
//! - [`open_storage`] (`lib.rs`) and [`StorageUrl`] / [`redact_url`] (`url.rs`): a storage from a
//!   URL as users write it, `sqlite:///relative.db`, `sqlite:////abs/path.db` or a plain path
//!   (SQLAlchemy's convention, so Optuna command lines port unchanged), or
//!   `postgres://user[:password]@host[:port]/db`; the same URL with its password hidden, for messages.
//! - [`SqliteStorage`] (`sqlite.rs`): the embedded default. WAL mode, `BEGIN IMMEDIATE` write
//!   transactions, busy timeout plus retry, so many processes can ask and tell on one file.
//! - [`PostgresStorage`] (`postgres.rs`): one database for workers on many machines; row locks,
//!   `FOR UPDATE SKIP LOCKED` claiming, retried serialization failures.
//! - `codec.rs`: what both SQL backends share, values to stored text and rows back to studies and
//!   trials; `attempt.rs`: one transaction attempt's failure and the retry backoff.
//! - [`optuna`] (`optuna/`): Python Optuna's JournalStorage file (written and read) and RDB SQLite
//!   file (read), for `nightshift export` / `nightshift import`.
//! - [`SCHEMA_VERSION`] (`schema.rs`): the tables and their migrations.
//! - [`Error`] (`error.rs`): what went wrong, naming the file and the operation; at the trait
//!   boundary it travels inside [`nightshift_search::Error::Storage`] as its typed source.
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

#![warn(missing_docs)]

mod attempt;
mod codec;
mod error;
pub mod optuna;
mod postgres;
mod schema;
mod sqlite;
mod url;

use std::sync::Arc;

use nightshift_search::Storage;

pub use error::{Error, Result};
pub use postgres::{POSTGRES_SCHEMA_VERSION, PostgresStorage};
pub use schema::SCHEMA_VERSION;
pub use sqlite::SqliteStorage;
pub use url::{StorageUrl, redact_url};

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
    fn opening_errors_never_show_the_password() {
        // Nothing listens on port 1: the error names the server but never the password.
        let postgres = open_storage("postgres://u:hunter2@127.0.0.1:1/db").err().unwrap();
        assert!(matches!(postgres, Error::PostgresConnect { .. }), "{postgres}");
        let message = postgres.to_string();
        assert!(message.contains("postgres://u:***@127.0.0.1:1/db") && !message.contains("hunter2"), "{message}");
        let not_sqlite = SqliteStorage::open_url("postgres://u:hunter2@h/db").err().unwrap().to_string();
        assert!(not_sqlite.contains("PostgreSQL") && !not_sqlite.contains("hunter2"), "{not_sqlite}");
    }
}

//! The SQLite schema and its migrations.
//!
//! The version lives in `PRAGMA user_version`; `PRAGMA application_id` marks the file as
//! nightshift's, so a foreign database (an Optuna one, say, which also has a `studies` table) is
//! refused instead of half-migrated. Migration `i` (0-based) takes the schema from version `i` to
//! `i + 1`; all pending steps run in one `BEGIN IMMEDIATE` transaction, so concurrent openers
//! migrate once and a crash leaves the old version intact. Steps are append-only: never edit a
//! released one, add the next.
//!
//! The tables map one-to-one onto PostgreSQL (`INTEGER PRIMARY KEY` → `BIGINT GENERATED ALWAYS AS
//! IDENTITY`, `REAL` → `DOUBLE PRECISION`, JSON `TEXT` → `JSONB`, `system` → `BOOLEAN`); only the
//! NaN encoding is SQLite-specific, because SQLite stores a bound NaN as NULL.

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// Marks a SQLite file as a nightshift database (`PRAGMA application_id`): "nsht".
pub const APPLICATION_ID: i32 = 0x6E73_6874;

/// The schema version this binary writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Migration steps, applied in order; step `i` upgrades version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // v1: the initial schema.
    r#"
    CREATE TABLE studies (
        id            INTEGER PRIMARY KEY,
        name          TEXT    NOT NULL UNIQUE,
        direction     TEXT    NOT NULL CHECK (direction IN ('minimize', 'maximize')),
        seed          INTEGER NOT NULL,          -- the u64 seed, bit for bit as i64
        sampler       TEXT    NOT NULL,          -- JSON SamplerConfig
        pruner        TEXT    NOT NULL,          -- JSON PrunerConfig
        search_space  TEXT,                      -- JSON SearchSpace, NULL when none
        user_attrs    TEXT    NOT NULL DEFAULT '{}',  -- JSON object
        created_at    REAL    NOT NULL           -- Unix seconds
    );
    CREATE TABLE trials (
        id            INTEGER PRIMARY KEY,
        study_id      INTEGER NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
        number        INTEGER NOT NULL,
        state         TEXT    NOT NULL CHECK (state IN ('RUNNING', 'COMPLETE', 'PRUNED', 'FAIL', 'WAITING')),
        value         REAL,                      -- NULL: no value, or NaN when value_is_nan
        value_is_nan  INTEGER NOT NULL DEFAULT 0 CHECK (value_is_nan IN (0, 1)),
        started_at    REAL,
        finished_at   REAL,
        heartbeat_at  REAL,
        UNIQUE (study_id, number)
    );
    CREATE TABLE trial_params (
        trial_id      INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
        name          TEXT    NOT NULL,
        distribution  TEXT    NOT NULL,          -- JSON Distribution
        value         TEXT    NOT NULL,          -- JSON ParamValue
        PRIMARY KEY (trial_id, name)
    ) WITHOUT ROWID;
    CREATE TABLE trial_intermediate_values (
        trial_id      INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
        step          INTEGER NOT NULL,
        value         REAL,                      -- NULL encodes NaN (a row always has a value)
        PRIMARY KEY (trial_id, step)
    ) WITHOUT ROWID;
    CREATE TABLE trial_attrs (
        trial_id      INTEGER NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
        system        INTEGER NOT NULL CHECK (system IN (0, 1)),
        key           TEXT    NOT NULL,
        value         TEXT    NOT NULL,          -- JSON
        PRIMARY KEY (trial_id, system, key)
    ) WITHOUT ROWID;
    "#,
    // v2: claim_waiting_trial and fail_stale_trials look trials up by state; without this index
    // they scan every trial of the study inside the write lock.
    r#"
    CREATE INDEX trials_by_state ON trials (study_id, state, number);
    "#,
];

/// Brings the database behind `conn` to [`SCHEMA_VERSION`], or explains why it cannot.
pub(crate) fn migrate(conn: &Connection, location: &str) -> Result<()> {
    migrate_to(conn, location, SCHEMA_VERSION)
}

pub(crate) fn migrate_to(conn: &Connection, location: &str, target: i64) -> Result<()> {
    let sql_err = |source| Error::Sqlite { location: location.to_string(), op: "reading the schema version", source };
    // Cheap check first, so that opening an up-to-date database never takes the write lock.
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql_err)?;
    if version == target {
        return Ok(());
    }
    check_version(location, version)?;
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(sql_err)?;
    // Someone else may have migrated while we waited for the lock.
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql_err)?;
    check_version(location, version)?;
    if version == 0 {
        let app_id: i32 = tx.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(sql_err)?;
        let tables = existing_tables(&tx).map_err(sql_err)?;
        if app_id != APPLICATION_ID && !tables.is_empty() {
            return Err(Error::ForeignDatabase { location: location.to_string(), tables: tables.join(", ") });
        }
        tx.pragma_update(None, "application_id", APPLICATION_ID).map_err(sql_err)?;
    }
    for v in version..target {
        let step = MIGRATIONS[v as usize];
        let fail = |source| Error::Migration { location: location.to_string(), version: v + 1, source };
        tx.execute_batch(step).map_err(fail)?;
        tx.pragma_update(None, "user_version", v + 1).map_err(fail)?;
    }
    tx.commit().map_err(sql_err)
}

/// Whether the database behind a read-only `conn` can be read as it is: at [`SCHEMA_VERSION`], else
/// why not (an upgrade would need to write).
pub(crate) fn check_current(conn: &Connection, location: &str) -> Result<()> {
    let sql_err = |source| Error::Sqlite { location: location.to_string(), op: "reading the schema version", source };
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).map_err(sql_err)?;
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    check_version(location, version)?;
    if version == 0 {
        let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0)).map_err(sql_err)?;
        let tables = existing_tables(conn).map_err(sql_err)?;
        if app_id != APPLICATION_ID && !tables.is_empty() {
            return Err(Error::ForeignDatabase { location: location.to_string(), tables: tables.join(", ") });
        }
    }
    Err(Error::ReadOnlyNeedsUpgrade { location: location.to_string(), found: version, supported: SCHEMA_VERSION })
}

fn check_version(location: &str, found: i64) -> Result<()> {
    if !(0..=SCHEMA_VERSION).contains(&found) {
        return Err(Error::SchemaTooNew { location: location.to_string(), found, supported: SCHEMA_VERSION });
    }
    Ok(())
}

fn existing_tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")?;
    let names = stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<String>>>()?;
    Ok(names)
}

/// Whether an index exists (tests check that migrations ran).
#[cfg(test)]
pub(crate) fn has_index(conn: &Connection, name: &str) -> bool {
    use rusqlite::OptionalExtension;
    conn.query_row("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1", [name], |_| Ok(()))
        .optional()
        .unwrap()
        .is_some()
}

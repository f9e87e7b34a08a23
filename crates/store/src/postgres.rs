//! [`PostgresStorage`]: one PostgreSQL database shared by workers on many machines.
//!
//! Client: the synchronous [`postgres`] crate (rust-postgres, a blocking wrapper over
//! tokio-postgres). It is the long-maintained reference client, it matches the synchronous
//! [`Storage`] trait without dragging an async runtime into every caller (sqlx and
//! tokio-postgres would need one), and it binds every value as a parameter over the binary
//! protocol, which carries `f64` NaN and ±infinity bit for bit (no NaN flag column as in SQLite).
//!
//! Concurrency model: one connection per `PostgresStorage` behind a mutex, every call one
//! transaction at READ COMMITTED (writes) or REPEATABLE READ READ ONLY (reads: one snapshot
//! across their queries).
//! - Trial numbers come from a per-study counter (`studies.next_number`) bumped by an
//!   `UPDATE … RETURNING` in the trial's own transaction: the row lock serialises numbering per
//!   study, a rolled-back insert gives its number back, and `UNIQUE (study_id, number)` backs it.
//! - Waiting trials are claimed with `FOR UPDATE SKIP LOCKED`: concurrent claimers take different
//!   trials instead of queueing behind one.
//! - Writes to a trial lock its row first (`SELECT … FOR UPDATE`), so a `finish_trial` racing a
//!   `fail_stale_trials` sees the other's result and fails with `TrialFinished`.
//! - `fail_stale_trials` is one `UPDATE … WHERE state = 'RUNNING' … RETURNING`: PostgreSQL
//!   re-checks the condition on a row another transaction changed meanwhile, so each stale trial
//!   is failed by exactly one caller.
//! - Serialization failures and deadlocks are retried with jittered backoff and never surface.
//!
//! The schema mirrors the SQLite one (see `schema.rs`); JSON stays `TEXT` rather than `JSONB`
//! because JSONB reorders object keys, and the search space's parameter order is meaningful.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nightshift_search::Error as SearchError;
use nightshift_search::{
    FrozenTrial, NewStudy, NewTrial, Storage, StudyRecord, TrialParam, TrialState, attrs, finished_trial_params, now_unix,
};
use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, Config, NoTls, Row, Statement};

use crate::attempt::backoff;
use crate::codec::{
    Placement, SqlRow, check_param_value, json_text, parse_json, parse_state, step_to_sql, study_from_row, trial_from_row,
};
use crate::error::{Error, Result};
use crate::url::redact_url;

/// How long the retry loop keeps re-running a transaction that met a serialization failure.
const RETRY_FOR: Duration = Duration::from_secs(120);
/// Serialises concurrent migrations (`pg_advisory_xact_lock`): "nsht".
const MIGRATION_LOCK: i64 = 0x6E73_6874;

/// The PostgreSQL schema version this binary writes (table `nightshift_schema`).
pub const POSTGRES_SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Migration steps, applied in order; step `i` upgrades version `i` to `i + 1`. Append-only.
const MIGRATIONS: &[&str] = &[
    // v1: the SQLite schema at its version 2, plus the per-study trial counter.
    r#"
    CREATE TABLE studies (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name          TEXT    NOT NULL UNIQUE,
        direction     TEXT    NOT NULL CHECK (direction IN ('minimize', 'maximize')),
        seed          BIGINT  NOT NULL,          -- the u64 seed, bit for bit as i64
        sampler       TEXT    NOT NULL,          -- JSON SamplerConfig
        pruner        TEXT    NOT NULL,          -- JSON PrunerConfig
        search_space  TEXT,                      -- JSON SearchSpace, NULL when none
        user_attrs    TEXT    NOT NULL DEFAULT '{}',
        created_at    DOUBLE PRECISION NOT NULL, -- Unix seconds
        next_number   BIGINT  NOT NULL DEFAULT 0 -- the number the next trial gets
    );
    CREATE TABLE trials (
        id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        study_id      BIGINT  NOT NULL REFERENCES studies (id) ON DELETE CASCADE,
        number        BIGINT  NOT NULL,
        state         TEXT    NOT NULL CHECK (state IN ('RUNNING', 'COMPLETE', 'PRUNED', 'FAIL', 'WAITING')),
        value         DOUBLE PRECISION,          -- NaN and ±Infinity are native values
        started_at    DOUBLE PRECISION,
        finished_at   DOUBLE PRECISION,
        heartbeat_at  DOUBLE PRECISION,
        UNIQUE (study_id, number)
    );
    CREATE INDEX trials_by_state ON trials (study_id, state, number);
    CREATE TABLE trial_params (
        trial_id      BIGINT  NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
        name          TEXT    NOT NULL,
        distribution  TEXT    NOT NULL,          -- JSON Distribution
        value         TEXT    NOT NULL,          -- JSON ParamValue
        PRIMARY KEY (trial_id, name)
    );
    CREATE TABLE trial_intermediate_values (
        trial_id      BIGINT  NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
        step          BIGINT  NOT NULL,
        value         DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (trial_id, step)
    );
    CREATE TABLE trial_attrs (
        trial_id      BIGINT  NOT NULL REFERENCES trials (id) ON DELETE CASCADE,
        system        BOOLEAN NOT NULL,
        key           TEXT    NOT NULL,
        value         TEXT    NOT NULL,          -- JSON
        PRIMARY KEY (trial_id, system, key)
    );
    "#,
];

/// One connection and its prepared statements (valid for this connection only).
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// A [`Storage`] in a PostgreSQL database, shared by any number of processes and machines.
///
/// Open it with [`PostgresStorage::open`] (`postgres://user[:password]@host[:port]/db`) or
/// [`PostgresStorage::open_in_schema`]; opening creates or migrates the tables (see
/// [`POSTGRES_SCHEMA_VERSION`]).
pub struct PostgresStorage {
    conn: Mutex<Conn>,
    config: Config,
    /// `SET search_path` target, when the tables live in their own schema.
    schema: Option<String>,
    /// The URL with its password redacted; every error message names it.
    location: String,
}

type Fail = crate::attempt::Fail<postgres::Error>;

impl From<postgres::Error> for Fail {
    fn from(e: postgres::Error) -> Self {
        Fail::Db(e)
    }
}

type Attempt<T> = std::result::Result<T, Fail>;

/// The server shut the session down or the connection broke: worth a fresh connection.
fn connection_lost(e: &postgres::Error) -> bool {
    e.is_closed()
        || matches!(e.code(), Some(c) if [SqlState::ADMIN_SHUTDOWN, SqlState::CRASH_SHUTDOWN, SqlState::CANNOT_CONNECT_NOW].contains(c)
            || c.code().starts_with("08"))
}

fn is_transient(e: &postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// A schema name safe to splice into `SET search_path` / `CREATE SCHEMA` (identifiers cannot be
/// bound as parameters): lowercase ASCII letters, digits and `_`, not starting with a digit.
fn check_schema_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit())
}

/// A transaction with the connection's statement cache.
struct Tx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl Tx<'_> {
    fn statement(&mut self, sql: &'static str) -> Attempt<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &'static str, params: Params<'_>) -> Attempt<Vec<Row>> {
        let s = self.statement(sql)?;
        Ok(self.tx.query(&s, params)?)
    }

    fn query_opt(&mut self, sql: &'static str, params: Params<'_>) -> Attempt<Option<Row>> {
        let s = self.statement(sql)?;
        Ok(self.tx.query_opt(&s, params)?)
    }

    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Attempt<u64> {
        let s = self.statement(sql)?;
        Ok(self.tx.execute(&s, params)?)
    }
}

/// The version in the connection's schema's `nightshift_schema` table; `None` without that table.
fn stored_version(client: &mut impl postgres::GenericClient) -> std::result::Result<Option<i64>, postgres::Error> {
    let has_table: bool = client.query_one("SELECT to_regclass('nightshift_schema') IS NOT NULL", &[])?.try_get(0)?;
    if !has_table {
        return Ok(None);
    }
    Ok(Some(client.query_one("SELECT version FROM nightshift_schema", &[])?.try_get(0)?))
}

/// The connection settings in `url`, and the URL with its password redacted.
fn parse_config(url: &str) -> Result<(Config, String)> {
    let location = redact_url(url);
    match url.parse() {
        Ok(config) => Ok((config, location)),
        Err(source) => Err(Error::InvalidUrl { url: location, reason: format!("not a PostgreSQL connection string: {source}") }),
    }
}

impl PostgresStorage {
    /// Connects to `postgres://user[:password]@host[:port]/db` (also `postgresql://`, and the
    /// key-value form the `postgres` crate accepts) and creates or migrates the tables in the
    /// connection's default schema.
    pub fn open(url: &str) -> Result<Self> {
        Self::connect(url, None)
    }

    /// Like [`PostgresStorage::open`], with the tables in schema `schema` (created if needed):
    /// several independent storages in one database, e.g. one per test. `schema` is lowercase
    /// ASCII letters, digits and `_`.
    pub fn open_in_schema(url: &str, schema: &str) -> Result<Self> {
        if !check_schema_name(schema) {
            return Err(Error::InvalidUrl {
                url: redact_url(url),
                reason: format!("schema name '{schema}' must be lowercase letters, digits and _, at most 63 characters"),
            });
        }
        Self::connect(url, Some(schema.to_string()))
    }

    /// Connects to `url` and creates, migrates and writes nothing (`nightshift check`): the
    /// storage when the connection's schema holds this build's tables at its version, `None` when
    /// it holds none (or another version: opening would migrate them). Waits at most 10 s for
    /// the server unless the URL sets `connect_timeout`.
    pub fn open_if_current(url: &str) -> Result<Option<Self>> {
        let (mut config, location) = parse_config(url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let conn = Self::new_connection(&config, None, &location)?;
        let storage = Self { conn: Mutex::new(conn), config, schema: None, location };
        let version = stored_version(&mut storage.lock().client).map_err(|source| Error::Postgres {
            location: storage.location.clone(),
            op: "reading the schema version",
            source,
        })?;
        Ok((version == Some(POSTGRES_SCHEMA_VERSION)).then_some(storage))
    }

    /// The URL with its password redacted.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn connect(url: &str, schema: Option<String>) -> Result<Self> {
        let (config, location) = parse_config(url)?;
        let conn = Self::new_connection(&config, schema.as_deref(), &location)?;
        let storage = Self { conn: Mutex::new(conn), config, schema, location };
        storage.migrate()?;
        Ok(storage)
    }

    fn new_connection(config: &Config, schema: Option<&str>, location: &str) -> Result<Conn> {
        let mut client =
            config.connect(NoTls).map_err(|source| Error::PostgresConnect { location: location.to_string(), source })?;
        if let Some(schema) = schema {
            // Checked by `check_schema_name`: safe to splice.
            client.batch_execute(&format!("SET search_path TO {schema}")).map_err(|source| Error::Postgres {
                location: location.to_string(),
                op: "selecting the schema",
                source,
            })?;
        }
        Ok(Conn { client, statements: HashMap::new() })
    }

    /// Brings the tables to [`POSTGRES_SCHEMA_VERSION`] in one transaction under an advisory
    /// lock, so concurrent openers migrate once and a failure leaves the old version intact.
    fn migrate(&self) -> Result<()> {
        let location = self.location.clone();
        let mut conn = self.lock();
        let pg_err = |op: &'static str| {
            let location = location.clone();
            move |source| Error::Postgres { location: location.clone(), op, source }
        };
        let mut tx = conn.client.transaction().map_err(pg_err("starting the migration"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).map_err(pg_err("taking the migration lock"))?;
        if let Some(schema) = &self.schema {
            tx.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}")).map_err(pg_err("creating the schema"))?;
        }
        let version: i64 = if let Some(version) = stored_version(&mut tx).map_err(pg_err("reading the schema version"))? {
            version
        } else {
            let tables: Vec<String> = tx
                .query(
                    "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1",
                    &[],
                )
                .map_err(pg_err("listing tables"))?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<std::result::Result<_, _>>()
                .map_err(pg_err("listing tables"))?;
            if !tables.is_empty() {
                return Err(Error::PostgresForeign { location, tables: tables.join(", ") });
            }
            tx.batch_execute(
                "CREATE TABLE nightshift_schema (version BIGINT NOT NULL); INSERT INTO nightshift_schema VALUES (0)",
            )
            .map_err(pg_err("creating the schema version table"))?;
            0
        };
        if !(0..=POSTGRES_SCHEMA_VERSION).contains(&version) {
            return Err(Error::SchemaTooNew { location, found: version, supported: POSTGRES_SCHEMA_VERSION });
        }
        for v in version..POSTGRES_SCHEMA_VERSION {
            let fail = |source| Error::PostgresMigration { location: location.clone(), version: v + 1, source };
            tx.batch_execute(MIGRATIONS[v as usize]).map_err(fail)?;
            tx.execute("UPDATE nightshift_schema SET version = $1", &[&(v + 1)]).map_err(fail)?;
        }
        tx.commit().map_err(pg_err("committing the migration"))
    }

    fn lock(&self) -> MutexGuard<'_, Conn> {
        // A panic inside a transaction rolls it back on drop, so the connection stays usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one READ COMMITTED write transaction, retrying serialization failures.
    fn write<T>(&self, op: &'static str, f: impl Fn(&mut Tx<'_>) -> Attempt<T>) -> nightshift_search::Result<T> {
        self.transaction(op, false, f)
    }

    /// Runs `f` in one REPEATABLE READ READ ONLY transaction: one snapshot across its queries.
    fn read<T>(&self, op: &'static str, f: impl Fn(&mut Tx<'_>) -> Attempt<T>) -> nightshift_search::Result<T> {
        self.transaction(op, true, f)
    }

    fn transaction<T>(
        &self,
        op: &'static str,
        read_only: bool,
        f: impl Fn(&mut Tx<'_>) -> Attempt<T>,
    ) -> nightshift_search::Result<T> {
        let mut conn = self.lock();
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            if conn.client.is_closed() {
                // The server went away (restart, idle timeout): a fresh connection, then retry; while it
                // restarts, try again for a while instead of failing the trial or the sweep.
                match Self::new_connection(&self.config, self.schema.as_deref(), &self.location) {
                    Ok(fresh) => *conn = fresh,
                    Err(e) if started.elapsed() < RETRY_FOR => {
                        tracing::warn!(op, error = %e, "PostgreSQL unreachable; trying again");
                        std::thread::sleep(Duration::from_millis(250 * u64::from(attempt.min(8) + 1)));
                        attempt += 1;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let outcome: Attempt<T> = (|| {
                let Conn { client, statements } = &mut *conn;
                let mut builder = client.build_transaction();
                if read_only {
                    builder = builder.isolation_level(postgres::IsolationLevel::RepeatableRead).read_only(true);
                }
                let mut tx = Tx { tx: builder.start()?, statements };
                let value = f(&mut tx)?;
                tx.tx.commit()?;
                Ok(value)
            })();
            let location = || self.location.clone();
            match outcome {
                Ok(value) => return Ok(value),
                Err(Fail::Db(e)) if is_transient(&e) && started.elapsed() < RETRY_FOR => {
                    backoff(attempt);
                    attempt += 1;
                }
                // The connection dropped (a restart, a killed backend): reconnect above and run the
                // transaction again. One whose COMMIT was sent but not acknowledged may then apply twice;
                // the writes are checked (`writable_trial`) or idempotent but for creating a trial.
                Err(Fail::Db(e)) if (conn.client.is_closed() || connection_lost(&e)) && started.elapsed() < RETRY_FOR => {
                    tracing::warn!(op, error = %e, "PostgreSQL connection lost; reconnecting");
                    if !conn.client.is_closed() {
                        *conn = match Self::new_connection(&self.config, self.schema.as_deref(), &self.location) {
                            Ok(fresh) => fresh,
                            Err(_) => {
                                std::thread::sleep(Duration::from_millis(250 * u64::from(attempt.min(8) + 1)));
                                attempt += 1;
                                continue;
                            }
                        };
                    }
                    attempt += 1;
                }
                Err(Fail::Search(e)) => return Err(e),
                Err(Fail::Db(source)) => return Err(Error::Postgres { location: location(), op, source }.into()),
                Err(Fail::Data(message)) => return Err(Error::PostgresCorruptData { location: location(), op, message }.into()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

fn get<'r, T: postgres::types::FromSql<'r>>(row: &'r Row, i: usize) -> Attempt<T> {
    Ok(row.try_get(i)?)
}

impl SqlRow for Row {
    type Error = postgres::Error;

    fn int(&self, i: usize) -> Attempt<i64> {
        get(self, i)
    }

    fn float(&self, i: usize) -> Attempt<Option<f64>> {
        get(self, i)
    }

    fn flag(&self, i: usize) -> Attempt<bool> {
        get(self, i)
    }

    fn text(&self, i: usize) -> Attempt<&str> {
        get(self, i)
    }

    fn text_or_null(&self, i: usize) -> Attempt<Option<&str>> {
        get(self, i)
    }
}

/// Adds child rows (`trial_id` first) to the trials they belong to.
fn place_children(into: &mut Placement<'_>, params: &[Row], values: &[Row], attrs: &[Row]) -> Attempt<()> {
    params.iter().try_for_each(|row| into.add_param(row))?;
    values.iter().try_for_each(|row| into.add_intermediate(row))?;
    attrs.iter().try_for_each(|row| into.add_attr(row))
}

/// One full trial snapshot by id.
fn load_trial(tx: &mut Tx<'_>, trial_id: i64) -> Attempt<Option<FrozenTrial>> {
    let Some(row) = tx.query_opt(
        "SELECT id, number, state, value, started_at, finished_at, heartbeat_at FROM trials WHERE id = $1",
        &[&trial_id],
    )?
    else {
        return Ok(None);
    };
    let mut one = [trial_from_row(&row)?];
    let params = tx.query("SELECT trial_id, name, distribution, value FROM trial_params WHERE trial_id = $1", &[&trial_id])?;
    let values = tx.query("SELECT trial_id, step, value FROM trial_intermediate_values WHERE trial_id = $1", &[&trial_id])?;
    let attrs = tx.query("SELECT trial_id, system, key, value FROM trial_attrs WHERE trial_id = $1", &[&trial_id])?;
    place_children(&mut Placement::new(&mut one, &|_| Some(0)), &params, &values, &attrs)?;
    let [trial] = one;
    Ok(Some(trial))
}

fn must_load(tx: &mut Tx<'_>, trial_id: i64) -> Attempt<FrozenTrial> {
    load_trial(tx, trial_id)?.ok_or_else(|| Fail::Data(format!("trial {trial_id} vanished")))
}

/// Locks a trial that may still be written to (`FOR UPDATE`), or says why it may not.
fn writable_trial(tx: &mut Tx<'_>, trial_id: i64) -> Attempt<(u64, TrialState)> {
    let row = tx.query_opt("SELECT number, state FROM trials WHERE id = $1 FOR UPDATE", &[&trial_id])?;
    let Some(row) = row else {
        return Err(Fail::Search(SearchError::storage(format!("no trial with id {trial_id}"))));
    };
    let (number, state) = (get::<i64>(&row, 0)? as u64, parse_state(get(&row, 1)?)?);
    if state.is_finished() {
        return Err(Fail::Search(SearchError::TrialFinished { number, state }));
    }
    Ok((number, state))
}

fn study_name(tx: &mut Tx<'_>, study_id: i64) -> Attempt<String> {
    let row = tx.query_opt("SELECT name FROM studies WHERE id = $1", &[&study_id])?;
    match row {
        Some(row) => get(&row, 0),
        None => Err(Fail::Search(SearchError::storage(format!("no study with id {study_id}")))),
    }
}

fn insert_params(tx: &mut Tx<'_>, trial_id: i64, params: &[TrialParam]) -> Attempt<()> {
    for (name, dist, value) in params {
        check_param_value(name, value)?;
        // Params already set keep their value (the first write wins).
        tx.execute(
            "INSERT INTO trial_params (trial_id, name, distribution, value) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            &[&trial_id, name, &json_text(dist, "distribution")?, &json_text(value, "parameter value")?],
        )?;
    }
    Ok(())
}

fn upsert_attr(tx: &mut Tx<'_>, trial_id: i64, key: &str, value: &serde_json::Value, system: bool) -> Attempt<()> {
    tx.execute(
        "INSERT INTO trial_attrs (trial_id, system, key, value) VALUES ($1, $2, $3, $4)
         ON CONFLICT (trial_id, system, key) DO UPDATE SET value = excluded.value",
        &[&trial_id, &system, &key, &json_text(value, "attribute")?],
    )?;
    Ok(())
}

/// The database server's clock, in Unix seconds, for SQL text (`concat!`): heartbeats are written and
/// judged stale by it, so that workers on machines whose clocks differ do not take one another's live
/// trials for dead ones.
macro_rules! server_now {
    () => {
        "extract(epoch from clock_timestamp())::double precision"
    };
}
const TRIALS_OF_STUDY: &str = "SELECT id, number, state, value, started_at, finished_at, heartbeat_at FROM trials
     WHERE study_id = $1 AND ($2::text[] IS NULL OR state = ANY ($2)) ORDER BY number";
const NUMBERS_OF_STUDY: &str = "SELECT number FROM trials WHERE study_id = $1 AND state = ANY ($2) ORDER BY number";
const PARAMS_OF_STUDY: &str =
    "SELECT p.trial_id, p.name, p.distribution, p.value FROM trial_params p JOIN trials t ON t.id = p.trial_id
     WHERE t.study_id = $1 AND ($2::text[] IS NULL OR t.state = ANY ($2))";
const VALUES_OF_STUDY: &str =
    "SELECT v.trial_id, v.step, v.value FROM trial_intermediate_values v JOIN trials t ON t.id = v.trial_id
     WHERE t.study_id = $1 AND ($2::text[] IS NULL OR t.state = ANY ($2))";
const ATTRS_OF_STUDY: &str = "SELECT a.trial_id, a.system, a.key, a.value FROM trial_attrs a JOIN trials t ON t.id = a.trial_id
     WHERE t.study_id = $1 AND ($2::text[] IS NULL OR t.state = ANY ($2))";

impl Storage for PostgresStorage {
    fn create_study(&self, study: &NewStudy) -> nightshift_search::Result<StudyRecord> {
        self.write("create_study", |tx| {
            let record = study.to_record(0);
            let search_space = record.search_space.as_ref().map(|s| json_text(s, "search space")).transpose()?;
            // ON CONFLICT: two processes creating the same name at once get one study and one
            // StudyExists, not a unique-violation error.
            let row = tx.query_opt(
                "INSERT INTO studies (name, direction, seed, sampler, pruner, search_space, user_attrs, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (name) DO NOTHING RETURNING id",
                &[
                    &record.name,
                    &record.direction.as_str(),
                    &(record.seed as i64),
                    &json_text(&record.sampler, "sampler configuration")?,
                    &json_text(&record.pruner, "pruner configuration")?,
                    &search_space,
                    &json_text(&record.user_attrs, "study user attributes")?,
                    &record.created_at,
                ],
            )?;
            match row {
                Some(row) => Ok(StudyRecord { id: get(&row, 0)?, ..record }),
                None => Err(Fail::Search(SearchError::StudyExists(study.name.clone()))),
            }
        })
    }

    fn load_study(&self, name: &str) -> nightshift_search::Result<StudyRecord> {
        self.read("load_study", |tx| {
            let row = tx.query_opt(
                "SELECT id, name, direction, seed, sampler, pruner, search_space, user_attrs, created_at FROM studies WHERE name = $1",
                &[&name],
            )?;
            match row {
                Some(row) => study_from_row(&row),
                None => Err(Fail::Search(SearchError::StudyNotFound(name.to_string()))),
            }
        })
    }

    fn list_studies(&self) -> nightshift_search::Result<Vec<StudyRecord>> {
        self.read("list_studies", |tx| {
            // COLLATE "C": byte order, as SQLite and the in-memory storage sort names.
            tx.query(
                "SELECT id, name, direction, seed, sampler, pruner, search_space, user_attrs, created_at FROM studies ORDER BY name COLLATE \"C\"",
                &[],
            )?
            .iter()
            .map(study_from_row)
            .collect()
        })
    }

    fn set_study_user_attr(&self, study_id: i64, key: &str, value: &serde_json::Value) -> nightshift_search::Result<()> {
        self.write("set_study_user_attr", |tx| {
            let row = tx.query_opt("SELECT user_attrs FROM studies WHERE id = $1 FOR UPDATE", &[&study_id])?;
            let Some(row) = row else {
                return Err(Fail::Search(SearchError::storage(format!("no study with id {study_id}"))));
            };
            let mut attrs: BTreeMap<String, serde_json::Value> = parse_json(get(&row, 0)?, "study user attributes")?;
            attrs.insert(key.to_string(), value.clone());
            tx.execute(
                "UPDATE studies SET user_attrs = $2 WHERE id = $1",
                &[&study_id, &json_text(&attrs, "study user attributes")?],
            )?;
            Ok(())
        })
    }

    fn delete_study(&self, study_id: i64) -> nightshift_search::Result<()> {
        // The trials, their params, values and attributes go with it (ON DELETE CASCADE).
        self.write("delete_study", |tx| match tx.execute("DELETE FROM studies WHERE id = $1", &[&study_id])? {
            0 => Err(Fail::Search(SearchError::storage(format!("no study with id {study_id}")))),
            _ => Ok(()),
        })
    }

    fn create_trial(&self, study_id: i64, new: &NewTrial) -> nightshift_search::Result<FrozenTrial> {
        self.write("create_trial", |tx| {
            // The counter's row lock serialises numbering per study until this transaction ends.
            let row = tx.query_opt(
                "UPDATE studies SET next_number = next_number + 1 WHERE id = $1 RETURNING next_number - 1",
                &[&study_id],
            )?;
            let Some(row) = row else {
                return Err(Fail::Search(SearchError::storage(format!("no study with id {study_id}"))));
            };
            let number: i64 = get(&row, 0)?;
            if new.max_trials.is_some() && !new.waiting {
                // Holding the counter's row lock, every earlier creator has committed: the
                // count is exact, and returning an error rolls the number back.
                let row = tx.query_opt("SELECT COUNT(*) FROM trials WHERE study_id = $1 AND state <> 'WAITING'", &[&study_id])?;
                let used: i64 = get(&row.ok_or_else(|| Fail::Data("COUNT gave no row".into()))?, 0)?;
                if new.over_budget(used as u64) {
                    let study = study_name(tx, study_id)?;
                    return Err(Fail::Search(SearchError::BudgetReached { study, max_trials: new.max_trials.unwrap_or(0) }));
                }
            }
            let mut trial = new.snapshot(number as u64);
            let row = tx.query_opt(
                concat!(
                    "INSERT INTO trials (study_id, number, state, started_at, heartbeat_at)
                     VALUES ($1, $2, $3, $4, CASE WHEN $5 THEN ",
                    server_now!(),
                    " END) RETURNING id"
                ),
                &[&study_id, &number, &trial.state.as_str(), &trial.started_at, &trial.heartbeat_at.is_some()],
            )?;
            trial.id = get(&row.ok_or_else(|| Fail::Data("INSERT … RETURNING gave no row".into()))?, 0)?;
            insert_params(tx, trial.id, &new.params)?;
            for (key, value) in &new.system_attrs {
                upsert_attr(tx, trial.id, key, value, true)?;
            }
            Ok(trial)
        })
    }

    fn claim_waiting_trial(&self, study_id: i64, heartbeat: bool) -> nightshift_search::Result<Option<FrozenTrial>> {
        self.write("claim_waiting_trial", |tx| {
            let now = now_unix();
            // SKIP LOCKED: a trial another worker is claiming right now is passed over, not waited for.
            let row = tx.query_opt(
                concat!(
                    "UPDATE trials SET state = 'RUNNING', started_at = $2, heartbeat_at = CASE WHEN $3 THEN ",
                    server_now!(),
                    " END WHERE id = (SELECT id FROM trials WHERE study_id = $1 AND state = 'WAITING'
                                 ORDER BY number LIMIT 1 FOR UPDATE SKIP LOCKED)
                     RETURNING id"
                ),
                &[&study_id, &now, &heartbeat],
            )?;
            match row {
                Some(row) => load_trial(tx, get(&row, 0)?),
                None => Ok(None),
            }
        })
    }

    fn set_trial_params(&self, trial_id: i64, params: &[TrialParam]) -> nightshift_search::Result<()> {
        self.write("set_trial_params", |tx| {
            writable_trial(tx, trial_id)?;
            insert_params(tx, trial_id, params)
        })
    }

    fn report_intermediate(&self, trial_id: i64, step: u64, value: f64) -> nightshift_search::Result<()> {
        self.write("report_intermediate", |tx| {
            writable_trial(tx, trial_id)?;
            // A step reported twice keeps its first value.
            tx.execute(
                "INSERT INTO trial_intermediate_values (trial_id, step, value) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&trial_id, &step_to_sql(step)?, &value],
            )?;
            Ok(())
        })
    }

    fn set_trial_attr(&self, trial_id: i64, key: &str, value: &serde_json::Value, system: bool) -> nightshift_search::Result<()> {
        self.write("set_trial_attr", |tx| {
            writable_trial(tx, trial_id)?;
            upsert_attr(tx, trial_id, key, value, system)
        })
    }

    fn finish_trial(&self, trial_id: i64, state: TrialState, value: Option<f64>) -> nightshift_search::Result<FrozenTrial> {
        if !state.is_finished() {
            return Err(SearchError::storage(format!("finish_trial needs a final state, got {state}")));
        }
        self.write("finish_trial", |tx| {
            writable_trial(tx, trial_id)?;
            tx.execute(
                "UPDATE trials SET state = $2, value = $3, finished_at = $4 WHERE id = $1",
                &[&trial_id, &state.as_str(), &value, &now_unix()],
            )?;
            must_load(tx, trial_id)
        })
    }

    fn heartbeat(&self, trial_id: i64) -> nightshift_search::Result<()> {
        self.write("heartbeat", |tx| {
            writable_trial(tx, trial_id)?;
            tx.execute(concat!("UPDATE trials SET heartbeat_at = ", server_now!(), " WHERE id = $1"), &[&trial_id])?;
            Ok(())
        })
    }

    fn fail_stale_trials(&self, study_id: i64, grace_seconds: f64) -> nightshift_search::Result<Vec<FrozenTrial>> {
        let reason = serde_json::Value::from(format!("stale: no heartbeat for more than {grace_seconds} s"));
        self.write("fail_stale_trials", |tx| {
            // One statement: a row another process failed meanwhile is re-checked after its lock
            // is released, is no longer RUNNING, and is skipped, so each is failed exactly once.
            let rows = tx.query(
                concat!(
                    "UPDATE trials SET state = 'FAIL', finished_at = $2
                     WHERE study_id = $1 AND state = 'RUNNING' AND heartbeat_at IS NOT NULL AND ",
                    server_now!(),
                    " - heartbeat_at > $3 RETURNING id"
                ),
                &[&study_id, &now_unix(), &grace_seconds],
            )?;
            let mut failed = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: i64 = get(row, 0)?;
                upsert_attr(tx, id, attrs::FAIL_REASON, &reason, true)?;
                failed.push(must_load(tx, id)?);
            }
            failed.sort_by_key(|t| t.number);
            Ok(failed)
        })
    }

    fn add_finished_trials(&self, study_id: i64, trials: &[FrozenTrial]) -> nightshift_search::Result<()> {
        let params: Vec<Vec<TrialParam>> = trials.iter().map(finished_trial_params).collect::<nightshift_search::Result<_>>()?;
        // One transaction: an error anywhere rolls every trial (and the numbers taken) back.
        self.write("add_finished_trials", |tx| {
            let count = trials.len() as i64;
            let row = tx.query_opt(
                "UPDATE studies SET next_number = next_number + $2 WHERE id = $1 RETURNING next_number - $2",
                &[&study_id, &count],
            )?;
            let Some(row) = row else {
                return Err(Fail::Search(SearchError::storage(format!("no study with id {study_id}"))));
            };
            let first: i64 = get(&row, 0)?;
            for (number, (trial, params)) in (first..).zip(trials.iter().zip(&params)) {
                let row = tx.query_opt(
                    "INSERT INTO trials (study_id, number, state, value, started_at, finished_at)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[&study_id, &number, &trial.state.as_str(), &trial.value, &trial.started_at, &trial.finished_at],
                )?;
                let id: i64 = get(&row.ok_or_else(|| Fail::Data("INSERT … RETURNING gave no row".into()))?, 0)?;
                insert_params(tx, id, params)?;
                for (&step, value) in &trial.intermediate_values {
                    tx.execute(
                        "INSERT INTO trial_intermediate_values (trial_id, step, value) VALUES ($1, $2, $3)",
                        &[&id, &step_to_sql(step)?, value],
                    )?;
                }
                for (attrs, system) in [(&trial.user_attrs, false), (&trial.system_attrs, true)] {
                    for (key, value) in attrs {
                        upsert_attr(tx, id, key, value, system)?;
                    }
                }
            }
            Ok(())
        })
    }

    fn trial(&self, study_id: i64, number: u64) -> nightshift_search::Result<FrozenTrial> {
        self.read("trial", |tx| {
            let row = tx.query_opt(
                "SELECT id FROM trials WHERE study_id = $1 AND number = $2",
                &[&study_id, &i64::try_from(number).unwrap_or(i64::MAX)],
            )?;
            match row {
                Some(row) => must_load(tx, get(&row, 0)?),
                None => Err(Fail::Search(SearchError::TrialNotFound { study: study_name(tx, study_id)?, number })),
            }
        })
    }

    fn trials(&self, study_id: i64, states: Option<&[TrialState]>) -> nightshift_search::Result<Vec<FrozenTrial>> {
        let filter: Option<Vec<&str>> = states.map(|s| s.iter().map(|s| s.as_str()).collect());
        self.read("trials", |tx| {
            study_name(tx, study_id)?;
            let args: Params<'_> = &[&study_id, &filter];
            let mut trials = tx.query(TRIALS_OF_STUDY, args)?.iter().map(trial_from_row).collect::<Attempt<Vec<_>>>()?;
            if trials.is_empty() {
                return Ok(trials);
            }
            // Three more queries load every child row: no query per trial.
            let params = tx.query(PARAMS_OF_STUDY, args)?;
            let values = tx.query(VALUES_OF_STUDY, args)?;
            let attrs = tx.query(ATTRS_OF_STUDY, args)?;
            let positions: HashMap<i64, usize> = trials.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
            let index = |id: i64| positions.get(&id).copied();
            place_children(&mut Placement::new(&mut trials, &index), &params, &values, &attrs)?;
            Ok(trials)
        })
    }

    fn trial_numbers(&self, study_id: i64, states: &[TrialState]) -> nightshift_search::Result<Vec<u64>> {
        let states: Vec<&str> = states.iter().map(|s| s.as_str()).collect();
        self.read("trial numbers", |tx| {
            study_name(tx, study_id)?;
            let rows = tx.query(NUMBERS_OF_STUDY, &[&study_id, &states])?;
            Ok(rows.iter().map(|row| row.get::<_, i64>(0) as u64).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked_before_splicing() {
        assert!(check_schema_name("t_123"));
        for bad in ["", "1abc", "a-b", "A", "x; DROP TABLE studies", "\"q\""] {
            assert!(!check_schema_name(bad), "{bad}");
        }
        assert!(PostgresStorage::open_in_schema("postgres://u:pw@127.0.0.1/db", "bad name").is_err());
    }
}

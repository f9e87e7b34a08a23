//! [`SqliteStorage`]: the embedded default storage, safe for many processes on one file.
//!
//! Concurrency model: one connection per `SqliteStorage` behind a mutex; across connections and
//! processes SQLite's WAL mode lets readers run beside the single writer. Every write is one
//! `BEGIN IMMEDIATE` transaction (it takes the write lock up front, so a read-then-write such as
//! trial numbering or claiming cannot interleave with another writer), reads are one deferred
//! transaction (a consistent snapshot across the few queries they make). Contention is absorbed
//! twice: SQLite's busy timeout waits for the lock, and a retry loop with jittered backoff
//! re-runs the whole transaction on the `SQLITE_BUSY`/`SQLITE_LOCKED` cases the busy handler
//! does not cover, so "database is locked" never reaches the user.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use nightshift_search::Error as SearchError;
use nightshift_search::{
    FrozenTrial, NewStudy, NewTrial, Storage, StudyRecord, TrialParam, TrialState, attrs, finished_trial_params, now_unix,
};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, Row, Transaction, TransactionBehavior, params};

use crate::attempt::backoff;
use crate::codec::{
    Placement, SqlRow, check_param_value, json_text, parse_json, parse_state, step_to_sql, study_from_row, trial_from_row,
};
use crate::error::{Error, Result};
use crate::schema;

/// How long SQLite's own busy handler waits for a lock before giving up one attempt.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the retry loop keeps re-running a transaction that met contention.
const RETRY_FOR: Duration = Duration::from_secs(120);

/// A [`Storage`] in one SQLite file (or in memory), shareable by threads and processes.
///
/// Open it with [`SqliteStorage::open`], [`SqliteStorage::open_url`] or
/// [`SqliteStorage::in_memory`]; opening creates or migrates the schema (see
/// [`crate::SCHEMA_VERSION`]).
pub struct SqliteStorage {
    conn: Mutex<Connection>,
    /// The file path as given, or `:memory:`; every error message names it.
    location: String,
    /// Opened by [`SqliteStorage::open_read_only`]: a write fails saying so.
    read_only: bool,
}

/// How [`SqliteStorage::set_up`] prepares a new connection.
#[derive(Clone, Copy, PartialEq)]
enum Access {
    /// A file: WAL mode, schema created or migrated.
    File,
    /// A private in-memory database: schema created.
    Memory,
    /// A file opened read-only: nothing written, the schema must already be current.
    ReadOnly,
}

type Fail = crate::attempt::Fail<rusqlite::Error>;

impl From<rusqlite::Error> for Fail {
    fn from(e: rusqlite::Error) -> Self {
        Fail::Db(e)
    }
}

type Attempt<T> = std::result::Result<T, Fail>;

fn is_contention(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked))
}

/// Errors that usually mean the disk under the file failed, filled up or went read-only (a failing
/// disk can also make reads come back short, which SQLite reports as a malformed image).
fn is_disk_failure(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::SystemIoFailure | ErrorCode::DiskFull | ErrorCode::ReadOnly | ErrorCode::DatabaseCorrupt)
    )
}

/// Whether opening failed because SQLite needed to write: the file, or the `-shm` file beside it.
pub(crate) fn needs_write_access(e: &Error) -> bool {
    match e {
        Error::Open { source, .. } | Error::Sqlite { source, .. } | Error::SqliteDisk { source, .. } => {
            matches!(source.sqlite_error_code(), Some(ErrorCode::ReadOnly | ErrorCode::CannotOpen))
        }
        _ => false,
    }
}

/// A path as the path part of a SQLite `file:` URI: every byte but plain ASCII (and `%`, `?`, `#`)
/// as a `%HH` escape, which SQLite decodes back to the same bytes.
fn uri_path(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &byte in path.as_os_str().as_bytes() {
        match byte {
            0x20..=0x7e if !matches!(byte, b'%' | b'?' | b'#') => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02x}")),
        }
    }
    out
}

/// Re-runs `f` while it fails with lock contention, for at most [`RETRY_FOR`].
fn retry_contention<T>(mut f: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        match f() {
            Err(Error::Sqlite { ref source, .. } | Error::Migration { ref source, .. } | Error::Open { ref source, .. })
                if is_contention(source) && started.elapsed() < RETRY_FOR =>
            {
                backoff(attempt);
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) the database file at `path`, and its parent directories. An
    /// existing file this user cannot write (or whose directory they cannot write) is opened
    /// read-only, as by [`SqliteStorage::open_read_only`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let location = path.display().to_string();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty() && !p.is_dir()) {
            std::fs::create_dir_all(parent).map_err(|source| Error::CreateDir { path: parent.to_path_buf(), source })?;
        }
        // A file this user may not write opens read-only from the start: SQLite would open it read-only
        // anyway, but in WAL mode it would also create `-wal` and `-shm` files owned by this user, which
        // the file's owner could then not write (their next commit fails).
        if path.is_file() && std::fs::OpenOptions::new().write(true).open(path).is_err() {
            return Self::open_read_only(path);
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(path, flags).map_err(|source| Error::Open { location: location.clone(), source })?;
        match Self::set_up(conn, location, Access::File) {
            Err(e) if needs_write_access(&e) && path.is_file() => Self::open_read_only(path),
            other => other,
        }
    }

    /// Opens an existing database file for reading only: for a user who cannot write the file or
    /// its directory (a teammate's study, a results directory mounted read-only). Creates and
    /// migrates nothing; a write fails with [`Error::ReadOnly`].
    ///
    /// While a writer has the file open (its `-wal` and `-shm` files exist) the reads see that
    /// writer's commits. Otherwise the file is read as it stands (`immutable`: it holds every commit
    /// once no writer has it open), so that nothing is created beside it: SQLite would create the
    /// shared-memory file it needs, owned by this user, where the owner could no longer write it.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let open = |query: &str| {
            let location = path.display().to_string();
            let uri = format!("file:{}?{query}", uri_path(path));
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_URI | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            let conn =
                Connection::open_with_flags(uri, flags).map_err(|source| Error::Open { location: location.clone(), source })?;
            Self::set_up(conn, location, Access::ReadOnly)
        };
        let beside = |suffix: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            Path::new(&name).exists()
        };
        if beside("-wal") && beside("-shm") { open("mode=ro") } else { open("immutable=1") }
    }

    /// Opens a storage from a SQLite URL (`sqlite:///relative.db`, `sqlite:////abs/path.db`,
    /// `sqlite://` for memory) or a plain path. See [`crate::StorageUrl`].
    pub fn open_url(url: &str) -> Result<Self> {
        match crate::StorageUrl::parse(url)? {
            crate::StorageUrl::Sqlite(path) => Self::open(path),
            crate::StorageUrl::SqliteMemory => Self::in_memory(),
            crate::StorageUrl::Postgres(url) => Err(Error::NotSqlite { url: crate::redact_url(&url) }),
        }
    }

    /// A private database in memory: gone when dropped.
    pub fn in_memory() -> Result<Self> {
        let location = ":memory:".to_string();
        let conn = Connection::open_in_memory().map_err(|source| Error::Open { location: location.clone(), source })?;
        Self::set_up(conn, location, Access::Memory)
    }

    /// The file path as given, or `:memory:`.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn set_up(conn: Connection, location: String, access: Access) -> Result<Self> {
        let sql_err = |op: &'static str| {
            let location = location.clone();
            move |source| Error::Sqlite { location: location.clone(), op, source }
        };
        conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err("setting the busy timeout"))?;
        conn.set_prepared_statement_cache_capacity(64);
        // The first read of the file header: a file that is not SQLite fails here.
        retry_contention(|| {
            conn.pragma_query_value(None, "schema_version", |r| r.get::<_, i64>(0)).map_err(|source| {
                match source.sqlite_error_code() {
                    Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                        Error::NotADatabase { location: location.clone(), source }
                    }
                    _ => Error::Open { location: location.clone(), source },
                }
            })
        })?;
        if access == Access::File {
            // WAL: readers never block the writer. NORMAL sync is durable across process crashes
            // (not power loss of the last commits) and keeps a commit well under a millisecond.
            retry_contention(|| {
                conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
                    .map_err(sql_err("enabling WAL mode"))
            })?;
            conn.pragma_update(None, "synchronous", "NORMAL").map_err(sql_err("setting synchronous mode"))?;
        }
        conn.pragma_update(None, "foreign_keys", true).map_err(sql_err("enabling foreign keys"))?;
        if access == Access::ReadOnly {
            schema::check_current(&conn, &location)?;
        } else {
            retry_contention(|| schema::migrate(&conn, &location))?;
        }
        // SQLite opens a file it may not write read-only without saying so.
        let read_only = access == Access::ReadOnly || conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(false);
        Ok(Self { conn: Mutex::new(conn), location, read_only })
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic inside a transaction rolls it back on unwind, so the connection stays usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` in one write transaction (`BEGIN IMMEDIATE`), retrying on contention.
    fn write<T>(&self, op: &'static str, f: impl Fn(&Transaction<'_>) -> Attempt<T>) -> nightshift_search::Result<T> {
        self.transaction(op, TransactionBehavior::Immediate, f)
    }

    /// Runs `f` in one read transaction: a consistent snapshot across its queries.
    fn read<T>(&self, op: &'static str, f: impl Fn(&Transaction<'_>) -> Attempt<T>) -> nightshift_search::Result<T> {
        self.transaction(op, TransactionBehavior::Deferred, f)
    }

    fn transaction<T>(
        &self,
        op: &'static str,
        behavior: TransactionBehavior,
        f: impl Fn(&Transaction<'_>) -> Attempt<T>,
    ) -> nightshift_search::Result<T> {
        let conn = self.lock();
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let outcome: Attempt<T> = (|| {
                let tx = Transaction::new_unchecked(&conn, behavior)?;
                let value = f(&tx)?;
                tx.commit()?;
                Ok(value)
            })();
            let location = || self.location.clone();
            match outcome {
                Ok(value) => return Ok(value),
                Err(Fail::Db(e)) if is_contention(&e) => {
                    if started.elapsed() >= RETRY_FOR {
                        return Err(Error::Busy { location: location(), op, waited_s: started.elapsed().as_secs_f64() }.into());
                    }
                    backoff(attempt);
                    attempt += 1;
                }
                Err(Fail::Search(e)) => return Err(e),
                Err(Fail::Db(source)) if self.read_only && source.sqlite_error_code() == Some(ErrorCode::ReadOnly) => {
                    return Err(Error::ReadOnly { location: location(), op }.into());
                }
                Err(Fail::Db(source)) if is_disk_failure(&source) => {
                    return Err(Error::SqliteDisk { location: location(), op, source }.into());
                }
                Err(Fail::Db(source)) => return Err(Error::Sqlite { location: location(), op, source }.into()),
                Err(Fail::Data(message)) => return Err(Error::CorruptData { location: location(), op, message }.into()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// A trial value as (`value`, `value_is_nan`): SQLite would store a bound NaN as NULL, which
/// reads back as "no value".
fn encode_value(value: Option<f64>) -> (Option<f64>, bool) {
    match value {
        Some(v) if v.is_nan() => (None, true),
        other => (other, false),
    }
}

/// An intermediate value: NULL stands for NaN (such a row always has a value).
fn encode_intermediate(value: f64) -> Option<f64> {
    (!value.is_nan()).then_some(value)
}

impl SqlRow for Row<'_> {
    type Error = rusqlite::Error;

    fn int(&self, i: usize) -> Attempt<i64> {
        Ok(self.get(i)?)
    }

    fn float(&self, i: usize) -> Attempt<Option<f64>> {
        Ok(self.get(i)?)
    }

    fn flag(&self, i: usize) -> Attempt<bool> {
        Ok(self.get(i)?)
    }

    fn text(&self, i: usize) -> Attempt<&str> {
        self.get_ref(i)?.as_str().map_err(|e| Fail::Data(format!("column {i}: {e}")))
    }

    fn text_or_null(&self, i: usize) -> Attempt<Option<&str>> {
        self.get_ref(i)?.as_str_or_null().map_err(|e| Fail::Data(format!("column {i}: {e}")))
    }
}

/// Study queries select the columns in the order [`study_from_row`] reads them.
const LOAD_STUDY: &str =
    "SELECT id, name, direction, seed, sampler, pruner, search_space, user_attrs, created_at FROM studies WHERE name = ?1";
const LIST_STUDIES: &str =
    "SELECT id, name, direction, seed, sampler, pruner, search_space, user_attrs, created_at FROM studies ORDER BY name";

fn query_studies(tx: &Transaction<'_>, sql: &str, args: impl rusqlite::Params) -> Attempt<Vec<StudyRecord>> {
    let mut stmt = tx.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(study_from_row(row)?);
    }
    Ok(out)
}

/// Trial queries select the codec's columns, then `value_is_nan`.
fn sqlite_trial_from_row(row: &Row<'_>) -> Attempt<FrozenTrial> {
    let mut trial = trial_from_row(row)?;
    if row.flag(7)? {
        trial.value = Some(f64::NAN);
    }
    Ok(trial)
}

/// Runs a child-row query and hands each row to `add`.
fn load_children(
    stmt: &mut rusqlite::CachedStatement<'_>,
    args: impl rusqlite::Params,
    into: &mut Placement<'_>,
    add: fn(&mut Placement<'_>, &Row<'_>) -> Attempt<()>,
) -> Attempt<()> {
    let mut rows = stmt.query(args)?;
    while let Some(row) = rows.next()? {
        add(into, row)?;
    }
    Ok(())
}

/// Loads the params, intermediate values and attributes the three queries select.
fn load_all_children(
    tx: &Transaction<'_>,
    sql: [&str; 3],
    args: impl rusqlite::Params + Copy,
    into: &mut Placement<'_>,
) -> Attempt<()> {
    load_children(&mut tx.prepare_cached(sql[0])?, args, into, |p, row| p.add_param(row))?;
    load_children(&mut tx.prepare_cached(sql[1])?, args, into, |p, row| p.add_intermediate(row))?;
    load_children(&mut tx.prepare_cached(sql[2])?, args, into, |p, row| p.add_attr(row))
}

/// One full trial snapshot by id.
fn load_trial(tx: &Transaction<'_>, trial_id: i64) -> Attempt<Option<FrozenTrial>> {
    let trial = tx
        .prepare_cached(
            "SELECT id, number, state, value, started_at, finished_at, heartbeat_at, value_is_nan FROM trials WHERE id = ?1",
        )?
        .query_row([trial_id], |row| Ok(sqlite_trial_from_row(row)))
        .optional()?
        .transpose()?;
    let Some(trial) = trial else { return Ok(None) };
    let mut one = [trial];
    load_all_children(
        tx,
        [
            "SELECT trial_id, name, distribution, value FROM trial_params WHERE trial_id = ?1",
            "SELECT trial_id, step, value FROM trial_intermediate_values WHERE trial_id = ?1",
            "SELECT trial_id, system, key, value FROM trial_attrs WHERE trial_id = ?1",
        ],
        [trial_id],
        &mut Placement::new(&mut one, &|_| Some(0)),
    )?;
    let [trial] = one;
    Ok(Some(trial))
}

/// The number and state of a trial that may still be written to, or the error saying why not.
fn writable_trial(tx: &Transaction<'_>, trial_id: i64) -> Attempt<(u64, TrialState)> {
    let row = tx
        .prepare_cached("SELECT number, state FROM trials WHERE id = ?1")?
        .query_row([trial_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
        .optional()?;
    let Some((number, state)) = row else {
        return Err(Fail::Search(SearchError::storage(format!("no trial with id {trial_id}"))));
    };
    let (number, state) = (number as u64, parse_state(&state)?);
    if state.is_finished() {
        return Err(Fail::Search(SearchError::TrialFinished { number, state }));
    }
    Ok((number, state))
}

fn study_name(tx: &Transaction<'_>, study_id: i64) -> Attempt<String> {
    tx.prepare_cached("SELECT name FROM studies WHERE id = ?1")?
        .query_row([study_id], |r| r.get(0))
        .optional()?
        .ok_or_else(|| Fail::Search(SearchError::storage(format!("no study with id {study_id}"))))
}

fn insert_params(tx: &Transaction<'_>, trial_id: i64, params: &[TrialParam]) -> Attempt<()> {
    if params.is_empty() {
        return Ok(());
    }
    // Params already set keep their value (the first write wins).
    let mut stmt = tx.prepare_cached(
        "INSERT INTO trial_params (trial_id, name, distribution, value) VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
    )?;
    for (name, dist, value) in params {
        check_param_value(name, value)?;
        stmt.execute(params![trial_id, name, json_text(dist, "distribution")?, json_text(value, "parameter value")?])?;
    }
    Ok(())
}

fn upsert_attr(tx: &Transaction<'_>, trial_id: i64, key: &str, value: &serde_json::Value, system: bool) -> Attempt<()> {
    tx.prepare_cached(
        "INSERT INTO trial_attrs (trial_id, system, key, value) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (trial_id, system, key) DO UPDATE SET value = excluded.value",
    )?
    .execute(params![trial_id, system, key, json_text(value, "attribute")?])?;
    Ok(())
}

/// `trials(states)` filters with one cached statement: the states as `,A,B,` and
/// `instr(?, ',' || state || ',')`; NULL means all.
fn state_filter(states: Option<&[TrialState]>) -> Option<String> {
    states.map(|states| {
        let mut s = String::from(",");
        for state in states {
            s.push_str(state.as_str());
            s.push(',');
        }
        s
    })
}

const TRIALS_OF_STUDY: &str = "SELECT id, number, state, value, started_at, finished_at, heartbeat_at, value_is_nan FROM trials
     WHERE study_id = ?1 AND (?2 IS NULL OR instr(?2, ',' || state || ',') > 0) ORDER BY number";
const NUMBERS_OF_STUDY: &str =
    "SELECT number FROM trials WHERE study_id = ?1 AND instr(?2, ',' || state || ',') > 0 ORDER BY number";
const PARAMS_OF_STUDY: &str =
    "SELECT p.trial_id, p.name, p.distribution, p.value FROM trial_params p JOIN trials t ON t.id = p.trial_id
     WHERE t.study_id = ?1 AND (?2 IS NULL OR instr(?2, ',' || t.state || ',') > 0)";
const VALUES_OF_STUDY: &str =
    "SELECT v.trial_id, v.step, v.value FROM trial_intermediate_values v JOIN trials t ON t.id = v.trial_id
     WHERE t.study_id = ?1 AND (?2 IS NULL OR instr(?2, ',' || t.state || ',') > 0)";
const ATTRS_OF_STUDY: &str = "SELECT a.trial_id, a.system, a.key, a.value FROM trial_attrs a JOIN trials t ON t.id = a.trial_id
     WHERE t.study_id = ?1 AND (?2 IS NULL OR instr(?2, ',' || t.state || ',') > 0)";

impl Storage for SqliteStorage {
    fn create_study(&self, study: &NewStudy) -> nightshift_search::Result<StudyRecord> {
        self.write("create_study", |tx| {
            let taken = tx.prepare_cached("SELECT 1 FROM studies WHERE name = ?1")?.exists([&study.name])?;
            if taken {
                return Err(Fail::Search(SearchError::StudyExists(study.name.clone())));
            }
            let record = study.to_record(0);
            let search_space = record.search_space.as_ref().map(|s| json_text(s, "search space")).transpose()?;
            tx.prepare_cached(
                "INSERT INTO studies (name, direction, seed, sampler, pruner, search_space, user_attrs, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                record.name,
                record.direction.as_str(),
                record.seed as i64,
                json_text(&record.sampler, "sampler configuration")?,
                json_text(&record.pruner, "pruner configuration")?,
                search_space,
                json_text(&record.user_attrs, "study user attributes")?,
                record.created_at,
            ])?;
            Ok(StudyRecord { id: tx.last_insert_rowid(), ..record })
        })
    }

    fn load_study(&self, name: &str) -> nightshift_search::Result<StudyRecord> {
        self.read("load_study", |tx| {
            query_studies(tx, LOAD_STUDY, [name])?.pop().ok_or_else(|| Fail::Search(SearchError::StudyNotFound(name.to_string())))
        })
    }

    fn list_studies(&self) -> nightshift_search::Result<Vec<StudyRecord>> {
        self.read("list_studies", |tx| query_studies(tx, LIST_STUDIES, []))
    }

    fn set_study_user_attr(&self, study_id: i64, key: &str, value: &serde_json::Value) -> nightshift_search::Result<()> {
        self.write("set_study_user_attr", |tx| {
            let text: String = tx
                .prepare_cached("SELECT user_attrs FROM studies WHERE id = ?1")?
                .query_row([study_id], |r| r.get(0))
                .optional()?
                .ok_or_else(|| Fail::Search(SearchError::storage(format!("no study with id {study_id}"))))?;
            let mut attrs: BTreeMap<String, serde_json::Value> = parse_json(&text, "study user attributes")?;
            attrs.insert(key.to_string(), value.clone());
            tx.prepare_cached("UPDATE studies SET user_attrs = ?2 WHERE id = ?1")?
                .execute(params![study_id, json_text(&attrs, "study user attributes")?])?;
            Ok(())
        })
    }

    fn delete_study(&self, study_id: i64) -> nightshift_search::Result<()> {
        // The trials, their params, values and attributes go with it (ON DELETE CASCADE).
        self.write("delete_study", |tx| match tx.prepare_cached("DELETE FROM studies WHERE id = ?1")?.execute([study_id])? {
            0 => Err(Fail::Search(SearchError::storage(format!("no study with id {study_id}")))),
            _ => Ok(()),
        })
    }

    fn create_trial(&self, study_id: i64, new: &NewTrial) -> nightshift_search::Result<FrozenTrial> {
        self.write("create_trial", |tx| {
            let name = study_name(tx, study_id)?;
            // Inside BEGIN IMMEDIATE no other writer can take the same number (or the last
            // place in the budget); UNIQUE (study_id, number) would reject it anyway.
            if new.max_trials.is_some() && !new.waiting {
                let used: i64 = tx
                    .prepare_cached("SELECT COUNT(*) FROM trials WHERE study_id = ?1 AND state != 'WAITING'")?
                    .query_row([study_id], |r| r.get(0))?;
                if new.over_budget(used as u64) {
                    return Err(Fail::Search(SearchError::BudgetReached {
                        study: name,
                        max_trials: new.max_trials.unwrap_or(0),
                    }));
                }
            }
            let number: i64 = tx
                .prepare_cached("SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?1")?
                .query_row([study_id], |r| r.get(0))?;
            let mut trial = new.snapshot(number as u64);
            tx.prepare_cached(
                "INSERT INTO trials (study_id, number, state, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![study_id, number, trial.state.as_str(), trial.started_at, trial.heartbeat_at])?;
            trial.id = tx.last_insert_rowid();
            insert_params(tx, trial.id, &new.params)?;
            for (key, value) in &new.system_attrs {
                upsert_attr(tx, trial.id, key, value, true)?;
            }
            Ok(trial)
        })
    }

    fn claim_waiting_trial(&self, study_id: i64, heartbeat: bool) -> nightshift_search::Result<Option<FrozenTrial>> {
        self.write("claim_waiting_trial", |tx| {
            let oldest: Option<i64> = tx
                .prepare_cached("SELECT id FROM trials WHERE study_id = ?1 AND state = 'WAITING' ORDER BY number LIMIT 1")?
                .query_row([study_id], |r| r.get(0))
                .optional()?;
            let Some(id) = oldest else { return Ok(None) };
            let now = now_unix();
            tx.prepare_cached("UPDATE trials SET state = 'RUNNING', started_at = ?2, heartbeat_at = ?3 WHERE id = ?1")?
                .execute(params![id, now, heartbeat.then_some(now)])?;
            load_trial(tx, id)
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
            tx.prepare_cached(
                "INSERT INTO trial_intermediate_values (trial_id, step, value) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            )?
            .execute(params![trial_id, step_to_sql(step)?, encode_intermediate(value)])?;
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
        let (value, value_is_nan) = encode_value(value);
        self.write("finish_trial", |tx| {
            writable_trial(tx, trial_id)?;
            tx.prepare_cached("UPDATE trials SET state = ?2, value = ?3, value_is_nan = ?4, finished_at = ?5 WHERE id = ?1")?
                .execute(params![trial_id, state.as_str(), value, value_is_nan, now_unix()])?;
            load_trial(tx, trial_id)?.ok_or_else(|| Fail::Data(format!("trial {trial_id} vanished")))
        })
    }

    fn heartbeat(&self, trial_id: i64) -> nightshift_search::Result<()> {
        self.write("heartbeat", |tx| {
            writable_trial(tx, trial_id)?;
            tx.prepare_cached("UPDATE trials SET heartbeat_at = ?2 WHERE id = ?1")?.execute(params![trial_id, now_unix()])?;
            Ok(())
        })
    }

    fn fail_stale_trials(&self, study_id: i64, grace_seconds: f64) -> nightshift_search::Result<Vec<FrozenTrial>> {
        let reason = serde_json::Value::from(format!("stale: no heartbeat for more than {grace_seconds} s"));
        self.write("fail_stale_trials", |tx| {
            let now = now_unix();
            // The check and the update are one statement inside the write lock: a trial another
            // process failed first is no longer RUNNING here, so each is failed exactly once.
            let ids = tx
                .prepare_cached(
                    "UPDATE trials SET state = 'FAIL', finished_at = ?2
                     WHERE study_id = ?1 AND state = 'RUNNING' AND heartbeat_at IS NOT NULL AND ?2 - heartbeat_at > ?3
                     RETURNING id",
                )?
                .query_map(params![study_id, now, grace_seconds], |r| r.get::<_, i64>(0))?
                .collect::<rusqlite::Result<Vec<i64>>>()?;
            let mut failed = Vec::with_capacity(ids.len());
            for id in ids {
                upsert_attr(tx, id, attrs::FAIL_REASON, &reason, true)?;
                failed.push(load_trial(tx, id)?.ok_or_else(|| Fail::Data(format!("trial {id} vanished")))?);
            }
            failed.sort_by_key(|t| t.number);
            Ok(failed)
        })
    }

    fn add_finished_trials(&self, study_id: i64, trials: &[FrozenTrial]) -> nightshift_search::Result<()> {
        let params: Vec<Vec<TrialParam>> = trials.iter().map(finished_trial_params).collect::<nightshift_search::Result<_>>()?;
        // One transaction: an error anywhere rolls every trial back.
        self.write("add_finished_trials", |tx| {
            study_name(tx, study_id)?;
            let first: i64 = tx
                .prepare_cached("SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?1")?
                .query_row([study_id], |r| r.get(0))?;
            for (number, (trial, params)) in (first..).zip(trials.iter().zip(&params)) {
                let (value, value_is_nan) = encode_value(trial.value);
                tx.prepare_cached(
                    "INSERT INTO trials (study_id, number, state, value, value_is_nan, started_at, finished_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )?
                .execute(params![
                    study_id,
                    number,
                    trial.state.as_str(),
                    value,
                    value_is_nan,
                    trial.started_at,
                    trial.finished_at
                ])?;
                let id = tx.last_insert_rowid();
                insert_params(tx, id, params)?;
                for (&step, &value) in &trial.intermediate_values {
                    tx.prepare_cached("INSERT INTO trial_intermediate_values (trial_id, step, value) VALUES (?1, ?2, ?3)")?
                        .execute(params![id, step_to_sql(step)?, encode_intermediate(value)])?;
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
            let id: Option<i64> = tx
                .prepare_cached("SELECT id FROM trials WHERE study_id = ?1 AND number = ?2")?
                .query_row(params![study_id, i64::try_from(number).unwrap_or(i64::MAX)], |r| r.get(0))
                .optional()?;
            match id {
                Some(id) => load_trial(tx, id)?.ok_or_else(|| Fail::Data(format!("trial {id} vanished"))),
                None => Err(Fail::Search(SearchError::TrialNotFound { study: study_name(tx, study_id)?, number })),
            }
        })
    }

    fn trials(&self, study_id: i64, states: Option<&[TrialState]>) -> nightshift_search::Result<Vec<FrozenTrial>> {
        let filter = state_filter(states);
        self.read("trials", |tx| {
            study_name(tx, study_id)?;
            let args = params![study_id, filter];
            let mut trials = Vec::new();
            {
                let mut stmt = tx.prepare_cached(TRIALS_OF_STUDY)?;
                let mut rows = stmt.query(args)?;
                while let Some(row) = rows.next()? {
                    trials.push(sqlite_trial_from_row(row)?);
                }
            }
            if trials.is_empty() {
                return Ok(trials);
            }
            // Ids grow with numbers within a study, so the common case is a dense range; a map
            // covers the rest. Three more queries load every child row: no query per trial.
            let positions: HashMap<i64, usize> = trials.iter().enumerate().map(|(i, t)| (t.id, i)).collect();
            let index = |id: i64| positions.get(&id).copied();
            let mut into = Placement::new(&mut trials, &index);
            load_all_children(tx, [PARAMS_OF_STUDY, VALUES_OF_STUDY, ATTRS_OF_STUDY], args, &mut into)?;
            Ok(trials)
        })
    }

    fn trial_numbers(&self, study_id: i64, states: &[TrialState]) -> nightshift_search::Result<Vec<u64>> {
        let filter = state_filter(Some(states));
        self.read("trial numbers", |tx| {
            study_name(tx, study_id)?;
            let mut stmt = tx.prepare_cached(NUMBERS_OF_STUDY)?;
            let numbers = stmt.query_map(params![study_id, filter], |row| row.get::<_, i64>(0))?;
            Ok(numbers.map(|n| n.map(|n| n as u64)).collect::<rusqlite::Result<Vec<u64>>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SCHEMA_VERSION;
    use nightshift_search::{Direction, ParamValue};
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn in_memory_passes_the_conformance_suite() {
        nightshift_search::testing::run_conformance_suite(&|| Box::new(SqliteStorage::in_memory().unwrap()));
    }

    /// Writes a study with one finished trial the way a version-1 binary did, straight in SQL.
    fn write_v1_database(path: &Path) {
        let conn = Connection::open(path).unwrap();
        schema::migrate_to(&conn, "v1", 1).unwrap();
        assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap(), 1);
        // Sampler and pruner configurations belong to the search crate; take their current form.
        let sampler = serde_json::to_string(&nightshift_search::SamplerConfig::Random).unwrap();
        let pruner = serde_json::to_string(&nightshift_search::PrunerConfig::default()).unwrap();
        conn.execute(
            r#"INSERT INTO studies (id, name, direction, seed, sampler, pruner, search_space, user_attrs, created_at)
               VALUES (1, 'old', 'maximize', -1, ?1, ?2,
                       '{"lr":{"type":"float","low":0.001,"high":0.1,"log":true,"step":null}}', '{"owner":"ana"}', 1700000000.5)"#,
            [sampler, pruner],
        )
        .unwrap();
        conn.execute_batch(
            r#"
            INSERT INTO trials (id, study_id, number, state, value, value_is_nan, started_at, finished_at, heartbeat_at)
            VALUES (1, 1, 0, 'COMPLETE', 0.9, 0, 1700000001.0, 1700000002.0, NULL),
                   (2, 1, 1, 'WAITING', NULL, 0, NULL, NULL, NULL);
            INSERT INTO trial_params VALUES (1, 'lr', '{"type":"float","low":0.001,"high":0.1,"log":true,"step":null}', '0.01');
            INSERT INTO trial_intermediate_values VALUES (1, 0, 0.5), (1, 1, NULL);
            INSERT INTO trial_attrs VALUES (1, 0, 'note', '"first"'), (1, 1, 'device', '"cpu:0"');
            "#,
        )
        .unwrap();
    }

    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        write_v1_database(&path);
        assert!(!schema::has_index(&Connection::open(&path).unwrap(), "trials_by_state"));

        let storage = SqliteStorage::open(&path).unwrap();
        {
            let conn = storage.lock();
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
            assert_eq!(version, SCHEMA_VERSION);
            assert!(schema::has_index(&conn, "trials_by_state"));
        }
        let study = storage.load_study("old").unwrap();
        assert_eq!((study.direction, study.seed), (Direction::Maximize, u64::MAX));
        assert_eq!(study.user_attrs["owner"], "ana");
        assert_eq!(study.search_space.unwrap().names().collect::<Vec<_>>(), ["lr"]);
        let trials = storage.trials(study.id, None).unwrap();
        assert_eq!(trials.len(), 2);
        assert_eq!((trials[0].state, trials[0].value), (TrialState::Complete, Some(0.9)));
        assert_eq!(trials[0].params["lr"], ParamValue::Float(0.01));
        assert_eq!(trials[0].intermediate_values[&0], 0.5);
        assert!(trials[0].intermediate_values[&1].is_nan());
        assert_eq!(trials[0].user_attrs["note"], "first");
        assert_eq!(trials[0].system_attrs["device"], "cpu:0");
        // The migrated database is fully usable: the waiting trial is claimed, numbering goes on.
        assert_eq!(storage.claim_waiting_trial(study.id, false).unwrap().unwrap().number, 1);
        assert_eq!(storage.create_trial(study.id, &NewTrial::default()).unwrap().number, 2);
        drop(storage);
        // Opening again finds nothing to do.
        SqliteStorage::open(&path).unwrap();
    }

    #[test]
    fn a_database_from_a_newer_nightshift_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        drop(SqliteStorage::open(&path).unwrap());
        Connection::open(&path).unwrap().pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        let err = SqliteStorage::open(&path).err().unwrap();
        assert!(
            matches!(err, Error::SchemaTooNew { found, supported, .. } if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION)
        );
        let message = err.to_string();
        assert!(message.contains("new.db") && message.contains("upgrade nightshift"), "{message}");
    }

    #[test]
    fn a_foreign_sqlite_database_is_not_touched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("optuna.db");
        // An Optuna database has a `studies` table too; migrating over it would corrupt it.
        Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT); CREATE TABLE alembic_version (v TEXT);",
            )
            .unwrap();
        let err = SqliteStorage::open(&path).err().unwrap();
        assert!(matches!(err, Error::ForeignDatabase { .. }), "{err}");
        assert!(err.to_string().contains("alembic_version, studies"), "{err}");
        let conn = Connection::open(&path).unwrap();
        assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap(), 0);
    }

    #[test]
    fn a_read_only_open_reads_everything_and_refuses_writes_by_name() {
        let dir = tempfile::tempdir().unwrap();
        // Characters that mean something in a `file:` URI, and bytes that are not UTF-8.
        let name = std::ffi::OsString::from_vec(b"odd %20 ?x=1 #frag \xff.db".to_vec());
        let path = dir.path().join(name);
        write_v1_database(&path);
        SqliteStorage::open(&path).unwrap(); // migrates to the current version

        let storage = SqliteStorage::open_read_only(&path).unwrap();
        let study = storage.load_study("old").unwrap();
        assert_eq!(storage.trials(study.id, None).unwrap().len(), 2);
        let err = storage.set_study_user_attr(study.id, "k", &serde_json::json!(1)).unwrap_err();
        let source = std::error::Error::source(&err).unwrap().downcast_ref::<Error>().unwrap();
        assert!(matches!(source, Error::ReadOnly { .. }), "{source:?}");
        assert!(err.to_string().contains("could only be opened read-only"), "{err}");
    }

    #[test]
    fn a_read_only_open_upgrades_nothing_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        write_v1_database(&path);
        let err = SqliteStorage::open_read_only(&path).err().unwrap();
        assert!(matches!(err, Error::ReadOnlyNeedsUpgrade { found: 1, .. }), "{err:?}");
        let conn = Connection::open(&path).unwrap();
        assert_eq!(conn.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0)).unwrap(), 1);
        assert!(!schema::has_index(&conn, "trials_by_state"));

        let foreign = dir.path().join("foreign.db");
        Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE studies (x INTEGER);").unwrap();
        let err = SqliteStorage::open_read_only(&foreign).err().unwrap();
        assert!(matches!(err, Error::ForeignDatabase { .. }), "{err:?}");
    }
}

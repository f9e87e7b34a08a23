//! Optuna's RDB storage in a SQLite file (`sqlite:///optuna.db`), read with rusqlite.
//!
//! The tables are Optuna 5.0's SQLAlchemy models (`optuna/storages/_rdb/models.py`): enums are
//! stored by name (`COMPLETE`, `MAXIMIZE`, `INF_POS`), datetimes as naive UTC text, values of
//! ±infinity (and NaN intermediate values) as NULL beside a `*_type` column, attributes and
//! distributions as JSON text. The file is opened read-only: importing never changes it.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::Value;

use super::{OptunaError, OptunaParam, OptunaStudy, OptunaTrial, Result, invalid, parse_datetime};

const STATES: [&str; 5] = ["RUNNING", "COMPLETE", "PRUNED", "FAIL", "WAITING"];

/// Every study in the Optuna SQLite database at `path`, in id order, with its trials.
pub fn read_rdb(path: &Path) -> Result<Vec<OptunaStudy>> {
    let file = path.display().to_string();
    if !path.is_file() {
        return Err(OptunaError::Read { path: file, source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file") });
    }
    let sql = |e: rusqlite::Error| {
        invalid(&file, format!("not an Optuna SQLite database ({e}); give the file behind Optuna's sqlite:///FILE URL"))
    };
    let conn =
        Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX).map_err(sql)?;
    let has_version: Option<i64> = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'version_info'", [], |r| r.get(0))
        .optional()
        .map_err(sql)?;
    if has_version.is_none() {
        return Err(invalid(&file, "not an Optuna SQLite database (it has no version_info table)"));
    }
    let reader = Reader { conn: &conn, file: &file };
    reader.studies().map_err(|e| match e {
        Failure::Sql(e) => sql(e),
        Failure::Optuna(e) => e,
    })
}

enum Failure {
    Sql(rusqlite::Error),
    Optuna(OptunaError),
}

impl From<rusqlite::Error> for Failure {
    fn from(e: rusqlite::Error) -> Self {
        Self::Sql(e)
    }
}

impl From<OptunaError> for Failure {
    fn from(e: OptunaError) -> Self {
        Self::Optuna(e)
    }
}

struct Reader<'a> {
    conn: &'a Connection,
    file: &'a str,
}

type Attrs = BTreeMap<String, Value>;

impl Reader<'_> {
    fn studies(&self) -> std::result::Result<Vec<OptunaStudy>, Failure> {
        let mut stmt = self.conn.prepare("SELECT study_id, study_name FROM studies ORDER BY study_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
        let mut studies = Vec::new();
        for row in rows {
            let (id, name) = row?;
            let location = format!("{}: study '{name}'", self.file);
            let mut directions = Vec::new();
            let mut stmt =
                self.conn.prepare_cached("SELECT direction FROM study_directions WHERE study_id = ?1 ORDER BY objective")?;
            for direction in stmt.query_map([id], |r| r.get::<_, String>(0))? {
                directions.push(match direction?.as_str() {
                    "MINIMIZE" => 1,
                    "MAXIMIZE" => 2,
                    _ => 0,
                });
            }
            let user_attrs = self.attrs("study_user_attributes", "study_id", id, &location)?;
            let system_attrs = self.attrs("study_system_attributes", "study_id", id, &location)?;
            let trials = self.trials(id, &location)?;
            studies.push(OptunaStudy { name, directions, user_attrs, system_attrs, trials, location });
        }
        Ok(studies)
    }

    fn attrs(&self, table: &str, owner: &str, id: i64, location: &str) -> std::result::Result<Attrs, Failure> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT key, value_json FROM {table} WHERE {owner} = ?1"))?;
        let mut attrs = Attrs::new();
        for row in stmt.query_map([id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))? {
            let (key, text) = row?;
            let value = serde_json::from_str(&text)
                .map_err(|e| invalid(location, format!("attribute '{key}' in {table} is not JSON ({e})")))?;
            attrs.insert(key, value);
        }
        Ok(attrs)
    }

    fn trials(&self, study_id: i64, study_location: &str) -> std::result::Result<Vec<OptunaTrial>, Failure> {
        let mut stmt = self.conn.prepare(
            "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials WHERE study_id = ?1 ORDER BY number",
        )?;
        let rows = stmt.query_map([study_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })?;
        let mut trials = Vec::new();
        for row in rows {
            let (id, number, state, start, complete) = row?;
            let location = format!("{study_location}, trial {number}");
            let state = STATES
                .iter()
                .position(|s| *s == state)
                .ok_or_else(|| invalid(&location, format!("state '{state}' is not one of {}", STATES.join(", "))))?
                as i64;
            // Optuna 5.0 stores naive UTC.
            let datetime = |text: Option<String>| -> Result<Option<f64>> {
                text.map(|t| {
                    parse_datetime(&format!("{t}+00:00"))
                        .ok_or_else(|| invalid(&location, format!("datetime '{t}' is not an ISO 8601 datetime")))
                })
                .transpose()
            };
            trials.push(OptunaTrial {
                number: number.max(0) as u64,
                state,
                values: self.values(id, &location)?,
                params: self.params(id, &location)?,
                intermediate_values: self.intermediate(id, &location)?,
                user_attrs: self.attrs("trial_user_attributes", "trial_id", id, &location)?,
                system_attrs: self.attrs("trial_system_attributes", "trial_id", id, &location)?,
                datetime_start: datetime(start)?,
                datetime_complete: datetime(complete)?,
                location,
            });
        }
        Ok(trials)
    }

    fn values(&self, trial_id: i64, location: &str) -> std::result::Result<Option<Vec<f64>>, Failure> {
        let mut stmt =
            self.conn.prepare_cached("SELECT value, value_type FROM trial_values WHERE trial_id = ?1 ORDER BY objective")?;
        let mut values = Vec::new();
        for row in stmt.query_map([trial_id], |r| Ok((r.get::<_, Option<f64>>(0)?, r.get::<_, String>(1)?)))? {
            let (value, kind) = row?;
            values.push(stored_float(value, &kind, location)?);
        }
        Ok((!values.is_empty()).then_some(values))
    }

    fn intermediate(&self, trial_id: i64, location: &str) -> std::result::Result<BTreeMap<i64, f64>, Failure> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT step, intermediate_value, intermediate_value_type FROM trial_intermediate_values WHERE trial_id = ?1",
        )?;
        let mut values = BTreeMap::new();
        for row in
            stmt.query_map([trial_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<f64>>(1)?, r.get::<_, String>(2)?)))?
        {
            let (step, value, kind) = row?;
            values.insert(step, stored_float(value, &kind, location)?);
        }
        Ok(values)
    }

    fn params(&self, trial_id: i64, location: &str) -> std::result::Result<BTreeMap<String, OptunaParam>, Failure> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT param_name, param_value, distribution_json FROM trial_params WHERE trial_id = ?1")?;
        let mut params = BTreeMap::new();
        for row in stmt.query_map([trial_id], |r| Ok((r.get::<_, String>(0)?, r.get::<_, f64>(1)?, r.get::<_, String>(2)?)))? {
            let (name, internal, text) = row?;
            let distribution = serde_json::from_str(&text)
                .map_err(|e| invalid(location, format!("parameter '{name}': the distribution '{text}' is not JSON ({e})")))?;
            params.insert(name, OptunaParam { distribution, internal, location: location.to_string() });
        }
        Ok(params)
    }
}

/// A value column with its `*_type` companion (`FINITE`, `INF_POS`, `INF_NEG`, `NAN`).
fn stored_float(value: Option<f64>, kind: &str, location: &str) -> Result<f64> {
    match (kind, value) {
        ("FINITE", Some(v)) => Ok(v),
        ("INF_POS", _) => Ok(f64::INFINITY),
        ("INF_NEG", _) => Ok(f64::NEG_INFINITY),
        ("NAN", _) => Ok(f64::NAN),
        _ => Err(invalid(location, format!("a stored value of type '{kind}' (valid: FINITE, INF_POS, INF_NEG, NAN)"))),
    }
}

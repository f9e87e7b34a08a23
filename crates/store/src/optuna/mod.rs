//! Studies exchanged with Python Optuna 5.0: its JournalStorage file (written and read) and its
//! RDB SQLite file (read).
//!
//! Both formats are first turned into an [`OptunaStudy`], a study in Optuna's own terms (op-code
//! integers for states and directions, parameters as internal values beside their distribution
//! JSON). Conversions to and from nightshift's types live here, so the format modules only move
//! bytes and rows:
//! - [`journal`]: [`journal::write_journal`] (a nightshift study → journal lines) and
//!   [`journal::read_journal`] (replays every op code as Optuna's `JournalStorageReplayResult` does).
//! - [`rdb`]: [`rdb::read_rdb`] reads Optuna's SQLAlchemy schema (`storages/_rdb/models.py`) with rusqlite.
//! - [`OptunaStudy::from_nightshift`] / [`OptunaStudy::to_nightshift`]: the mapping, which refuses
//!   what nightshift cannot hold (several objectives, a `None` categorical choice, …) with the
//!   file, line or trial and what would be valid.
//!
//! Nothing here writes to a nightshift storage: the caller imports the [`ImportedStudy`] it gets.

pub mod journal;
pub mod rdb;

use std::collections::BTreeMap;

use nightshift_search::{
    Direction, Distribution, FrozenTrial, PrunerConfig, SamplerConfig, SearchSpace, StudyRecord, TrialState,
};
use serde_json::{Value, json};

/// What went wrong reading or writing an Optuna study; `location` is `file:line`, `file: trial N` or `file`.
#[derive(Debug, thiserror::Error)]
pub enum OptunaError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The content is not a study nightshift can take.
    #[error("{location}: {message}")]
    Invalid {
        /// `file:line`, `file: trial N` or `file`.
        location: String,
        /// What is wrong and what would be valid.
        message: String,
    },
}

/// Results of this module.
pub type Result<T, E = OptunaError> = std::result::Result<T, E>;

fn invalid(location: impl Into<String>, message: impl Into<String>) -> OptunaError {
    OptunaError::Invalid { location: location.into(), message: message.into() }
}

/// Optuna's `StudyDirection` values.
const DIRECTION_MINIMIZE: i64 = 1;
const DIRECTION_MAXIMIZE: i64 = 2;

/// Optuna's `TrialState` values, in its order.
const OPTUNA_STATES: [TrialState; 5] =
    [TrialState::Running, TrialState::Complete, TrialState::Pruned, TrialState::Fail, TrialState::Waiting];

fn state_code(state: TrialState) -> i64 {
    OPTUNA_STATES.iter().position(|s| *s == state).unwrap_or(0) as i64
}

fn state_from_code(code: i64) -> Option<TrialState> {
    usize::try_from(code).ok().and_then(|i| OPTUNA_STATES.get(i).copied())
}

/// Study system attributes under which an export keeps nightshift's own settings, so that
/// importing the file again restores the sampler, pruner, seed and search space. Optuna ignores them.
const SEED_ATTR: &str = "nightshift:seed";
const SAMPLER_ATTR: &str = "nightshift:sampler";
const PRUNER_ATTR: &str = "nightshift:pruner";
const SPACE_ATTR: &str = "nightshift:search_space";

/// One parameter of an Optuna trial: the distribution as Optuna's `distribution_to_json` writes
/// it (parsed) and the value in Optuna's internal representation (a categorical's choice index).
#[derive(Clone, Debug, PartialEq)]
pub struct OptunaParam {
    /// The distribution, as Optuna's `distribution_to_json` writes it.
    pub distribution: Value,
    /// The value in Optuna's internal representation (a categorical's choice index).
    pub internal: f64,
    /// Where the parameter was set (`file:line`), for errors.
    pub location: String,
}

/// A trial in Optuna's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct OptunaTrial {
    /// The trial number in its study.
    pub number: u64,
    /// Optuna's `TrialState` value: 0 RUNNING, 1 COMPLETE, 2 PRUNED, 3 FAIL, 4 WAITING.
    pub state: i64,
    /// The objective values (one per objective), if the trial has them.
    pub values: Option<Vec<f64>>,
    /// The parameters by name.
    pub params: BTreeMap<String, OptunaParam>,
    /// Intermediate values by step.
    pub intermediate_values: BTreeMap<i64, f64>,
    /// User attributes.
    pub user_attrs: BTreeMap<String, Value>,
    /// System attributes.
    pub system_attrs: BTreeMap<String, Value>,
    /// Start, in Unix seconds.
    pub datetime_start: Option<f64>,
    /// End, in Unix seconds.
    pub datetime_complete: Option<f64>,
    /// Where the trial was created (`file:line` or `file: trial N`), for errors.
    pub location: String,
}

/// A study in Optuna's terms.
#[derive(Clone, Debug, PartialEq)]
pub struct OptunaStudy {
    /// The study name.
    pub name: String,
    /// Optuna's `StudyDirection` values: 1 minimize, 2 maximize (0 not set).
    pub directions: Vec<i64>,
    /// Study user attributes.
    pub user_attrs: BTreeMap<String, Value>,
    /// Study system attributes.
    pub system_attrs: BTreeMap<String, Value>,
    /// The trials, by number.
    pub trials: Vec<OptunaTrial>,
    /// The file it came from, for errors.
    pub location: String,
}

/// An Optuna study made ready for a nightshift storage: only its finished trials, with
/// nightshift distributions and values.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportedStudy {
    /// The study's direction (single objective only).
    pub direction: Direction,
    /// Study user attributes.
    pub user_attrs: BTreeMap<String, Value>,
    /// Restored from an export by nightshift, when the file carries them.
    pub seed: Option<u64>,
    /// The sampler, restored like the seed.
    pub sampler: Option<SamplerConfig>,
    /// The pruner, restored like the seed.
    pub pruner: Option<PrunerConfig>,
    /// The export's search space, else one built from the trials when every parameter has one
    /// distribution throughout (`None` when they differ: Optuna allows ranges that change).
    pub search_space: Option<SearchSpace>,
    /// COMPLETE, PRUNED and FAIL trials, numbered from 0 in their Optuna order.
    pub trials: Vec<FrozenTrial>,
    /// For each trial, where it was read and its Optuna number: `("file:line", 3)`, for errors.
    pub origins: Vec<(String, u64)>,
    /// RUNNING and WAITING trials left out.
    pub unfinished: usize,
}

impl OptunaStudy {
    /// The study as Optuna would hold it after an `add_trial` of every trial.
    pub fn from_nightshift(study: &StudyRecord, trials: &[FrozenTrial]) -> Result<Self> {
        let location = format!("study '{}'", study.name);
        let direction = match study.direction {
            Direction::Minimize => DIRECTION_MINIMIZE,
            Direction::Maximize => DIRECTION_MAXIMIZE,
        };
        let config = |value: Result<Value, serde_json::Error>, what: &str| {
            value.map_err(|e| invalid(location.clone(), format!("cannot serialise the {what}: {e}")))
        };
        let mut system_attrs = BTreeMap::new();
        system_attrs.insert(SEED_ATTR.to_string(), json!(study.seed));
        system_attrs.insert(SAMPLER_ATTR.to_string(), config(serde_json::to_value(&study.sampler), "sampler")?);
        system_attrs.insert(PRUNER_ATTR.to_string(), config(serde_json::to_value(&study.pruner), "pruner")?);
        if let Some(space) = &study.search_space {
            system_attrs.insert(SPACE_ATTR.to_string(), space.to_json());
        }
        let trials = trials.iter().map(|t| trial_to_optuna(t, &location)).collect::<Result<Vec<_>>>()?;
        Ok(Self {
            name: study.name.clone(),
            directions: vec![direction],
            user_attrs: study.user_attrs.clone(),
            system_attrs,
            trials,
            location,
        })
    }

    /// The finished trials as nightshift trials, refusing what nightshift cannot hold.
    pub fn to_nightshift(&self) -> Result<ImportedStudy> {
        let direction = match self.directions.as_slice() {
            [DIRECTION_MINIMIZE] => Direction::Minimize,
            [DIRECTION_MAXIMIZE] => Direction::Maximize,
            [other] => {
                return Err(invalid(
                    &self.location,
                    format!("study '{}' has direction {other} (valid: 1 minimize, 2 maximize)", self.name),
                ));
            }
            many => {
                return Err(invalid(
                    &self.location,
                    format!(
                        "study '{}' has {} objectives; nightshift studies have one (export a single-objective study)",
                        self.name,
                        many.len()
                    ),
                ));
            }
        };
        let attr = |key: &str| self.system_attrs.get(key).cloned();
        let seed = attr(SEED_ATTR).and_then(|v| v.as_u64());
        let sampler = attr(SAMPLER_ATTR).and_then(|v| serde_json::from_value(v).ok());
        let pruner = attr(PRUNER_ATTR).and_then(|v| serde_json::from_value(v).ok());
        let exported_space = match attr(SPACE_ATTR) {
            Some(v) => Some(
                SearchSpace::parse(&v.to_string(), &format!("{} (system attribute {SPACE_ATTR})", self.location))
                    .map_err(|e| invalid(&self.location, e.to_string()))?,
            ),
            None => None,
        };
        let mut trials = Vec::new();
        let mut origins = Vec::new();
        let mut unfinished = 0;
        for trial in &self.trials {
            let state = state_from_code(trial.state).ok_or_else(|| {
                invalid(
                    &trial.location,
                    format!(
                        "trial {} has state {} (valid: 0 RUNNING, 1 COMPLETE, 2 PRUNED, 3 FAIL, 4 WAITING)",
                        trial.number, trial.state
                    ),
                )
            })?;
            if !state.is_finished() {
                unfinished += 1;
                continue;
            }
            trials.push(trial_to_nightshift(trial, state, trials.len() as u64)?);
            origins.push((trial.location.clone(), trial.number));
        }
        let search_space = exported_space.or_else(|| space_of(&trials));
        Ok(ImportedStudy {
            direction,
            user_attrs: self.user_attrs.clone(),
            seed,
            sampler,
            pruner,
            search_space,
            trials,
            origins,
            unfinished,
        })
    }
}

fn trial_to_optuna(trial: &FrozenTrial, location: &str) -> Result<OptunaTrial> {
    let mut params = BTreeMap::new();
    for (name, value) in &trial.params {
        let dist = trial
            .distributions
            .get(name)
            .ok_or_else(|| invalid(location, format!("trial {}: parameter '{name}' has no distribution", trial.number)))?;
        let internal =
            dist.to_internal(value).map_err(|e| invalid(location, format!("trial {}: parameter '{name}': {e}", trial.number)))?;
        params.insert(
            name.clone(),
            OptunaParam { distribution: distribution_to_optuna(dist), internal, location: location.to_string() },
        );
    }
    Ok(OptunaTrial {
        number: trial.number,
        state: state_code(trial.state),
        values: trial.value.map(|v| vec![v]),
        params,
        intermediate_values: trial.intermediate_values.iter().map(|(s, v)| (*s as i64, *v)).collect(),
        user_attrs: trial.user_attrs.clone(),
        system_attrs: trial.system_attrs.clone(),
        datetime_start: trial.started_at,
        datetime_complete: if trial.state.is_finished() { trial.finished_at } else { None },
        location: location.to_string(),
    })
}

/// A distribution as Optuna's `distribution_to_json` describes it (before it becomes a string).
pub fn distribution_to_optuna(dist: &Distribution) -> Value {
    match dist {
        Distribution::Float { low, high, log, step } => json!({
            "name": "FloatDistribution",
            "attributes": {"step": step, "low": low, "high": high, "log": log},
        }),
        Distribution::Int { low, high, log, step } => json!({
            "name": "IntDistribution",
            "attributes": {"log": log, "step": step, "low": low, "high": high},
        }),
        Distribution::Categorical { choices } => json!({
            "name": "CategoricalDistribution",
            "attributes": {"choices": choices},
        }),
    }
}

const SUPPORTED: &str = "nightshift supports FloatDistribution and IntDistribution with low < high, and \
     CategoricalDistribution of numbers, strings and bools";

/// An Optuna distribution JSON as a nightshift distribution, validated like a search space.
pub fn distribution_from_optuna(json: &Value, param: &str, location: &str) -> Result<Distribution> {
    let unsupported = |why: String| {
        invalid(location, format!("parameter '{param}': Optuna distribution {json} is not supported: {why} ({SUPPORTED})"))
    };
    let name = json.get("name").and_then(Value::as_str).unwrap_or_default();
    let mut entry = json.clone();
    // Optuna's legacy classes are the current ones with fixed attributes.
    let legacy = match name {
        "UniformDistribution" => Some(("FloatDistribution", json!({"log": false, "step": null}))),
        "LogUniformDistribution" => Some(("FloatDistribution", json!({"log": true, "step": null}))),
        "DiscreteUniformDistribution" => Some(("FloatDistribution", json!({"log": false}))),
        "IntUniformDistribution" => Some(("IntDistribution", json!({"log": false}))),
        "IntLogUniformDistribution" => Some(("IntDistribution", json!({"log": true}))),
        _ => None,
    };
    if let Some((current, fixed)) = legacy {
        entry["name"] = json!(current);
        if let (Some(attrs), Some(fixed)) = (entry["attributes"].as_object_mut(), fixed.as_object()) {
            attrs.extend(fixed.clone());
            if name == "DiscreteUniformDistribution"
                && let Some(q) = attrs.remove("q")
            {
                attrs.insert("step".into(), q);
            }
        }
    }
    if let Some(choices) = entry.pointer("/attributes/choices").and_then(Value::as_array)
        && let Some(null) = choices.iter().position(Value::is_null)
    {
        return Err(unsupported(format!("choice {null} is None")));
    }
    let text = json!({ param: entry }).to_string();
    let space = SearchSpace::parse(&text, location).map_err(|e| match e {
        nightshift_search::Error::Space { message, .. } => unsupported(message),
        other => unsupported(other.to_string()),
    })?;
    space.get(param).cloned().ok_or_else(|| unsupported("it names no distribution".into()))
}

fn trial_to_nightshift(trial: &OptunaTrial, state: TrialState, number: u64) -> Result<FrozenTrial> {
    let mut out = FrozenTrial::new(0, number, state);
    (out.started_at, out.finished_at) = (trial.datetime_start, trial.datetime_complete);
    for (name, param) in &trial.params {
        let dist = distribution_from_optuna(&param.distribution, name, &param.location)?;
        if !dist.contains(param.internal) {
            return Err(invalid(
                &param.location,
                format!("trial {}: parameter '{name}' has internal value {} outside {dist}", trial.number, param.internal),
            ));
        }
        out.params.insert(name.clone(), dist.to_external(param.internal));
        out.distributions.insert(name.clone(), dist);
    }
    out.value = match trial.values.as_deref() {
        None | Some([]) => None,
        Some([value]) => Some(*value),
        Some(many) => {
            return Err(invalid(
                &trial.location,
                format!("trial {} has {} values; nightshift studies have one objective", trial.number, many.len()),
            ));
        }
    };
    if state == TrialState::Complete && out.value.is_none() {
        return Err(invalid(&trial.location, format!("trial {} is COMPLETE but has no value", trial.number)));
    }
    for (step, value) in &trial.intermediate_values {
        let step = u64::try_from(*step).map_err(|_| {
            invalid(&trial.location, format!("trial {}: step {step} is negative (valid: 0, 1, 2, …)", trial.number))
        })?;
        out.intermediate_values.insert(step, *value);
    }
    out.user_attrs = trial.user_attrs.clone();
    out.system_attrs = trial.system_attrs.clone();
    out.started_at = trial.datetime_start;
    out.finished_at = trial.datetime_complete;
    Ok(out)
}

/// The search space the trials share, in order of first appearance; `None` when some parameter
/// appears with two different distributions.
fn space_of(trials: &[FrozenTrial]) -> Option<SearchSpace> {
    let mut seen: Vec<(&str, &Distribution)> = Vec::new();
    for trial in trials {
        for (name, dist) in &trial.distributions {
            match seen.iter().find(|(n, _)| n == name) {
                Some((_, known)) if *known != dist => return None,
                Some(_) => {}
                None => seen.push((name, dist)),
            }
        }
    }
    if seen.is_empty() {
        return None;
    }
    let mut space = SearchSpace::new();
    for (name, dist) in seen {
        space.insert(name, dist.clone());
    }
    Some(space)
}

/// Unix seconds as Optuna's journal writes datetimes: UTC ISO 8601 with microseconds.
pub fn iso_datetime(unix: f64) -> Option<String> {
    let micros = (unix * 1e6).round();
    if !micros.is_finite() {
        return None;
    }
    let utc = chrono::DateTime::<chrono::Utc>::from_timestamp_micros(micros as i64)?;
    Some(utc.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string())
}

/// An ISO 8601 datetime as Optuna writes it, as Unix seconds: with an offset (the journal), or
/// naive in the local time zone (Python's `datetime.now()`, what the RDB stores).
pub fn parse_datetime(text: &str) -> Option<f64> {
    use chrono::TimeZone;
    let text = text.trim();
    let micros = |dt: chrono::DateTime<chrono::FixedOffset>| dt.timestamp_micros() as f64 / 1e6;
    if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(micros(dt));
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%d %H:%M:%S%.f%:z"] {
        if let Ok(dt) = chrono::DateTime::parse_from_str(text, format) {
            return Some(micros(dt));
        }
    }
    for format in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(naive) = chrono::NaiveDateTime::parse_from_str(text, format) {
            let local = chrono::Local.from_local_datetime(&naive).earliest()?;
            return Some(local.timestamp_micros() as f64 / 1e6);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use nightshift_search::ParamValue;

    use super::*;

    #[test]
    fn datetimes_round_trip_through_optuna_iso_text() {
        let t = 1_764_547_178.123_456;
        let text = iso_datetime(t).unwrap();
        assert_eq!(text, "2025-11-30T23:59:38.123456+00:00");
        assert!((parse_datetime(&text).unwrap() - t).abs() < 1e-6);
        assert!((parse_datetime("2025-12-01T00:59:38.123456+01:00").unwrap() - t).abs() < 1e-6);
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn distributions_map_both_ways_and_unsupported_ones_are_named() {
        let float = Distribution::Float { low: 1e-5, high: 0.1, log: true, step: None };
        let int = Distribution::Int { low: 1, high: 9, log: false, step: 2 };
        let cat = Distribution::Categorical { choices: vec![ParamValue::Str("adam".into()), ParamValue::Int(3)] };
        for dist in [float, int, cat] {
            let json = distribution_to_optuna(&dist);
            assert_eq!(distribution_from_optuna(&json, "p", "f:1").unwrap(), dist, "{json}");
        }
        let legacy = json!({"name": "DiscreteUniformDistribution", "attributes": {"low": 0.0, "high": 1.0, "q": 0.25}});
        assert_eq!(
            distribution_from_optuna(&legacy, "p", "f:1").unwrap(),
            Distribution::Float { low: 0.0, high: 1.0, log: false, step: Some(0.25) }
        );
        let none_choice = json!({"name": "CategoricalDistribution", "attributes": {"choices": ["a", null]}});
        let message = distribution_from_optuna(&none_choice, "opt", "j.log:7").unwrap_err().to_string();
        assert!(message.starts_with("j.log:7: parameter 'opt'") && message.contains("choice 1 is None"), "{message}");
        let unknown = json!({"name": "WeirdDistribution", "attributes": {}});
        let message = distribution_from_optuna(&unknown, "w", "j.log:3").unwrap_err().to_string();
        assert!(message.contains("WeirdDistribution") && message.contains("FloatDistribution"), "{message}");
    }
}

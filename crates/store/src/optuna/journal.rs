//! Optuna's JournalStorage file (`optuna.storages.journal.JournalFileBackend`): one JSON object
//! per line, each an operation with an `op_code` (Optuna 5.0's `JournalOperation`) and a
//! `worker_id`. Optuna rebuilds its studies by replaying the lines in order; so does
//! [`read_journal`], with the same rules (an operation on a missing study or on a finished trial is
//! ignored, a second study of the same name is ignored, a last line without its newline is a write
//! still in progress and is skipped).
//!
//! [`write_journal`] writes one study as Optuna's `add_trial` would: `CREATE_STUDY`, one
//! `SET_STUDY_USER_ATTR`/`SET_STUDY_SYSTEM_ATTR` per attribute, then one `CREATE_TRIAL` per trial
//! carrying the whole trial (state, value, datetimes, distributions as `distribution_to_json`
//! strings, parameters in their internal representation, intermediate values, attributes).
//! Python's `json` writes NaN and ±infinity as the bare tokens `NaN`, `Infinity` and
//! `-Infinity`; both directions do the same.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use nightshift_search::python_json::{number as as_float, quote_non_finite};

use super::{OptunaParam, OptunaStudy, OptunaTrial, Result, invalid, iso_datetime, parse_datetime};

const CREATE_STUDY: i64 = 0;
const DELETE_STUDY: i64 = 1;
const SET_STUDY_USER_ATTR: i64 = 2;
const SET_STUDY_SYSTEM_ATTR: i64 = 3;
const CREATE_TRIAL: i64 = 4;
const SET_TRIAL_PARAM: i64 = 5;
const SET_TRIAL_STATE_VALUES: i64 = 6;
const SET_TRIAL_INTERMEDIATE_VALUE: i64 = 7;
const SET_TRIAL_USER_ATTR: i64 = 8;
const SET_TRIAL_SYSTEM_ATTR: i64 = 9;
/// Written only by Rustuna; Optuna skips it, and so do we.
const DISCARD_TRIALS: i64 = 10;

/// The `worker_id` of the lines an export writes.
const WORKER_ID: &str = "nightshift-export";

/// Stands in for a non-finite float while a line is a `serde_json::Value` (which cannot hold one);
/// replaced by Python's bare token once the line is text.
const NON_FINITE_MARK: &str = "\u{1}nightshift-non-finite:";

fn float(x: f64) -> Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => Value::Number(n),
        None if x.is_nan() => Value::String(format!("{NON_FINITE_MARK}NaN")),
        None if x > 0.0 => Value::String(format!("{NON_FINITE_MARK}Infinity")),
        None => Value::String(format!("{NON_FINITE_MARK}-Infinity")),
    }
}

fn line(mut fields: Map<String, Value>, op_code: i64) -> String {
    let mut object = Map::new();
    object.insert("op_code".into(), json!(op_code));
    object.insert("worker_id".into(), json!(WORKER_ID));
    object.append(&mut fields);
    let mut text = Value::Object(object).to_string();
    if text.contains("nightshift-non-finite:") {
        for token in ["NaN", "Infinity", "-Infinity"] {
            let quoted = Value::String(format!("{NON_FINITE_MARK}{token}")).to_string();
            text = text.replace(&quoted, token);
        }
    }
    text + "\n"
}

fn fields(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The journal lines of one study, as the only study of a new file (its `study_id` is 0).
pub fn write_journal(study: &OptunaStudy) -> String {
    let mut out = line(fields(json!({"study_name": study.name, "directions": study.directions})), CREATE_STUDY);
    for (key, value) in &study.user_attrs {
        out += &line(fields(json!({"study_id": 0, "user_attr": {key: value}})), SET_STUDY_USER_ATTR);
    }
    for (key, value) in &study.system_attrs {
        out += &line(fields(json!({"study_id": 0, "system_attr": {key: value}})), SET_STUDY_SYSTEM_ATTR);
    }
    for trial in &study.trials {
        out += &line(create_trial_fields(trial), CREATE_TRIAL);
    }
    out
}

fn create_trial_fields(trial: &OptunaTrial) -> Map<String, Value> {
    let mut f = Map::new();
    f.insert("study_id".into(), json!(0));
    f.insert("datetime_start".into(), json!(trial.datetime_start.and_then(iso_datetime)));
    f.insert("state".into(), json!(trial.state));
    // A single objective goes in `value`, as Optuna's own template does.
    let value = trial.values.as_deref().and_then(|v| v.first().copied());
    f.insert("value".into(), value.map(float).unwrap_or(Value::Null));
    f.insert("values".into(), Value::Null);
    // Optuna parses `datetime_complete` whenever the key is present: leave it out when unknown.
    if let Some(complete) = trial.datetime_complete.and_then(iso_datetime) {
        f.insert("datetime_complete".into(), json!(complete));
    }
    let distributions: Map<String, Value> =
        trial.params.iter().map(|(name, p)| (name.clone(), Value::String(p.distribution.to_string()))).collect();
    f.insert("distributions".into(), Value::Object(distributions));
    let params: Map<String, Value> = trial.params.iter().map(|(name, p)| (name.clone(), float(p.internal))).collect();
    f.insert("params".into(), Value::Object(params));
    f.insert("user_attrs".into(), json!(trial.user_attrs));
    f.insert("system_attrs".into(), json!(trial.system_attrs));
    let intermediate: Map<String, Value> =
        trial.intermediate_values.iter().map(|(step, v)| (step.to_string(), float(*v))).collect();
    f.insert("intermediate_values".into(), Value::Object(intermediate));
    f
}

/// One journal line being replayed: its location and fields, with typed getters whose errors
/// name the line and the field.
struct Op<'a> {
    location: String,
    fields: &'a Map<String, Value>,
    name: &'static str,
}

impl Op<'_> {
    fn missing(&self, field: &str, what: &str) -> super::OptunaError {
        invalid(&self.location, format!("{} needs '{field}' ({what})", self.name))
    }

    fn int(&self, field: &str) -> Result<i64> {
        self.fields.get(field).and_then(Value::as_i64).ok_or_else(|| self.missing(field, "an integer"))
    }

    fn float(&self, field: &str) -> Result<f64> {
        self.fields.get(field).and_then(as_float).ok_or_else(|| self.missing(field, "a number"))
    }

    fn str(&self, field: &str) -> Result<&str> {
        self.fields.get(field).and_then(Value::as_str).ok_or_else(|| self.missing(field, "a string"))
    }

    fn object(&self, field: &str) -> Result<&Map<String, Value>> {
        self.fields.get(field).and_then(Value::as_object).ok_or_else(|| self.missing(field, "an object"))
    }

    fn optional_object(&self, field: &str) -> Result<Option<&Map<String, Value>>> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => self.object(field).map(Some),
        }
    }

    /// A `datetime_*` field: absent or null is `None`; text that is no datetime is an error.
    fn datetime(&self, field: &str) -> Result<Option<f64>> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => parse_datetime(text)
                .map(Some)
                .ok_or_else(|| invalid(&self.location, format!("{field} '{text}' is not an ISO 8601 datetime"))),
            Some(_) => Err(self.missing(field, "an ISO 8601 datetime string")),
        }
    }

    /// `values`: null, or a list of numbers.
    fn values(&self, field: &str) -> Result<Option<Vec<f64>>> {
        match self.fields.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(as_float)
                .collect::<Option<Vec<f64>>>()
                .map(Some)
                .ok_or_else(|| self.missing(field, "a list of numbers")),
            Some(_) => Err(self.missing(field, "a list of numbers or null")),
        }
    }

    /// A distribution: Optuna writes `distribution_to_json`'s string; an object is accepted too.
    fn distribution(&self, value: &Value, param: &str) -> Result<Value> {
        match value {
            Value::String(text) => serde_json::from_str(&quote_non_finite(text))
                .map_err(|e| invalid(&self.location, format!("parameter '{param}': the distribution '{text}' is not JSON: {e}"))),
            Value::Object(_) => Ok(value.clone()),
            _ => Err(invalid(&self.location, format!("parameter '{param}': the distribution must be a JSON string"))),
        }
    }
}

fn op_name(code: i64) -> Option<&'static str> {
    Some(match code {
        CREATE_STUDY => "CREATE_STUDY",
        DELETE_STUDY => "DELETE_STUDY",
        SET_STUDY_USER_ATTR => "SET_STUDY_USER_ATTR",
        SET_STUDY_SYSTEM_ATTR => "SET_STUDY_SYSTEM_ATTR",
        CREATE_TRIAL => "CREATE_TRIAL",
        SET_TRIAL_PARAM => "SET_TRIAL_PARAM",
        SET_TRIAL_STATE_VALUES => "SET_TRIAL_STATE_VALUES",
        SET_TRIAL_INTERMEDIATE_VALUE => "SET_TRIAL_INTERMEDIATE_VALUE",
        SET_TRIAL_USER_ATTR => "SET_TRIAL_USER_ATTR",
        SET_TRIAL_SYSTEM_ATTR => "SET_TRIAL_SYSTEM_ATTR",
        DISCARD_TRIALS => "DISCARD_TRIALS",
        _ => return None,
    })
}

/// The replay state: Optuna's `JournalStorageReplayResult` without the worker bookkeeping.
#[derive(Default)]
struct Replay {
    studies: BTreeMap<i64, OptunaStudy>,
    next_study_id: i64,
    /// Every trial ever created, by trial id (trials of deleted studies keep their id).
    trials: Vec<(i64, OptunaTrial)>,
}

impl Replay {
    /// The trial `trial_id` when it exists and is not finished (Optuna ignores other updates).
    fn updatable(&mut self, trial_id: i64) -> Option<&mut OptunaTrial> {
        let (_, trial) = self.trials.get_mut(usize::try_from(trial_id).ok()?)?;
        matches!(trial.state, 0 | 4).then_some(trial)
    }

    fn apply(&mut self, code: i64, op: &Op<'_>) -> Result<()> {
        match code {
            CREATE_STUDY => {
                let name = op.str("study_name")?.to_string();
                let directions = op
                    .fields
                    .get("directions")
                    .and_then(Value::as_array)
                    .and_then(|d| d.iter().map(Value::as_i64).collect::<Option<Vec<i64>>>())
                    .ok_or_else(|| op.missing("directions", "a list of 1 (minimize) or 2 (maximize)"))?;
                if self.studies.values().any(|s| s.name == name) {
                    return Ok(());
                }
                let study = OptunaStudy {
                    name,
                    directions,
                    user_attrs: BTreeMap::new(),
                    system_attrs: BTreeMap::new(),
                    trials: Vec::new(),
                    location: op.location.clone(),
                };
                self.studies.insert(self.next_study_id, study);
                self.next_study_id += 1;
            }
            DELETE_STUDY => {
                self.studies.remove(&op.int("study_id")?);
            }
            SET_STUDY_USER_ATTR | SET_STUDY_SYSTEM_ATTR => {
                let field = if code == SET_STUDY_USER_ATTR { "user_attr" } else { "system_attr" };
                let attrs = op.object(field)?;
                if let Some(study) = self.studies.get_mut(&op.int("study_id")?) {
                    let target = if code == SET_STUDY_USER_ATTR { &mut study.user_attrs } else { &mut study.system_attrs };
                    target.extend(attrs.iter().map(|(k, v)| (k.clone(), v.clone())));
                }
            }
            CREATE_TRIAL => self.create_trial(op)?,
            SET_TRIAL_PARAM => {
                let name = op.str("param_name")?.to_string();
                let internal = op.float("param_value_internal")?;
                let raw = op.fields.get("distribution").ok_or_else(|| op.missing("distribution", "a JSON string"))?;
                let distribution = op.distribution(raw, &name)?;
                let location = op.location.clone();
                if let Some(trial) = self.updatable(op.int("trial_id")?) {
                    trial.params.insert(name, OptunaParam { distribution, internal, location });
                }
            }
            SET_TRIAL_STATE_VALUES => {
                let state = op.int("state")?;
                let values = op.values("values")?;
                let start = op.datetime("datetime_start")?;
                let complete = op.datetime("datetime_complete")?;
                if let Some(trial) = self.updatable(op.int("trial_id")?) {
                    // A WAITING trial already claimed by another worker stays theirs.
                    if state == 0 && trial.state == 0 {
                        return Ok(());
                    }
                    if state == 0 {
                        trial.datetime_start = start;
                    }
                    if matches!(state, 1..=3) {
                        trial.datetime_complete = complete;
                    }
                    trial.state = state;
                    if values.is_some() {
                        trial.values = values;
                    }
                }
            }
            SET_TRIAL_INTERMEDIATE_VALUE => {
                let step = op.int("step")?;
                let value = op.float("intermediate_value")?;
                if let Some(trial) = self.updatable(op.int("trial_id")?) {
                    trial.intermediate_values.insert(step, value);
                }
            }
            SET_TRIAL_USER_ATTR | SET_TRIAL_SYSTEM_ATTR => {
                let field = if code == SET_TRIAL_USER_ATTR { "user_attr" } else { "system_attr" };
                let attrs = op.object(field)?.clone();
                if let Some(trial) = self.updatable(op.int("trial_id")?) {
                    let target = if code == SET_TRIAL_USER_ATTR { &mut trial.user_attrs } else { &mut trial.system_attrs };
                    target.extend(attrs);
                }
            }
            _ => {} // DISCARD_TRIALS
        }
        Ok(())
    }

    fn create_trial(&mut self, op: &Op<'_>) -> Result<()> {
        let study_id = op.int("study_id")?;
        if !self.studies.contains_key(&study_id) {
            return Ok(());
        }
        let number = self.trials.iter().filter(|(s, _)| *s == study_id).count() as u64;
        let mut params = BTreeMap::new();
        if let Some(internal) = op.optional_object("params")? {
            let distributions = op.object("distributions")?;
            for (name, value) in internal {
                let raw = distributions
                    .get(name)
                    .ok_or_else(|| invalid(&op.location, format!("parameter '{name}' has no entry in 'distributions'")))?;
                let internal = as_float(value)
                    .ok_or_else(|| invalid(&op.location, format!("parameter '{name}': the value {value} is not a number")))?;
                let distribution = op.distribution(raw, name)?;
                params.insert(name.clone(), OptunaParam { distribution, internal, location: op.location.clone() });
            }
        }
        let value = match op.fields.get("value") {
            None | Some(Value::Null) => None,
            Some(_) => Some(op.float("value")?),
        };
        let values = match value {
            Some(v) => Some(vec![v]),
            None => op.values("values")?,
        };
        let mut intermediate_values = BTreeMap::new();
        if let Some(reported) = op.optional_object("intermediate_values")? {
            for (step, value) in reported {
                let step = step
                    .parse::<i64>()
                    .map_err(|_| invalid(&op.location, format!("intermediate step '{step}' is not an integer")))?;
                let value = as_float(value)
                    .ok_or_else(|| invalid(&op.location, format!("intermediate value of step {step} is not a number")))?;
                intermediate_values.insert(step, value);
            }
        }
        let attrs = |field: &str| -> Result<BTreeMap<String, Value>> {
            Ok(op.optional_object(field)?.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default())
        };
        let trial = OptunaTrial {
            number,
            state: match op.fields.get("state") {
                None => 0,
                Some(_) => op.int("state")?,
            },
            values,
            params,
            intermediate_values,
            user_attrs: attrs("user_attrs")?,
            system_attrs: attrs("system_attrs")?,
            datetime_start: op.datetime("datetime_start")?,
            datetime_complete: op.datetime("datetime_complete")?,
            location: op.location.clone(),
        };
        self.trials.push((study_id, trial));
        Ok(())
    }
}

/// Replays a journal file's text; `path` names it in errors (`path:line: …`). Returns the studies
/// that exist at the end, in creation order, with their trials.
pub fn read_journal(text: &str, path: &str) -> Result<Vec<OptunaStudy>> {
    let mut replay = Replay::default();
    let mut lines: Vec<&str> = text.split('\n').collect();
    // The piece after the last newline is a write still in progress (or nothing): Optuna skips it.
    lines.pop();
    for (index, raw) in lines.iter().enumerate() {
        let location = format!("{path}:{}", index + 1);
        let raw = raw.strip_suffix('\r').unwrap_or(raw);
        if raw.trim().is_empty() {
            continue;
        }
        let parsed: Value = serde_json::from_str(&quote_non_finite(raw))
            .map_err(|e| invalid(&location, format!("not a JSON object ({e}); an Optuna journal has one per line")))?;
        let Value::Object(fields) = parsed else {
            return Err(invalid(&location, "not a JSON object; an Optuna journal has one per line"));
        };
        let code = fields.get("op_code").and_then(Value::as_i64).ok_or_else(|| {
            invalid(&location, "no integer 'op_code' (each journal line is an operation with an op_code from 0 to 10)")
        })?;
        let name = op_name(code).ok_or_else(|| {
            invalid(
                &location,
                format!("unknown op_code {code} (valid: 0 to 10, Optuna 5.0's JournalOperation: 0 CREATE_STUDY … 9 SET_TRIAL_SYSTEM_ATTR)"),
            )
        })?;
        replay.apply(code, &Op { location, fields: &fields, name })?;
    }
    let Replay { mut studies, trials, .. } = replay;
    for (study_id, trial) in trials {
        if let Some(study) = studies.get_mut(&study_id) {
            study.trials.push(trial);
        }
    }
    Ok(studies.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn study() -> OptunaStudy {
        let mut params = BTreeMap::new();
        params.insert(
            "opt".to_string(),
            OptunaParam {
                distribution: json!({"name": "CategoricalDistribution", "attributes": {"choices": ["a", "b"]}}),
                internal: 1.0,
                location: String::new(),
            },
        );
        let trial = OptunaTrial {
            number: 0,
            state: 2,
            values: Some(vec![f64::INFINITY]),
            params,
            intermediate_values: [(0, 0.5), (1, f64::NAN)].into_iter().collect(),
            user_attrs: [("note".to_string(), json!("NaN inside a string stays text"))].into_iter().collect(),
            system_attrs: BTreeMap::new(),
            datetime_start: Some(1_700_000_000.25),
            datetime_complete: Some(1_700_000_010.5),
            location: String::new(),
        };
        OptunaStudy {
            name: "s".into(),
            directions: vec![2],
            user_attrs: [("k".to_string(), json!(3))].into_iter().collect(),
            system_attrs: BTreeMap::new(),
            trials: vec![trial],
            location: String::new(),
        }
    }

    #[test]
    fn written_journal_reads_back_with_python_tokens() {
        let text = write_journal(&study());
        assert!(text.lines().all(|l| l.starts_with("{\"op_code\":")), "{text}");
        assert!(text.contains("\"value\":Infinity") && text.contains("\"1\":NaN"), "{text}");
        let studies = read_journal(&text, "j.log").unwrap();
        assert_eq!(studies.len(), 1);
        let (read, written) = (&studies[0], study());
        assert_eq!(read.name, "s");
        assert_eq!(read.directions, vec![2]);
        assert_eq!(read.user_attrs, written.user_attrs);
        let (r, w) = (&read.trials[0], &written.trials[0]);
        assert_eq!(r.values, w.values);
        assert_eq!(r.intermediate_values[&0], 0.5);
        assert!(r.intermediate_values[&1].is_nan());
        assert_eq!(r.params["opt"].internal, 1.0);
        assert_eq!(r.params["opt"].distribution, w.params["opt"].distribution);
        assert_eq!((r.datetime_start, r.datetime_complete), (w.datetime_start, w.datetime_complete));
        assert_eq!(r.user_attrs, w.user_attrs);
    }

    #[test]
    fn replays_step_by_step_operations_as_optuna_writes_them() {
        let text = concat!(
            r#"{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}"#,
            "\n",
            r#"{"op_code":4,"worker_id":"w","study_id":0,"datetime_start":"2025-01-01T00:00:00.000000+00:00"}"#,
            "\n",
            r#"{"op_code":5,"worker_id":"w","trial_id":0,"param_name":"x","param_value_internal":0.5,"distribution":"{\"name\": \"FloatDistribution\", \"attributes\": {\"step\": null, \"low\": 0.0, \"high\": 1.0, \"log\": false}}"}"#,
            "\n",
            r#"{"op_code":7,"worker_id":"w","trial_id":0,"step":0,"intermediate_value":-Infinity}"#,
            "\n",
            r#"{"op_code":8,"worker_id":"w","trial_id":0,"user_attr":{"u":[1,2]}}"#,
            "\n",
            r#"{"op_code":6,"worker_id":"w","trial_id":0,"state":1,"values":[0.25],"datetime_complete":"2025-01-01T00:00:01.000000+00:00"}"#,
            "\n",
            r#"{"op_code":8,"worker_id":"w","trial_id":0,"user_attr":{"late":true}}"#,
            "\n",
            r#"{"op_code":0,"worker_id":"w","study_name":"s","directions":[2]}"#,
            "\n",
            r#"{"op_code":10,"worker_id":"w"}"#,
            "\n",
            r#"{"op_code":4,"worker_id":"w","study_id":0,"datetime_st"#,
        );
        let studies = read_journal(text, "j.log").unwrap();
        assert_eq!(studies.len(), 1, "a second study of the same name is ignored");
        let s = &studies[0];
        assert_eq!(s.directions, vec![1]);
        assert_eq!(s.trials.len(), 1, "the unfinished last line is skipped");
        let t = &s.trials[0];
        assert_eq!((t.state, t.values.clone()), (1, Some(vec![0.25])));
        assert_eq!(t.params["x"].internal, 0.5);
        assert_eq!(t.intermediate_values[&0], f64::NEG_INFINITY);
        assert_eq!(t.user_attrs.keys().collect::<Vec<_>>(), vec!["u"], "a finished trial ignores later updates");
        assert_eq!(t.datetime_complete.unwrap() - t.datetime_start.unwrap(), 1.0);
    }

    #[test]
    fn bad_lines_name_the_file_and_line() {
        let bad = |text: &str| read_journal(text, "j.log").unwrap_err().to_string();
        let start = "{\"op_code\":0,\"worker_id\":\"w\",\"study_name\":\"s\",\"directions\":[1]}\n";
        let message = bad(&format!("{start}not json\n"));
        assert!(message.starts_with("j.log:2: not a JSON object"), "{message}");
        let message = bad(&format!("{start}{{\"op_code\":42,\"worker_id\":\"w\"}}\n"));
        assert!(message.starts_with("j.log:2: unknown op_code 42 (valid: 0 to 10"), "{message}");
        let message = bad(&format!("{start}{{\"op_code\":7,\"worker_id\":\"w\",\"trial_id\":0,\"step\":\"x\"}}\n"));
        assert!(message.starts_with("j.log:2: SET_TRIAL_INTERMEDIATE_VALUE needs 'step' (an integer)"), "{message}");
        let message = bad("{\"worker_id\":\"w\"}\n");
        assert!(message.starts_with("j.log:1: no integer 'op_code'"), "{message}");
    }
}

//! Printing results on stdout: our tables, and JSON, YAML and `value` lines shaped as Optuna's CLI
//! prints them (the same keys, datetimes as `2026-11-30 23:40:16`, durations as `0:00:04.500934`);
//! and whether stderr gets colours.

use std::sync::atomic::{AtomicBool, Ordering};

use clap::ValueEnum;
use nightshift_search::{FrozenTrial, StudyRecord, TrialState};
use serde_json::{Map, Value, json};

/// How a verb prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    #[default]
    #[value(alias = "text")]
    Table,
    /// JSON on one line.
    Json,
    /// YAML.
    Yaml,
    /// One line per record, fields separated by spaces (Optuna's `value`).
    Value,
}

/// Keys we print that Optuna's CLI does not (Optuna prints `user_attrs` only when some are set).
pub const EXTRA_KEYS: [&str; 6] = ["user_attrs", "intermediate_values", "system_attrs", "best_value", "best_params", "storage"];

/// Prints `records` (one object, or a list of them) in `format`; `table` draws our table.
pub fn print_records(format: Format, records: &[Value], one: bool, table: impl FnOnce() -> String) -> anyhow::Result<()> {
    let whole = || if one { records.first().cloned().unwrap_or(Value::Null) } else { Value::Array(records.to_vec()) };
    match format {
        Format::Table => print!("{}", table()),
        Format::Json => println!("{}", python_json(&whole())),
        Format::Yaml => print!("{}", serde_yaml::to_string(&whole())?),
        Format::Value => {
            for line in value_lines(records) {
                println!("{line}");
            }
        }
    }
    Ok(())
}

/// JSON spaced as Python's `json.dumps` spaces it (`{"number": 0, "params": {"x": 1.5}}`), as Optuna's CLI
/// prints it, so that a script matching `"number": ` works with either tool.
pub fn python_json(value: &Value) -> String {
    struct PythonSpacing;
    impl serde_json::ser::Formatter for PythonSpacing {
        fn begin_array_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
            if first { Ok(()) } else { writer.write_all(b", ") }
        }
        fn begin_object_key<W: ?Sized + std::io::Write>(&mut self, writer: &mut W, first: bool) -> std::io::Result<()> {
            if first { Ok(()) } else { writer.write_all(b", ") }
        }
        fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, writer: &mut W) -> std::io::Result<()> {
            writer.write_all(b": ")
        }
    }
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonSpacing);
    // A `Value` always serialises, into UTF-8.
    serde::Serialize::serialize(value, &mut serializer).expect("a JSON value serialises");
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// Optuna's `value` format: the fields Optuna prints, space-separated, an unset one empty; our
/// extra keys are left out, as is `user_attrs` when no record has any.
fn value_lines(records: &[Value]) -> Vec<String> {
    let any_user_attrs =
        records.iter().any(|r| r.get("user_attrs").is_some_and(|a| a.as_object().is_some_and(|m| !m.is_empty())));
    records
        .iter()
        .filter_map(Value::as_object)
        .map(|record| {
            let cells: Vec<String> = record
                .iter()
                .filter(|(key, _)| {
                    let extra = EXTRA_KEYS.iter().any(|e| key.as_str() == *e || key.starts_with(&format!("{e}_")));
                    !extra || (any_user_attrs && key.starts_with("user_attrs"))
                })
                .map(|(key, v)| cell(key, v))
                .collect();
            cells.join(" ")
        })
        .collect()
}

/// A field as a `value` line or table cell shows it: unset empty, text bare, the rest as Python's repr.
fn cell(key: &str, value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        // Optuna's study directions are a tuple: ('MINIMIZE',).
        Value::Array(items) if key == "direction" => {
            let items: Vec<String> = items.iter().map(python_repr).collect();
            if items.len() == 1 { format!("({},)", items[0]) } else { format!("({})", items.join(", ")) }
        }
        other => python_repr(other),
    }
}

/// Records as a table: the first record's keys as the header.
pub fn records_table(records: &[Value]) -> String {
    let headers: Vec<&str> =
        records.first().and_then(Value::as_object).map(|m| m.keys().map(String::as_str).collect()).unwrap_or_default();
    let rows: Vec<Vec<String>> =
        records.iter().map(|r| headers.iter().map(|h| r.get(*h).map(|v| cell(h, v)).unwrap_or_default()).collect()).collect();
    table(&headers, &rows)
}

/// Optuna's `--flatten`: `params: {x: 1}` becomes `params_x: 1`, `direction: [A]` becomes `direction_0: A`.
pub fn flatten(record: Value) -> Value {
    let Value::Object(map) = record else { return record };
    let mut out = Map::new();
    for (key, value) in map {
        match value {
            Value::Object(inner) => out.extend(inner.into_iter().map(|(k, v)| (format!("{key}_{k}"), v))),
            Value::Array(items) => out.extend(items.into_iter().enumerate().map(|(i, v)| (format!("{key}_{i}"), v))),
            other => {
                out.insert(key, other);
            }
        }
    }
    Value::Object(out)
}

/// A JSON value as Python's `repr` writes the same value (`{'c': 'b', 'x': 1e-05}`, `True`, `None`).
pub fn python_repr(value: &Value) -> String {
    match value {
        Value::Null => "None".into(),
        Value::Bool(b) => if *b { "True" } else { "False" }.into(),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) if !n.is_f64() => i.to_string(),
            (_, Some(u), _) if !n.is_f64() => u.to_string(),
            (_, _, Some(f)) => python_float(f),
            _ => n.to_string(),
        },
        Value::String(s) => python_str(s),
        Value::Array(items) => format!("[{}]", items.iter().map(python_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let items: Vec<String> = map.iter().map(|(k, v)| format!("{}: {}", python_str(k), python_repr(v))).collect();
            format!("{{{}}}", items.join(", "))
        }
    }
}

fn python_str(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::from(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `repr(float)`: the shortest round-trip digits, in exponent form below 1e-4 and from 1e16 on.
pub fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf" } else { "-inf" }.into();
    }
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let scientific = format!("{v:e}");
    let (mantissa, exponent) = scientific.split_once('e').expect("{:e} always writes an exponent");
    let exponent: i32 = exponent.parse().expect("{:e} writes an integer exponent");
    if (-4..16).contains(&exponent) {
        let plain = format!("{v}");
        if plain.contains('.') { plain } else { plain + ".0" }
    } else {
        format!("{mantissa}e{}{:02}", if exponent < 0 { '-' } else { '+' }, exponent.abs())
    }
}

/// Unix seconds as Optuna prints a datetime: local time, `%Y-%m-%d %H:%M:%S`.
pub fn datetime(unix: f64) -> String {
    let (secs, nanos) = (unix.floor() as i64, ((unix - unix.floor()) * 1e9) as u32);
    match chrono::DateTime::from_timestamp(secs, nanos.min(999_999_999)) {
        Some(utc) => utc.with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string(),
        None => String::new(),
    }
}

/// Seconds as Python's `str(timedelta)`: `0:00:04.500934`, `1 day, 2:03:04`.
pub fn timedelta(seconds: f64) -> String {
    let micros = (seconds.max(0.0) * 1e6).round() as u64;
    let (days, rest) = (micros / 86_400_000_000, micros % 86_400_000_000);
    let (h, m, s, us) = (rest / 3_600_000_000, rest / 60_000_000 % 60, rest / 1_000_000 % 60, rest % 1_000_000);
    let day_part = match days {
        0 => String::new(),
        1 => "1 day, ".into(),
        n => format!("{n} days, "),
    };
    let fraction = if us == 0 { String::new() } else { format!(".{us:06}") };
    format!("{day_part}{h}:{m:02}:{s:02}{fraction}")
}

/// `--color`: whether our stderr output (errors, warnings, logs) uses ANSI colours.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colours when stderr is a terminal that can show them, and NO_COLOR is unset.
    #[default]
    Auto,
    /// Always colours (even with NO_COLOR set).
    Always,
    /// Never colours.
    Never,
}

static COLOR: AtomicBool = AtomicBool::new(false);

impl ColorChoice {
    /// Decides once for the process; [`color`] reads the answer.
    pub fn apply(self) -> bool {
        let enabled = match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                use std::io::IsTerminal;
                let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
                let dumb = std::env::var("TERM").map_or(true, |t| t == "dumb");
                !no_color && !dumb && std::io::stderr().is_terminal()
            }
        };
        COLOR.store(enabled, Ordering::Relaxed);
        enabled
    }
}

/// Whether stderr output may use colours (see [`ColorChoice::apply`]).
pub fn color() -> bool {
    COLOR.load(Ordering::Relaxed)
}

/// `label` in bold `ansi` colour (e.g. "31" red) when colours are on.
pub fn paint(label: &str, ansi: &str) -> String {
    if color() { format!("\x1b[1;{ansi}m{label}\x1b[0m") } else { label.to_string() }
}

/// A left-aligned text table with a header row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        // Padded by hand: `format!`'s width is at most 65,535 (a study name can be longer).
        let padded: Vec<String> =
            cells.iter().zip(&widths).map(|(c, w)| format!("{c}{}", " ".repeat(w.saturating_sub(c.chars().count())))).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    out += &line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

/// A trial as Optuna's `trials`/`best-trial` print it, then our extra keys.
pub fn trial_record(trial: &FrozenTrial) -> Value {
    json!({
        "number": trial.number,
        "value": trial.value,
        "datetime_start": trial.started_at.map(datetime),
        "datetime_complete": trial.finished_at.map(datetime),
        "duration": trial.duration().map(timedelta),
        "params": trial.params,
        "user_attrs": trial.user_attrs,
        "state": trial.state,
        "intermediate_values": trial.intermediate_values,
        "system_attrs": trial.system_attrs,
    })
}

/// A study as Optuna's `studies` prints it, then our extra keys.
pub fn study_record(study: &StudyRecord, trials: &[FrozenTrial], storage: &str) -> Value {
    let best = nightshift_search::best_of(trials, study.direction);
    let start = trials.iter().filter_map(|t| t.started_at).min_by(f64::total_cmp);
    json!({
        "name": study.name,
        "direction": [study.direction.to_string().to_uppercase()],
        "n_trials": trials.len(),
        "datetime_start": start.map(datetime),
        "user_attrs": study.user_attrs,
        "best_value": best.and_then(|b| b.value),
        "best_params": best.map(|b| &b.params),
        "storage": nightshift_store::redact_url(storage),
    })
}

pub fn trials_table(trials: &[FrozenTrial]) -> String {
    let mut names: Vec<&str> = trials.iter().flat_map(|t| t.params.keys().map(String::as_str)).collect();
    names.sort_unstable();
    names.dedup();
    let mut headers = vec!["number", "state", "value"];
    headers.extend(names.iter().copied());
    headers.push("duration_s");
    let fail_reason = |t: &FrozenTrial| {
        let reason = t.system_attrs.get(nightshift_search::attrs::FAIL_REASON).and_then(Value::as_str);
        reason.filter(|_| t.state == TrialState::Fail).map(str::to_string)
    };
    // A column of its own, last (reasons are long), when some trial failed.
    let any_failed = trials.iter().any(|t| fail_reason(t).is_some());
    if any_failed {
        headers.push("fail_reason");
    }
    let rows: Vec<Vec<String>> = trials
        .iter()
        .map(|t| {
            let mut row = vec![t.number.to_string(), t.state.to_string(), t.value.map(fmt_value).unwrap_or_default()];
            row.extend(names.iter().map(|n| t.params.get(*n).map(|v| v.to_string()).unwrap_or_default()));
            row.push(t.duration().map(|d| format!("{d:.3}")).unwrap_or_default());
            if any_failed {
                row.push(fail_reason(t).unwrap_or_default());
            }
            row
        })
        .collect();
    table(&headers, &rows)
}

pub fn studies_table(studies: &[(String, StudyRecord, Vec<FrozenTrial>)]) -> String {
    let rows: Vec<Vec<String>> = studies
        .iter()
        .map(|(storage, s, trials)| {
            let count = |state| trials.iter().filter(|t| t.state == state).count().to_string();
            let best = nightshift_search::best_of(trials, s.direction).and_then(|t| t.value).map(fmt_value).unwrap_or_default();
            vec![
                s.name.clone(),
                s.direction.to_string(),
                trials.len().to_string(),
                count(TrialState::Complete),
                count(TrialState::Pruned),
                count(TrialState::Fail),
                count(TrialState::Running),
                best,
                nightshift_store::redact_url(storage),
            ]
        })
        .collect();
    table(&["name", "direction", "n_trials", "complete", "pruned", "fail", "running", "best_value", "storage"], &rows)
}

/// As Python prints it: `1.7976931348623157e+308`, not 309 digits.
fn fmt_value(v: f64) -> String {
    python_float(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let out = table(&["a", "long"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(out, "a    long\n---  ----\nxyz  1\n");
        // Wider than `format!` pads (65,535): a 70,000-character study name.
        let long = "a".repeat(70_000);
        let out = table(&["name", "n"], &[vec![long.clone(), "1".into()], vec!["b".into(), "2".into()]]);
        assert_eq!(out.lines().nth(3), Some(format!("b{}  2", " ".repeat(69_999)).as_str()));
    }

    #[test]
    fn floats_and_values_print_as_python_repr_does() {
        assert_eq!(python_float(0.5), "0.5");
        assert_eq!(python_float(16.0), "16.0");
        assert_eq!(python_float(1e-5), "1e-05");
        assert_eq!(python_float(0.0001), "0.0001");
        assert_eq!(python_float(1.5e16), "1.5e+16");
        assert_eq!(python_float(-6.762234605393754e-06), "-6.762234605393754e-06");
        assert_eq!(python_float(123456.789), "123456.789");
        let v = json!({"c": "b", "x": 0.7854316464358592, "n": 3, "ok": true, "none": null, "l": ["it's"]});
        assert_eq!(python_repr(&v), "{'c': 'b', 'x': 0.7854316464358592, 'n': 3, 'ok': True, 'none': None, 'l': [\"it's\"]}");
    }

    #[test]
    fn durations_print_as_python_timedelta() {
        assert_eq!(timedelta(4.500934), "0:00:04.500934");
        assert_eq!(timedelta(3723.0), "1:02:03");
        assert_eq!(timedelta(90_000.25), "1 day, 1:00:00.250000");
        assert_eq!(timedelta(2.0 * 86_400.0), "2 days, 0:00:00");
    }

    #[test]
    fn value_lines_leave_out_our_extra_keys_and_blank_unset_fields() {
        let records = [
            json!({"number": 0, "value": null, "params": {"x": 1.0}, "user_attrs": {}, "state": "RUNNING", "system_attrs": {"a": 1}}),
        ];
        assert_eq!(value_lines(&records), ["0  {'x': 1.0} RUNNING"]);
        let studies = [json!({"name": "s", "direction": ["MINIMIZE"], "user_attrs": {"k": "v"}, "storage": "x.db"})];
        assert_eq!(value_lines(&studies), ["s ('MINIMIZE',) {'k': 'v'}"]);
        let flat = flatten(json!({"number": 1, "params": {"x": 2}, "direction": ["MINIMIZE"]}));
        assert_eq!(flat, json!({"number": 1, "params_x": 2, "direction_0": "MINIMIZE"}));
    }
}

//! The trial protocol: JSON lines on the child's stdout, answers on its stdin (docs/protocol.md).
//!
//! Pure functions only: [`parse_line`] classifies one line, [`LineSplitter`] cuts a byte stream
//! into lines of bounded length, [`Answer::line`] is what the orchestrator writes back, and
//! [`Report::line`], [`FinalResult::line`] and [`TrialError::line`] are what a trial written in
//! Rust (the built-in trial) prints.

use std::collections::BTreeMap;

use serde_json::{Value, json};

// Python-JSON reading (bare NaN/Infinity) is shared with the Optuna journal reader.
pub use nightshift_search::python_json::number;
use nightshift_search::python_json::quote_non_finite;

/// Longest line kept whole; longer lines are truncated (and can only be logs), so a child printing
/// a million characters without a newline cannot exhaust the orchestrator's memory.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One intermediate result: `{"report": {"step": 3, "value": 0.81, "metrics": {…}}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// The step (epoch) it reports.
    pub step: u64,
    /// The objective value; when absent, the objective metric is taken from `metrics`.
    pub value: Option<f64>,
    /// Every metric it reports by name (numbers, or anything JSON).
    pub metrics: BTreeMap<String, Value>,
    /// Keys of the line's `report` object that nightshift does not read (`report.metric`, a typo
    /// of `metrics`, say), for a warning.
    pub ignored_keys: Vec<String>,
}

/// The final result: `{"result": {"value": 0.84, "metrics": {…}}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct FinalResult {
    /// The objective value; when absent, the objective metric is taken from `metrics`.
    pub value: Option<f64>,
    /// Every metric of the result by name.
    pub metrics: BTreeMap<String, Value>,
    /// `"pruned": true`: the trial stopped early because it was told to prune. Informational (the
    /// orchestrator knows already); the built-in trial says it.
    pub pruned: bool,
    /// Keys of the line's `result` object that nightshift does not read, for a warning.
    pub ignored_keys: Vec<String>,
}

/// A failure the trial reports itself before exiting: `{"error": {"kind": "oom", "message": "…"}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct TrialError {
    /// What went wrong; [`TrialError::OOM`] is the kind the orchestrator acts on.
    pub kind: String,
    /// In words, for the failure reason (may be empty).
    pub message: String,
}

impl TrialError {
    /// Out of (device) memory: recorded as FAIL `oom`, retried alone when the device was shared,
    /// not counted as a consecutive failure, and avoided by the samplers.
    pub const OOM: &'static str = "oom";

    /// Whether the trial ran out of memory.
    pub fn is_oom(&self) -> bool {
        self.kind == Self::OOM
    }
}

/// What one stdout line is.
#[derive(Clone, Debug, PartialEq)]
pub enum Message {
    /// `{"report": …}`: an intermediate result.
    Report(Report),
    /// `{"result": …}`: the final result.
    Result(FinalResult),
    /// `{"error": {…}}`: a failure the trial reports itself.
    Error(TrialError),
    /// Anything else: kept in stdout.log.
    Log,
}

/// The orchestrator's answer to a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Go on training.
    Continue,
    /// Stop: the trial is pruned.
    Prune,
}

impl Answer {
    /// The line written to the child's stdin.
    pub fn line(self) -> &'static str {
        match self {
            Self::Continue => "{\"continue\": true}\n",
            Self::Prune => "{\"prune\": true}\n",
        }
    }
}

impl Report {
    /// The stdout line that sends this report, newline included.
    pub fn line(&self) -> String {
        line("report", json!({"step": self.step, "value": self.value, "metrics": self.metrics}))
    }
}

impl FinalResult {
    /// The stdout line that sends this result, newline included.
    pub fn line(&self) -> String {
        line("result", json!({"value": self.value, "metrics": self.metrics, "pruned": self.pruned}))
    }
}

impl TrialError {
    /// The stdout line that reports this failure, newline included.
    pub fn line(&self) -> String {
        line("error", json!({"kind": self.kind, "message": self.message}))
    }
}

/// `{"<key>": <body>}` and a newline. A NaN or infinite number is written as `null`.
fn line(key: &str, body: Value) -> String {
    format!("{}\n", json!({ key: body }))
}

/// Classifies one stdout line. A line that is (or starts out as) a `report`/`result` object but
/// does not follow the protocol is an error: the trial fails with that reason rather than having
/// its results silently ignored.
pub fn parse_line(line: &str) -> Result<Message, String> {
    // A byte-order mark some writers put before their first line is not content.
    let trimmed = line.trim().trim_start_matches('\u{feff}');
    let head = trimmed.trim_start_matches('{').trim_start();
    if trimmed.starts_with('{') && ["'report'", "'result'", "'error'"].iter().any(|key| head.starts_with(key)) {
        return Err(format!(
            "a Python dict, not JSON (single quotes): print json.dumps(message), not the dict itself: {}",
            shorten(trimmed)
        ));
    }
    let looks_like_protocol = trimmed.starts_with('{')
        && (trimmed.contains("\"report\"") || trimmed.contains("\"result\"") || trimmed.contains("\"error\""));
    if !looks_like_protocol {
        return Ok(Message::Log);
    }
    let json: Value = match serde_json::from_str(trimmed).or_else(|_| serde_json::from_str(&quote_non_finite(trimmed))) {
        Ok(v) => v,
        Err(e) => {
            if starts_like_message(trimmed) {
                return Err(format!("malformed protocol line ({e}): {}", shorten(trimmed)));
            }
            return Ok(Message::Log);
        }
    };
    let Value::Object(mut object) = json else { return Ok(Message::Log) };
    // The message is the line's `report`, `result` or `error` object; other top-level keys (a timestamp
    // a logging library adds, say) are ignored. Beside other keys, a `report`/`result`/`error` that is not
    // an object is a structured log line's field, not a message. Two messages in one line are refused.
    let alone = object.len() == 1;
    let keys: Vec<&str> = ["report", "result", "error"]
        .into_iter()
        .filter(|k| object.get(*k).is_some_and(|body| alone || body.is_object()))
        .collect();
    let key = match keys.as_slice() {
        [] => return Ok(Message::Log),
        [key] => key.to_string(),
        _ => return Err(format!("one message per line, this one has {}: {}", keys.join(" and "), shorten(trimmed))),
    };
    let body = object.remove(&key).expect("present");
    // `{"error": …}` is a protocol line only with an object body, so that a program logging
    // `{"error": "some text"}` as JSON is not failed for it.
    if key == "error" {
        let Value::Object(body) = body else { return Ok(Message::Log) };
        return trial_error(&body).map(Message::Error).map_err(|e| format!("{e}: {}", shorten(trimmed)));
    }
    let Value::Object(body) = body else {
        return match key.as_str() {
            "report" => Err(format!("`report` must be an object such as {{\"step\": 1, \"value\": 0.8}}: {}", shorten(trimmed))),
            "result" => Err(format!("`result` must be an object such as {{\"value\": 0.8}}: {}", shorten(trimmed))),
            _ => Ok(Message::Log),
        };
    };
    let value = |body: &serde_json::Map<String, Value>| -> Result<Option<f64>, String> {
        match body.get("value") {
            None | Some(Value::Null) => Ok(None),
            Some(v) => number(v).map(Some).ok_or_else(|| format!("`{key}.value` must be a number, got {v}")),
        }
    };
    let metrics = |body: &serde_json::Map<String, Value>| -> Result<BTreeMap<String, Value>, String> {
        match body.get("metrics") {
            None | Some(Value::Null) => Ok(BTreeMap::new()),
            Some(Value::Object(m)) => Ok(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()),
            Some(other) => Err(format!("`{key}.metrics` must be an object, got {other}")),
        }
    };
    let ignored_keys = |known: &[&str]| -> Vec<String> {
        body.keys().filter(|k| !known.contains(&k.as_str())).map(|k| format!("{key}.{k}")).collect()
    };
    match key.as_str() {
        "report" => {
            // Steps are stored as SQLite integers (i64); a larger number would be cut, not kept. (A float too
            // large for u64 saturates to u64::MAX and is refused with the rest.)
            const MAX_STEP: u64 = i64::MAX as u64;
            let step = match body.get("step") {
                Some(Value::Number(n)) => {
                    n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0).map(|f| f as u64))
                }
                _ => None,
            }
            .filter(|step| *step <= MAX_STEP)
            .ok_or_else(|| format!("`report.step` must be an integer from 0 to {MAX_STEP}: {}", shorten(trimmed)))?;
            let report = Report {
                step,
                value: value(&body)?,
                metrics: metrics(&body)?,
                ignored_keys: ignored_keys(&["step", "value", "metrics"]),
            };
            if report.value.is_none() && report.metrics.is_empty() {
                return Err(format!("a report needs a `value` (or the objective metric in `metrics`): {}", shorten(trimmed)));
            }
            Ok(Message::Report(report))
        }
        "result" => Ok(Message::Result(FinalResult {
            value: value(&body)?,
            metrics: metrics(&body)?,
            pruned: body.get("pruned") == Some(&Value::Bool(true)),
            ignored_keys: ignored_keys(&["value", "metrics", "pruned"]),
        })),
        _ => Ok(Message::Log),
    }
}

/// The line begins as a message does (`{"report"`, `{"result"`, `{"error"`), whatever follows.
pub fn starts_like_message(line: &str) -> bool {
    let head = line.trim_start().trim_start_matches('{').trim_start();
    ["\"report\"", "\"result\"", "\"error\""].iter().any(|key| head.starts_with(key))
}

/// The body of an `error` line: `kind` a short non-empty string, `message` a string if present.
fn trial_error(body: &serde_json::Map<String, Value>) -> Result<TrialError, String> {
    const MAX_KIND: usize = 64;
    let kind = match body.get("kind") {
        // Kinds are identifiers: `OOM` is `oom`.
        Some(Value::String(k)) if !k.trim().is_empty() && k.len() <= MAX_KIND => k.trim().to_ascii_lowercase(),
        Some(other) => {
            return Err(format!(
                "`error.kind` must be a non-empty string of at most {MAX_KIND} bytes such as \"oom\", got {other}"
            ));
        }
        None => return Err("an `error` needs a `kind`, e.g. {\"error\": {\"kind\": \"oom\", \"message\": \"…\"}}".into()),
    };
    let message = match body.get("message") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(m)) => shorten(m.trim()),
        Some(other) => return Err(format!("`error.message` must be a string, got {other}")),
    };
    Ok(TrialError { kind, message })
}

fn shorten(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_string();
    }
    format!("{}… ({} bytes)", head(text, MAX), text.len())
}

/// The first `max` bytes of `text` or fewer, cut at a character boundary.
pub(crate) fn head(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A line cut from a byte stream.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// The line without its newline (and without a carriage return before it).
    pub text: String,
    /// The line was longer than the cap; `text` holds its first [`MAX_LINE_BYTES`] bytes.
    pub truncated: bool,
}

/// Cuts a byte stream into lines, keeping at most `cap` bytes of any one line in memory.
#[derive(Debug)]
pub struct LineSplitter {
    buf: Vec<u8>,
    cap: usize,
    overflow: bool,
}

impl Default for LineSplitter {
    fn default() -> Self {
        Self::new(MAX_LINE_BYTES)
    }
}

impl LineSplitter {
    /// A splitter that keeps at most `cap` bytes of a line.
    pub fn new(cap: usize) -> Self {
        Self { buf: Vec::new(), cap, overflow: false }
    }

    /// Feeds a chunk; returns the lines it completed.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<Line> {
        let mut lines = Vec::new();
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|b| *b == b'\n');
            let part = &chunk[..newline.unwrap_or(chunk.len())];
            let room = self.cap.saturating_sub(self.buf.len());
            if part.len() > room {
                self.overflow = true;
            }
            self.buf.extend_from_slice(&part[..part.len().min(room)]);
            match newline {
                Some(i) => {
                    lines.push(self.take());
                    chunk = &chunk[i + 1..];
                }
                None => break,
            }
        }
        lines
    }

    /// The last, unterminated line at end of stream.
    pub fn finish(&mut self) -> Option<Line> {
        (!self.buf.is_empty() || self.overflow).then(|| self.take())
    }

    fn take(&mut self) -> Line {
        let mut bytes = std::mem::take(&mut self.buf);
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let line = Line { text: String::from_utf8_lossy(&bytes).into_owned(), truncated: self.overflow };
        self.overflow = false;
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_printed_python_dict_and_a_byte_order_mark_are_understood() {
        let e = parse_line("{'result': {'value': 0.6}}").unwrap_err();
        assert!(e.starts_with("a Python dict, not JSON (single quotes): print json.dumps"), "{e}");
        assert!(matches!(parse_line("{'level': 'info'}"), Ok(Message::Log)), "other dicts are logs");
        let Ok(Message::Result(result)) = parse_line("\u{feff}{\"result\": {\"value\": 0.6}}") else { panic!("a result") };
        assert_eq!(result.value, Some(0.6));
    }

    #[test]
    fn keys_nightshift_does_not_read_are_named_for_a_warning() {
        let Ok(Message::Report(r)) = parse_line(r#"{"report": {"step": 1, "value": 0.5, "metric": {"loss": 0.4}}}"#) else {
            panic!("a report")
        };
        assert_eq!((r.ignored_keys, r.metrics.len()), (vec!["report.metric".to_string()], 0));
        let Ok(Message::Result(r)) = parse_line(r#"{"result": {"value": 0.5, "pruned": false, "epochs": 3}}"#) else {
            panic!("a result")
        };
        assert_eq!(r.ignored_keys, vec!["result.epochs".to_string()]);
        let Ok(Message::Report(r)) = parse_line(r#"{"report": {"step": 1, "value": 0.5, "metrics": {}}}"#) else {
            panic!("a report")
        };
        assert!(r.ignored_keys.is_empty());
    }

    #[test]
    fn reports_results_and_logs() {
        let m = parse_line(r#"{"report": {"step": 3, "value": 0.81, "metrics": {"loss": 0.4}}}"#).unwrap();
        let Message::Report(r) = m else { panic!("report expected") };
        assert_eq!((r.step, r.value), (3, Some(0.81)));
        assert_eq!(r.metrics["loss"], 0.4);
        assert_eq!(
            parse_line(r#"{"result": {"value": 0.84}}"#).unwrap(),
            Message::Result(FinalResult { value: Some(0.84), metrics: BTreeMap::new(), pruned: false, ignored_keys: vec![] })
        );
        for log in [
            "epoch 3 done",
            "",
            "{\"loss\": 1}",
            "[1, 2]",
            "{\"report\": 1, \"other\": 2}",
            "{not json \"reporting\"}",
            r#"{"level": "info", "error": "retrying", "result": "ok"}"#,
        ] {
            assert_eq!(parse_line(log), Ok(Message::Log), "{log}");
        }
    }

    #[test]
    fn a_message_beside_other_keys_is_still_a_message() {
        // A logging library's timestamp beside the report: the report counts (it used to hang the trial,
        // its answer never sent).
        let Ok(Message::Report(r)) = parse_line(r#"{"report": {"step": 1, "value": 0.5}, "time": "12:00:01"}"#) else {
            panic!("report expected")
        };
        assert_eq!((r.step, r.value), (1, Some(0.5)));
        assert!(matches!(parse_line(r#"{"note": "x", "result": {"value": 0.6}}"#), Ok(Message::Result(_))));
        let e = parse_line(r#"{"report": {"step": 1, "value": 0.5}, "result": {"value": 0.6}}"#).unwrap_err();
        assert!(e.contains("one message per line") && e.contains("report and result"), "{e}");
    }

    #[test]
    fn steps_beyond_what_storage_keeps_are_refused_with_the_range() {
        for step in ["9223372036854775808", "18446744073709551616", "1e300"] {
            let e = parse_line(&format!(r#"{{"report": {{"step": {step}, "value": 0.5}}}}"#)).unwrap_err();
            assert!(e.contains("from 0 to 9223372036854775807"), "{step}: {e}");
        }
        let Ok(Message::Report(r)) = parse_line(r#"{"report": {"step": 9223372036854775807, "value": 0.5}}"#) else { panic!() };
        assert_eq!(r.step, i64::MAX as u64);
    }

    #[test]
    fn written_lines_read_back_as_what_was_written() {
        let metrics: BTreeMap<String, Value> = [("val_loss".to_string(), json!(0.5)), ("lr".to_string(), json!(0.01))].into();
        let report = Report { step: 3, value: Some(0.81), metrics: metrics.clone(), ignored_keys: vec![] };
        assert_eq!(report.line(), "{\"report\":{\"step\":3,\"value\":0.81,\"metrics\":{\"lr\":0.01,\"val_loss\":0.5}}}\n");
        assert_eq!(parse_line(&report.line()), Ok(Message::Report(report)));
        for pruned in [false, true] {
            let result = FinalResult { value: Some(0.84), metrics: metrics.clone(), pruned, ignored_keys: vec![] };
            assert_eq!(parse_line(&result.line()), Ok(Message::Result(result)));
        }
        let error = TrialError { kind: TrialError::OOM.into(), message: "CUDA out of memory".into() };
        assert_eq!(error.line(), "{\"error\":{\"kind\":\"oom\",\"message\":\"CUDA out of memory\"}}\n");
        assert_eq!(parse_line(&error.line()), Ok(Message::Error(error)));
        // A diverged value is written as null: a result without a value.
        let nan = FinalResult { value: Some(f64::NAN), metrics: BTreeMap::new(), pruned: false, ignored_keys: vec![] };
        assert_eq!(parse_line(&nan.line()), Ok(Message::Result(FinalResult { value: None, ..nan })));
    }

    #[test]
    fn malformed_protocol_lines_are_errors() {
        for bad in [
            r#"{"report": {"value": 0.8}}"#,
            r#"{"report": {"step": -1, "value": 0.8}}"#,
            r#"{"report": {"step": "three", "value": 0.8}}"#,
            r#"{"report": {"step": 1, "value": "high"}}"#,
            r#"{"report": {"step": 1}}"#,
            r#"{"result": {"value": 0.8, "metrics": [1]}}"#,
            r#"{"report": "#,
            r#"{"result": 0.8}"#,
        ] {
            assert!(parse_line(bad).is_err(), "{bad} should be a protocol error");
        }
    }

    #[test]
    fn error_lines_say_what_went_wrong() {
        let oom = parse_line(r#"{"error": {"kind": "oom", "message": "CUDA out of memory. Tried to allocate 2.00 GiB"}}"#);
        let Ok(Message::Error(e)) = oom else { panic!("error expected, got {oom:?}") };
        assert!(e.is_oom());
        assert_eq!(e.message, "CUDA out of memory. Tried to allocate 2.00 GiB");
        let Ok(Message::Error(e)) = parse_line(r#"{"error": {"kind": "OOM", "message": "m"}}"#) else { panic!() };
        assert!(e.is_oom(), "kinds are case-insensitive: {e:?}");
        let Ok(Message::Error(e)) = parse_line(r#"{"error": {"kind": "diverged"}}"#) else { panic!() };
        assert_eq!((e.kind.as_str(), e.message.as_str(), e.is_oom()), ("diverged", "", false));
        // A JSON log line with an `error` string stays a log line.
        assert_eq!(parse_line(r#"{"error": "connection reset"}"#), Ok(Message::Log));
        for bad in [
            r#"{"error": {"message": "no kind"}}"#,
            r#"{"error": {"kind": 3}}"#,
            r#"{"error": {"kind": ""}}"#,
            r#"{"error": {"kind": "oom", "message": ["a"]}}"#,
            r#"{"error": {"kind": "oom""#,
        ] {
            let e = parse_line(bad).expect_err(bad);
            assert!(e.contains("error"), "{bad}: {e}");
        }
    }

    #[test]
    fn python_nan_and_infinity_parse_as_non_finite() {
        let Message::Report(r) =
            parse_line(r#"{"report": {"step": 1, "value": NaN, "metrics": {"note": "NaN stays text"}}}"#).unwrap()
        else {
            panic!("report expected")
        };
        assert!(r.value.unwrap().is_nan());
        assert_eq!(r.metrics["note"], "NaN stays text");
        let Message::Result(r) = parse_line(r#"{"result": {"value": -Infinity}}"#).unwrap() else { panic!() };
        assert_eq!(r.value, Some(f64::NEG_INFINITY));
    }

    #[test]
    fn splitter_bounds_line_length() {
        let mut s = LineSplitter::new(8);
        assert_eq!(s.push(b"ab"), vec![]);
        let lines = s.push(b"c\r\n0123456789abcdef\nxy");
        assert_eq!(lines[0], Line { text: "abc".into(), truncated: false });
        assert_eq!(lines[1], Line { text: "01234567".into(), truncated: true });
        assert_eq!(s.push(&vec![b'z'; 1 << 16]), vec![]);
        assert!(s.buf.len() <= 8, "a newline-free flood stays bounded");
        assert_eq!(s.finish().unwrap(), Line { text: "xyzzzzzz".into(), truncated: true });
        assert_eq!(s.finish(), None);
        assert_eq!(Answer::Prune.line(), "{\"prune\": true}\n");
    }
}

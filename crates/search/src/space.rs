//! Search spaces: what a parameter may be, parsed from YAML/JSON (ours or Optuna's) and validated.
//!
//! Our format, one entry per parameter:
//! ```yaml
//! learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
//! batch_size: {type: categorical, choices: [16, 32, 64, 128]}
//! dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
//! freeze_depth: {type: int, low: 0, high: 4}
//! ```
//! Optuna's `--search-space` JSON (`{"lr": {"name": "FloatDistribution", "attributes": {…}}}`) is
//! accepted too. Parsing never panics: every problem becomes an [`Error::Space`] naming the
//! parameter and, where the source text is known, its line and column.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// A parameter value as the user sees it: a number, a string or a bool.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ParamValue {
    /// A boolean choice.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A string choice.
    Str(String),
}

impl ParamValue {
    /// The value as a number, for integers and floats.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Self::Int(i) => Some(*i as f64),
            Self::Float(f) => Some(*f),
            _ => None,
        }
    }
}

/// Numbers compare by value (`32` equals `32.0`), so a categorical choice matches however it is written.
impl PartialEq for ParamValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Str(a), Self::Str(b)) => a == b,
            (a, b) => match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            },
        }
    }
}

impl fmt::Display for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool(b) => write!(f, "{b}"),
            Self::Int(i) => write!(f, "{i}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Str(s) => f.write_str(s),
        }
    }
}

/// The range of one parameter. Validated on construction through [`SearchSpace`] parsing;
/// values are exchanged with samplers in an internal `f64` form (categoricals: the choice index).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Distribution {
    /// A float in [low, high], optionally on a log scale or a grid of `step`.
    Float {
        /// The lowest value.
        low: f64,
        /// The highest value.
        high: f64,
        /// Sample log-uniformly.
        log: bool,
        /// Only multiples of `step` above `low`.
        step: Option<f64>,
    },
    /// An integer in [low, high], optionally on a log scale, in steps of `step`.
    Int {
        /// The lowest value.
        low: i64,
        /// The highest value.
        high: i64,
        /// Sample log-uniformly.
        log: bool,
        /// Only multiples of `step` above `low` (1 for every integer).
        step: i64,
    },
    /// One of a list of values.
    Categorical {
        /// The values, in the order written.
        choices: Vec<ParamValue>,
    },
}

impl Distribution {
    /// The internal representation of `value`, or an error when it is not in the distribution.
    pub fn to_internal(&self, value: &ParamValue) -> Result<f64> {
        let outside = || Error::Param { param: String::new(), message: format!("value {value} is not in {self}") };
        match self {
            Self::Float { .. } | Self::Int { .. } => {
                let x = value.as_f64().ok_or_else(outside)?;
                if self.contains(x) { Ok(x) } else { Err(outside()) }
            }
            Self::Categorical { choices } => choices.iter().position(|c| c == value).map(|i| i as f64).ok_or_else(outside),
        }
    }

    /// The user-facing value of an internal representation (rounded onto the grid of int/step params).
    pub fn to_external(&self, internal: f64) -> ParamValue {
        match self {
            Self::Float { .. } => ParamValue::Float(self.snap(internal)),
            Self::Int { .. } => ParamValue::Int(self.snap(internal) as i64),
            Self::Categorical { choices } => {
                let last = choices.len().saturating_sub(1);
                let index = (internal.round().max(0.0) as usize).min(last);
                choices[index].clone()
            }
        }
    }

    /// Rounds an internal value onto the distribution's grid and clips it into range.
    pub fn snap(&self, x: f64) -> f64 {
        match *self {
            Self::Float { low, high, step: None, .. } => x.clamp(low, high),
            Self::Float { low, high, step: Some(step), .. } => {
                let k = ((x - low) / step).round();
                (low + k * step).clamp(low, high)
            }
            Self::Int { low, high, step, .. } => {
                let k = ((x - low as f64) / step as f64).round();
                (low as f64 + k * step as f64).clamp(low as f64, high as f64)
            }
            Self::Categorical { ref choices } => x.round().clamp(0.0, choices.len().saturating_sub(1) as f64),
        }
    }

    /// Whether the internal value `x` is a legal value of this distribution.
    pub fn contains(&self, x: f64) -> bool {
        if !x.is_finite() {
            return false;
        }
        match *self {
            Self::Float { low, high, step, .. } => {
                let eps = 1e-12 * (high - low).abs().max(1.0);
                if x < low - eps || x > high + eps {
                    return false;
                }
                step.is_none_or(|s| is_multiple((x - low) / s))
            }
            Self::Int { low, high, step, .. } => {
                x.fract() == 0.0 && x >= low as f64 && x <= high as f64 && (x as i64 - low) % step == 0
            }
            Self::Categorical { ref choices } => x.fract() == 0.0 && x >= 0.0 && (x as usize) < choices.len(),
        }
    }

    /// True when only one value is possible (samplers skip such parameters).
    pub fn is_single(&self) -> bool {
        match self {
            Self::Float { low, high, .. } => low == high,
            Self::Int { low, high, .. } => low == high,
            Self::Categorical { choices } => choices.len() == 1,
        }
    }

    /// Whether values are sampled on a log scale.
    pub fn is_log(&self) -> bool {
        matches!(self, Self::Float { log: true, .. } | Self::Int { log: true, .. })
    }
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Float { low, high, log, step } => {
                write!(f, "float [{low}, {high}]")?;
                if *log {
                    write!(f, " log")?;
                }
                if let Some(s) = step {
                    write!(f, " step {s}")?;
                }
                Ok(())
            }
            Self::Int { low, high, log, step } => {
                write!(f, "int [{low}, {high}]")?;
                if *log {
                    write!(f, " log")?;
                }
                if *step != 1 {
                    write!(f, " step {step}")?;
                }
                Ok(())
            }
            Self::Categorical { choices } => {
                let items: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
                write!(f, "categorical {{{}}}", items.join(", "))
            }
        }
    }
}

fn is_multiple(ratio: f64) -> bool {
    (ratio - ratio.round()).abs() <= 1e-9 * ratio.abs().max(1.0)
}

/// An ordered set of named parameters (order as written by the user).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SearchSpace {
    params: Vec<(String, Distribution)>,
}

impl SearchSpace {
    /// An empty space.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a parameter; the distribution must already be valid (see [`validate`]).
    pub fn insert(&mut self, name: impl Into<String>, distribution: Distribution) {
        let name = name.into();
        match self.params.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = distribution,
            None => self.params.push((name, distribution)),
        }
    }

    /// The distribution of `name`, if the space has it.
    pub fn get(&self, name: &str) -> Option<&Distribution> {
        self.params.iter().find(|(n, _)| n == name).map(|(_, d)| d)
    }

    /// Names and distributions, in the order written.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Distribution)> {
        self.params.iter().map(|(n, d)| (n.as_str(), d))
    }

    /// Parameter names, in the order written.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(n, _)| n.as_str())
    }

    /// How many parameters.
    pub fn len(&self) -> usize {
        self.params.len()
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// Parses a search space from YAML or JSON text, in our format or Optuna's.
    /// `origin` (a file name, or e.g. `--search-space`) prefixes error locations.
    pub fn parse(text: &str, origin: &str) -> Result<Self> {
        // A byte-order mark (some Windows editors write one) is not content.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let root: serde_yaml::Value = serde_yaml::from_str(text).map_err(|e| Error::Space {
            location: yaml_location(origin, text, &e),
            param: None,
            message: strip_yaml_location(&e),
        })?;
        let locate =
            |param: &str| locate_key(text, param).map(|(l, c)| format!("{origin}:{l}:{c}")).unwrap_or_else(|| origin.to_string());
        Self::from_yaml_value(&root, &locate)
    }

    /// Builds a space from an already-parsed YAML value; `locate` turns a parameter name into a
    /// location string for error messages (e.g. `spec.yaml:12:3`).
    pub fn from_yaml_value(root: &serde_yaml::Value, locate: &dyn Fn(&str) -> String) -> Result<Self> {
        let map = match root {
            serde_yaml::Value::Mapping(m) => m,
            serde_yaml::Value::Null => {
                return Err(Error::Space {
                    location: locate(""),
                    param: None,
                    message: "the search space is empty: define at least one parameter".into(),
                });
            }
            other => {
                return Err(Error::Space {
                    location: locate(""),
                    param: None,
                    message: format!("expected a mapping of parameter name → distribution, found {}", yaml_kind(other)),
                });
            }
        };
        if map.is_empty() {
            return Err(Error::Space {
                location: locate(""),
                param: None,
                message: "the search space is empty: define at least one parameter".into(),
            });
        }
        let mut space = SearchSpace::new();
        for (key, entry) in map {
            let name = match key {
                serde_yaml::Value::String(s) if !s.trim().is_empty() => s.clone(),
                other => {
                    return Err(Error::Space {
                        location: locate(""),
                        param: None,
                        message: format!("parameter names must be non-empty strings, found {}", yaml_kind(other)),
                    });
                }
            };
            let fail = |message: String| Error::Space { location: locate(&name), param: Some(name.clone()), message };
            let dist = parse_entry(entry).map_err(fail)?;
            if space.get(&name).is_some() {
                return Err(fail("defined twice".into()));
            }
            space.params.push((name, dist));
        }
        Ok(space)
    }

    /// Our YAML/JSON format, which [`SearchSpace::parse`] reads back unchanged.
    pub fn to_json(&self) -> serde_json::Value {
        let mut map = serde_json::Map::new();
        for (name, dist) in &self.params {
            map.insert(name.clone(), serde_json::to_value(dist).expect("distributions always serialise"));
        }
        serde_json::Value::Object(map)
    }

    /// Number of points for a grid over this space (`None` when a float has no step, or the count does not
    /// fit in a `usize`).
    pub fn grid_size(&self) -> Option<usize> {
        self.params.iter().try_fold(1usize, |acc, (_, d)| {
            let n = match *d {
                Distribution::Float { low, high, step: Some(s), .. } => {
                    // A valid step may still give more points than a usize holds (step 1 over [0, 1e300]).
                    let points = ((high - low) / s).round() + 1.0;
                    if points >= usize::MAX as f64 {
                        return None;
                    }
                    points as usize
                }
                Distribution::Float { .. } => return None,
                Distribution::Int { low, high, step, .. } => ((high - low) / step) as usize + 1,
                Distribution::Categorical { ref choices } => choices.len(),
            };
            acc.checked_mul(n)
        })
    }
}

impl Serialize for SearchSpace {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        self.to_json().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SearchSpace {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let value = serde_yaml::Value::deserialize(deserializer)?;
        SearchSpace::from_yaml_value(&value, &|_| String::new()).map_err(serde::de::Error::custom)
    }
}

/// Our native entry, e.g. `{type: float, low: 0.0, high: 0.5, step: 0.05}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawParam {
    #[serde(rename = "type")]
    kind: String,
    low: Option<f64>,
    high: Option<f64>,
    log: Option<bool>,
    step: Option<f64>,
    choices: Option<Vec<ParamValue>>,
}

/// Optuna's JSON form: `{"name": "FloatDistribution", "attributes": {…}}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptunaParam {
    name: String,
    attributes: RawOptunaAttributes,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOptunaAttributes {
    low: Option<f64>,
    high: Option<f64>,
    log: Option<bool>,
    step: Option<f64>,
    choices: Option<Vec<ParamValue>>,
}

fn parse_entry(entry: &serde_yaml::Value) -> std::result::Result<Distribution, String> {
    let serde_yaml::Value::Mapping(map) = entry else {
        return Err(format!("expected a mapping such as {{type: float, low: 0.0, high: 1.0}}, found {}", yaml_kind(entry)));
    };
    let is_optuna = map.contains_key("name") && map.contains_key("attributes");
    // Serde would say only that a choice matches no variant of an untagged enum.
    let choices = if is_optuna { map.get("attributes").and_then(|a| a.get("choices")) } else { map.get("choices") };
    if let Some(serde_yaml::Value::Sequence(items)) = choices
        && let Some((i, item)) = items
            .iter()
            .enumerate()
            .find(|(_, c)| !matches!(c, serde_yaml::Value::Bool(_) | serde_yaml::Value::Number(_) | serde_yaml::Value::String(_)))
    {
        return Err(format!("choice {i} is {}: a choice is a number, a string or a bool", yaml_kind(item)));
    }
    let raw = if is_optuna {
        let o: OptunaParam = serde_yaml::from_value(entry.clone()).map_err(|e| e.to_string())?;
        let kind = match o.name.as_str() {
            "FloatDistribution" => "float",
            "IntDistribution" => "int",
            "CategoricalDistribution" => "categorical",
            other => {
                return Err(format!(
                    "unknown Optuna distribution '{other}' (valid: FloatDistribution, IntDistribution, CategoricalDistribution)"
                ));
            }
        };
        let a = o.attributes;
        RawParam { kind: kind.into(), low: a.low, high: a.high, log: a.log, step: a.step, choices: a.choices }
    } else {
        serde_yaml::from_value::<RawParam>(entry.clone()).map_err(|e| e.to_string())?
    };
    validate(raw)
}

fn validate(raw: RawParam) -> std::result::Result<Distribution, String> {
    let kind = raw.kind.to_ascii_lowercase();
    match kind.as_str() {
        "float" | "int" => {
            if raw.choices.is_some() {
                return Err(format!("'choices' is only valid for type categorical, not {kind}"));
            }
            let low = raw.low.ok_or_else(|| format!("missing 'low' (type {kind} needs low and high)"))?;
            let high = raw.high.ok_or_else(|| format!("missing 'high' (type {kind} needs low and high)"))?;
            let log = raw.log.unwrap_or(false);
            if !low.is_finite() || !high.is_finite() {
                return Err(format!("low and high must be finite numbers, got low={low}, high={high}"));
            }
            if low > high {
                return Err(format!("low ({low}) must be less than high ({high})"));
            }
            if !(high - low).is_finite() {
                return Err(format!(
                    "the range [{low}, {high}] is too wide to sample: high - low overflows a 64-bit float (keep it below 1.7e308)"
                ));
            }
            if low == high {
                return Err(format!(
                    "low ({low}) equals high: the range is a single value; use a categorical with one choice or remove the parameter"
                ));
            }
            if log && low <= 0.0 {
                return Err(format!("log: true needs low > 0, got low={low}"));
            }
            if log && raw.step.is_some_and(|s| !(kind == "int" && s == 1.0)) {
                return Err("log: true cannot be combined with step (use one or the other)".into());
            }
            if kind == "float" {
                if let Some(step) = raw.step {
                    if step.is_nan() || step <= 0.0 {
                        return Err(format!("step must be > 0, got {step}"));
                    }
                    if !is_multiple((high - low) / step) {
                        return Err(format!(
                            "step {step} does not divide the range [{low}, {high}]: (high - low) / step = {} is not a whole number",
                            (high - low) / step
                        ));
                    }
                }
                return Ok(Distribution::Float { low, high, log, step: raw.step });
            }
            let as_int = |field: &str, x: f64| -> std::result::Result<i64, String> {
                if x.fract() != 0.0 || x.abs() > 9.0e15 {
                    Err(format!("'{field}' must be a whole number within ±9e15 for type int, got {x}"))
                } else {
                    Ok(x as i64)
                }
            };
            let (low, high) = (as_int("low", low)?, as_int("high", high)?);
            let step = as_int("step", raw.step.unwrap_or(1.0))?;
            if step <= 0 {
                return Err(format!("step must be ≥ 1, got {step}"));
            }
            if (high - low) % step != 0 {
                return Err(format!("step {step} does not divide the range [{low}, {high}] (high - low = {})", high - low));
            }
            Ok(Distribution::Int { low, high, log, step })
        }
        "categorical" => {
            for (field, present) in [
                ("low", raw.low.is_some()),
                ("high", raw.high.is_some()),
                ("log", raw.log.is_some()),
                ("step", raw.step.is_some()),
            ] {
                if present {
                    return Err(format!("'{field}' is not valid for type categorical (it takes only 'choices')"));
                }
            }
            let choices = raw.choices.ok_or("missing 'choices' (a list such as [16, 32, 64])")?;
            if choices.is_empty() {
                return Err("'choices' is empty: give at least one choice".into());
            }
            for (i, c) in choices.iter().enumerate() {
                if matches!(c, ParamValue::Float(f) if !f.is_finite()) {
                    return Err(format!("choice {c} is not a finite number"));
                }
                if choices[..i].contains(c) {
                    return Err(format!("duplicate choice {c}"));
                }
            }
            Ok(Distribution::Categorical { choices })
        }
        other => Err(format!("unknown type '{other}' (valid: float, int, categorical)")),
    }
}

fn yaml_kind(v: &serde_yaml::Value) -> &'static str {
    match v {
        serde_yaml::Value::Null => "nothing (null)",
        serde_yaml::Value::Bool(_) => "a bool",
        serde_yaml::Value::Number(_) => "a number",
        serde_yaml::Value::String(_) => "a string",
        serde_yaml::Value::Sequence(_) => "a list",
        serde_yaml::Value::Mapping(_) => "a mapping",
        serde_yaml::Value::Tagged(_) => "a tagged value",
    }
}

/// `origin:line:column` of a YAML error in `text`, or just `origin`. A duplicate key is reported
/// by serde_yaml at the start of its mapping (1:1 for a top-level key); point at the second
/// definition instead.
pub fn yaml_location(origin: &str, text: &str, e: &serde_yaml::Error) -> String {
    let duplicate = e.to_string().split_once("duplicate entry with key \"").and_then(|(_, rest)| {
        let key = rest.split('"').next()?;
        let (first, _) = locate_key(text, key)?;
        let rest: String = text.lines().skip(first).collect::<Vec<_>>().join("\n");
        let (line, col) = locate_key(&rest, key)?;
        Some((first + line, col))
    });
    match (duplicate, e.location()) {
        (Some((line, col)), _) => format!("{origin}:{line}:{col}"),
        (None, Some(loc)) => format!("{origin}:{}:{}", loc.line(), loc.column()),
        (None, None) => origin.to_string(),
    }
}

/// serde_yaml appends " at line L column C" to its messages; we print the location up front instead.
/// An integer beyond 64 bits reads as "invalid type: integer `N` as u128, expected any YAML value";
/// say what is wrong instead.
pub fn strip_yaml_location(e: &serde_yaml::Error) -> String {
    let msg = e.to_string();
    let msg = match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    match msg.split_once("invalid type: integer `") {
        Some((head, rest)) if rest.contains("` as u128") || rest.contains("` as i128") => {
            let number = rest.split('`').next().unwrap_or_default();
            format!("{head}the number {number} is too large: integers must fit in 64 bits (at most ±9223372036854775807)")
        }
        _ => msg,
    }
}

/// Line and column (1-based) where `key` is defined in YAML or JSON text, found by scanning for
/// `key:`, `"key":` or `'key':`. Good enough for error messages; an empty key gives `None`.
pub fn locate_key(text: &str, key: &str) -> Option<(usize, usize)> {
    if key.is_empty() {
        return None;
    }
    let patterns = [format!("\"{key}\""), format!("'{key}'"), key.to_string()];
    for (line_no, line) in text.lines().enumerate() {
        for pattern in &patterns {
            let mut from = 0;
            while let Some(pos) = line[from..].find(pattern.as_str()) {
                let start = from + pos;
                let end = start + pattern.len();
                let before_ok = line[..start].chars().last().is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '-'));
                let after_ok = line[end..].trim_start().starts_with(':');
                if before_ok && after_ok {
                    return Some((line_no + 1, start + 1));
                }
                from = end;
            }
        }
    }
    None
}

/// A map of parameter values, e.g. from `nightshift enqueue --params '{"lr": 0.01}'`.
pub type Params = BTreeMap<String, ParamValue>;

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUE_SPACE: &str = "\
learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
batch_size: {type: categorical, choices: [16, 32, 64, 128]}
dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
freeze_depth: {type: int, low: 0, high: 4}
";

    fn err(text: &str) -> String {
        SearchSpace::parse(text, "space.yaml").unwrap_err().to_string()
    }

    #[test]
    fn parses_the_five_parameter_space_in_order() {
        let space = SearchSpace::parse(ISSUE_SPACE, "space.yaml").unwrap();
        let names: Vec<_> = space.names().collect();
        assert_eq!(names, ["learning_rate", "batch_size", "dropout", "weight_decay", "freeze_depth"]);
        assert_eq!(space.get("learning_rate"), Some(&Distribution::Float { low: 1e-5, high: 0.1, log: true, step: None }));
        assert_eq!(space.get("freeze_depth"), Some(&Distribution::Int { low: 0, high: 4, log: false, step: 1 }));
        assert_eq!(space.get("dropout"), Some(&Distribution::Float { low: 0.0, high: 0.5, log: false, step: Some(0.05) }));
        let Some(Distribution::Categorical { choices }) = space.get("batch_size") else { panic!() };
        assert_eq!(choices, &vec![ParamValue::Int(16), ParamValue::Int(32), ParamValue::Int(64), ParamValue::Int(128)]);
    }

    #[test]
    fn our_json_round_trips() {
        let space = SearchSpace::parse(ISSUE_SPACE, "space.yaml").unwrap();
        let json = space.to_json().to_string();
        assert_eq!(SearchSpace::parse(&json, "json").unwrap(), space);
    }

    #[test]
    fn parses_optuna_json() {
        let text = r#"{"lr": {"name": "FloatDistribution", "attributes": {"low": 1e-05, "high": 0.1, "log": true, "step": null}},
            "layers": {"name": "IntDistribution", "attributes": {"low": 1, "high": 8, "log": false, "step": 1}},
            "opt": {"name": "CategoricalDistribution", "attributes": {"choices": ["adam", "sgd", true, 3]}}}"#;
        let space = SearchSpace::parse(text, "--search-space").unwrap();
        assert_eq!(space.get("lr"), Some(&Distribution::Float { low: 1e-5, high: 0.1, log: true, step: None }));
        assert_eq!(space.get("layers"), Some(&Distribution::Int { low: 1, high: 8, log: false, step: 1 }));
        let Some(Distribution::Categorical { choices }) = space.get("opt") else { panic!() };
        assert_eq!(choices[0], ParamValue::Str("adam".into()));
        assert_eq!(choices[2], ParamValue::Bool(true));
    }

    #[test]
    fn invalid_spaces_name_the_parameter_and_line() {
        let cases = [
            (
                "a: {type: float, low: 0.0, high: 1.0}\nlr: {type: float, low: 1.0, high: 0.5}\n",
                "space.yaml:2:1",
                "must be less than high",
            ),
            ("lr: {type: float, low: 0.0, high: 1.0, log: true}\n", "space.yaml:1:1", "needs low > 0"),
            ("lr: {type: float, low: 0.1, high: 1.0, log: true, step: 0.1}\n", "lr", "cannot be combined with step"),
            ("d: {type: float, low: 0.0, high: 0.5, step: 0.3}\n", "d", "does not divide"),
            ("k: {type: int, low: 0, high: 5, step: 2}\n", "k", "does not divide"),
            ("c: {type: categorical, choices: []}\n", "c", "empty"),
            ("c: {type: categorical, choices: [1, 2, 1]}\n", "c", "duplicate choice 1"),
            (
                "c: {type: categorical, choices: [adam, null]}\n",
                "c",
                "choice 1 is nothing (null): a choice is a number, a string or a bool",
            ),
            ("c: {type: categorical, choices: [[1, 2]]}\n", "c", "choice 0 is a list"),
            ("x:\n  type: float\n  low: 0.0\n  high: 1.0\n  lw: 3\n", "x", "unknown field `lw`"),
            ("x: {type: float, low: abc, high: 1.0}\n", "x", "invalid type"),
            ("x: {type: flaot, low: 0, high: 1}\n", "x", "unknown type 'flaot'"),
            ("x: {type: int, low: 0.5, high: 3}\n", "x", "whole number"),
            ("x: {type: categorical, choices: [1], low: 0}\n", "x", "not valid for type categorical"),
            ("x: 3\n", "x", "expected a mapping"),
            ("", "space.yaml", "empty"),
            ("[1, 2]", "space.yaml", "expected a mapping"),
            ("x: {type: float, low: 0, high: 1\n", "space.yaml:", "did not find expected"),
            ("x: {type: float, low: 0, high: 1}\nx: {type: int, low: 0, high: 1}\n", "space.yaml:2:1", "duplicate"),
            ("x: {name: FooDistribution, attributes: {}}\n", "x", "unknown Optuna distribution"),
            ("x: {type: float, low: -1.0e308, high: 1.0e308}\n", "x", "too wide to sample"),
            ("x: {type: int, low: 0, high: 90000000000000000000}\n", "space.yaml:1:", "90000000000000000000 is too large"),
        ];
        for (text, where_, what) in cases {
            let message = err(text);
            assert!(
                message.contains(where_) && message.contains(what),
                "for {text:?}: got {message:?}, wanted {where_:?} and {what:?}"
            );
        }
    }

    #[test]
    fn internal_values_round_trip_and_snap() {
        let cat = Distribution::Categorical { choices: vec![ParamValue::Int(16), ParamValue::Str("x".into())] };
        assert_eq!(cat.to_internal(&ParamValue::Str("x".into())).unwrap(), 1.0);
        assert_eq!(cat.to_internal(&ParamValue::Float(16.0)).unwrap(), 0.0);
        assert!(cat.to_internal(&ParamValue::Int(3)).is_err());
        let step = Distribution::Float { low: 0.0, high: 0.5, log: false, step: Some(0.05) };
        assert_eq!(step.to_external(0.126), ParamValue::Float(0.15000000000000002));
        assert!(step.contains(0.15000000000000002));
        assert!(!step.contains(0.12));
        let int = Distribution::Int { low: 2, high: 10, log: false, step: 2 };
        assert_eq!(int.to_external(5.2), ParamValue::Int(6));
        assert_eq!(int.to_external(99.0), ParamValue::Int(10));
        assert!(!int.contains(5.0));
    }

    #[test]
    fn grid_size_counts_points_and_gives_none_for_grids_beyond_usize() {
        let space = SearchSpace::parse(ISSUE_SPACE, "space.yaml").unwrap();
        assert_eq!(space.grid_size(), None); // learning_rate has no step
        let grid =
            SearchSpace::parse("d: {type: float, low: 0.0, high: 0.5, step: 0.05}\nk: {type: int, low: 0, high: 4}\n", "g")
                .unwrap();
        assert_eq!(grid.grid_size(), Some(11 * 5));
        // Found with the `space` fuzz target's harness: 1e300 + 1 points overflowed `as usize + 1` (a panic in
        // debug builds, a grid of 0 points in release builds).
        let huge = SearchSpace::parse("x: {type: float, low: 0, high: 1.0e300, step: 1.0}\n", "g").unwrap();
        assert_eq!(huge.grid_size(), None);
    }

    #[test]
    fn locate_key_skips_prefix_matches() {
        let text = "lr_max: 1\n  lr: {type: float}\n";
        assert_eq!(locate_key(text, "lr"), Some((2, 3)));
        assert_eq!(locate_key("{\"a\": 1, \"lr\": 2}", "lr"), Some((1, 10)));
    }
}

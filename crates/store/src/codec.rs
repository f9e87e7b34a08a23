//! The row codec both SQL backends share: values to the text they are stored as, and rows back
//! to studies and trials.
//!
//! The backends differ only in how a column is read ([`SqlRow`]) and in NaN: SQLite stores a
//! bound NaN as NULL, so its trial rows carry a `value_is_nan` flag and its intermediate values
//! use NULL for NaN; PostgreSQL keeps NaN natively. Both selections list the columns in the order
//! [`study_from_row`] and [`trial_from_row`] read them.

use std::collections::HashMap;

use nightshift_search::Error as SearchError;
use nightshift_search::{Direction, Distribution, FrozenTrial, ParamValue, StudyRecord, TrialState};

use crate::attempt::Fail;

/// One result row, read by column index.
pub(crate) trait SqlRow {
    /// The backend's error type.
    type Error;
    fn int(&self, i: usize) -> Result<i64, Fail<Self::Error>>;
    fn float(&self, i: usize) -> Result<Option<f64>, Fail<Self::Error>>;
    fn flag(&self, i: usize) -> Result<bool, Fail<Self::Error>>;
    fn text(&self, i: usize) -> Result<&str, Fail<Self::Error>>;
    fn text_or_null(&self, i: usize) -> Result<Option<&str>, Fail<Self::Error>>;
}

pub(crate) fn json_text<T: serde::Serialize, E>(value: &T, what: &str) -> Result<String, Fail<E>> {
    serde_json::to_string(value).map_err(|e| Fail::Data(format!("cannot encode {what}: {e}")))
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned, E>(text: &str, what: &str) -> Result<T, Fail<E>> {
    serde_json::from_str(text).map_err(|e| Fail::Data(format!("{what} {text:?}: {e}")))
}

pub(crate) fn step_to_sql<E>(step: u64) -> Result<i64, Fail<E>> {
    i64::try_from(step)
        .map_err(|_| Fail::Search(SearchError::storage(format!("step {step} is too large to store (at most {})", i64::MAX))))
}

pub(crate) fn parse_state<E>(text: &str) -> Result<TrialState, Fail<E>> {
    text.parse().map_err(|e: String| Fail::Data(format!("trial state: {e}")))
}

/// Refuses a NaN or infinite float parameter: no sampler proposes one, and it would not round-trip.
pub(crate) fn check_param_value<E>(name: &str, value: &ParamValue) -> Result<(), Fail<E>> {
    match value {
        ParamValue::Float(f) if !f.is_finite() => Err(Fail::Search(SearchError::Param {
            param: name.to_string(),
            message: format!("value {f} cannot be stored: parameter values must be finite"),
        })),
        _ => Ok(()),
    }
}

/// A parameter value from its JSON text. Numbers, nearly all values, skip serde's untagged-enum
/// buffering (a third of the time of loading a large study); the result is the same.
pub(crate) fn parse_param_value<E>(text: &str) -> Result<ParamValue, Fail<E>> {
    // serde_json reads "-0" as the float -0.0.
    if text != "-0"
        && let Ok(i) = text.parse::<i64>()
    {
        return Ok(ParamValue::Int(i));
    }
    if text.starts_with(|c: char| c.is_ascii_digit() || c == '-')
        && let Ok(f) = text.parse::<f64>()
    {
        return Ok(ParamValue::Float(f));
    }
    parse_json(text, "parameter value")
}

/// A study from `id, name, direction, seed, sampler, pruner, search_space, user_attrs, created_at`.
pub(crate) fn study_from_row<R: SqlRow + ?Sized>(row: &R) -> Result<StudyRecord, Fail<R::Error>> {
    Ok(StudyRecord {
        id: row.int(0)?,
        name: row.text(1)?.to_string(),
        direction: row.text(2)?.parse::<Direction>().map_err(Fail::Data)?,
        // The u64 seed is stored bit for bit as i64.
        seed: row.int(3)? as u64,
        sampler: parse_json(row.text(4)?, "sampler configuration")?,
        pruner: parse_json(row.text(5)?, "pruner configuration")?,
        search_space: row.text_or_null(6)?.map(|s| parse_json(s, "search space")).transpose()?,
        user_attrs: parse_json(row.text(7)?, "study user attributes")?,
        created_at: row.float(8)?.ok_or_else(|| Fail::Data("study created_at is NULL".into()))?,
    })
}

/// A trial without its child rows from `id, number, state, value, started_at, finished_at,
/// heartbeat_at`.
pub(crate) fn trial_from_row<R: SqlRow + ?Sized>(row: &R) -> Result<FrozenTrial, Fail<R::Error>> {
    let mut trial = FrozenTrial::new(row.int(0)?, row.int(1)? as u64, parse_state(row.text(2)?)?);
    trial.value = row.float(3)?;
    trial.started_at = row.float(4)?;
    trial.finished_at = row.float(5)?;
    trial.heartbeat_at = row.float(6)?;
    Ok(trial)
}

/// Parsed distributions by their JSON text: the trials of a study share a handful of them, and
/// parsing each one again would dominate loading a large study.
#[derive(Default)]
struct DistributionCache(HashMap<String, Distribution>);

impl DistributionCache {
    fn get<E>(&mut self, text: &str) -> Result<Distribution, Fail<E>> {
        if let Some(d) = self.0.get(text) {
            return Ok(d.clone());
        }
        let d: Distribution = parse_json(text, "parameter distribution")?;
        self.0.insert(text.to_string(), d.clone());
        Ok(d)
    }
}

/// Adds child rows (`trial_id` first) to the trials they belong to: `trials[index(trial_id)]`;
/// rows of other trials are skipped.
pub(crate) struct Placement<'a> {
    trials: &'a mut [FrozenTrial],
    index: &'a dyn Fn(i64) -> Option<usize>,
    distributions: DistributionCache,
}

impl<'a> Placement<'a> {
    pub(crate) fn new(trials: &'a mut [FrozenTrial], index: &'a dyn Fn(i64) -> Option<usize>) -> Self {
        Self { trials, index, distributions: DistributionCache::default() }
    }

    /// Where the row's trial is in `trials`, if it is one of them.
    fn position<R: SqlRow + ?Sized>(&self, row: &R) -> Result<Option<usize>, Fail<R::Error>> {
        Ok((self.index)(row.int(0)?).filter(|&i| i < self.trials.len()))
    }

    /// A `(trial_id, name, distribution, value)` row.
    pub(crate) fn add_param<R: SqlRow + ?Sized>(&mut self, row: &R) -> Result<(), Fail<R::Error>> {
        let Some(i) = self.position(row)? else { return Ok(()) };
        let dist = self.distributions.get(row.text(2)?)?;
        let value = parse_param_value(row.text(3)?)?;
        let trial = &mut self.trials[i];
        let name = row.text(1)?.to_string();
        trial.params.insert(name.clone(), value);
        trial.distributions.insert(name, dist);
        Ok(())
    }

    /// A `(trial_id, step, value)` row; a NULL value stands for NaN (SQLite's encoding).
    pub(crate) fn add_intermediate<R: SqlRow + ?Sized>(&mut self, row: &R) -> Result<(), Fail<R::Error>> {
        let Some(i) = self.position(row)? else { return Ok(()) };
        self.trials[i].intermediate_values.insert(row.int(1)? as u64, row.float(2)?.unwrap_or(f64::NAN));
        Ok(())
    }

    /// A `(trial_id, system, key, value)` row.
    pub(crate) fn add_attr<R: SqlRow + ?Sized>(&mut self, row: &R) -> Result<(), Fail<R::Error>> {
        let Some(i) = self.position(row)? else { return Ok(()) };
        let trial = &mut self.trials[i];
        let attrs = if row.flag(1)? { &mut trial.system_attrs } else { &mut trial.user_attrs };
        attrs.insert(row.text(2)?.to_string(), parse_json(row.text(3)?, "trial attribute")?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_param_value_parser_agrees_with_serde() {
        let parse = |text: &str| parse_param_value::<()>(text).ok().unwrap();
        for text in ["0", "-0", "7", "-12", "2.0", "1e5", "-1.5e-7", "9223372036854775807", "12345678901234567890", "0.1"] {
            let slow: ParamValue = serde_json::from_str(text).unwrap();
            assert_eq!(format!("{:?}", parse(text)), format!("{slow:?}"), "{text}");
        }
        for value in [ParamValue::Bool(true), ParamValue::Str("12".into()), ParamValue::Str("-x".into())] {
            let text = serde_json::to_string(&value).unwrap();
            assert_eq!(format!("{:?}", parse(&text)), format!("{value:?}"));
        }
    }

    #[test]
    fn non_finite_params_and_huge_steps_are_refused_as_search_errors() {
        let nan = check_param_value::<()>("lr", &ParamValue::Float(f64::NAN));
        assert!(matches!(nan, Err(Fail::Search(SearchError::Param { ref param, .. })) if param == "lr"));
        assert!(check_param_value::<()>("lr", &ParamValue::Float(0.1)).is_ok());
        assert!(matches!(step_to_sql::<()>(u64::MAX), Err(Fail::Search(SearchError::Storage(_)))));
        assert_eq!(step_to_sql::<()>(7).ok(), Some(7));
    }
}

//! The ranked table of every trial (the page's table, trials.csv and trials.json).

use std::collections::BTreeMap;

use nightshift_search::{FrozenTrial, ParamValue, TrialState, attrs};
use serde::Serialize;

use crate::axis::ParamAxis;
use crate::data::{attr_string, display_value, epochs_reached};

/// The ranked table, also written as CSV and JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct TableData {
    /// Parameter column names, in axis order.
    pub params: Vec<String>,
    /// Ranked trials first, then the rest.
    pub rows: Vec<TrialRow>,
}

/// One trial in the table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialRow {
    /// 1-based rank among COMPLETE trials with a value; `None` for every other trial.
    pub rank: Option<usize>,
    /// Trial number.
    pub number: u64,
    /// Trial state.
    pub state: TrialState,
    /// Objective value, if any.
    pub value: Option<f64>,
    /// Display values aligned with [`TableData::params`]; `None` where the trial lacks the parameter.
    #[serde(skip)]
    pub params: Vec<Option<String>>,
    /// The parameters as recorded (trials.json writes these).
    #[serde(rename = "params")]
    pub raw_params: BTreeMap<String, ParamValue>,
    /// Epochs it trained.
    pub epochs: u64,
    /// Seconds from start to finish, when both are known.
    pub duration_s: Option<f64>,
    /// The device it ran on, when recorded.
    pub device: Option<String>,
    /// The slot on that device, when recorded.
    pub slot: Option<String>,
    /// Why it failed, when it did.
    pub fail_reason: Option<String>,
    /// Unix start time.
    pub started_at: Option<f64>,
    /// Unix finish time.
    pub finished_at: Option<f64>,
    /// Reported value per step.
    pub intermediate_values: BTreeMap<u64, f64>,
    /// A tournament replicate: the search trial whose configuration it re-runs (its value may be on the test split).
    pub replicate_of: Option<u64>,
}

pub(crate) fn build(trials: &[FrozenTrial], ranked: &[&FrozenTrial], axes: &[ParamAxis]) -> TableData {
    let row = |t: &FrozenTrial, rank: Option<usize>| TrialRow {
        rank,
        number: t.number,
        state: t.state,
        value: t.value,
        params: axes.iter().map(|a| t.params.get(&a.name).map(display_value)).collect(),
        raw_params: t.params.clone(),
        epochs: epochs_reached(t),
        duration_s: t.duration(),
        device: attr_string(t, attrs::DEVICE),
        slot: attr_string(t, attrs::SLOT),
        fail_reason: attr_string(t, attrs::FAIL_REASON),
        started_at: t.started_at,
        finished_at: t.finished_at,
        intermediate_values: t.intermediate_values.clone(),
        replicate_of: t.system_attrs.get(attrs::REPLICATE_OF).and_then(serde_json::Value::as_u64),
    };
    let mut rows: Vec<TrialRow> = ranked.iter().enumerate().map(|(i, t)| row(t, Some(i + 1))).collect();
    // Unranked trials after the ranking: running ones first (they may still win), then pruned,
    // failed, waiting, and completed trials without a usable value; by number within each.
    let order = |s: TrialState| match s {
        TrialState::Running => 0,
        TrialState::Pruned => 1,
        TrialState::Fail => 2,
        TrialState::Waiting => 3,
        TrialState::Complete => 4,
    };
    let mut rest: Vec<&FrozenTrial> = trials.iter().filter(|t| !ranked.iter().any(|r| r.number == t.number)).collect();
    rest.sort_by_key(|t| (order(t.state), t.number));
    rows.extend(rest.into_iter().map(|t| row(t, None)));
    TableData { params: axes.iter().map(|a| a.name.clone()).collect(), rows }
}

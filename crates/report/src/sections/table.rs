//! The ranked table of every trial (the page's table, trials.csv and trials.json).

use std::collections::BTreeMap;
use std::fmt::Write;

use nightshift_search::{FrozenTrial, ParamValue, TrialState, attrs};
use serde::Serialize;

use crate::axis::{ParamAxis, fmt_num};
use crate::data::{attr_string, display_value, epochs_reached};
use crate::html::{escape, fmt_duration, missing};

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

fn state_badge(state: TrialState) -> String {
    format!("<span class=\"state s-{0}\">{0}</span>", state.as_str())
}

/// The table section of the page: every trial, sortable, best first.
pub(crate) fn html(o: &mut String, t: &TableData, metric: &str) {
    let _ = writeln!(
        o,
        "<section id=\"trials\"><h2>All trials</h2>\n<p class=\"muted\">{} trials, completed ones ranked by {} (ties: lower trial number first). \
         Click a column to sort. Also as <a href=\"trials.csv\">trials.csv</a> and <a href=\"trials.json\">trials.json</a>.</p>",
        t.rows.len(),
        escape(metric)
    );
    if t.rows.is_empty() {
        missing(o, "No trials yet.");
        o.push_str("</section>\n");
        return;
    }
    o.push_str("<div class=\"scroll\"><table class=\"sortable\" id=\"trials-table\"><thead><tr><th class=\"n\">Rank</th><th class=\"n\">Trial</th><th>State</th><th class=\"n\">Value</th>");
    for p in &t.params {
        let _ = write!(o, "<th>{}</th>", escape(p));
    }
    o.push_str(
        "<th class=\"n\">Epochs</th><th class=\"n\">Duration</th><th>Device</th><th>Failure reason</th></tr></thead>\n<tbody>\n",
    );
    let opt_num = |x: Option<f64>| x.filter(|v| !v.is_nan()).map(|v| v.to_string()).unwrap_or_default();
    for r in &t.rows {
        let cls = if r.rank == Some(1) { " class=\"best\"" } else { "" };
        let _ = write!(
            o,
            "<tr{cls}><td class=\"n\">{}</td><td class=\"n\" data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td>",
            r.rank.map(|x| x.to_string()).unwrap_or_default(),
            r.number,
            match r.replicate_of {
                Some(source) =>
                    format!("{} <span class=\"muted\" title=\"a tournament replicate\">(replicate of #{source})</span>", r.number),
                None => r.number.to_string(),
            },
            r.state.as_str(),
            state_badge(r.state),
            opt_num(r.value),
            r.value.map(fmt_num).unwrap_or_default()
        );
        for p in &r.params {
            let _ = write!(o, "<td>{}</td>", escape(p.as_deref().unwrap_or("")));
        }
        let device = match (&r.device, &r.slot) {
            (Some(d), Some(s)) => format!("{d} · slot {s}"),
            (Some(d), None) => d.clone(),
            (None, Some(s)) => format!("slot {s}"),
            (None, None) => String::new(),
        };
        let reason = r.fail_reason.as_deref().unwrap_or("");
        let short: String = reason.chars().take(300).collect();
        let _ = writeln!(
            o,
            "<td class=\"n\">{}</td><td class=\"n\" data-v=\"{}\">{}</td><td>{}</td><td class=\"reason\" title=\"{}\">{}{}</td></tr>",
            r.epochs,
            opt_num(r.duration_s),
            r.duration_s.map(fmt_duration).unwrap_or_default(),
            escape(&device),
            escape(reason),
            escape(&short),
            if short.len() < reason.len() { "…" } else { "" }
        );
    }
    o.push_str("</tbody></table></div>\n</section>\n");
}

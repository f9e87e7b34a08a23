//! The report's content as plain data, computed from a study and its trials. No drawing, no I/O:
//! everything here is testable with constructed trials, and the renderers are pure functions of it.
//! Each section's data and build live in its module under `crate::sections`; this file holds
//! what they share and [`build_report_data`], which runs them all.

use std::collections::BTreeMap;

use nightshift_search::{Direction, FrozenTrial, ParamValue, Role, StudyRecord, TrialState};
use serde::Serialize;

use crate::axis::{AxisScale, PLOT_LIMIT, ParamAxis, fmt_num};
use crate::sections::comparison::{self, ComparisonData};
use crate::sections::contour::{self, ContourData};
use crate::sections::curves::{self, CurvesData};
use crate::sections::history::{self, HistoryData};
use crate::sections::importance::{self, ImportanceData};
use crate::sections::parallel::{self, ParallelData};
use crate::sections::slices::{self, SliceData};
use crate::sections::summary::{self, SummaryData};
use crate::sections::table::{self, TableData};
use crate::sections::timeline::{self, TimelineData};

/// What the report cannot learn from the trials themselves. All fields are optional.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReportOptions {
    /// Parameter to compare in the "which won" section; default `freeze_depth`, else the first
    /// parameter whose name contains "freeze".
    pub compare: Option<String>,
    /// Name of the objective, e.g. "validation accuracy"; default: the study's `objective_metric`
    /// user attribute, else "objective value".
    pub objective_metric: Option<String>,
    /// Command that retrains the best trial. `{params_file}` is replaced by the path of the
    /// `best_params.json` the report writes (shell-quoted) and `{trial}` by its number.
    /// Default: `nightshift trial --params-file {params_file}`.
    pub retrain_command: Option<String>,
    /// Epochs an unpruned trial runs (for the pruning-savings figure); default: the most epochs any
    /// completed trial reported.
    pub max_steps: Option<u64>,
    /// Concurrent trial slots (devices × trials per device), for utilisation; default: the number
    /// of timeline rows.
    pub slots: Option<usize>,
    /// Wall-clock seconds of the sweep; default: first start to last finish.
    pub wall_clock_seconds: Option<f64>,
    /// Unix time "now": where running trials' bars end and the page's "generated at". Default: the
    /// last heartbeat/start of each running trial, and no timestamp (reproducible output).
    pub now: Option<f64>,
    /// Adds `<meta http-equiv="refresh">` with this period: for reports refreshed during a run.
    pub refresh_seconds: Option<u32>,
    /// Seed of the importance forest; default: the study's seed.
    pub seed: Option<u64>,
}

/// A chart or section that may have nothing to show yet; `Missing` says why, for the page.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum Section<T> {
    /// The section's data.
    Ready(T),
    /// Why there is nothing to show yet.
    Missing(String),
}

impl<T> Section<T> {
    /// The data, when there is some.
    pub fn ready(&self) -> Option<&T> {
        match self {
            Section::Ready(t) => Some(t),
            Section::Missing(_) => None,
        }
    }
}

/// Everything the report shows.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportData {
    /// The summary at the top.
    pub summary: SummaryData,
    /// Every trial, ranked.
    pub table: TableData,
    /// Optimization history.
    pub history: Section<HistoryData>,
    /// Learning curves.
    pub curves: Section<CurvesData>,
    /// Parallel coordinates.
    pub parallel: Section<ParallelData>,
    /// Hyperparameter importance.
    pub importance: Section<ImportanceData>,
    /// One slice per parameter.
    pub slices: Section<Vec<SliceData>>,
    /// Contour of the two most important parameters.
    pub contour: Section<ContourData>,
    /// Trials over time per device slot.
    pub timeline: Section<TimelineData>,
    /// The compared parameter's verdict.
    pub comparison: Section<ComparisonData>,
}

/// Epochs a trial trained: reported steps, counting 0- and 1-based epoch numbering alike.
pub fn epochs_reached(trial: &FrozenTrial) -> u64 {
    let last = trial.last_step().map_or(0, |(s, _)| s);
    last.max(trial.intermediate_values.len() as u64)
}

/// A parameter value for people: floats in five significant digits (files keep full precision).
pub fn display_value(v: &ParamValue) -> String {
    match v {
        ParamValue::Float(x) => fmt_num(*x),
        other => other.to_string(),
    }
}

pub(crate) fn attr_string(trial: &FrozenTrial, key: &str) -> Option<String> {
    match trial.system_attrs.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// COMPLETE trials with a finite value, best first; ties go to the lower trial number (as `best_of`).
pub fn rank_complete(trials: &[FrozenTrial], direction: Direction) -> Vec<&FrozenTrial> {
    let mut ranked: Vec<&FrozenTrial> =
        trials.iter().filter(|t| t.state == TrialState::Complete && t.value.is_some_and(f64::is_finite)).collect();
    ranked.sort_by(|a, b| {
        let (va, vb) = (direction.to_loss(a.value.unwrap()), direction.to_loss(b.value.unwrap()));
        va.total_cmp(&vb).then(a.number.cmp(&b.number))
    });
    ranked
}

/// The axes of every parameter seen, in search-space order, then trial-only ones by name.
pub fn param_axes(study: &StudyRecord, trials: &[FrozenTrial]) -> Vec<ParamAxis> {
    let mut axes: Vec<ParamAxis> = match &study.search_space {
        Some(space) => space.iter().map(|(n, d)| ParamAxis::from_distribution(n, d)).collect(),
        None => Vec::new(),
    };
    let mut extra: BTreeMap<&str, ParamAxis> = BTreeMap::new();
    for t in trials {
        for (name, dist) in &t.distributions {
            if !axes.iter().any(|a| &a.name == name) {
                extra.entry(name).or_insert_with(|| ParamAxis::from_distribution(name, dist));
            }
        }
    }
    // Parameters recorded without a distribution: infer the axis from the values themselves.
    for t in trials {
        for (name, value) in &t.params {
            if !axes.iter().any(|a| &a.name == name) && !extra.contains_key(name.as_str()) {
                let scale = match value {
                    ParamValue::Int(i) => AxisScale::Linear { low: *i as f64, high: *i as f64, integer: true },
                    ParamValue::Float(x) => AxisScale::Linear { low: *x, high: *x, integer: false },
                    ParamValue::Bool(_) | ParamValue::Str(_) => AxisScale::Categorical { choices: vec![value.clone()] },
                };
                extra.insert(name, ParamAxis { name: name.clone(), scale });
            }
        }
    }
    axes.extend(extra.into_values());
    for t in trials {
        for axis in &mut axes {
            if let Some(v) = t.params.get(&axis.name) {
                axis.include(v);
            }
        }
    }
    axes
}

/// `trials` with their values and reports clamped to ±[`PLOT_LIMIT`] (NaN and ±inf kept: the
/// charts leave those out).
fn charted<'t>(trials: impl IntoIterator<Item = &'t FrozenTrial>) -> Vec<FrozenTrial> {
    let clamp = |v: f64| if v.is_finite() { v.clamp(-PLOT_LIMIT, PLOT_LIMIT) } else { v };
    trials
        .into_iter()
        .map(|t| {
            let mut t = t.clone();
            t.value = t.value.map(clamp);
            t.intermediate_values.values_mut().for_each(|v| *v = clamp(*v));
            t
        })
        .collect()
}

/// Computes the whole report from a study and its trials (any order; any states).
pub fn build_report_data(study: &StudyRecord, trials: &[FrozenTrial], options: &ReportOptions) -> ReportData {
    let mut trials: Vec<FrozenTrial> = trials.to_vec();
    trials.sort_by_key(|t| t.number);
    let metric = options
        .objective_metric
        .clone()
        .or_else(|| ["objective_metric", "metric"].iter().find_map(|k| study.user_attrs.get(*k)?.as_str().map(String::from)))
        .unwrap_or_else(|| "objective value".to_string());
    let direction = study.direction;
    let axes = param_axes(study, &trials);
    // A tournament's replicates are scored for its verdict (on the test split when there is one), not
    // search results: the comparison shows them; the ranking and the search's charts leave them out, as
    // `best-trial` does.
    let search: Vec<FrozenTrial> = trials.iter().filter(|t| Role::of(t) != Some(Role::Replicate)).cloned().collect();
    let ranked = rank_complete(&search, direction);
    let complete = ranked.clone();

    let table = table::build(&trials, &ranked, &axes);
    let timeline = timeline::build(&trials, options);
    let summary = summary::build(study, &trials, &ranked, &metric, options, timeline.ready());
    // The charts see values clamped to what they can draw; the table and summary above the real ones.
    let (trials, search, complete) = (charted(&trials), charted(&search), charted(complete));
    let complete: Vec<&FrozenTrial> = complete.iter().collect();
    let history = history::build(&search, direction, &metric);
    let curves = curves::build(&search, &metric, ranked.first().map(|t| t.number));
    let parallel = parallel::build(&complete, &axes, &metric, direction);
    let slices = slices::build(&complete, &axes, &metric);
    let seed = options.seed.unwrap_or(study.seed);
    let (importance, forest) = importance::build(&complete, &axes, seed);
    let contour = contour::build(&complete, &axes, &importance, forest.as_ref(), &metric, direction);
    let tournament = comparison::stored_tournament(study);
    let comparison = comparison::build(&trials, &axes, options, &metric, direction, tournament.as_ref());
    ReportData { summary, table, history, curves, parallel, importance, slices, contour, timeline, comparison }
}

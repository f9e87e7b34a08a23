//! The report's content as plain data, computed from a study and its trials. No drawing, no I/O:
//! everything here is testable with constructed trials, and the renderers are pure functions of it.

use std::collections::BTreeMap;

use nightshift_search::{Direction, FAIL_REASON_ATTR, FrozenTrial, ParamValue, StudyRecord, TrialState};
use serde::Serialize;

use crate::axis::{AxisScale, ParamAxis, fmt_num};
use crate::importance::Forest;
use crate::stats;

/// `system_attrs` key holding the device a trial ran on (e.g. `"cuda:0"`, `"cpu"`).
pub const DEVICE_ATTR: &str = "device";
/// `system_attrs` key holding the worker slot on that device (an integer or a string).
pub const SLOT_ATTR: &str = "slot";
/// The parameter compared by default in the freeze-strategy section.
pub const DEFAULT_COMPARE: &str = "freeze_depth";

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
    Ready(T),
    Missing(String),
}

impl<T> Section<T> {
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
    pub summary: SummaryData,
    pub table: TableData,
    pub history: Section<HistoryData>,
    pub curves: Section<CurvesData>,
    pub parallel: Section<ParallelData>,
    pub importance: Section<ImportanceData>,
    pub slices: Section<Vec<SliceData>>,
    pub contour: Section<ContourData>,
    pub timeline: Section<TimelineData>,
    pub comparison: Section<ComparisonData>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StateCounts {
    pub total: usize,
    pub complete: usize,
    pub pruned: usize,
    pub failed: usize,
    pub running: usize,
    pub waiting: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SummaryData {
    pub study_name: String,
    pub direction: Direction,
    pub metric: String,
    pub counts: StateCounts,
    pub best: Option<BestTrialData>,
    pub wall_seconds: Option<f64>,
    /// Epochs actually trained, over all trials.
    pub epochs_trained: u64,
    /// Epochs the same trials would have cost without pruning; `None` when the epoch budget is unknown.
    pub epochs_unpruned: Option<u64>,
    /// The per-trial epoch budget used for `epochs_unpruned`, and whether it was given or inferred.
    pub max_steps: Option<(u64, bool)>,
    pub devices: Vec<DeviceUse>,
    /// Busy slot-seconds / (slots × wall seconds).
    pub utilisation: Option<f64>,
    pub slots: usize,
    pub retrain: Option<RetrainData>,
    /// Plain-language notes about the state of the study ("no trials yet", "all trials failed").
    pub notes: Vec<String>,
    pub generated_at: Option<f64>,
    pub refresh_seconds: Option<u32>,
}

impl SummaryData {
    /// Fraction of epochs pruning saved, when known.
    pub fn savings(&self) -> Option<f64> {
        let unpruned = self.epochs_unpruned? as f64;
        (unpruned > 0.0).then(|| 1.0 - self.epochs_trained as f64 / unpruned)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct BestTrialData {
    pub number: u64,
    pub value: f64,
    pub params: Vec<(String, String)>,
    pub epochs: u64,
    pub duration_s: Option<f64>,
    pub device: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RetrainData {
    pub command: String,
    /// Contents of best_params.json.
    pub params_json: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DeviceUse {
    pub label: String,
    pub trials: usize,
    pub busy_seconds: f64,
    pub utilisation: Option<f64>,
}

/// The ranked table, also written as CSV and JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct TableData {
    pub params: Vec<String>,
    pub rows: Vec<TrialRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TrialRow {
    /// 1-based rank among COMPLETE trials with a value; `None` for every other trial.
    pub rank: Option<usize>,
    pub number: u64,
    pub state: TrialState,
    pub value: Option<f64>,
    /// Display values aligned with [`TableData::params`]; `None` where the trial lacks the parameter.
    #[serde(skip)]
    pub params: Vec<Option<String>>,
    /// The parameters as recorded (trials.json writes these).
    #[serde(rename = "params")]
    pub raw_params: BTreeMap<String, ParamValue>,
    pub epochs: u64,
    pub duration_s: Option<f64>,
    pub device: Option<String>,
    pub slot: Option<String>,
    pub fail_reason: Option<String>,
    pub started_at: Option<f64>,
    pub finished_at: Option<f64>,
    pub intermediate_values: BTreeMap<u64, f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct HistoryData {
    pub metric: String,
    pub direction: Direction,
    /// (trial number, value, state) for COMPLETE and PRUNED trials with a finite value.
    pub points: Vec<(u64, f64, TrialState)>,
    /// Best COMPLETE value so far, after each COMPLETE trial.
    pub best_so_far: Vec<(u64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CurvesData {
    pub metric: String,
    pub curves: Vec<Curve>,
    pub best: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    pub number: u64,
    pub state: TrialState,
    pub points: Vec<(u64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParallelData {
    pub metric: String,
    pub direction: Direction,
    pub axes: Vec<ParamAxis>,
    /// Plot coordinates per axis and the objective value, one per COMPLETE trial.
    pub lines: Vec<(Vec<Option<f64>>, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ImportanceData {
    /// Parameter and share of explained variance (sums to 1), most important first.
    pub entries: Vec<(String, f64)>,
    pub n_trials: usize,
    /// Parameters left out (not set in every completed trial, or never varied).
    pub skipped: Vec<String>,
}

/// One sentence for the page.
pub const IMPORTANCE_METHOD: &str = "Importance is fANOVA (Hutter et al., 2014): a 64-tree random forest is fitted to the completed trials' \
     objective values, and each parameter's importance is the share of the forest's variance that the parameter explains on its own \
     (averaging over all other parameters), normalised to sum to 100%.";

#[derive(Clone, Debug, PartialEq)]
pub struct SliceData {
    pub axis: ParamAxis,
    pub metric: String,
    /// (plot coordinate, value, trial number) of COMPLETE trials.
    pub points: Vec<(f64, f64, u64)>,
    pub max_number: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ContourData {
    pub x: ParamAxis,
    pub y: ParamAxis,
    pub metric: String,
    pub direction: Direction,
    /// Cell centres in plot coordinates.
    pub xs: Vec<f64>,
    pub ys: Vec<f64>,
    /// Forest-predicted objective, `z[iy][ix]`, averaged over the other parameters.
    pub z: Vec<Vec<f64>>,
    /// Observed trials (plot coordinates, value).
    pub points: Vec<(f64, f64, f64)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimelineData {
    pub rows: Vec<TimelineRow>,
    /// Seconds from the first start to the last end.
    pub span_s: f64,
    /// True when no trial recorded a device or slot and rows were assigned by non-overlap.
    pub inferred: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimelineRow {
    pub label: String,
    pub bars: Vec<TimelineBar>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TimelineBar {
    pub number: u64,
    pub state: TrialState,
    /// Seconds since the first trial started.
    pub start_s: f64,
    pub end_s: f64,
    /// For pruned trials, the last epoch reported before the cut.
    pub pruned_at: Option<u64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ComparisonData {
    pub param: String,
    pub metric: String,
    pub direction: Direction,
    pub groups: Vec<GroupStats>,
    /// Index into `groups` of the best mean, when any group has a completed trial.
    pub best: Option<usize>,
    /// Index of the runner-up the verdict compares against.
    pub runner_up: Option<usize>,
    /// Welch t-test p-value of best vs runner-up.
    pub p_value: Option<f64>,
    /// `Some(true)` when the difference is within noise (p ≥ 0.05), `None` when it cannot be judged.
    pub within_noise: Option<bool>,
    pub verdict: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GroupStats {
    pub label: String,
    /// Plot coordinate of the group on the parameter's axis.
    pub value: ParamValue,
    /// Final values of COMPLETE trials.
    pub values: Vec<f64>,
    pub n_pruned: usize,
    pub n_failed: usize,
    pub mean: f64,
    pub sd: f64,
    pub ci95: Option<(f64, f64)>,
    pub median: f64,
    pub q1: f64,
    pub q3: f64,
    /// The group's best COMPLETE trial and its learning curve.
    pub best_trial: Option<(u64, Vec<(u64, f64)>)>,
}

impl GroupStats {
    pub fn n(&self) -> usize {
        self.values.len()
    }
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

fn attr_string(trial: &FrozenTrial, key: &str) -> Option<String> {
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
    let ranked = rank_complete(&trials, direction);
    let complete = ranked.clone();

    let table = build_table(&trials, &ranked, &axes);
    let timeline = build_timeline(&trials, options);
    let summary = build_summary(study, &trials, &ranked, &metric, options, timeline.ready());
    let history = build_history(&trials, direction, &metric);
    let curves = build_curves(&trials, &metric, ranked.first().map(|t| t.number));
    let parallel = build_parallel(&complete, &axes, &metric, direction);
    let slices = build_slices(&complete, &axes, &metric);
    let seed = options.seed.unwrap_or(study.seed);
    let (importance, forest) = build_importance(&complete, &axes, seed);
    let contour = build_contour(&complete, &axes, &importance, forest.as_ref(), &metric, direction);
    let comparison = build_comparison(&trials, &axes, options, &metric, direction);
    ReportData { summary, table, history, curves, parallel, importance, slices, contour, timeline, comparison }
}

fn build_table(trials: &[FrozenTrial], ranked: &[&FrozenTrial], axes: &[ParamAxis]) -> TableData {
    let row = |t: &FrozenTrial, rank: Option<usize>| TrialRow {
        rank,
        number: t.number,
        state: t.state,
        value: t.value,
        params: axes.iter().map(|a| t.params.get(&a.name).map(display_value)).collect(),
        raw_params: t.params.clone(),
        epochs: epochs_reached(t),
        duration_s: t.duration(),
        device: attr_string(t, DEVICE_ATTR),
        slot: attr_string(t, SLOT_ATTR),
        fail_reason: attr_string(t, FAIL_REASON_ATTR),
        started_at: t.started_at,
        finished_at: t.finished_at,
        intermediate_values: t.intermediate_values.clone(),
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

fn count_states(trials: &[FrozenTrial]) -> StateCounts {
    let mut c = StateCounts { total: trials.len(), ..Default::default() };
    for t in trials {
        match t.state {
            TrialState::Complete => c.complete += 1,
            TrialState::Pruned => c.pruned += 1,
            TrialState::Fail => c.failed += 1,
            TrialState::Running => c.running += 1,
            TrialState::Waiting => c.waiting += 1,
        }
    }
    c
}

fn build_summary(
    study: &StudyRecord,
    trials: &[FrozenTrial],
    ranked: &[&FrozenTrial],
    metric: &str,
    options: &ReportOptions,
    timeline: Option<&TimelineData>,
) -> SummaryData {
    let counts = count_states(trials);
    let best = ranked.first().map(|t| BestTrialData {
        number: t.number,
        value: t.value.unwrap(),
        params: param_axes(study, trials)
            .iter()
            .filter_map(|a| Some((a.name.clone(), display_value(t.params.get(&a.name)?))))
            .collect(),
        epochs: epochs_reached(t),
        duration_s: t.duration(),
        device: attr_string(t, DEVICE_ATTR),
    });

    let epochs_trained: u64 = trials.iter().map(epochs_reached).sum();
    let max_steps = match options.max_steps {
        Some(m) => Some((m, true)),
        None => ranked.iter().map(|t| epochs_reached(t)).max().filter(|m| *m > 0).map(|m| (m, false)),
    };
    // Without pruning, every completed or pruned trial would have run the full budget; failed and
    // running trials cost what they cost either way.
    let epochs_unpruned = max_steps.map(|(m, _)| {
        trials
            .iter()
            .map(|t| match t.state {
                TrialState::Complete | TrialState::Pruned => m.max(epochs_reached(t)),
                _ => epochs_reached(t),
            })
            .sum()
    });

    let wall_seconds = options.wall_clock_seconds.or(timeline.map(|t| t.span_s)).filter(|w| *w > 0.0);
    let mut devices: Vec<DeviceUse> = Vec::new();
    if let Some(tl) = timeline {
        for row in &tl.rows {
            let busy: f64 = row.bars.iter().map(|b| b.end_s - b.start_s).sum();
            devices.push(DeviceUse {
                label: row.label.clone(),
                trials: row.bars.len(),
                busy_seconds: busy,
                utilisation: wall_seconds.map(|w| (busy / w).min(1.0)),
            });
        }
    }
    let slots = options.slots.unwrap_or(devices.len());
    let busy_total: f64 = devices.iter().map(|d| d.busy_seconds).sum();
    let utilisation = wall_seconds.filter(|_| slots > 0).map(|w| (busy_total / (w * slots as f64)).min(1.0));

    let retrain = ranked.first().map(|t| {
        let template = options.retrain_command.as_deref().unwrap_or("nightshift trial --params-file {params_file}");
        let params: serde_json::Map<String, serde_json::Value> =
            t.params.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null))).collect();
        RetrainData {
            command: template
                .replace("{params_file}", &shell_quote(crate::BEST_PARAMS_FILE))
                .replace("{trial}", &t.number.to_string()),
            params_json: serde_json::to_string_pretty(&params).unwrap_or_else(|_| "{}".into()),
        }
    });

    let mut notes = Vec::new();
    if counts.total == 0 {
        notes.push("This study has no trials yet.".to_string());
    } else if ranked.is_empty() {
        let why = if counts.failed == counts.total {
            "every trial failed — see the failure reasons in the table below".to_string()
        } else if counts.pruned == counts.total {
            "every trial was pruned".to_string()
        } else if counts.running + counts.waiting > 0 {
            "trials are still running".to_string()
        } else {
            format!("{} pruned, {} failed", counts.pruned, counts.failed)
        };
        notes.push(format!("No trial has completed yet ({why}), so there is no best trial and no ranking."));
    } else if ranked.len() < 3 {
        notes.push(format!(
            "Only {} completed trial{}: too few for importance or comparisons to mean much.",
            ranked.len(),
            if ranked.len() == 1 { "" } else { "s" }
        ));
    }
    if counts.running > 0 {
        notes.push(format!(
            "{} trial{} still running: this report shows the state so far.",
            counts.running,
            if counts.running == 1 { " is" } else { "s are" }
        ));
    }

    SummaryData {
        study_name: study.name.clone(),
        direction: study.direction,
        metric: metric.to_string(),
        counts,
        best,
        wall_seconds,
        epochs_trained,
        epochs_unpruned,
        max_steps,
        devices,
        utilisation,
        slots,
        retrain,
        notes,
        generated_at: options.now,
        refresh_seconds: options.refresh_seconds,
    }
}

/// Quotes a path for a POSIX shell when it needs it.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn build_history(trials: &[FrozenTrial], direction: Direction, metric: &str) -> Section<HistoryData> {
    let points: Vec<(u64, f64, TrialState)> = trials
        .iter()
        .filter(|t| matches!(t.state, TrialState::Complete | TrialState::Pruned))
        .filter_map(|t| t.value.filter(|v| v.is_finite()).map(|v| (t.number, v, t.state)))
        .collect();
    if points.is_empty() {
        return Section::Missing("No trial has reported an objective value yet.".into());
    }
    let mut best_so_far = Vec::new();
    let mut best: Option<f64> = None;
    for &(n, v, s) in &points {
        if s == TrialState::Complete && best.is_none_or(|b| direction.is_better(v, b)) {
            best = Some(v);
        }
        if s == TrialState::Complete {
            best_so_far.push((n, best.unwrap()));
        }
    }
    Section::Ready(HistoryData { metric: metric.into(), direction, points, best_so_far })
}

fn build_curves(trials: &[FrozenTrial], metric: &str, best: Option<u64>) -> Section<CurvesData> {
    let curves: Vec<Curve> = trials
        .iter()
        .filter(|t| !t.intermediate_values.is_empty())
        .map(|t| Curve {
            number: t.number,
            state: t.state,
            points: t.intermediate_values.iter().filter(|(_, v)| v.is_finite()).map(|(s, v)| (*s, *v)).collect(),
        })
        .filter(|c| !c.points.is_empty())
        .collect();
    if curves.is_empty() {
        return Section::Missing("No trial has reported an intermediate value (a per-epoch metric) yet.".into());
    }
    Section::Ready(CurvesData { metric: metric.into(), curves, best })
}

fn build_parallel(complete: &[&FrozenTrial], axes: &[ParamAxis], metric: &str, direction: Direction) -> Section<ParallelData> {
    let axes: Vec<ParamAxis> = axes.iter().filter(|a| complete.iter().any(|t| t.params.contains_key(&a.name))).cloned().collect();
    if complete.is_empty() {
        return Section::Missing("No completed trials yet.".into());
    }
    if axes.is_empty() {
        return Section::Missing("The completed trials have no parameters.".into());
    }
    let lines = complete
        .iter()
        .map(|t| (axes.iter().map(|a| t.params.get(&a.name).and_then(|v| a.to_plot(v))).collect(), t.value.unwrap()))
        .collect();
    Section::Ready(ParallelData { metric: metric.into(), direction, axes, lines })
}

fn build_slices(complete: &[&FrozenTrial], axes: &[ParamAxis], metric: &str) -> Section<Vec<SliceData>> {
    if complete.is_empty() {
        return Section::Missing("No completed trials yet.".into());
    }
    let max_number = complete.iter().map(|t| t.number).max().unwrap_or(0);
    let slices: Vec<SliceData> = axes
        .iter()
        .filter_map(|axis| {
            let points: Vec<(f64, f64, u64)> = complete
                .iter()
                .filter_map(|t| Some((axis.to_plot(t.params.get(&axis.name)?)?, t.value.unwrap(), t.number)))
                .collect();
            (!points.is_empty()).then(|| SliceData { axis: axis.clone(), metric: metric.into(), points, max_number })
        })
        .collect();
    if slices.is_empty() {
        return Section::Missing("The completed trials have no parameters.".into());
    }
    Section::Ready(slices)
}

/// Minimum completed trials for importance: fewer cannot separate parameters from noise at all.
pub const MIN_TRIALS_FOR_IMPORTANCE: usize = 3;

fn build_importance(
    complete: &[&FrozenTrial],
    axes: &[ParamAxis],
    seed: u64,
) -> (Section<ImportanceData>, Option<(Forest, Vec<usize>)>) {
    if complete.len() < MIN_TRIALS_FOR_IMPORTANCE {
        let msg =
            format!("Importance needs at least {MIN_TRIALS_FOR_IMPORTANCE} completed trials; this study has {}.", complete.len());
        return (Section::Missing(msg), None);
    }
    // Only parameters every completed trial has and that took more than one value.
    let mut used = Vec::new();
    let mut skipped = Vec::new();
    for (i, axis) in axes.iter().enumerate() {
        let xs: Vec<Option<f64>> = complete.iter().map(|t| axis.to_plot(t.params.get(&axis.name)?)).collect();
        let varies = xs.iter().flatten().any(|x| Some(*x) != xs[0]);
        if xs.iter().all(Option::is_some) && varies {
            used.push(i);
        } else {
            skipped.push(axis.name.clone());
        }
    }
    if used.is_empty() {
        return (Section::Missing("No parameter varied across the completed trials.".into()), None);
    }
    let x: Vec<Vec<f64>> =
        complete.iter().map(|t| used.iter().map(|&i| axes[i].to_plot(&t.params[&axes[i].name]).unwrap()).collect()).collect();
    let y: Vec<f64> = complete.iter().map(|t| t.value.unwrap()).collect();
    if y.iter().all(|v| *v == y[0]) {
        return (
            Section::Missing("Every completed trial has the same objective value, so no parameter explains anything.".into()),
            None,
        );
    }
    let bounds: Vec<(f64, f64)> = used
        .iter()
        .enumerate()
        .map(|(j, &i)| {
            let (lo, hi) = axes[i].plot_range();
            x.iter().fold((lo, hi), |(l, h), row| (l.min(row[j]), h.max(row[j])))
        })
        .collect();
    let forest = Forest::fit(&x, &y, bounds, seed);
    let fractions = forest.variance_fractions();
    let sum: f64 = fractions.iter().sum();
    let mut entries: Vec<(String, f64)> =
        used.iter().zip(&fractions).map(|(&i, f)| (axes[i].name.clone(), if sum > 0.0 { f / sum } else { 0.0 })).collect();
    entries.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    (Section::Ready(ImportanceData { entries, n_trials: complete.len(), skipped }), Some((forest, used)))
}

/// Grid cells per continuous contour axis.
const CONTOUR_CELLS: usize = 40;

fn build_contour(
    complete: &[&FrozenTrial],
    axes: &[ParamAxis],
    importance: &Section<ImportanceData>,
    forest: Option<&(Forest, Vec<usize>)>,
    metric: &str,
    direction: Direction,
) -> Section<ContourData> {
    let (Some(imp), Some((forest, used))) = (importance.ready(), forest) else {
        return Section::Missing("The contour plot needs the importance ranking, which is not available yet.".into());
    };
    if imp.entries.len() < 2 {
        return Section::Missing("The contour plot needs two parameters that varied.".into());
    }
    let feature = |name: &str| used.iter().position(|&i| axes[i].name == name).unwrap();
    let (fa, fb) = (feature(&imp.entries[0].0), feature(&imp.entries[1].0));
    let (xa, ya) = (axes[used[fa]].clone(), axes[used[fb]].clone());
    let centres = |axis: &ParamAxis| -> Vec<f64> {
        let (lo, hi) = axis.plot_range();
        let n = if axis.is_categorical() { (hi - lo).round() as usize } else { CONTOUR_CELLS };
        (0..n).map(|k| lo + (k as f64 + 0.5) * (hi - lo) / n as f64).collect()
    };
    let (xs, ys) = (centres(&xa), centres(&ya));
    let z = forest.pairwise_marginal(fa, fb, &xs, &ys);
    let points = complete
        .iter()
        .filter_map(|t| Some((xa.to_plot(t.params.get(&xa.name)?)?, ya.to_plot(t.params.get(&ya.name)?)?, t.value.unwrap())))
        .collect();
    Section::Ready(ContourData { x: xa, y: ya, metric: metric.into(), direction, xs, ys, z, points })
}

fn build_timeline(trials: &[FrozenTrial], options: &ReportOptions) -> Section<TimelineData> {
    let started: Vec<&FrozenTrial> = trials.iter().filter(|t| t.started_at.is_some_and(f64::is_finite)).collect();
    let Some(origin) = started.iter().filter_map(|t| t.started_at).min_by(f64::total_cmp) else {
        return Section::Missing("No trial has started yet.".into());
    };
    let end_of = |t: &FrozenTrial| -> f64 {
        let start = t.started_at.unwrap();
        let end = t.finished_at.or(if t.state == TrialState::Running { options.now.or(t.heartbeat_at) } else { t.heartbeat_at });
        end.unwrap_or(start).max(start)
    };
    let inferred = !started.iter().any(|t| t.system_attrs.contains_key(DEVICE_ATTR) || t.system_attrs.contains_key(SLOT_ATTR));
    // Group by (device, slot); split a group into lanes where its trials overlap in time.
    let mut groups: BTreeMap<(Option<String>, Option<String>), Vec<&FrozenTrial>> = BTreeMap::new();
    for t in &started {
        groups.entry((attr_string(t, DEVICE_ATTR), attr_string(t, SLOT_ATTR))).or_default().push(t);
    }
    let mut rows = Vec::new();
    for ((device, slot), mut members) in groups {
        members.sort_by(|a, b| a.started_at.unwrap().total_cmp(&b.started_at.unwrap()).then(a.number.cmp(&b.number)));
        let mut lanes: Vec<(f64, Vec<TimelineBar>)> = Vec::new();
        for t in members {
            let (start, end) = (t.started_at.unwrap() - origin, end_of(t) - origin);
            let bar = TimelineBar {
                number: t.number,
                state: t.state,
                start_s: start,
                end_s: end,
                pruned_at: (t.state == TrialState::Pruned).then(|| t.last_step().map(|(s, _)| s)).flatten(),
            };
            // 1 ms of slack: a slot's next trial may start in the same instant the last one ended.
            match lanes.iter_mut().find(|(free_at, _)| *free_at <= start + 1e-3) {
                Some(lane) => {
                    lane.0 = end;
                    lane.1.push(bar);
                }
                None => lanes.push((end, vec![bar])),
            }
        }
        let base = match (&device, &slot) {
            (Some(d), Some(s)) => format!("{d} · slot {s}"),
            (Some(d), None) => d.clone(),
            (None, Some(s)) => format!("slot {s}"),
            (None, None) => {
                if inferred {
                    "lane".to_string()
                } else {
                    "unknown device".to_string()
                }
            }
        };
        let many = lanes.len() > 1;
        for (k, (_, bars)) in lanes.into_iter().enumerate() {
            let label = if inferred {
                format!("lane {}", k + 1)
            } else if many {
                format!("{base} ({})", k + 1)
            } else {
                base.clone()
            };
            rows.push(TimelineRow { label, bars });
        }
    }
    let span_s = rows.iter().flat_map(|r| &r.bars).map(|b| b.end_s).fold(0.0, f64::max);
    Section::Ready(TimelineData { rows, span_s, inferred })
}

fn compare_param(axes: &[ParamAxis], options: &ReportOptions) -> Result<ParamAxis, String> {
    if let Some(name) = &options.compare {
        return axes
            .iter()
            .find(|a| &a.name == name)
            .cloned()
            .ok_or_else(|| format!("The study has no parameter named '{name}' to compare."));
    }
    axes.iter()
        .find(|a| a.name == DEFAULT_COMPARE)
        .or_else(|| axes.iter().find(|a| a.name.to_ascii_lowercase().contains("freeze")))
        .cloned()
        .ok_or_else(|| "The study has no freeze parameter (freeze_depth), so there is no freeze-strategy comparison; pass a parameter name to compare another.".into())
}

fn build_comparison(
    trials: &[FrozenTrial],
    axes: &[ParamAxis],
    options: &ReportOptions,
    metric: &str,
    direction: Direction,
) -> Section<ComparisonData> {
    let axis = match compare_param(axes, options) {
        Ok(a) => a,
        Err(msg) => return Section::Missing(msg),
    };
    // One group per value that occurred, in axis order.
    let mut values: Vec<(f64, ParamValue)> =
        trials.iter().filter_map(|t| t.params.get(&axis.name)).filter_map(|v| Some((axis.to_plot(v)?, v.clone()))).collect();
    values.sort_by(|a, b| a.0.total_cmp(&b.0));
    values.dedup_by(|a, b| a.0 == b.0);
    if values.is_empty() {
        return Section::Missing(format!("No trial has set '{}' yet.", axis.name));
    }
    let groups: Vec<GroupStats> = values
        .into_iter()
        .map(|(pos, value)| {
            let members: Vec<&FrozenTrial> =
                trials.iter().filter(|t| t.params.get(&axis.name).and_then(|v| axis.to_plot(v)) == Some(pos)).collect();
            let owned: Vec<FrozenTrial> = members.iter().map(|t| (*t).clone()).collect();
            let ranked = rank_complete(&owned, direction);
            let vals: Vec<f64> = ranked.iter().map(|t| t.value.unwrap()).collect();
            let mut sorted = vals.clone();
            sorted.sort_by(f64::total_cmp);
            GroupStats {
                label: format!("{} = {}", axis.name, value),
                value,
                n_pruned: members.iter().filter(|t| t.state == TrialState::Pruned).count(),
                n_failed: members.iter().filter(|t| t.state == TrialState::Fail).count(),
                mean: stats::mean(&vals),
                sd: stats::variance(&vals).sqrt(),
                ci95: stats::mean_ci95(&vals),
                median: stats::quantile(&sorted, 0.5),
                q1: stats::quantile(&sorted, 0.25),
                q3: stats::quantile(&sorted, 0.75),
                best_trial: ranked.first().map(|t| (t.number, t.intermediate_values.iter().map(|(s, v)| (*s, *v)).collect())),
                values: vals,
            }
        })
        .collect();
    let mut by_mean: Vec<usize> = (0..groups.len()).filter(|&i| groups[i].n() > 0).collect();
    by_mean.sort_by(|&a, &b| direction.to_loss(groups[a].mean).total_cmp(&direction.to_loss(groups[b].mean)).then(a.cmp(&b)));
    let (best, runner_up) = (by_mean.first().copied(), by_mean.get(1).copied());
    let (mut p_value, mut within_noise) = (None, None);
    let verdict = match (best, runner_up) {
        (None, _) => format!("No completed trials yet for any value of {}: nothing to compare.", axis.name),
        (Some(b), None) => format!("Only {} has completed trials so far: nothing to compare it with yet.", groups[b].label),
        (Some(b), Some(r)) => {
            let (g, h) = (&groups[b], &groups[r]);
            let diff = (g.mean - h.mean).abs();
            let head = format!(
                "{} has the best mean {metric} ({} vs {} for {}, {} by {})",
                g.label,
                fmt_num(g.mean),
                fmt_num(h.mean),
                h.label,
                if direction == Direction::Maximize { "higher" } else { "lower" },
                fmt_num(diff)
            );
            match stats::welch_t_test(&g.values, &h.values) {
                None => format!(
                    "{head}, but with fewer than 2 completed trials per value ({} and {}) the noise cannot be judged yet.",
                    g.n(),
                    h.n()
                ),
                Some((_, _, p)) => {
                    p_value = Some(p);
                    let overlap = match (g.ci95, h.ci95) {
                        (Some(a), Some(b)) => a.0 <= b.1 && b.0 <= a.1,
                        _ => true,
                    };
                    let ci_text = if overlap {
                        "the 95% confidence intervals overlap"
                    } else {
                        "the 95% confidence intervals do not overlap"
                    };
                    if p >= 0.05 {
                        within_noise = Some(true);
                        format!("{head}, but the difference is within noise (Welch t-test p = {}; {ci_text}).", fmt_p(p))
                    } else {
                        within_noise = Some(false);
                        format!("{head}: a real difference (Welch t-test p = {}; {ci_text}).", fmt_p(p))
                    }
                }
            }
        }
    };
    Section::Ready(ComparisonData {
        param: axis.name.clone(),
        metric: metric.into(),
        direction,
        groups,
        best,
        runner_up,
        p_value,
        within_noise,
        verdict,
    })
}

fn fmt_p(p: f64) -> String {
    if p < 0.001 { "< 0.001".into() } else { format!("{p:.3}") }
}

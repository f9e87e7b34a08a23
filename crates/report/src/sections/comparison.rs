//! The "which won" section: the compared parameter's values side by side, with Welch's t-test; for a
//! tournament, each arm's best-so-far curves, its replicates and the verdict drawn from them (`verdict.rs`).

use std::fmt::Write;

use nightshift_search::{Direction, FrozenTrial, ParamValue, Params, Role, Step, Tournament, TrialState, attrs};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::axis::{ParamAxis, fmt_num};
use crate::charts::style::{
    Ctx, DrawResult, FONT, LABEL, TITLE, axes_builder, draw_whole_x_axes, emptiest_corner, jitter, legend, legend_line, mesh,
    min_max, padded, truncate,
};
use crate::charts::{ChartSpec, palette};
use crate::data::{ReportOptions, Section, epochs_reached, rank_complete};
use crate::html::{escape, figure, missing};
use crate::stats;
use crate::verdict::{ArmOutcome, Verdict, verdict, verdict_text};

/// The parameter compared by default in the freeze-strategy section.
pub const DEFAULT_COMPARE: &str = "freeze_depth";

/// The compared parameter's values side by side, and the verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct ComparisonData {
    /// The compared parameter.
    pub param: String,
    /// The objective's name.
    pub metric: String,
    /// Whether the objective is minimised or maximised.
    pub direction: Direction,
    /// One group per value that occurred, in axis order.
    pub groups: Vec<GroupStats>,
    /// Index into `groups` of the best mean, when any group has a completed trial.
    pub best: Option<usize>,
    /// Index of the runner-up the verdict compares against.
    pub runner_up: Option<usize>,
    /// Welch t-test p-value of best vs runner-up.
    pub p_value: Option<f64>,
    /// `Some(true)` when the difference is within noise (p ≥ 0.05), `None` when it cannot be judged.
    pub within_noise: Option<bool>,
    /// The answer in one sentence, for the page.
    pub verdict: String,
    /// The tournament, when the study ran one (then `verdict` is its verdict).
    pub tournament: Option<TournamentData>,
}

/// A tournament's arms, replicates and verdict.
#[derive(Clone, Debug, PartialEq)]
pub struct TournamentData {
    /// As configured.
    pub config: Tournament,
    /// One per arm, in the configured order.
    pub arms: Vec<ArmData>,
    /// What the replicates say.
    pub verdict: Verdict,
    /// Whether the tournament has run all it will run (else the verdict is provisional: a run stopped
    /// by Ctrl-C, a timeout or `stop_at`, or still going).
    pub finished: bool,
}

/// One arm of a tournament.
#[derive(Clone, Debug, PartialEq)]
pub struct ArmData {
    /// The compared parameter's value.
    pub value: ParamValue,
    /// Search trials launched in the arm (re-runs replace the trial they retry).
    pub trials: usize,
    /// The arm's best COMPLETE search trial and its parameters.
    pub best: Option<(u64, Params)>,
    /// Values of the COMPLETE replicates, by trial number.
    pub replicates: Vec<(u64, f64)>,
    /// Replicates that did not complete.
    pub replicates_failed: usize,
    /// Mean of the replicates.
    pub mean: Option<f64>,
    /// Its 95% confidence interval (Student t), with two replicates or more.
    pub ci95: Option<(f64, f64)>,
    /// Epochs (reported steps) the arm's search trials and replicates trained: its compute.
    pub epochs_spent: u64,
    /// Best search value so far against the arm's k-th search trial.
    pub by_trials: Vec<(f64, f64)>,
    /// Best search value so far against the epochs the arm has spent.
    pub by_epochs: Vec<(f64, f64)>,
}

impl ArmData {
    /// The replicate values alone.
    pub fn values(&self) -> Vec<f64> {
        self.replicates.iter().map(|r| r.1).collect()
    }
}

/// The tournament stored with the study ([`attrs::STUDY_TOURNAMENT`]), if it ran one.
pub fn stored_tournament(study: &nightshift_search::StudyRecord) -> Option<Tournament> {
    serde_json::from_value(study.user_attrs.get(attrs::STUDY_TOURNAMENT)?.clone()).ok()
}

/// Each arm's search history, replicates and compute, and the verdict.
pub fn tournament_data(config: &Tournament, trials: &[FrozenTrial], direction: Direction) -> TournamentData {
    let replaced: std::collections::HashSet<u64> =
        trials.iter().filter_map(|t| t.system_attrs.get(attrs::RETRY_OF)?.as_u64()).collect();
    let arms: Vec<ArmData> = config
        .arms
        .iter()
        .enumerate()
        .map(|(arm, value)| {
            let search: Vec<&FrozenTrial> = trials.iter().filter(|t| config.in_arm(t, arm)).collect();
            let replicates: Vec<&FrozenTrial> =
                trials.iter().filter(|t| Role::of(t) == Some(Role::Replicate) && config.arm_of(t) == Some(arm)).collect();
            let (mut by_trials, mut by_epochs, mut best, mut epochs) = (Vec::new(), Vec::new(), None::<&FrozenTrial>, 0u64);
            for (k, t) in search.iter().enumerate() {
                epochs += epochs_reached(t);
                if t.state == TrialState::Complete
                    && t.value.is_some_and(f64::is_finite)
                    && best.is_none_or(|b| direction.to_loss(t.value.unwrap()) < direction.to_loss(b.value.unwrap()))
                {
                    best = Some(t);
                }
                if let Some(b) = best {
                    by_trials.push(((k + 1) as f64, b.value.unwrap()));
                    by_epochs.push((epochs as f64, b.value.unwrap()));
                }
            }
            let done: Vec<(u64, f64)> = replicates
                .iter()
                .filter(|t| t.state == TrialState::Complete)
                .filter_map(|t| Some((t.number, t.value.filter(|v| v.is_finite())?)))
                .collect();
            let values: Vec<f64> = done.iter().map(|r| r.1).collect();
            ArmData {
                value: value.clone(),
                trials: search.iter().filter(|t| !replaced.contains(&t.number) && t.state != TrialState::Waiting).count(),
                best: best.map(|b| (b.number, b.params.clone())),
                replicates_failed: replicates.iter().filter(|t| t.state.is_finished() && t.state != TrialState::Complete).count(),
                mean: (!values.is_empty()).then(|| stats::mean(&values)),
                ci95: stats::mean_ci95(&values),
                epochs_spent: epochs + replicates.iter().map(|t| epochs_reached(t)).sum::<u64>(),
                replicates: done,
                by_trials,
                by_epochs,
            }
        })
        .collect();
    let outcomes: Vec<ArmOutcome> =
        arms.iter().map(|a| ArmOutcome { replicates: a.values(), ran: a.best.is_some() || !a.replicates.is_empty() }).collect();
    let verdict = verdict(&outcomes, direction);
    let finished = config.next(trials, direction) == Step::Done;
    TournamentData { config: config.clone(), arms, verdict, finished }
}

/// The trials with one value of the compared parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupStats {
    /// `param = value`, for people.
    pub label: String,
    /// Plot coordinate of the group on the parameter's axis.
    pub value: ParamValue,
    /// Final values of COMPLETE trials.
    pub values: Vec<f64>,
    /// Pruned trials.
    pub n_pruned: usize,
    /// Failed trials.
    pub n_failed: usize,
    /// Mean final value.
    pub mean: f64,
    /// Sample standard deviation of the final values.
    pub sd: f64,
    /// 95% confidence interval of the mean, with at least two values.
    pub ci95: Option<(f64, f64)>,
    /// Median final value.
    pub median: f64,
    /// First quartile.
    pub q1: f64,
    /// Third quartile.
    pub q3: f64,
    /// The group's best COMPLETE trial and its learning curve.
    pub best_trial: Option<(u64, Vec<(u64, f64)>)>,
}

impl GroupStats {
    /// Completed trials in the group.
    pub fn n(&self) -> usize {
        self.values.len()
    }
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
        .ok_or_else(|| "The study has no freeze parameter (a name containing \"freeze\"), so there is no freeze-strategy comparison; a spec's `compare: {param: NAME}` compares another.".into())
}

pub(crate) fn build(
    trials: &[FrozenTrial],
    axes: &[ParamAxis],
    options: &ReportOptions,
    metric: &str,
    direction: Direction,
    tournament: Option<&Tournament>,
) -> Section<ComparisonData> {
    // A tournament compares its own parameter, whatever the options say.
    let tournament_options;
    let options = match tournament {
        Some(t) => {
            tournament_options = ReportOptions { compare: Some(t.param.clone()), ..options.clone() };
            &tournament_options
        }
        None => options,
    };
    let axis = match compare_param(axes, options) {
        Ok(a) => a,
        Err(msg) => return Section::Missing(msg),
    };
    let trials_all = trials;
    // The strata are the search trials: replicates are the verdict's, shown apart.
    let search_only: Vec<FrozenTrial>;
    let trials = match tournament {
        Some(_) => {
            search_only = trials.iter().filter(|t| Role::of(t) != Some(Role::Replicate)).cloned().collect();
            &search_only[..]
        }
        None => trials,
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
    let tournament = tournament.map(|t| tournament_data(t, trials_all, direction));
    let verdict = match (best, runner_up) {
        _ if tournament.is_some() => {
            let t = tournament.as_ref().expect("a tournament");
            let labels: Vec<String> = t.arms.iter().map(|a| format!("{} = {}", axis.name, a.value)).collect();
            within_noise = Some(t.verdict.winner.is_none());
            let text = verdict_text(&t.verdict, &labels);
            if t.finished {
                text
            } else {
                let ran: usize = t.arms.iter().map(|a| a.replicates.len() + a.replicates_failed).sum();
                format!(
                    "provisional, the tournament has not finished ({ran} of up to {} replicates ran): {text}",
                    t.config.max_replicates()
                )
            }
        }
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
                        format!("{head}, but the difference is within noise (Welch t-test {}; {ci_text}).", fmt_p(p))
                    } else {
                        within_noise = Some(false);
                        format!("{head}: a real difference (Welch t-test {}; {ci_text}).", fmt_p(p))
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
        tournament,
    })
}

/// "p = 0.042" or "p < 0.001".
fn fmt_p(p: f64) -> String {
    if p < 0.001 { "p < 0.001".into() } else { format!("p = {p:.3}") }
}

/// (group index, trial number, learning curve) of a group's best trial.
type BestCurve<'a> = (usize, u64, &'a Vec<(u64, f64)>);

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &ComparisonData) -> DrawResult {
    if let Some(t) = &d.tournament {
        return draw_tournament(root, title, d, t);
    }
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let (w, _) = area.dim_in_pixel();
    let (left, right) = area.split_horizontally((w as f64 * 0.55) as i32);
    let k = d.groups.len();
    let colour = |i: usize| palette::SERIES[i % palette::SERIES.len()];
    let mut all: Vec<f64> = d.groups.iter().flat_map(|g| g.values.iter().copied()).collect();
    all.extend(d.groups.iter().filter_map(|g| g.ci95).flat_map(|(a, b)| [a, b]));
    let y = padded(min_max(all.into_iter()));
    let label_of = |x: f64| -> String {
        if (x - x.round()).abs() > 1e-6 || x.round() < 0.0 || x.round() as usize >= k {
            return String::new();
        }
        truncate(&d.groups[x.round() as usize].value.to_string(), 14)
    };
    let mut chart = axes_builder(&left)
        .caption("Final value per trial (box: quartiles, ◆: mean and 95% CI)", (FONT, LABEL - 1))
        .margin(16)
        .build_cartesian_2d(-0.5..k as f64 - 0.5, y)
        .ctx()?;
    mesh(&mut chart)
        .disable_x_mesh()
        .x_labels((k + 1).min(16))
        .x_label_formatter(&|x| label_of(*x))
        .y_label_formatter(&|v| fmt_num(*v))
        .x_desc(d.param.as_str())
        .y_desc(format!("final {}", d.metric))
        .draw()
        .ctx()?;
    for (i, g) in d.groups.iter().enumerate() {
        if g.values.is_empty() {
            continue;
        }
        let x = i as f64;
        let c = colour(i);
        chart.draw_series(std::iter::once(Rectangle::new([(x - 0.22, g.q1), (x + 0.22, g.q3)], c.mix(0.18).filled()))).ctx()?;
        chart.draw_series(std::iter::once(Rectangle::new([(x - 0.22, g.q1), (x + 0.22, g.q3)], c.stroke_width(1)))).ctx()?;
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(x - 0.22, g.median), (x + 0.22, g.median)], c.stroke_width(3))))
            .ctx()?;
        chart
            .draw_series(
                g.values
                    .iter()
                    .enumerate()
                    .map(|(j, v)| Circle::new((x - 0.05 + jitter(j as u64 + 1, 0.14), *v), 3, c.mix(0.75).filled())),
            )
            .ctx()?;
        let mx = x + 0.32;
        if let Some((lo, hi)) = g.ci95 {
            chart
                .draw_series([
                    PathElement::new(vec![(mx, lo), (mx, hi)], BLACK.stroke_width(2)),
                    PathElement::new(vec![(mx - 0.05, lo), (mx + 0.05, lo)], BLACK.stroke_width(2)),
                    PathElement::new(vec![(mx - 0.05, hi), (mx + 0.05, hi)], BLACK.stroke_width(2)),
                ])
                .ctx()?;
        }
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((mx, g.mean)) + Polygon::new(vec![(0, -7), (7, 0), (0, 7), (-7, 0)], BLACK.filled()),
            ))
            .ctx()?;
    }

    // Right: the best learning curve of each value.
    let curves: Vec<BestCurve<'_>> = d
        .groups
        .iter()
        .enumerate()
        .filter_map(|(i, g)| g.best_trial.as_ref().filter(|(_, c)| !c.is_empty()).map(|(n, c)| (i, *n, c)))
        .collect();
    let steps = min_max(curves.iter().flat_map(|c| c.2.iter().map(|p| p.0 as f64)));
    let x = if steps.0.is_finite() { steps.0 - 0.3..steps.1 + 0.3 } else { 0.0..1.0 };
    let yc = padded(min_max(curves.iter().flat_map(|c| c.2.iter().map(|p| p.1))));
    let mut chart = axes_builder(&right)
        .caption("Best learning curve per value", (FONT, LABEL))
        .margin(16)
        .build_cartesian_2d(x, yc)
        .ctx()?;
    draw_whole_x_axes(&mut chart, "Epoch (reported step)", &d.metric)?;
    for &(i, number, points) in &curves {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(points.iter().map(|&(s, v)| (s as f64, v)), c.stroke_width(3)))
            .ctx()?
            .label(format!("{} (trial #{number})", truncate(&d.groups[i].label, 30)))
            .legend(legend_line(c, 3));
    }
    if !curves.is_empty() {
        let points = curves.iter().flat_map(|c| c.2.iter().map(|&(s, v)| (s as f64, v)));
        let corner = emptiest_corner(d.direction, chart.x_range(), chart.y_range(), points);
        legend(&mut chart, corner)?;
    }
    Ok(())
}

/// Which of an arm's best-so-far series a panel draws.
type ArmSeries = fn(&ArmData) -> &Vec<(f64, f64)>;

/// A tournament's arms side by side: best value so far against the arm's trials (left) and against the
/// epochs it spent (right), so an arm that wins only by costing more shows it.
fn draw_tournament<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    d: &ComparisonData,
    t: &TournamentData,
) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let (w, _) = area.dim_in_pixel();
    let halves = area.split_horizontally((w / 2) as i32);
    let colour = |i: usize| palette::SERIES[i % palette::SERIES.len()];
    let panels: [(&DrawingArea<DB, Shift>, &str, &str, ArmSeries); 2] = [
        (&halves.0, "Best so far against the arm's search trials", "search trials of the arm", |a| &a.by_trials),
        (&halves.1, "Best so far against the arm's compute", "epochs trained by the arm", |a| &a.by_epochs),
    ];
    for (panel, caption, x_desc, series) in panels {
        let xs = min_max(t.arms.iter().flat_map(|a| series(a).iter().map(|p| p.0)));
        let x = if xs.0.is_finite() { 0.0..xs.1 * 1.05 + 0.5 } else { 0.0..1.0 };
        let y = padded(min_max(t.arms.iter().flat_map(|a| series(a).iter().map(|p| p.1))));
        let mut chart = axes_builder(panel).caption(caption, (FONT, LABEL)).margin(16).build_cartesian_2d(x, y).ctx()?;
        draw_whole_x_axes(&mut chart, x_desc, &format!("best {}", d.metric))?;
        for (i, arm) in t.arms.iter().enumerate() {
            let points = series(arm);
            if points.is_empty() {
                continue;
            }
            let c = colour(i);
            // A step line: the best value holds until a better trial.
            let mut steps = Vec::with_capacity(points.len() * 2);
            for (j, &(x, y)) in points.iter().enumerate() {
                if j > 0 {
                    steps.push((x, points[j - 1].1));
                }
                steps.push((x, y));
            }
            chart
                .draw_series(LineSeries::new(steps, c.stroke_width(3)))
                .ctx()?
                .label(truncate(&format!("{} = {}", d.param, arm.value), 30))
                .legend(legend_line(c, 3));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled()))).ctx()?;
        }
        if t.arms.iter().any(|a| !series(a).is_empty()) {
            let points: Vec<(f64, f64)> = t.arms.iter().flat_map(|a| series(a).to_vec()).collect();
            let corner = emptiest_corner(d.direction, chart.x_range(), chart.y_range(), points);
            legend(&mut chart, corner)?;
        }
    }
    Ok(())
}

/// The "which won" section of the page: the verdict, the statistics per value (or per tournament arm) and the chart.
pub(crate) fn html(o: &mut String, section: &Section<ComparisonData>, chart: Option<&ChartSpec<'_>>) {
    o.push_str("<section id=\"comparison\">");
    match section {
        Section::Ready(d) => match &d.tournament {
            Some(t) => tournament_html(o, d, t, chart),
            None => plain_html(o, d, chart),
        },
        Section::Missing(why) => {
            o.push_str("<h2>Freeze strategy: which won</h2>\n");
            missing(o, why);
        }
    }
    o.push_str("</section>\n");
}

fn plain_html(o: &mut String, d: &ComparisonData, chart: Option<&ChartSpec<'_>>) {
    let _ = writeln!(o, "<h2>Which won: {}</h2>", escape(&d.param));
    let class = if d.within_noise == Some(false) { "verdict" } else { "verdict noise" };
    let _ = writeln!(o, "<p class=\"{class}\">{}</p>", escape(&d.verdict));
    let metric = escape(&d.metric);
    let _ = writeln!(
        o,
        "<table class=\"stats\"><thead><tr><th>{}</th><th class=\"n\">completed</th><th class=\"n\">pruned</th><th class=\"n\">failed</th>\
         <th class=\"n\">mean {metric}</th><th class=\"n\">sd</th><th class=\"n\">95% CI of the mean</th><th class=\"n\">median</th><th>best trial</th></tr></thead><tbody>",
        escape(&d.param)
    );
    for (i, g) in d.groups.iter().enumerate() {
        let num = |x: f64| if x.is_finite() { fmt_num(x) } else { "—".into() };
        let ci = g.ci95.map(|(a, b)| format!("[{}, {}]", fmt_num(a), fmt_num(b))).unwrap_or_else(|| "—".into());
        let best = g.best_trial.as_ref().map(|(n, _)| format!("#{n}")).unwrap_or_else(|| "—".into());
        let cls = if d.best == Some(i) { " class=\"best\"" } else { "" };
        let _ = writeln!(
            o,
            "<tr{cls}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&g.value.to_string()),
            g.n(),
            g.n_pruned,
            g.n_failed,
            num(g.mean),
            num(g.sd),
            ci,
            num(g.median),
            best
        );
    }
    o.push_str("</tbody></table>\n<p class=\"muted\">Statistics use completed trials only (pruned trials stopped early and are not comparable). \
                The verdict compares the best value with the runner-up by Welch's t-test; a difference with p ≥ 0.05 is called within noise.</p>\n");
    if let Some(c) = chart {
        figure(
            o,
            c,
            "Left: final value of each completed trial, quartile box, median, mean ◆ with 95% CI. Right: each value's best learning curve.",
        );
    }
}

/// A tournament: the verdict, the replicate table (mean, 95% CI, compute per arm), the best arm against each
/// other, and the best-so-far curves.
fn tournament_html(o: &mut String, d: &ComparisonData, t: &TournamentData, chart: Option<&ChartSpec<'_>>) {
    let c = &t.config;
    let _ = writeln!(o, "<h2>Which won: {} (tournament)</h2>", escape(&d.param));
    let class = if t.verdict.winner.is_some() { "verdict" } else { "verdict noise" };
    let _ = writeln!(o, "<p class=\"{class}\">{}</p>", escape(&d.verdict));
    // Identical replicates mostly mean a program that ignores its seed: their zero spread makes any gap "certain".
    let identical: Vec<String> = t
        .arms
        .iter()
        .filter(|a| a.replicates.len() >= 2 && a.replicates.iter().all(|r| r.1 == a.replicates[0].1))
        .map(|a| escape(&format!("{} = {}", d.param, a.value)))
        .collect();
    if !identical.is_empty() {
        let _ = writeln!(
            o,
            "<p class=\"verdict noise\">The replicates of {} are identical: does the trial program use its seed (<code>{{seed}}</code>, \
             <code>NIGHTSHIFT_SEED</code>)? With no spread, the tests take any difference as certain.</p>",
            identical.join(", ")
        );
    }
    let counts: Vec<String> = t.arms.iter().map(|a| a.trials.to_string()).collect();
    let searched = if t.arms.iter().all(|a| a.trials as u64 == c.budget_per_arm) {
        format!("Each arm had {} search trials", c.budget_per_arm)
    } else {
        format!("The arms had {} of their {} search trials", counts.join(", "), c.budget_per_arm)
    };
    let pooled = if c.replicate_top > 1 {
        " An arm's mean pools its configurations' replicates: it asks which arm's best configurations do better on \
         average, and its spread includes their differences, not seed noise alone."
    } else {
        ""
    };
    let _ = writeln!(
        o,
        "<p class=\"muted\">{searched}; an arm is tuned from its own trials only. Then its {} best configuration(s) {} with {} fresh seeds each. \
         The verdict uses those replicates alone (on the test split where the trainer has one).{pooled}</p>",
        c.replicate_top,
        if t.finished { "ran again" } else { "run again" },
        c.seeds
    );
    let metric = escape(&d.metric);
    let num = |x: Option<f64>| x.filter(|v| v.is_finite()).map(fmt_num).unwrap_or_else(|| "—".into());
    let _ = writeln!(
        o,
        "<table class=\"stats\"><thead><tr><th>{}</th><th class=\"n\">search trials</th><th>best trial</th><th>replicates ({metric})</th>\
         <th class=\"n\">mean</th><th class=\"n\">95% CI</th><th class=\"n\">epochs spent</th></tr></thead><tbody>",
        escape(&d.param)
    );
    for (i, a) in t.arms.iter().enumerate() {
        let cls = if t.verdict.winner == Some(i) { " class=\"best\"" } else { "" };
        let best = a.best.as_ref().map(|(n, _)| format!("#{n}")).unwrap_or_else(|| "—".into());
        let mut reps: Vec<String> = a.replicates.iter().map(|(n, v)| format!("{} (#{n})", fmt_num(*v))).collect();
        if a.replicates_failed > 0 {
            reps.push(format!("{} failed", a.replicates_failed));
        }
        let ci = a.ci95.map(|(lo, hi)| format!("[{}, {}]", fmt_num(lo), fmt_num(hi))).unwrap_or_else(|| "—".into());
        let _ = writeln!(
            o,
            "<tr{cls}><td>{}</td><td class=\"n\">{}</td><td>{best}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{ci}</td><td class=\"n\">{}</td></tr>",
            escape(&a.value.to_string()),
            a.trials,
            escape(&if reps.is_empty() { "—".to_string() } else { reps.join(", ") }),
            num(a.mean),
            a.epochs_spent
        );
    }
    o.push_str("</tbody></table>\n");
    if let Some(b) = t.verdict.best
        && !t.verdict.pairwise.is_empty()
    {
        let _ = writeln!(
            o,
            "<table class=\"stats\"><thead><tr><th>{} against</th><th class=\"n\">difference of means</th><th class=\"n\">95% CI (unadjusted)</th>\
             <th class=\"n\">p (Welch)</th><th class=\"n\">p (Holm)</th><th>beaten</th></tr></thead><tbody>",
            escape(&t.arms[b].value.to_string())
        );
        for p in &t.verdict.pairwise {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">[{}, {}]</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(&t.arms[p.other].value.to_string()),
                fmt_num(p.diff),
                fmt_num(p.ci95.0),
                fmt_num(p.ci95.1),
                fmt_num(p.p),
                fmt_num(p.p_holm),
                if p.beaten { "yes" } else { "no" }
            );
        }
        o.push_str("</tbody></table>\n");
    }
    o.push_str("<p class=\"muted\">Also as data in <a href=\"summary.json\">summary.json</a>.</p>\n");
    if let Some(c) = chart {
        figure(o, c, "Each arm's best search value so far, against its trials (left) and against the epochs it trained (right).");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_search::{PrunerConfig, SamplerConfig, StudyRecord};

    fn trial(number: u64, role: Role, arm: &str, state: TrialState, steps: &[f64]) -> FrozenTrial {
        let mut t = FrozenTrial::new(number as i64, number, state);
        t.system_attrs.insert(attrs::TOURNAMENT_ROLE.into(), role.as_str().into());
        t.params.insert("k".into(), ParamValue::Str(arm.into()));
        t.intermediate_values = steps.iter().enumerate().map(|(i, v)| (i as u64 + 1, *v)).collect();
        t.value = steps.last().copied();
        t
    }

    #[test]
    fn tournament_arms_curves_compute_and_summary() {
        let config = Tournament {
            param: "k".into(),
            arms: vec![ParamValue::Str("a".into()), ParamValue::Str("b".into())],
            budget_per_arm: 2,
            replicate_top: 1,
            seeds: 2,
        };
        let (s, c, p, r) = (Role::Search, TrialState::Complete, TrialState::Pruned, Role::Replicate);
        let trials = vec![
            trial(0, s, "a", c, &[0.4, 0.5]),
            trial(1, s, "b", p, &[0.3]),
            trial(2, s, "a", c, &[0.6, 0.7]),
            trial(3, s, "b", c, &[0.3, 0.4]),
            trial(4, r, "a", c, &[0.6, 0.70]),
            trial(5, r, "b", c, &[0.3, 0.40]),
            trial(6, r, "a", c, &[0.6, 0.72]),
            trial(7, r, "b", c, &[0.3, 0.41]),
        ];
        let t = tournament_data(&config, &trials, Direction::Maximize);
        let (a, b) = (&t.arms[0], &t.arms[1]);
        assert_eq!((a.trials, a.best.as_ref().map(|x| x.0), a.values()), (2, Some(2), vec![0.70, 0.72]));
        assert_eq!(a.by_trials, [(1.0, 0.5), (2.0, 0.7)]);
        assert_eq!(a.by_epochs, [(2.0, 0.5), (4.0, 0.7)]);
        assert_eq!(b.by_trials, [(2.0, 0.4)], "no point before the arm's first completed trial");
        assert_eq!((a.epochs_spent, b.epochs_spent), (8, 7), "search epochs and replicate epochs");
        assert_eq!(t.verdict.winner, Some(0));

        let mut study = StudyRecord {
            id: 1,
            name: "t".into(),
            direction: Direction::Maximize,
            seed: 0,
            sampler: SamplerConfig::default(),
            pruner: PrunerConfig::default(),
            search_space: None,
            user_attrs: Default::default(),
            created_at: 0.0,
        };
        study.user_attrs.insert(attrs::STUDY_TOURNAMENT.into(), serde_json::to_value(&config).unwrap());
        let data = crate::build_report_data(&study, &trials, &ReportOptions::default());
        let summary: serde_json::Value = serde_json::from_str(&crate::summary_json(&data).unwrap()).unwrap();
        let comparison = &summary["comparison"];
        assert_eq!((comparison["param"].as_str(), comparison["winner"].as_str()), (Some("k"), Some("a")), "{summary}");
        assert_eq!(comparison["arms"][1]["replicates"], serde_json::json!([0.40, 0.41]));
        assert_eq!(comparison["arms"][0]["best_params"]["k"], "a");
        let ci = &comparison["arms"][0]["ci95"];
        assert!(ci[0].as_f64().unwrap() < 0.71 && 0.71 < ci[1].as_f64().unwrap(), "{ci}");
        assert_eq!(comparison["finished"], true);
        // Replicate 6 has the highest value, scored for the verdict: the study's best is a search trial,
        // as `best-trial` says (found by a user: the report named the replicate).
        assert_eq!(data.summary.best.as_ref().map(|b| b.number), Some(2));
        let rank = |n: u64| data.table.rows.iter().find(|r| r.number == n).and_then(|r| r.rank);
        assert_eq!((rank(2), rank(6)), (Some(1), None));
        // Stopped before its last replicates: the verdict says it is provisional.
        let unfinished = crate::build_report_data(&study, &trials[..6], &ReportOptions::default());
        let verdict = unfinished.comparison.ready().unwrap().verdict.clone();
        assert!(verdict.starts_with("provisional, the tournament has not finished (2 of up to 4 replicates ran): "), "{verdict}");
        study.user_attrs.clear();
        let plain = crate::summary_json(&crate::build_report_data(&study, &trials, &ReportOptions::default())).unwrap();
        assert_eq!(serde_json::from_str::<serde_json::Value>(&plain).unwrap(), serde_json::json!({"comparison": null}));
    }
}

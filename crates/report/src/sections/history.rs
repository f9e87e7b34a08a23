//! Optimization history: every trial's value by trial number, with the best so far.

use nightshift_search::{Direction, FrozenTrial, TrialState};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::charts::palette::{BLUE, ORANGE};
use crate::charts::style::{
    Ctx, DrawResult, FONT, TITLE, axes_builder, draw_whole_x_axes, emptiest_corner, legend, legend_line, min_max, padded,
};
use crate::data::Section;

/// Every trial's value by trial number.
#[derive(Clone, Debug, PartialEq)]
pub struct HistoryData {
    /// The objective's name.
    pub metric: String,
    /// Whether the objective is minimised or maximised.
    pub direction: Direction,
    /// (trial number, value, state) for COMPLETE and PRUNED trials with a finite value.
    pub points: Vec<(u64, f64, TrialState)>,
    /// Best COMPLETE value so far, after each COMPLETE trial.
    pub best_so_far: Vec<(u64, f64)>,
}

pub(crate) fn build(trials: &[FrozenTrial], direction: Direction, metric: &str) -> Section<HistoryData> {
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

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &HistoryData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let max_n = d.points.iter().map(|p| p.0).max().unwrap_or(0) as f64;
    let y = padded(min_max(d.points.iter().map(|p| p.1)));
    let mut chart = axes_builder(&area).build_cartesian_2d(-0.5..max_n + 0.5, y).ctx()?;
    draw_whole_x_axes(&mut chart, "Trial number", &d.metric)?;
    let complete = d.points.iter().filter(|p| p.2 == TrialState::Complete);
    chart
        .draw_series(complete.map(|&(n, v, _)| Circle::new((n as f64, v), 4, BLUE.mix(0.8).filled())))
        .ctx()?
        .label("completed trial")
        .legend(|(x, y)| Circle::new((x + 11, y), 4, BLUE.filled()));
    if d.points.iter().any(|p| p.2 == TrialState::Pruned) {
        let pruned = d.points.iter().filter(|p| p.2 == TrialState::Pruned);
        chart
            .draw_series(pruned.map(|&(n, v, _)| TriangleMarker::new((n as f64, v), 5, ORANGE.filled())))
            .ctx()?
            .label("pruned trial (last reported value)")
            .legend(|(x, y)| TriangleMarker::new((x + 11, y), 5, ORANGE.filled()));
    }
    if !d.best_so_far.is_empty() {
        let mut steps = Vec::with_capacity(d.best_so_far.len() * 2 + 1);
        for (i, &(n, v)) in d.best_so_far.iter().enumerate() {
            if i > 0 {
                steps.push((n as f64, d.best_so_far[i - 1].1));
            }
            steps.push((n as f64, v));
        }
        steps.push((max_n + 0.5, d.best_so_far.last().unwrap().1));
        chart
            .draw_series(LineSeries::new(steps, BLACK.stroke_width(2)))
            .ctx()?
            .label("best so far")
            .legend(legend_line(BLACK, 2));
    }
    let points = d.points.iter().map(|&(n, v, _)| (n as f64, v)).chain(d.best_so_far.iter().map(|&(n, v)| (n as f64, v)));
    let corner = emptiest_corner(d.direction, chart.x_range(), chart.y_range(), points);
    legend(&mut chart, corner)
}

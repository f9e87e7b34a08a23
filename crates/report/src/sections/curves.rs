//! Learning curves: every trial's intermediate values by epoch, pruned ones marked where they stopped.

use nightshift_search::{FrozenTrial, TrialState};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::charts::style::{
    Ctx, DrawResult, FONT, TITLE, axes_builder, draw_whole_x_axes, legend, legend_line, min_max, padded, state_colour, state_name,
};
use crate::data::Section;

/// Every trial's intermediate values.
#[derive(Clone, Debug, PartialEq)]
pub struct CurvesData {
    /// The objective's name.
    pub metric: String,
    /// One curve per trial that reported a finite value.
    pub curves: Vec<Curve>,
    /// The best trial's number, drawn on top.
    pub best: Option<u64>,
}

/// One trial's learning curve.
#[derive(Clone, Debug, PartialEq)]
pub struct Curve {
    /// Trial number.
    pub number: u64,
    /// Trial state.
    pub state: TrialState,
    /// (step, value) with finite values.
    pub points: Vec<(u64, f64)>,
}

pub(crate) fn build(trials: &[FrozenTrial], metric: &str, best: Option<u64>) -> Section<CurvesData> {
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

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &CurvesData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let steps = min_max(d.curves.iter().flat_map(|c| c.points.iter().map(|p| p.0 as f64)));
    let x = steps.0 - 0.3..steps.1 + 0.3;
    let y = padded(min_max(d.curves.iter().flat_map(|c| c.points.iter().map(|p| p.1))));
    let mut chart = axes_builder(&area).build_cartesian_2d(x, y).ctx()?;
    draw_whole_x_axes(&mut chart, "Epoch (reported step)", &d.metric)?;
    let pts = |c: &Curve| c.points.iter().map(|&(s, v)| (s as f64, v)).collect::<Vec<_>>();
    // Pruned and other curves first, completed on top, the best last of all.
    for state in [TrialState::Fail, TrialState::Running, TrialState::Pruned, TrialState::Complete] {
        let alpha = if state == TrialState::Complete { 0.45 } else { 0.6 };
        for c in d.curves.iter().filter(|c| c.state == state && Some(c.number) != d.best) {
            chart.draw_series(LineSeries::new(pts(c), state_colour(state).mix(alpha).stroke_width(1))).ctx()?;
        }
    }
    let cuts: Vec<(f64, f64)> = d
        .curves
        .iter()
        .filter(|c| c.state == TrialState::Pruned)
        .filter_map(|c| c.points.last().map(|&(s, v)| (s as f64, v)))
        .collect();
    for state in [TrialState::Complete, TrialState::Pruned, TrialState::Running, TrialState::Fail] {
        if d.curves.iter().any(|c| c.state == state) {
            let label = if state == TrialState::Pruned {
                "pruned (× = where it was stopped)".to_string()
            } else {
                state_name(state).to_string()
            };
            chart
                .draw_series(std::iter::empty::<PathElement<(f64, f64)>>())
                .ctx()?
                .label(label)
                .legend(legend_line(state_colour(state), 2));
        }
    }
    chart.draw_series(cuts.iter().map(|&p| Cross::new(p, 4, RGBColor(40, 40, 40).stroke_width(2)))).ctx()?;
    if let Some(best) = d.best.and_then(|b| d.curves.iter().find(|c| c.number == b)) {
        chart
            .draw_series(LineSeries::new(pts(best), BLACK.stroke_width(3)))
            .ctx()?
            .label(format!("best trial #{}", best.number))
            .legend(legend_line(BLACK, 3));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

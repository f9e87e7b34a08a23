//! Parallel coordinates: each completed trial as a line through its parameter values to its value.

use nightshift_search::{Direction, FrozenTrial};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::axis::{AxisScale, ParamAxis, fmt_num};
use crate::charts::style::{
    Ctx, DrawResult, FONT, TICK, TITLE, fit, goodness, min_max, nice_ticks, note, padded, text_style, text_width, truncate,
    value_colour,
};
use crate::data::Section;

/// Completed trials as lines through their parameter values.
#[derive(Clone, Debug, PartialEq)]
pub struct ParallelData {
    /// The objective's name.
    pub metric: String,
    /// Whether the objective is minimised or maximised.
    pub direction: Direction,
    /// The parameters some completed trial has, in axis order.
    pub axes: Vec<ParamAxis>,
    /// Plot coordinates per axis and the objective value, one per COMPLETE trial.
    pub lines: Vec<(Vec<Option<f64>>, f64)>,
}

pub(crate) fn build(complete: &[&FrozenTrial], axes: &[ParamAxis], metric: &str, direction: Direction) -> Section<ParallelData> {
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

/// Tick positions and labels for one parameter axis, in plot coordinates.
fn axis_ticks(axis: &ParamAxis) -> Vec<(f64, String)> {
    let (lo, hi) = axis.plot_range();
    match &axis.scale {
        AxisScale::Categorical { choices } => {
            let every = choices.len().div_ceil(12).max(1);
            choices.iter().enumerate().step_by(every).map(|(i, c)| (i as f64, truncate(&c.to_string(), 14))).collect()
        }
        AxisScale::Linear { low, high, integer: true } => {
            let (low, high) = (*low as i64, *high as i64);
            let step = ((high - low) / 6).max(1);
            (low..=high).step_by(step as usize).map(|v| (v as f64, v.to_string())).collect()
        }
        AxisScale::Log { .. } if hi.floor() - lo.ceil() >= 1.0 => {
            (lo.ceil() as i64..=hi.floor() as i64).map(|e| (e as f64, fmt_num(10f64.powi(e as i32)))).collect()
        }
        AxisScale::Linear { integer: false, .. } => nice_ticks(lo, hi, 5).into_iter().map(|v| (v, fmt_num(v))).collect(),
        _ => (0..5).map(|k| lo + (hi - lo) * k as f64 / 4.0).map(|v| (v, axis.tick_label(v))).collect(),
    }
}

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &ParallelData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let n = d.axes.len() + 1;
    let vrange = min_max(d.lines.iter().map(|l| l.1));
    let vpad = padded(vrange);
    let mut chart = ChartBuilder::on(&area)
        .margin_left(90)
        .margin_right(60)
        .margin_top(34)
        .margin_bottom(64)
        .build_cartesian_2d(-0.12..(n - 1) as f64 + 0.12, -0.02..1.02)
        .ctx()?;
    let ranges: Vec<(f64, f64)> = d.axes.iter().map(ParamAxis::plot_range).chain([(vpad.start, vpad.end)]).collect();
    let norm = |k: usize, v: f64| (v - ranges[k].0) / (ranges[k].1 - ranges[k].0);
    let mut order: Vec<usize> = (0..d.lines.len()).collect();
    // Worst first so the best lines end up on top.
    order.sort_by(|&a, &b| goodness(d.lines[a].1, vrange, d.direction).total_cmp(&goodness(d.lines[b].1, vrange, d.direction)));
    let alpha = if d.lines.len() > 200 { 0.35 } else { 0.7 };
    for i in order {
        let (pos, value) = &d.lines[i];
        let colour = value_colour(*value, vrange, d.direction);
        let points: Vec<Option<(f64, f64)>> = pos
            .iter()
            .enumerate()
            .map(|(k, p)| p.map(|p| (k as f64, norm(k, p))))
            .chain([Some(((n - 1) as f64, norm(n - 1, *value)))])
            .collect();
        // A parameter the trial lacks breaks its line.
        for run in points.split(Option::is_none).filter(|r| r.len() > 1) {
            let path: Vec<(f64, f64)> = run.iter().flatten().copied().collect();
            chart.draw_series(std::iter::once(PathElement::new(path, colour.mix(alpha).stroke_width(2)))).ctx()?;
        }
    }
    let tick = text_style(TICK, HPos::Right, VPos::Center);
    let name = text_style(TICK + 1, HPos::Center, VPos::Top);
    for k in 0..n {
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(k as f64, 0.0), (k as f64, 1.0)], BLACK.stroke_width(1))))
            .ctx()?;
        let ticks: Vec<(f64, String)> = if k + 1 < n {
            axis_ticks(&d.axes[k])
        } else {
            nice_ticks(vpad.start, vpad.end, 5).into_iter().map(|v| (v, fmt_num(v))).collect()
        };
        for (p, label) in ticks {
            let (px, py) = chart.backend_coord(&(k as f64, norm(k, p).clamp(0.0, 1.0)));
            // A white card behind the label keeps it legible over the lines.
            let width = text_width(root, &label, &tick) + 4;
            root.draw(&Rectangle::new([(px - 7 - width, py - 9), (px - 3, py + 9)], WHITE.mix(0.85).filled())).ctx()?;
            root.draw(&PathElement::new(vec![(px - 4, py), (px, py)], BLACK.stroke_width(1))).ctx()?;
            root.draw(&Text::new(label, (px - 6, py), tick.clone())).ctx()?;
        }
        let (px, py) = chart.backend_coord(&(k as f64, 0.0));
        let label = match d.axes.get(k) {
            Some(a) if a.is_log() => format!("{} (log)", a.name),
            Some(a) => a.name.clone(),
            None => d.metric.clone(),
        };
        let room = (root.dim_in_pixel().0 as i32 - 150) / n as i32 - 8;
        root.draw(&Text::new(fit(root, &label, &name, room), (px, py + 12), name.clone())).ctx()?;
    }
    let (w, _) = root.dim_in_pixel();
    note(root, &format!("Line colour: darker = better {}", d.metric), (w as i32 - 16, 36), HPos::Right)
}

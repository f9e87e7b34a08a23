//! Slices: the value against one parameter at a time.

use nightshift_search::FrozenTrial;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::HPos;

use crate::axis::{AxisScale, ParamAxis, fmt_num};
use crate::charts::style::{
    Ctx, DrawResult, FONT, TITLE, axes_builder, axis_label_count, jitter, mesh, min_max, note, padded, truncate,
};
use crate::charts::viridis;
use crate::data::Section;

/// The objective against one parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceData {
    /// The parameter.
    pub axis: ParamAxis,
    /// The objective's name.
    pub metric: String,
    /// (plot coordinate, value, trial number) of COMPLETE trials.
    pub points: Vec<(f64, f64, u64)>,
    /// The highest trial number, for the colour scale.
    pub max_number: u64,
}

pub(crate) fn build(complete: &[&FrozenTrial], axes: &[ParamAxis], metric: &str) -> Section<Vec<SliceData>> {
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

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &SliceData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let (lo, hi) = d.axis.plot_range();
    let y = padded(min_max(d.points.iter().map(|p| p.1)));
    let mut chart = axes_builder(&area).build_cartesian_2d(lo..hi, y).ctx()?;
    let axis = &d.axis;
    mesh(&mut chart)
        .x_labels(axis_label_count(axis))
        .x_label_formatter(&|x| truncate(&axis.tick_label(*x), 14))
        .y_label_formatter(&|v| fmt_num(*v))
        .x_desc(axis.label())
        .y_desc(d.metric.as_str())
        .draw()
        .ctx()?;
    let discrete = matches!(axis.scale, AxisScale::Categorical { .. } | AxisScale::Linear { integer: true, .. });
    let max = d.max_number.max(1) as f64;
    chart
        .draw_series(d.points.iter().map(|&(x, v, number)| {
            let x = if discrete { x + jitter(number, 0.18) } else { x };
            Circle::new((x, v), 4, viridis(0.88 * (1.0 - number as f64 / max)).filled())
        }))
        .ctx()?;
    let (w, _) = root.dim_in_pixel();
    note(root, "Colour: trial number (darker = later)", (w as i32 - 16, 40), HPos::Right)
}

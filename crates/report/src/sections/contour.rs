//! Contour: the forest's predicted value over the two most important parameters.

use nightshift_search::{Direction, FrozenTrial};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::importance::ImportanceData;
use crate::axis::{ParamAxis, fmt_num, plottable};
use crate::charts::style::{
    Ctx, DrawResult, FONT, TICK, TITLE, axes_builder, axis_label_count, mesh, min_max, nice_ticks, text_style, truncate,
    value_colour, wrap,
};
use crate::data::Section;
use crate::importance::Forest;

/// The predicted objective over the two most important parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct ContourData {
    /// The most important parameter.
    pub x: ParamAxis,
    /// The second most important.
    pub y: ParamAxis,
    /// The objective's name.
    pub metric: String,
    /// Whether the objective is minimised or maximised.
    pub direction: Direction,
    /// Cell centres along x, in plot coordinates.
    pub xs: Vec<f64>,
    /// Cell centres along y, in plot coordinates.
    pub ys: Vec<f64>,
    /// Forest-predicted objective, `z[iy][ix]`, averaged over the other parameters.
    pub z: Vec<Vec<f64>>,
    /// Observed trials (plot coordinates, value).
    pub points: Vec<(f64, f64, f64)>,
}

/// Grid cells per continuous contour axis.
const CONTOUR_CELLS: usize = 40;

pub(crate) fn build(
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

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &ContourData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let (w, _) = area.dim_in_pixel();
    let (main, bar) = area.split_horizontally(w as i32 - 130);
    let (x0, x1) = d.x.plot_range();
    let (y0, y1) = d.y.plot_range();
    let mut chart = axes_builder(&main).y_label_area_size(96).build_cartesian_2d(x0..x1, y0..y1).ctx()?;
    let (xa, ya) = (&d.x, &d.y);
    mesh(&mut chart)
        .disable_mesh()
        .x_labels(axis_label_count(xa))
        .y_labels(axis_label_count(ya))
        .x_label_formatter(&|x| truncate(&xa.tick_label(*x), 14))
        .y_label_formatter(&|y| truncate(&ya.tick_label(*y), 14))
        .x_desc(xa.label())
        .y_desc(ya.label())
        .draw()
        .ctx()?;
    let zrange = min_max(d.z.iter().flatten().copied());
    let (dx, dy) = ((x1 - x0) / d.xs.len().max(1) as f64, (y1 - y0) / d.ys.len().max(1) as f64);
    chart
        .draw_series(d.ys.iter().enumerate().flat_map(|(iy, &y)| {
            d.xs.iter().enumerate().map(move |(ix, &x)| {
                let c = value_colour(d.z[iy][ix], zrange, d.direction);
                Rectangle::new([(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)], c.filled())
            })
        }))
        .ctx()?;
    chart.draw_series(d.points.iter().map(|&(x, y, _)| Circle::new((x, y), 4, WHITE.filled()))).ctx()?;
    chart.draw_series(d.points.iter().map(|&(x, y, _)| Circle::new((x, y), 4, BLACK.stroke_width(1)))).ctx()?;

    // Colour bar: predicted values, better at the top for both directions.
    let (zlo, zhi) = plottable(if zrange.1 > zrange.0 { zrange } else { (zrange.0 - 0.5, zrange.0 + 0.5) });
    let mut cb = ChartBuilder::on(&bar)
        .margin_top(18)
        .margin_bottom(88)
        .margin_right(56)
        .y_label_area_size(0)
        .build_cartesian_2d(0.0..1.0, zlo..zhi)
        .ctx()?;
    let steps = 64;
    cb.draw_series((0..steps).map(|k| {
        let a = zlo + (zhi - zlo) * k as f64 / steps as f64;
        let b = zlo + (zhi - zlo) * (k + 1) as f64 / steps as f64;
        Rectangle::new([(0.0, a), (1.0, b)], value_colour(0.5 * (a + b), (zlo, zhi), d.direction).filled())
    }))
    .ctx()?;
    let tick = text_style(TICK, HPos::Left, VPos::Center);
    for v in nice_ticks(zlo, zhi, 5) {
        let (px, py) = cb.backend_coord(&(1.0, v));
        root.draw(&PathElement::new(vec![(px, py), (px + 3, py)], BLACK.stroke_width(1))).ctx()?;
        root.draw(&Text::new(fmt_num(v), (px + 5, py), tick.clone())).ctx()?;
    }
    let (px, py) = cb.backend_coord(&(0.5, zlo));
    let caption = text_style(TICK, HPos::Center, VPos::Top);
    let mut lines = vec!["predicted".to_string()];
    lines.extend(wrap(&d.metric, 16).into_iter().take(2));
    lines.push("(darker = better)".into());
    for (i, line) in lines.into_iter().enumerate() {
        root.draw(&Text::new(line, (px + 10, py + 8 + 18 * i as i32), caption.clone())).ctx()?;
    }
    Ok(())
}

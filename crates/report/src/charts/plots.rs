//! The chart drawing functions: each takes a drawing area and its data, nothing else.

use std::ops::Range;

use nightshift_search::{Direction, TrialState};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::palette::{self, BLUE, GREY, ORANGE, VERMILLION};
use super::{DrawResult, viridis};
use crate::axis::{AxisScale, ParamAxis, fmt_num};
use crate::data::{ComparisonData, ContourData, CurvesData, HistoryData, ImportanceData, ParallelData, SliceData, TimelineData};

const FONT: &str = "sans-serif";
const TITLE: u32 = 24;
const LABEL: u32 = 17;
const TICK: u32 = 14;
const MESH: RGBColor = RGBColor(232, 232, 232);
const MESH_BOLD: RGBColor = RGBColor(205, 205, 205);

trait Ctx<T> {
    fn ctx(self) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Colour of a trial state, the same in every chart.
pub fn state_colour(state: TrialState) -> RGBColor {
    match state {
        TrialState::Complete => BLUE,
        TrialState::Pruned => ORANGE,
        TrialState::Fail => VERMILLION,
        TrialState::Running => palette::GREEN,
        TrialState::Waiting => GREY,
    }
}

fn state_name(state: TrialState) -> &'static str {
    match state {
        TrialState::Complete => "completed",
        TrialState::Pruned => "pruned",
        TrialState::Fail => "failed",
        TrialState::Running => "running",
        TrialState::Waiting => "waiting",
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// A range around [lo, hi] with 6% padding; a unit range around a single value.
fn padded((lo, hi): (f64, f64)) -> Range<f64> {
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    let span = hi - lo;
    if span <= 1e-12 * lo.abs().max(1e-12) {
        let pad = (lo.abs() * 0.05).max(0.05);
        return lo - pad..hi + pad;
    }
    lo - 0.06 * span..hi + 0.06 * span
}

/// How good a value is within [lo, hi], 1 = best.
fn goodness(v: f64, (lo, hi): (f64, f64), direction: Direction) -> f64 {
    if hi - lo <= 0.0 {
        return 1.0;
    }
    let g = (v - lo) / (hi - lo);
    if direction == Direction::Maximize { g } else { 1.0 - g }
}

/// Colour of an objective value: darker is better (viridis, stopping short of pale yellow).
fn value_colour(v: f64, range: (f64, f64), direction: Direction) -> RGBColor {
    viridis(0.88 * (1.0 - goodness(v, range, direction)))
}

fn whole_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-6 { format!("{}", v.round() as i64) } else { String::new() }
}

/// Greedy word wrap to lines of at most `width` characters (long words are truncated).
fn wrap(s: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in s.split_whitespace() {
        match lines.last_mut() {
            Some(line) if line.chars().count() + 1 + word.chars().count() <= width => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(truncate(word, width)),
        }
    }
    lines
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

/// How many tick labels to ask plotters for on a parameter axis so that integer and categorical
/// axes get one per value (plotters steps by 1, 2, 5 × 10ⁿ).
fn axis_label_count(axis: &ParamAxis) -> usize {
    let (lo, hi) = axis.plot_range();
    match axis.scale {
        AxisScale::Categorical { .. } | AxisScale::Linear { integer: true, .. } => ((hi - lo).round() as usize + 1).min(16),
        _ => 8,
    }
}

/// About `target` round tick values (1, 2, 2.5, 5 × 10ⁿ steps) inside [lo, hi].
fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(2) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

/// Deterministic horizontal jitter in [-w, w] for strip plots.
fn jitter(key: u64, w: f64) -> f64 {
    let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    (h as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) * w
}

fn text_style(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK).pos(Pos::new(h, v))
}

/// Width in pixels of `text` in `style`, as the backend will draw it.
fn text_width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, style: &TextStyle<'_>) -> i32 {
    area.estimate_text_size(text, style).map(|(w, _)| w as i32).unwrap_or((text.chars().count() * 8) as i32)
}

/// `text`, truncated with an ellipsis until it fits in `max_px`.
fn fit<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, style: &TextStyle<'_>, max_px: i32) -> String {
    let mut n = text.chars().count();
    let mut s = text.to_string();
    while n > 4 && text_width(area, &s, style) > max_px {
        n -= 1;
        s = truncate(text, n);
    }
    s
}

fn note<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, at: (i32, i32), h: HPos) -> DrawResult {
    area.draw(&Text::new(text.to_string(), at, text_style(TICK, h, VPos::Top).color(&RGBColor(70, 70, 70)))).ctx()
}

fn legend_line(c: RGBColor, width: u32) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(width))
}

pub fn history<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &HistoryData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let max_n = d.points.iter().map(|p| p.0).max().unwrap_or(0) as f64;
    let y = padded(min_max(d.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&area)
        .margin(18)
        .x_label_area_size(52)
        .y_label_area_size(84)
        .build_cartesian_2d(-0.5..max_n + 0.5, y)
        .ctx()?;
    chart
        .configure_mesh()
        .light_line_style(MESH)
        .bold_line_style(MESH_BOLD)
        .max_light_lines(1)
        .x_desc("Trial number")
        .y_desc(d.metric.as_str())
        .x_label_formatter(&|v| whole_label(*v))
        .y_label_formatter(&|v| fmt_num(*v))
        .label_style((FONT, TICK))
        .axis_desc_style((FONT, LABEL))
        .draw()
        .ctx()?;
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
    let position =
        if d.direction == Direction::Maximize { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight };
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, TICK))
        .background_style(WHITE.mix(0.9))
        .border_style(MESH_BOLD)
        .draw()
        .ctx()
}

pub fn curves<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &CurvesData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let steps = min_max(d.curves.iter().flat_map(|c| c.points.iter().map(|p| p.0 as f64)));
    let x = steps.0 - 0.3..steps.1 + 0.3;
    let y = padded(min_max(d.curves.iter().flat_map(|c| c.points.iter().map(|p| p.1))));
    let mut chart =
        ChartBuilder::on(&area).margin(18).x_label_area_size(52).y_label_area_size(84).build_cartesian_2d(x, y).ctx()?;
    chart
        .configure_mesh()
        .light_line_style(MESH)
        .bold_line_style(MESH_BOLD)
        .max_light_lines(1)
        .x_desc("Epoch (reported step)")
        .y_desc(d.metric.as_str())
        .x_label_formatter(&|v| whole_label(*v))
        .y_label_formatter(&|v| fmt_num(*v))
        .label_style((FONT, TICK))
        .axis_desc_style((FONT, LABEL))
        .draw()
        .ctx()?;
    let pts = |c: &crate::data::Curve| c.points.iter().map(|&(s, v)| (s as f64, v)).collect::<Vec<_>>();
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
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT, TICK))
        .background_style(WHITE.mix(0.9))
        .border_style(MESH_BOLD)
        .draw()
        .ctx()
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

pub fn parallel<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &ParallelData) -> DrawResult {
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

pub fn importance<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &ImportanceData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let n = d.entries.len();
    let longest = d.entries.iter().map(|e| e.0.chars().count().min(28)).max().unwrap_or(4) as u32;
    let max = d.entries.iter().map(|e| e.1 * 100.0).fold(0.0, f64::max).max(1.0);
    let name_of = |y: f64| -> String {
        if (y - y.round()).abs() > 1e-6 || y.round() < 0.0 || y.round() as usize >= n {
            return String::new();
        }
        truncate(&d.entries[n - 1 - y.round() as usize].0, 28)
    };
    let mut chart = ChartBuilder::on(&area)
        .margin(18)
        .x_label_area_size(52)
        .y_label_area_size(30 + 9 * longest)
        .build_cartesian_2d(0.0..max * 1.2, -0.5..n as f64 - 0.5)
        .ctx()?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(MESH)
        .bold_line_style(MESH_BOLD)
        .max_light_lines(1)
        .y_labels(n + 1)
        .y_label_formatter(&|y| name_of(*y))
        .x_label_formatter(&|x| format!("{}%", fmt_num(*x)))
        .x_desc("Share of the objective's variance explained (%)")
        .label_style((FONT, TICK + 1))
        .axis_desc_style((FONT, LABEL))
        .draw()
        .ctx()?;
    chart
        .draw_series(d.entries.iter().enumerate().map(|(i, (_, share))| {
            let y = (n - 1 - i) as f64;
            Rectangle::new([(0.0, y - 0.32), (share * 100.0, y + 0.32)], BLUE.filled())
        }))
        .ctx()?;
    let label = text_style(TICK, HPos::Left, VPos::Center);
    chart
        .draw_series(d.entries.iter().enumerate().map(|(i, (_, share))| {
            Text::new(format!("{:.1}%", share * 100.0), (share * 100.0 + max * 0.01, (n - 1 - i) as f64), label.clone())
        }))
        .ctx()?;
    Ok(())
}

pub fn slice<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &SliceData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let (lo, hi) = d.axis.plot_range();
    let y = padded(min_max(d.points.iter().map(|p| p.1)));
    let mut chart =
        ChartBuilder::on(&area).margin(18).x_label_area_size(52).y_label_area_size(84).build_cartesian_2d(lo..hi, y).ctx()?;
    let axis = &d.axis;
    chart
        .configure_mesh()
        .light_line_style(MESH)
        .bold_line_style(MESH_BOLD)
        .max_light_lines(1)
        .x_labels(axis_label_count(axis))
        .x_label_formatter(&|x| truncate(&axis.tick_label(*x), 14))
        .y_label_formatter(&|v| fmt_num(*v))
        .x_desc(axis.label())
        .y_desc(d.metric.as_str())
        .label_style((FONT, TICK))
        .axis_desc_style((FONT, LABEL))
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

pub fn contour<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &ContourData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let (w, _) = area.dim_in_pixel();
    let (main, bar) = area.split_horizontally(w as i32 - 130);
    let (x0, x1) = d.x.plot_range();
    let (y0, y1) = d.y.plot_range();
    let mut chart = ChartBuilder::on(&main)
        .margin(18)
        .x_label_area_size(52)
        .y_label_area_size(96)
        .build_cartesian_2d(x0..x1, y0..y1)
        .ctx()?;
    let (xa, ya) = (&d.x, &d.y);
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(axis_label_count(xa))
        .y_labels(axis_label_count(ya))
        .x_label_formatter(&|x| truncate(&xa.tick_label(*x), 14))
        .y_label_formatter(&|y| truncate(&ya.tick_label(*y), 14))
        .x_desc(xa.label())
        .y_desc(ya.label())
        .label_style((FONT, TICK))
        .axis_desc_style((FONT, LABEL))
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
    let (zlo, zhi) = if zrange.1 > zrange.0 { zrange } else { (zrange.0 - 0.5, zrange.0 + 0.5) };
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

pub fn timeline<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &TimelineData) -> DrawResult {
    let area = root.titled(title, (FONT, TITLE)).ctx()?;
    let n = d.rows.len();
    let (unit, scale) = if d.span_s >= 2.0 * 3600.0 {
        ("hours", 3600.0)
    } else if d.span_s >= 120.0 {
        ("minutes", 60.0)
    } else {
        ("seconds", 1.0)
    };
    let span = (d.span_s / scale).max(1e-3);
    let longest = d.rows.iter().map(|r| r.label.chars().count().min(26)).max().unwrap_or(4) as u32;
    let row_of = |y: f64| -> String {
        if (y - y.round()).abs() > 1e-6 || y.round() < 0.0 || y.round() as usize >= n {
            return String::new();
        }
        truncate(&d.rows[n - 1 - y.round() as usize].label, 26)
    };
    let mut chart = ChartBuilder::on(&area)
        .margin(18)
        .x_label_area_size(52)
        .y_label_area_size(24 + 8 * longest)
        .build_cartesian_2d(0.0..span * 1.02, -0.5..n as f64 - 0.5)
        .ctx()?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(MESH)
        .bold_line_style(MESH_BOLD)
        .max_light_lines(1)
        .y_labels(n + 1)
        .y_label_formatter(&|y| row_of(*y))
        .x_label_formatter(&|x| fmt_num(*x))
        .x_desc(format!("Time since the first trial started ({unit})"))
        .y_desc(if d.inferred { "Lane (no device recorded)" } else { "Device slot" })
        .label_style((FONT, TICK))
        .axis_desc_style((FONT, LABEL))
        .draw()
        .ctx()?;
    let min_width = span * 0.002;
    let plot_px = root.dim_in_pixel().0 as f64 - 60.0 - 8.0 * longest as f64;
    // Smaller prune marks when there are many, so they do not hide the bars.
    let busiest = d.rows.iter().map(|r| r.bars.len()).max().unwrap_or(0);
    let (cross, cross_w) = if busiest > 60 { (3, 1) } else { (5, 2) };
    for (i, row) in d.rows.iter().enumerate() {
        let y = (n - 1 - i) as f64;
        chart
            .draw_series(row.bars.iter().map(|b| {
                let (s, e) = (b.start_s / scale, (b.end_s / scale).max(b.start_s / scale + min_width));
                Rectangle::new([(s, y - 0.34), (e, y + 0.34)], state_colour(b.state).filled())
            }))
            .ctx()?;
        // White edges separate back-to-back bars, where a bar is wide enough to keep some colour.
        chart
            .draw_series(row.bars.iter().filter(|b| (b.end_s - b.start_s) / d.span_s.max(1e-9) * plot_px > 5.0).map(|b| {
                let (s, e) = (b.start_s / scale, b.end_s / scale);
                Rectangle::new([(s, y - 0.34), (e, y + 0.34)], WHITE.stroke_width(1))
            }))
            .ctx()?;
        chart
            .draw_series(
                row.bars
                    .iter()
                    .filter(|b| b.state == TrialState::Pruned)
                    .map(|b| Cross::new((b.end_s / scale, y), cross, BLACK.stroke_width(cross_w))),
            )
            .ctx()?;
    }
    // Legend in the title row, right-aligned, so it never covers a bar.
    let items: Vec<(RGBColor, &str)> = [TrialState::Complete, TrialState::Pruned, TrialState::Fail, TrialState::Running]
        .into_iter()
        .filter(|s| d.rows.iter().flat_map(|r| &r.bars).any(|b| b.state == *s))
        .map(|s| (state_colour(s), if s == TrialState::Pruned { "pruned (× = where it was cut)" } else { state_name(s) }))
        .collect();
    let mut x = root.dim_in_pixel().0 as i32 - 16;
    let style = text_style(TICK, HPos::Right, VPos::Center);
    for (c, label) in items.iter().rev() {
        root.draw(&Text::new(label.to_string(), (x, 18), style.clone())).ctx()?;
        x -= text_width(root, label, &style) + 6;
        root.draw(&Rectangle::new([(x - 16, 12), (x, 24)], c.filled())).ctx()?;
        x -= 30;
    }
    Ok(())
}

/// (group index, trial number, learning curve) of a group's best trial.
type BestCurve<'a> = (usize, u64, &'a Vec<(u64, f64)>);

pub fn comparison<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &ComparisonData) -> DrawResult {
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
    let mut chart = ChartBuilder::on(&left)
        .caption("Final value per trial (box: quartiles, ◆: mean and 95% CI)", (FONT, LABEL - 1))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(84)
        .build_cartesian_2d(-0.5..k as f64 - 0.5, y)
        .ctx()?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .light_line_style(MESH)
        .bold_line_style(MESH_BOLD)
        .max_light_lines(1)
        .x_labels((k + 1).min(16))
        .x_label_formatter(&|x| label_of(*x))
        .y_label_formatter(&|v| fmt_num(*v))
        .x_desc(d.param.as_str())
        .y_desc(format!("final {}", d.metric))
        .label_style((FONT, TICK))
        .axis_desc_style((FONT, LABEL))
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
    let mut chart = ChartBuilder::on(&right)
        .caption("Best learning curve per value", (FONT, LABEL))
        .margin(16)
        .x_label_area_size(52)
        .y_label_area_size(84)
        .build_cartesian_2d(x, yc)
        .ctx()?;
    chart
        .configure_mesh()
        .light_line_style(MESH)
        .bold_line_style(MESH_BOLD)
        .max_light_lines(1)
        .x_desc("Epoch (reported step)")
        .y_desc(d.metric.as_str())
        .x_label_formatter(&|v| whole_label(*v))
        .y_label_formatter(&|v| fmt_num(*v))
        .label_style((FONT, TICK))
        .axis_desc_style((FONT, LABEL))
        .draw()
        .ctx()?;
    for &(i, number, points) in &curves {
        let c = colour(i);
        chart
            .draw_series(LineSeries::new(points.iter().map(|&(s, v)| (s as f64, v)), c.stroke_width(3)))
            .ctx()?
            .label(format!("{} (trial #{number})", truncate(&d.groups[i].label, 30)))
            .legend(legend_line(c, 3));
    }
    if !curves.is_empty() {
        chart
            .configure_series_labels()
            .position(if d.direction == Direction::Maximize {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .label_font((FONT, TICK))
            .background_style(WHITE.mix(0.9))
            .border_style(MESH_BOLD)
            .draw()
            .ctx()?;
    }
    Ok(())
}

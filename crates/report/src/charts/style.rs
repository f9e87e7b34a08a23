//! What every chart shares: fonts and sizes, state colours, ranges, ticks, text fitting, and the
//! axes, grid and legend setup.

use std::ops::Range;

use nightshift_search::{Direction, TrialState};
use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::palette::{self, BLUE, GREY, ORANGE, VERMILLION};
use super::viridis;
use crate::axis::{AxisScale, ParamAxis, fmt_num, plottable};

/// A chart drawing's outcome: plotters' error as text.
pub(crate) type DrawResult = std::result::Result<(), String>;

pub(crate) const FONT: &str = "sans-serif";
pub(crate) const TITLE: u32 = 24;
pub(crate) const LABEL: u32 = 17;
pub(crate) const TICK: u32 = 14;
pub(crate) const MESH: RGBColor = RGBColor(232, 232, 232);
pub(crate) const MESH_BOLD: RGBColor = RGBColor(205, 205, 205);

pub(crate) trait Ctx<T> {
    fn ctx(self) -> Result<T, String>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self) -> Result<T, String> {
        self.map_err(|e| e.to_string())
    }
}

/// Colour of a trial state, the same in every chart.
pub(crate) fn state_colour(state: TrialState) -> RGBColor {
    match state {
        TrialState::Complete => BLUE,
        TrialState::Pruned => ORANGE,
        TrialState::Fail => VERMILLION,
        TrialState::Running => palette::GREEN,
        TrialState::Waiting => GREY,
    }
}

pub(crate) fn state_name(state: TrialState) -> &'static str {
    match state {
        TrialState::Complete => "completed",
        TrialState::Pruned => "pruned",
        TrialState::Fail => "failed",
        TrialState::Running => "running",
        TrialState::Waiting => "waiting",
    }
}

pub(crate) fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// A range around [lo, hi] with 6% padding; a unit range around a single value.
pub(crate) fn padded((lo, hi): (f64, f64)) -> Range<f64> {
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    let (lo, hi) = plottable((lo, hi));
    let span = hi - lo;
    lo - 0.06 * span..hi + 0.06 * span
}

/// How good a value is within [lo, hi], 1 = best.
pub(crate) fn goodness(v: f64, (lo, hi): (f64, f64), direction: Direction) -> f64 {
    if hi - lo <= 0.0 {
        return 1.0;
    }
    let g = (v - lo) / (hi - lo);
    if direction == Direction::Maximize { g } else { 1.0 - g }
}

/// Colour of an objective value: darker is better (viridis, stopping short of pale yellow).
pub(crate) fn value_colour(v: f64, range: (f64, f64), direction: Direction) -> RGBColor {
    viridis(0.88 * (1.0 - goodness(v, range, direction)))
}

pub(crate) fn whole_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-6 { format!("{}", v.round() as i64) } else { String::new() }
}

/// Greedy word wrap to lines of at most `width` characters (long words are truncated).
pub(crate) fn wrap(s: &str, width: usize) -> Vec<String> {
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

pub(crate) fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n { s.to_string() } else { format!("{}…", s.chars().take(n - 1).collect::<String>()) }
}

/// How many tick labels to ask plotters for on a parameter axis so that integer and categorical
/// axes get one per value (plotters steps by 1, 2, 5 × 10ⁿ).
pub(crate) fn axis_label_count(axis: &ParamAxis) -> usize {
    let (lo, hi) = axis.plot_range();
    match axis.scale {
        AxisScale::Categorical { .. } | AxisScale::Linear { integer: true, .. } => ((hi - lo).round() as usize + 1).min(16),
        _ => 8,
    }
}

/// About `target` round tick values (1, 2, 2.5, 5 × 10ⁿ steps) inside [lo, hi].
pub(crate) fn nice_ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    if !lo.is_finite() || !hi.is_finite() || hi <= lo {
        return vec![lo];
    }
    let raw = (hi - lo) / target.max(2) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|s| *s >= raw).unwrap_or(10.0 * mag);
    let (first, last) = ((lo / step).ceil(), (hi / step).floor());
    // A step that underflowed or overflowed (ranges near the ends of f64) gives no usable ticks.
    if !(step.is_normal() && first.is_finite() && last.is_finite() && last - first <= 4.0 * target.max(2) as f64) {
        return vec![lo];
    }
    (first as i64..=last as i64).map(|k| k as f64 * step).collect()
}

/// Deterministic horizontal jitter in [-w, w] for strip plots.
pub(crate) fn jitter(key: u64, w: f64) -> f64 {
    let h = key.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
    (h as f64 / (1u64 << 24) as f64 * 2.0 - 1.0) * w
}

pub(crate) fn text_style(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).color(&BLACK).pos(Pos::new(h, v))
}

/// Width in pixels of `text` in `style`, as the backend will draw it.
pub(crate) fn text_width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, style: &TextStyle<'_>) -> i32 {
    area.estimate_text_size(text, style).map(|(w, _)| w as i32).unwrap_or((text.chars().count() * 8) as i32)
}

/// `text`, truncated with an ellipsis until it fits in `max_px`.
pub(crate) fn fit<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, style: &TextStyle<'_>, max_px: i32) -> String {
    let mut n = text.chars().count();
    let mut s = text.to_string();
    while n > 4 && text_width(area, &s, style) > max_px {
        n -= 1;
        s = truncate(text, n);
    }
    s
}

pub(crate) fn note<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, at: (i32, i32), h: HPos) -> DrawResult {
    area.draw(&Text::new(text.to_string(), at, text_style(TICK, h, VPos::Top).color(&RGBColor(70, 70, 70)))).ctx()
}

pub(crate) fn legend_line(c: RGBColor, width: u32) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 22, y)], c.stroke_width(width))
}

/// A chart with continuous coordinates on both axes, as every section draws.
pub(crate) type Cartesian<'a, DB> = ChartContext<'a, DB, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// A chart builder with the margin and label areas most charts use; callers override what differs.
pub(crate) fn axes_builder<'a, 'b, DB: DrawingBackend>(area: &'a DrawingArea<DB, Shift>) -> ChartBuilder<'a, 'b, DB> {
    let mut builder = ChartBuilder::on(area);
    builder.margin(18).x_label_area_size(52).y_label_area_size(84);
    builder
}

/// The light grid and label fonts of every chart's axes; the caller adds descriptions and
/// formatters, then draws.
pub(crate) fn mesh<'a, 'b, DB: DrawingBackend>(
    chart: &'b mut Cartesian<'a, DB>,
) -> MeshStyle<'a, 'b, RangedCoordf64, RangedCoordf64, DB> {
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(MESH)
        .bold_line_style(MESH_BOLD)
        .max_light_lines(1)
        .label_style((FONT, TICK))
        .axis_desc_style((FONT, LABEL));
    mesh
}

/// Axes with whole-number ticks along x (trial numbers, epochs) and the objective along y.
pub(crate) fn draw_whole_x_axes<'a, DB: DrawingBackend + 'a>(
    chart: &mut Cartesian<'a, DB>,
    x_desc: &str,
    metric: &str,
) -> DrawResult {
    mesh(chart)
        .x_desc(x_desc)
        .y_desc(metric)
        .x_label_formatter(&|v| whole_label(*v))
        .y_label_formatter(&|v| fmt_num(*v))
        .draw()
        .ctx()
}

/// The series legend in one corner, on a translucent card.
pub(crate) fn legend<'a, DB: DrawingBackend + 'a>(chart: &mut Cartesian<'a, DB>, position: SeriesLabelPosition) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, TICK))
        .background_style(WHITE.mix(0.9))
        .border_style(MESH_BOLD)
        .draw()
        .ctx()
}

/// Where a legend usually covers the fewest points: below the curves when higher is better, else above.
pub(crate) fn legend_corner(direction: Direction) -> SeriesLabelPosition {
    if direction == Direction::Maximize { SeriesLabelPosition::LowerRight } else { SeriesLabelPosition::UpperRight }
}

/// The corner of the plot (`x` × `y`) whose region a legend card covers — a third of the height, close to
/// half the width — holds the fewest of `points`; on a tie, [`legend_corner`] first. (Found by users: the
/// usual corner hid a trial's point and an arm's line end.)
pub(crate) fn emptiest_corner(
    direction: Direction,
    x: Range<f64>,
    y: Range<f64>,
    points: impl IntoIterator<Item = (f64, f64)>,
) -> SeriesLabelPosition {
    use SeriesLabelPosition::{LowerLeft, LowerRight, UpperLeft, UpperRight};
    let (w, h) = (x.end - x.start, y.end - y.start);
    let (left, right) = (x.start + 0.45 * w, x.end - 0.45 * w);
    let (lower, upper) = (y.start + 0.35 * h, y.end - 0.35 * h);
    let covers = |corner: &SeriesLabelPosition, (px, py): (f64, f64)| match corner {
        UpperRight => px >= right && py >= upper,
        UpperLeft => px <= left && py >= upper,
        LowerRight => px >= right && py <= lower,
        _ => px <= left && py <= lower,
    };
    let points: Vec<(f64, f64)> = points.into_iter().collect();
    let preferred = legend_corner(direction);
    let others = [LowerRight, UpperRight, LowerLeft, UpperLeft];
    let order = std::iter::once(preferred.clone())
        .chain(others.into_iter().filter(|c| !matches!((c, &preferred), (LowerRight, LowerRight) | (UpperRight, UpperRight))));
    order.min_by_key(|corner| points.iter().filter(|&&p| covers(corner, p)).count()).unwrap_or(preferred)
}

#[cfg(test)]
mod legend_tests {
    use super::*;

    #[test]
    fn the_legend_goes_to_the_corner_with_the_fewest_points() {
        let is = |c: SeriesLabelPosition, want: SeriesLabelPosition| format!("{c:?}") == format!("{want:?}");
        // Nothing in the way: the usual corner for the direction.
        let none: [(f64, f64); 0] = [];
        assert!(is(emptiest_corner(Direction::Maximize, 0.0..10.0, 0.0..1.0, none), SeriesLabelPosition::LowerRight));
        // A late trial scoring low sits in the lower right (found by users: the legend hid it).
        let points = [(1.0, 0.5), (2.0, 0.8), (9.0, 0.1)];
        let corner = emptiest_corner(Direction::Maximize, 0.0..10.0, 0.0..1.0, points);
        assert!(!is(corner.clone(), SeriesLabelPosition::LowerRight), "{corner:?}");
        assert!(is(corner, SeriesLabelPosition::UpperRight));
    }
}

//! Timeline: trials as bars over time, one row per device slot.

use std::collections::BTreeMap;

use nightshift_search::{FrozenTrial, TrialState, attrs};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::axis::fmt_num;
use crate::charts::style::{
    Ctx, DrawResult, FONT, TICK, TITLE, axes_builder, mesh, state_colour, state_name, text_style, text_width, truncate,
};
use crate::data::{ReportOptions, Section, attr_string};

/// Trials as bars over time.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineData {
    /// One row per device slot, or per inferred lane.
    pub rows: Vec<TimelineRow>,
    /// Seconds from the first start to the last end.
    pub span_s: f64,
    /// True when no trial recorded a device or slot and rows were assigned by non-overlap.
    pub inferred: bool,
}

/// One device slot (or inferred lane) of the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineRow {
    /// What the row is, e.g. "cuda:0 · slot 1".
    pub label: String,
    /// Its trials, in start order.
    pub bars: Vec<TimelineBar>,
}

/// One trial on the timeline.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineBar {
    /// Trial number.
    pub number: u64,
    /// Trial state.
    pub state: TrialState,
    /// Seconds since the first trial started.
    pub start_s: f64,
    /// Seconds since the first trial started; for a running trial, now or its last heartbeat.
    pub end_s: f64,
    /// For pruned trials, the last epoch reported before the cut.
    pub pruned_at: Option<u64>,
}

pub(crate) fn build(trials: &[FrozenTrial], options: &ReportOptions) -> Section<TimelineData> {
    let started: Vec<&FrozenTrial> = trials.iter().filter(|t| t.started_at.is_some_and(f64::is_finite)).collect();
    let Some(origin) = started.iter().filter_map(|t| t.started_at).min_by(f64::total_cmp) else {
        return Section::Missing("No trial has started yet.".into());
    };
    let end_of = |t: &FrozenTrial| -> f64 {
        let start = t.started_at.unwrap();
        let end = t.finished_at.or(if t.state == TrialState::Running { options.now.or(t.heartbeat_at) } else { t.heartbeat_at });
        end.unwrap_or(start).max(start)
    };
    let inferred =
        !started.iter().any(|t| t.system_attrs.contains_key(attrs::DEVICE) || t.system_attrs.contains_key(attrs::SLOT));
    // Group by (device, slot); split a group into lanes where its trials overlap in time.
    let mut groups: BTreeMap<(Option<String>, Option<String>), Vec<&FrozenTrial>> = BTreeMap::new();
    for t in &started {
        groups.entry((attr_string(t, attrs::DEVICE), attr_string(t, attrs::SLOT))).or_default().push(t);
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

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &TimelineData) -> DrawResult {
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
    let mut chart = axes_builder(&area)
        .y_label_area_size(24 + 8 * longest)
        .build_cartesian_2d(0.0..span * 1.02, -0.5..n as f64 - 0.5)
        .ctx()?;
    mesh(&mut chart)
        .disable_y_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&|y| row_of(*y))
        .x_label_formatter(&|x| fmt_num(*x))
        .x_desc(format!("Time since the first trial started ({unit})"))
        .y_desc(if d.inferred { "Lane (no device recorded)" } else { "Device slot" })
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

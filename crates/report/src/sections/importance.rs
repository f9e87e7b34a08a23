//! Hyperparameter importance by fANOVA (the forest itself is in `crate::importance`).

use nightshift_search::FrozenTrial;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use crate::axis::{ParamAxis, fmt_num};
use crate::charts::palette::BLUE;
use crate::charts::style::{Ctx, DrawResult, FONT, TICK, TITLE, axes_builder, mesh, text_style, truncate};
use crate::data::Section;
use crate::importance::Forest;

/// Hyperparameter importance by fANOVA.
#[derive(Clone, Debug, PartialEq)]
pub struct ImportanceData {
    /// Parameter and share of explained variance (sums to 1), most important first.
    pub entries: Vec<(String, f64)>,
    /// Completed trials the forest was fitted to.
    pub n_trials: usize,
    /// Parameters left out (not set in every completed trial, or never varied).
    pub skipped: Vec<String>,
}

/// One sentence for the page.
pub const IMPORTANCE_METHOD: &str = "Importance is fANOVA (Hutter et al., 2014): a 64-tree random forest is fitted to the completed trials' \
     objective values, and each parameter's importance is the share of the forest's variance that the parameter explains on its own \
     (averaging over all other parameters), normalised to sum to 100%.";

/// Minimum completed trials for importance: fewer cannot separate parameters from noise at all.
pub const MIN_TRIALS_FOR_IMPORTANCE: usize = 3;

pub(crate) fn build(
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

pub(crate) fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, title: &str, d: &ImportanceData) -> DrawResult {
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
    let mut chart =
        axes_builder(&area).y_label_area_size(30 + 9 * longest).build_cartesian_2d(0.0..max * 1.2, -0.5..n as f64 - 0.5).ctx()?;
    mesh(&mut chart)
        .disable_y_mesh()
        .y_labels(n + 1)
        .y_label_formatter(&|y| name_of(*y))
        .x_label_formatter(&|x| format!("{}%", fmt_num(*x)))
        .x_desc("Importance (fANOVA, normalised to sum to 100 %)")
        .label_style((FONT, TICK + 1))
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

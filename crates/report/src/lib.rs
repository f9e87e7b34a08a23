//! # nightshift-report
//!
//! The sweep report: what a user reads in the morning. From a study and its trials it writes a
//! directory with a ranked, self-contained `index.html`, PNG (and SVG) charts, `trials.csv`,
//! `trials.json` and `best_params.json`, answering "which freeze strategy and settings won, and by
//! how much".
//!
//! ## Layout
//! - [`build_report_data`] (`data.rs`) turns a [`StudyRecord`] and its [`FrozenTrial`]s into a
//!   [`ReportData`] of plain structs, one per section. Each section is a module of `sections/`
//!   holding its data, its build and its drawing (a chart, or for the summary, table and comparison
//!   their part of the page): `summary` ([`SummaryData`]),
//!   `table` ([`TableData`]), `history` ([`HistoryData`]), `curves` ([`CurvesData`]), `parallel`
//!   ([`ParallelData`]), `importance` ([`ImportanceData`], fANOVA from `importance.rs`), `slices`
//!   ([`SliceData`]), `contour` ([`ContourData`]), `timeline` ([`TimelineData`]) and `comparison`
//!   ([`ComparisonData`], Welch's t-test from `stats.rs`; for a tournament [`TournamentData`] and the
//!   Holm-corrected verdict of `verdict.rs`). Charts with nothing to show are
//!   [`Section::Missing`] with a reason, so empty and tiny studies still give a complete page.
//! - Rendering is pure: [`chart_specs`] lists the charts, [`render_png`] / [`render_svg`] draw one
//!   (plotters, bundled DejaVu Sans, Okabe–Ito and viridis colours; the axes, grid and legend set-up
//!   every chart shares is in `charts/style.rs`), [`render_html`] (`html.rs`: the page's frame and each
//!   chart's figure) and
//!   [`trials_csv`] / [`trials_json`] / [`summary_json`] produce text. [`render_report`] gathers every file in memory.
//! - [`write_report`] is the one place that touches the file system.
//!
//! Facts the trials do not carry come from [`ReportOptions`] or from trial system attributes:
//! [`nightshift_search::attrs`] (`DEVICE`, `SLOT`, `FAIL_REASON`); when they are absent the
//! report says so instead of guessing.
//!
//! ## Example
//! ```
//! use nightshift_search::{Direction, FrozenTrial, ParamValue, PrunerConfig, SamplerConfig, StudyRecord, TrialState};
//! use nightshift_report::{ReportOptions, write_report};
//!
//! let study = StudyRecord {
//!     id: 1,
//!     name: "demo".into(),
//!     direction: Direction::Maximize,
//!     seed: 0,
//!     sampler: SamplerConfig::default(),
//!     pruner: PrunerConfig::default(),
//!     search_space: None,
//!     user_attrs: Default::default(),
//!     created_at: 0.0,
//! };
//! let trials: Vec<FrozenTrial> = (0..3).map(|i| {
//!     let mut t = FrozenTrial::new(i, i as u64, TrialState::Complete);
//!     t.value = Some(0.5 + 0.1 * i as f64);
//!     t.params.insert("freeze_depth".into(), ParamValue::Int(i % 2));
//!     t
//! }).collect();
//! let dir = tempfile::tempdir().unwrap();
//! let files = write_report(&study, &trials, &ReportOptions::default(), dir.path()).unwrap();
//! assert!(files.index.ends_with("index.html"));
//! assert!(std::fs::read_to_string(&files.index).unwrap().contains("Sweep report: demo"));
//! ```

#![warn(missing_docs)]

mod axis;
mod charts;
mod data;
mod error;
mod export;
mod html;
pub mod importance;
mod sections;
pub mod stats;
pub mod verdict;

use std::path::{Path, PathBuf};

use nightshift_search::{FrozenTrial, StudyRecord};

pub use axis::{AxisScale, ParamAxis, fmt_num};
pub use charts::{ChartKind, ChartSpec, chart_specs, palette, render_png, render_svg, viridis};
pub use data::{ReportData, ReportOptions, Section, build_report_data, epochs_reached, param_axes, rank_complete};
pub use error::{Error, Result};
pub use export::{summary_json, trials_csv, trials_json};
pub use html::{escape, render_html};
pub use sections::comparison::{
    ArmData, ComparisonData, DEFAULT_COMPARE, GroupStats, TournamentData, stored_tournament, tournament_data,
};
pub use sections::contour::ContourData;
pub use sections::curves::{Curve, CurvesData};
pub use sections::history::HistoryData;
pub use sections::importance::{IMPORTANCE_METHOD, ImportanceData, MIN_TRIALS_FOR_IMPORTANCE};
pub use sections::parallel::ParallelData;
pub use sections::slices::SliceData;
pub use sections::summary::{BestTrialData, DeviceUse, RetrainData, StateCounts, SummaryData};
pub use sections::table::{TableData, TrialRow};
pub use sections::timeline::{TimelineBar, TimelineData, TimelineRow};

/// The page's file name.
pub const INDEX_FILE: &str = "index.html";
/// The verdict as data: `{"comparison": {"param", "winner", "arms": […]}}` (`null` without a tournament).
pub const SUMMARY_FILE: &str = "summary.json";
/// The best trial's parameters as a JSON object, for `nightshift trial --params-file`.
pub const BEST_PARAMS_FILE: &str = "best_params.json";

/// One output file, rendered in memory.
#[derive(Clone, Debug)]
pub struct RenderedFile {
    /// File name inside the report directory.
    pub name: String,
    /// Its contents.
    pub bytes: Vec<u8>,
}

/// What [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportFiles {
    /// The report directory.
    pub dir: PathBuf,
    /// Its index.html.
    pub index: PathBuf,
    /// Every file written, index.html last.
    pub files: Vec<PathBuf>,
}

/// Renders every file of the report in memory: the charts (PNG and SVG), trials.csv, trials.json,
/// best_params.json (when there is a best trial) and, last, index.html.
pub fn render_report(data: &ReportData) -> Result<Vec<RenderedFile>> {
    let specs = chart_specs(data);
    let mut files = Vec::with_capacity(specs.len() * 2 + 4);
    // Charts are independent: draw them on all cores (a 1,000-trial report has a dozen).
    let rendered: Vec<Result<(Vec<u8>, String)>> = std::thread::scope(|scope| {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(specs.len().max(1));
        let chunks: Vec<&[ChartSpec<'_>]> = specs.chunks(specs.len().div_ceil(threads).max(1)).collect();
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || chunk.iter().map(|s| Ok((render_png(s)?, render_svg(s)?))).collect::<Vec<_>>()))
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("chart rendering panicked")).collect()
    });
    for (spec, result) in specs.iter().zip(rendered) {
        let (png, svg) = result?;
        files.push(RenderedFile { name: spec.png_name(), bytes: png });
        files.push(RenderedFile { name: spec.svg_name(), bytes: svg.into_bytes() });
    }
    files.push(RenderedFile { name: "trials.csv".into(), bytes: trials_csv(data).into_bytes() });
    files.push(RenderedFile { name: "trials.json".into(), bytes: trials_json(data)?.into_bytes() });
    files.push(RenderedFile { name: SUMMARY_FILE.into(), bytes: summary_json(data)?.into_bytes() });
    if let Some(r) = &data.summary.retrain {
        files.push(RenderedFile { name: BEST_PARAMS_FILE.into(), bytes: format!("{}\n", r.params_json).into_bytes() });
    }
    files.push(RenderedFile { name: INDEX_FILE.into(), bytes: render_html(data, &specs).into_bytes() });
    Ok(files)
}

/// Builds, renders and writes the report for `study` into `out_dir` (created if needed).
///
/// Each file is written to a temporary name and renamed into place, charts before the page, so a
/// browser refreshing during a run never sees a half-written file. Files of an earlier report that
/// this one no longer has (e.g. a slice of a removed parameter) are left alone.
pub fn write_report(study: &StudyRecord, trials: &[FrozenTrial], options: &ReportOptions, out_dir: &Path) -> Result<ReportFiles> {
    let data = build_report_data(study, trials, options);
    let files = render_report(&data)?;
    write_files(out_dir, &files)
}

/// Writes rendered files into `dir`: the only function in this crate that touches the disk.
pub fn write_files(dir: &Path, files: &[RenderedFile]) -> Result<ReportFiles> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut written = Vec::with_capacity(files.len());
    for f in files {
        let path = dir.join(&f.name);
        // Named for this writer: several processes of one sweep rewrite the report side by side.
        static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!(".{}.{}-{n}.tmp", f.name, std::process::id()));
        std::fs::write(&tmp, &f.bytes).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        written.push(path);
    }
    Ok(ReportFiles { dir: dir.to_path_buf(), index: dir.join(INDEX_FILE), files: written })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_side_by_side_never_trip_over_each_others_temporary_files() {
        // Found by a user: three `run`s of one study warned "writing reports/…/slice-1-x.png: No such
        // file or directory" when one renamed the temporary file another was still writing.
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<RenderedFile> =
            (0..4).map(|i| RenderedFile { name: format!("f{i}.png"), bytes: vec![i as u8; 64 * 1024] }).collect();
        std::thread::scope(|scope| {
            let writers: Vec<_> =
                (0..4).map(|_| scope.spawn(|| (0..40).try_for_each(|_| write_files(dir.path(), &files).map(|_| ())))).collect();
            for w in writers {
                w.join().unwrap().unwrap();
            }
        });
        let left: Vec<String> =
            std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(left.len(), 4, "{left:?}");
    }
}

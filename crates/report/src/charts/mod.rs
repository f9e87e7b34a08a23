//! Charts: which ones a report has ([`chart_specs`]), and pure functions that draw a spec into PNG
//! bytes or an SVG string. The same drawing code serves both backends.

pub(crate) mod style;

use style::DrawResult;

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::data::{ReportData, Section};
use crate::error::{Error, Result};
use crate::sections::comparison::{self, ComparisonData};
use crate::sections::contour::{self, ContourData};
use crate::sections::curves::{self, CurvesData};
use crate::sections::history::{self, HistoryData};
use crate::sections::importance::{self, ImportanceData};
use crate::sections::parallel::{self, ParallelData};
use crate::sections::slices::{self, SliceData};
use crate::sections::timeline::{self, TimelineData};

/// Okabe & Ito's colour-blind-safe palette (Color Universal Design, 2002).
pub mod palette {
    use plotters::style::RGBColor;
    /// Black.
    pub const BLACK: RGBColor = RGBColor(0, 0, 0);
    /// Orange.
    pub const ORANGE: RGBColor = RGBColor(230, 159, 0);
    /// Sky blue.
    pub const SKY_BLUE: RGBColor = RGBColor(86, 180, 233);
    /// Bluish green.
    pub const GREEN: RGBColor = RGBColor(0, 158, 115);
    /// Yellow.
    pub const YELLOW: RGBColor = RGBColor(240, 228, 66);
    /// Blue.
    pub const BLUE: RGBColor = RGBColor(0, 114, 178);
    /// Vermillion.
    pub const VERMILLION: RGBColor = RGBColor(213, 94, 0);
    /// Reddish purple.
    pub const PURPLE: RGBColor = RGBColor(204, 121, 167);
    /// Grey (not in the palette: for what is neither good nor bad).
    pub const GREY: RGBColor = RGBColor(128, 128, 128);
    /// Series colours in order, for groups.
    pub const SERIES: [RGBColor; 7] = [BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY_BLUE, BLACK];
}

/// Viridis (perceptually uniform, colour-blind safe), `t` in [0, 1].
pub fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.5 };
    let x = t * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let lerp = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(lerp(a.0, b.0), lerp(a.1, b.1), lerp(a.2, b.2))
}

/// The bundled font (DejaVu Sans; licence in assets/): charts must not depend on system fonts.
static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");
static REGISTER: Once = Once::new();

fn register_font() {
    REGISTER.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold, FontStyle::Italic, FontStyle::Oblique] {
            // The bundled file is valid; a failure here would be a build defect caught by every test.
            plotters::style::register_font("sans-serif", style, FONT).unwrap_or_else(|_| panic!("bundled font does not parse"));
        }
    });
}

/// What a chart draws.
#[derive(Clone, Copy, Debug)]
pub enum ChartKind<'a> {
    /// Optimization history.
    History(&'a HistoryData),
    /// Learning curves.
    Curves(&'a CurvesData),
    /// Parallel coordinates.
    Parallel(&'a ParallelData),
    /// Importance bars.
    Importance(&'a ImportanceData),
    /// One parameter's slice.
    Slice(&'a SliceData),
    /// Contour of two parameters.
    Contour(&'a ContourData),
    /// Trials over time.
    Timeline(&'a TimelineData),
    /// The compared parameter's values side by side.
    Comparison(&'a ComparisonData),
}

/// One chart of the report: its file stem (`history` → history.png / history.svg), size in pixels,
/// a title and alt text for the page.
#[derive(Clone, Debug)]
pub struct ChartSpec<'a> {
    /// File name without extension.
    pub stem: String,
    /// The heading above the chart.
    pub title: String,
    /// Alt text for the image.
    pub alt: String,
    /// Width and height in pixels.
    pub size: (u32, u32),
    /// What it draws.
    pub kind: ChartKind<'a>,
}

impl ChartSpec<'_> {
    /// The PNG file's name.
    pub fn png_name(&self) -> String {
        format!("{}.png", self.stem)
    }
    /// The SVG file's name.
    pub fn svg_name(&self) -> String {
        format!("{}.svg", self.stem)
    }
}

/// A file-name-safe slug of a parameter name (the page escapes the real name; file names must be
/// boring).
pub fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c.to_ascii_lowercase() } else { '_' })
        .collect();
    let s = s.trim_matches('_').chars().take(40).collect::<String>();
    if s.is_empty() { "param".into() } else { s }
}

/// The charts this report has, in page order; charts whose data is missing are left out (the page
/// says why).
pub fn chart_specs(data: &ReportData) -> Vec<ChartSpec<'_>> {
    let mut specs = Vec::new();
    let metric = &data.summary.metric;
    // Nothing to draw until some value of the compared parameter has a completed trial.
    if let Section::Ready(d) = &data.comparison
        && d.best.is_some()
    {
        specs.push(ChartSpec {
            stem: "comparison".into(),
            title: format!("{metric} by {}", d.param),
            alt: format!("Final {metric} per value of {}: box and strip plot with mean and 95% confidence interval, and the best learning curve per value", d.param),
            size: (1200, 540),
            kind: ChartKind::Comparison(d),
        });
    }
    if let Section::Ready(d) = &data.history {
        specs.push(ChartSpec {
            stem: "history".into(),
            title: "Optimization history".into(),
            alt: format!("{metric} of every trial by trial number, with the best value so far"),
            size: (960, 540),
            kind: ChartKind::History(d),
        });
    }
    if let Section::Ready(d) = &data.curves {
        specs.push(ChartSpec {
            stem: "intermediate".into(),
            title: "Learning curves".into(),
            alt: format!("{metric} per epoch for every trial; pruned trials marked where they were stopped"),
            size: (960, 540),
            kind: ChartKind::Curves(d),
        });
    }
    if let Section::Ready(d) = &data.importance {
        let h = (140 + 46 * d.entries.len() as u32).clamp(320, 1000);
        specs.push(ChartSpec {
            stem: "importance".into(),
            title: "Hyperparameter importance (fANOVA)".into(),
            alt: "Importance of each parameter (fANOVA, normalised to sum to 100 %)".into(),
            size: (960, h),
            kind: ChartKind::Importance(d),
        });
    }
    if let Section::Ready(d) = &data.contour {
        specs.push(ChartSpec {
            stem: "contour".into(),
            title: format!("Contour of {} and {}", d.x.name, d.y.name),
            alt: format!("Predicted {metric} over {} and {}, the two most important parameters", d.x.name, d.y.name),
            size: (900, 680),
            kind: ChartKind::Contour(d),
        });
    }
    if let Section::Ready(d) = &data.parallel {
        let w = (240 + 150 * (d.axes.len() as u32 + 1)).clamp(960, 2000);
        specs.push(ChartSpec {
            stem: "parallel".into(),
            title: "Parallel coordinates".into(),
            alt: format!("Every completed trial as a line through its parameter values to its {metric}"),
            size: (w, 560),
            kind: ChartKind::Parallel(d),
        });
    }
    if let Section::Ready(slices) = &data.slices {
        for (i, d) in slices.iter().enumerate() {
            specs.push(ChartSpec {
                stem: format!("slice-{}-{}", i + 1, slug(&d.axis.name)),
                title: format!("Slice: {}", d.axis.name),
                alt: format!("{metric} against {} for every completed trial", d.axis.name),
                size: (720, 480),
                kind: ChartKind::Slice(d),
            });
        }
    }
    if let Section::Ready(d) = &data.timeline {
        let h = (150 + 34 * d.rows.len() as u32).clamp(300, 1600);
        specs.push(ChartSpec {
            stem: "timeline".into(),
            title: "Timeline".into(),
            alt: "Trials as bars over time, one row per device slot; pruned trials marked where they were cut".into(),
            size: (1100, h),
            kind: ChartKind::Timeline(d),
        });
    }
    specs
}

fn draw<DB: DrawingBackend>(spec: &ChartSpec<'_>, root: DrawingArea<DB, Shift>) -> DrawResult {
    register_font();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    match spec.kind {
        ChartKind::History(d) => history::draw(&root, &spec.title, d)?,
        ChartKind::Curves(d) => curves::draw(&root, &spec.title, d)?,
        ChartKind::Parallel(d) => parallel::draw(&root, &spec.title, d)?,
        ChartKind::Importance(d) => importance::draw(&root, &spec.title, d)?,
        ChartKind::Slice(d) => slices::draw(&root, &spec.title, d)?,
        ChartKind::Contour(d) => contour::draw(&root, &spec.title, d)?,
        ChartKind::Timeline(d) => timeline::draw(&root, &spec.title, d)?,
        ChartKind::Comparison(d) => comparison::draw(&root, &spec.title, d)?,
    }
    root.present().map_err(|e| e.to_string())
}

/// Draws a chart as PNG bytes.
pub fn render_png(spec: &ChartSpec<'_>) -> Result<Vec<u8>> {
    let (w, h) = spec.size;
    let mut rgb = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(spec, root).map_err(|message| Error::Chart { chart: spec.png_name(), message })?;
    }
    let mut out = Vec::new();
    let png_err = |source| Error::Png { chart: spec.png_name(), source };
    let mut encoder = png::Encoder::new(&mut out, w, h);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    // Fast compression: a 1,000-trial report has a dozen charts and must render in seconds.
    encoder.set_compression(png::Compression::Fast);
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

/// Draws a chart as an SVG document.
pub fn render_svg(spec: &ChartSpec<'_>) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, spec.size).into_drawing_area();
        draw(spec, root).map_err(|message| Error::Chart { chart: spec.svg_name(), message })?;
    }
    Ok(svg)
}

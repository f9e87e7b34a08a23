//! The report end to end: data layer on constructed studies, the files it writes, the page's
//! structure and escaping, and the charts' pixels.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{Rng, SPACE, study, synthetic_sweep, trial};
use nightshift_report::{
    ReportOptions, Section, build_report_data, chart_specs, escape, rank_complete, render_report, trials_csv, trials_json,
    write_report,
};
use nightshift_search::{Direction, FrozenTrial, ParamValue, SearchSpace, TrialState, attrs, best_of};

fn space() -> SearchSpace {
    SearchSpace::parse(SPACE, "test").unwrap()
}

fn params(lr: f64, batch: i64, dropout: f64, wd: f64, freeze: i64) -> Vec<(&'static str, ParamValue)> {
    vec![
        ("learning_rate", ParamValue::Float(lr)),
        ("batch_size", ParamValue::Int(batch)),
        ("dropout", ParamValue::Float(dropout)),
        ("weight_decay", ParamValue::Float(wd)),
        ("freeze_depth", ParamValue::Int(freeze)),
    ]
}

/// 60 trials with every parameter random; the objective is `objective(params)`.
fn constructed(objective: impl Fn(f64, i64, f64, f64, i64) -> f64) -> Vec<FrozenTrial> {
    let space = space();
    let mut rng = Rng(11);
    (0..60)
        .map(|n| {
            let lr = 10f64.powf(-5.0 + 4.0 * rng.uniform());
            let batch = [16, 32, 64, 128][(rng.next_u64() % 4) as usize];
            let dropout = (rng.uniform() * 10.0).floor() * 0.05;
            let wd = 10f64.powf(-6.0 + 4.0 * rng.uniform());
            let freeze = (rng.next_u64() % 5) as i64;
            let value = objective(lr, batch, dropout, wd, freeze);
            trial(n, TrialState::Complete, Some(value), &params(lr, batch, dropout, wd, freeze), Some(&space))
        })
        .collect()
}

/// learning rate, batch size, dropout, weight decay, freeze depth → objective.
type Objective = dyn Fn(f64, i64, f64, f64, i64) -> f64;

#[test]
fn importance_ranks_first_the_only_parameter_the_objective_depends_on() {
    let s = study("imp", Direction::Minimize, Some(SPACE));
    // Each parameter in turn is the only one that matters: continuous-log, categorical and integer.
    let cases: [(&str, Box<Objective>); 3] = [
        ("learning_rate", Box::new(|lr, _, _, _, _| (lr.log10() + 3.0).powi(2))),
        ("batch_size", Box::new(|_, b, _, _, _| if b == 64 { 0.1 } else { 1.0 })),
        ("freeze_depth", Box::new(|_, _, _, _, f| (f as f64 - 1.0).abs())),
    ];
    for (name, objective) in cases {
        let data = build_report_data(&s, &constructed(objective), &ReportOptions::default());
        let Section::Ready(imp) = &data.importance else { panic!("importance missing for {name}") };
        assert_eq!(imp.entries[0].0, name, "{name}: {:?}", imp.entries);
        assert!(imp.entries[0].1 > 0.6, "{name} explains only {:?}", imp.entries);
        let total: f64 = imp.entries.iter().map(|e| e.1).sum();
        assert!((total - 1.0).abs() < 1e-9);
        // The contour shows the top two parameters, the important one on x.
        let Section::Ready(contour) = &data.contour else { panic!("no contour") };
        assert_eq!(contour.x.name, name);
    }
}

#[test]
fn importance_needs_enough_varied_trials() {
    let s = study("imp", Direction::Minimize, Some(SPACE));
    let space = space();
    let two: Vec<FrozenTrial> = (0..2)
        .map(|n| trial(n, TrialState::Complete, Some(n as f64), &params(1e-3, 32, 0.1, 1e-4, n as i64), Some(&space)))
        .collect();
    assert!(
        matches!(build_report_data(&s, &two, &ReportOptions::default()).importance, Section::Missing(m) if m.contains("at least 3"))
    );
    let flat: Vec<FrozenTrial> =
        (0..5).map(|n| trial(n, TrialState::Complete, Some(1.0), &params(1e-3, 32, 0.1, 1e-4, n as i64), Some(&space))).collect();
    assert!(
        matches!(build_report_data(&s, &flat, &ReportOptions::default()).importance, Section::Missing(m) if m.contains("same objective"))
    );
}

fn freeze_trials(groups: &[(i64, &[f64])]) -> Vec<FrozenTrial> {
    let space = space();
    let mut out = Vec::new();
    for (freeze, values) in groups {
        for v in values.iter() {
            let n = out.len() as u64;
            let mut t = trial(n, TrialState::Complete, Some(*v), &params(1e-3, 32, 0.1, 1e-4, *freeze), Some(&space));
            t.intermediate_values = (1..=3).map(|e| (e, v * e as f64 / 3.0)).collect();
            out.push(t);
        }
    }
    out
}

#[test]
fn freeze_comparison_statistics_and_verdicts() {
    let s = study("cmp", Direction::Maximize, Some(SPACE));
    let clear = freeze_trials(&[(0, &[0.80, 0.82, 0.84]), (2, &[0.90, 0.91, 0.92])]);
    let data = build_report_data(&s, &clear, &ReportOptions::default());
    let Section::Ready(c) = &data.comparison else { panic!() };
    assert_eq!(c.param, "freeze_depth");
    assert_eq!(c.groups.len(), 2);
    let g0 = &c.groups[0];
    assert_eq!((g0.n(), g0.label.as_str()), (3, "freeze_depth = 0"));
    assert!((g0.mean - 0.82).abs() < 1e-12 && (g0.sd - 0.02).abs() < 1e-12);
    // t(2, 0.975) = 4.303 → half-width 4.303 · 0.02 / √3 = 0.04969
    let (lo, hi) = g0.ci95.unwrap();
    assert!((lo - 0.77031).abs() < 1e-3 && (hi - 0.86969).abs() < 1e-3, "{lo} {hi}");
    assert_eq!(c.best, Some(1));
    assert_eq!(c.runner_up, Some(0));
    assert_eq!(c.within_noise, Some(false));
    assert!(c.verdict.starts_with("freeze_depth = 2 has the best mean"), "{}", c.verdict);
    assert!(c.verdict.contains("a real difference"), "{}", c.verdict);
    // Best curve per value is the group's best trial's curve.
    assert_eq!(c.groups[1].best_trial.as_ref().unwrap().0, 5);

    // Overlapping noisy groups: the verdict must say "within noise".
    let noisy = freeze_trials(&[(1, &[0.80, 0.90, 0.85, 0.88]), (3, &[0.82, 0.91, 0.86, 0.87])]);
    let Section::Ready(c) = build_report_data(&s, &noisy, &ReportOptions::default()).comparison else { panic!() };
    assert_eq!(c.within_noise, Some(true));
    assert!(c.verdict.contains("within noise"), "{}", c.verdict);
    assert!(c.p_value.unwrap() > 0.5);

    // One trial per value: cannot be judged; minimisation picks the lower mean.
    let s_min = study("cmp", Direction::Minimize, Some(SPACE));
    let single = freeze_trials(&[(0, &[0.3]), (4, &[0.2])]);
    let Section::Ready(c) = build_report_data(&s_min, &single, &ReportOptions::default()).comparison else { panic!() };
    assert_eq!(c.best, Some(1));
    assert_eq!(c.within_noise, None);
    assert!(c.verdict.contains("cannot be judged"), "{}", c.verdict);
    assert!(c.verdict.contains("lower by 0.1"), "{}", c.verdict);
}

#[test]
fn comparison_parameter_can_be_chosen_and_is_missing_gracefully() {
    let s = study("cmp", Direction::Maximize, Some(SPACE));
    let trials = freeze_trials(&[(0, &[0.8, 0.82]), (2, &[0.9, 0.91])]);
    let opts = ReportOptions { compare: Some("batch_size".into()), ..Default::default() };
    let Section::Ready(c) = build_report_data(&s, &trials, &opts).comparison else { panic!() };
    assert_eq!(c.param, "batch_size");
    assert_eq!(c.groups.len(), 1);
    assert!(c.verdict.contains("nothing to compare"), "{}", c.verdict);
    let opts = ReportOptions { compare: Some("nope".into()), ..Default::default() };
    assert!(matches!(build_report_data(&s, &trials, &opts).comparison, Section::Missing(m) if m.contains("'nope'")));
    let no_freeze = study("x", Direction::Maximize, Some("lr: {type: float, low: 0.1, high: 1.0}"));
    let t = vec![trial(0, TrialState::Complete, Some(1.0), &[("lr", ParamValue::Float(0.5))], None)];
    assert!(
        matches!(build_report_data(&no_freeze, &t, &ReportOptions::default()).comparison, Section::Missing(m) if m.contains("no freeze parameter"))
    );
}

#[test]
fn ranking_follows_direction_and_breaks_ties_by_trial_number() {
    let p = [("x", ParamValue::Float(1.0))];
    let mut trials = vec![
        trial(0, TrialState::Complete, Some(0.5), &p, None),
        trial(1, TrialState::Complete, Some(0.9), &p, None),
        trial(2, TrialState::Pruned, Some(0.99), &p, None),
        trial(3, TrialState::Complete, Some(0.9), &p, None),
        trial(4, TrialState::Fail, None, &p, None),
        trial(5, TrialState::Complete, Some(0.1), &p, None),
        trial(6, TrialState::Running, None, &p, None),
        trial(7, TrialState::Complete, Some(f64::NAN), &p, None),
        trial(8, TrialState::Complete, Some(0.1), &p, None),
    ];
    trials.reverse(); // input order must not matter
    for (direction, want) in [(Direction::Maximize, vec![1, 3, 0, 5, 8]), (Direction::Minimize, vec![5, 8, 0, 1, 3])] {
        let ranked: Vec<u64> = rank_complete(&trials, direction).iter().map(|t| t.number).collect();
        assert_eq!(ranked, want, "{direction}");
        // Agrees with the search crate's best_of (which expects trials in number order).
        let mut sorted = trials.clone();
        sorted.sort_by_key(|t| t.number);
        assert_eq!(best_of(&sorted, direction).unwrap().number, want[0]);
        let data = build_report_data(&study("r", direction, None), &trials, &ReportOptions::default());
        let rows: Vec<(Option<usize>, u64)> = data.table.rows.iter().map(|r| (r.rank, r.number)).collect();
        let mut expected: Vec<(Option<usize>, u64)> = want.iter().enumerate().map(|(i, n)| (Some(i + 1), *n)).collect();
        // Unranked: running, pruned, failed, then the NaN-valued complete trial.
        expected.extend([(None, 6), (None, 2), (None, 4), (None, 7)]);
        assert_eq!(rows, expected, "{direction}");
        assert_eq!(data.summary.best.as_ref().unwrap().number, want[0]);
    }
}

#[test]
fn direction_decides_best_so_far() {
    let p = [("x", ParamValue::Float(1.0))];
    let values = [0.5, 0.7, 0.3, 0.6, 0.8, 0.2];
    let trials: Vec<FrozenTrial> =
        values.iter().enumerate().map(|(i, v)| trial(i as u64, TrialState::Complete, Some(*v), &p, None)).collect();
    let best = |d| {
        let data = build_report_data(&study("d", d, None), &trials, &ReportOptions::default());
        let Section::Ready(h) = data.history else { panic!() };
        h.best_so_far.iter().map(|b| b.1).collect::<Vec<f64>>()
    };
    assert_eq!(best(Direction::Maximize), vec![0.5, 0.7, 0.7, 0.7, 0.8, 0.8]);
    assert_eq!(best(Direction::Minimize), vec![0.5, 0.5, 0.3, 0.3, 0.3, 0.2]);
}

#[test]
fn pruning_savings_and_utilisation() {
    let p = [("freeze_depth", ParamValue::Int(0))];
    let mut trials = Vec::new();
    for (n, state, epochs) in
        [(0, TrialState::Complete, 10u64), (1, TrialState::Complete, 10), (2, TrialState::Pruned, 3), (3, TrialState::Pruned, 3)]
    {
        let mut t = trial(n, state, Some(0.5), &p, None);
        t.intermediate_values = (1..=epochs).map(|e| (e, 0.5)).collect();
        // Two slots on one GPU, 100 s of wall time, each slot busy 50 s.
        t.started_at = Some(1000.0 + 50.0 * (n / 2) as f64);
        t.finished_at = Some(1050.0 + 50.0 * (n / 2) as f64);
        t.system_attrs.insert(attrs::DEVICE.into(), "cuda:0".into());
        t.system_attrs.insert(attrs::SLOT.into(), ((n % 2) as i64).into());
        trials.push(t);
    }
    let data = build_report_data(&study("p", Direction::Maximize, None), &trials, &ReportOptions::default());
    let s = &data.summary;
    assert_eq!(s.epochs_trained, 26);
    assert_eq!(s.epochs_unpruned, Some(40));
    assert_eq!(s.max_steps, Some((10, false)));
    assert!((s.savings().unwrap() - 0.35).abs() < 1e-12);
    assert_eq!(s.wall_seconds, Some(100.0));
    assert_eq!(s.devices.len(), 2);
    assert_eq!(s.devices[0].label, "cuda:0 · slot 0");
    assert!((s.utilisation.unwrap() - 1.0).abs() < 1e-12);
    // Given a 20-epoch budget and 4 slots, the figures change accordingly.
    let opts = ReportOptions { max_steps: Some(20), slots: Some(4), ..Default::default() };
    let s = build_report_data(&study("p", Direction::Maximize, None), &trials, &opts).summary;
    assert_eq!(s.epochs_unpruned, Some(80));
    assert!((s.utilisation.unwrap() - 0.5).abs() < 1e-12);
}

#[test]
fn timeline_infers_lanes_when_no_device_is_recorded() {
    let p = [("x", ParamValue::Float(1.0))];
    let spans = [(0.0, 10.0), (2.0, 6.0), (6.5, 9.0), (10.0, 12.0)];
    let trials: Vec<FrozenTrial> = spans
        .iter()
        .enumerate()
        .map(|(i, (s, e))| {
            let mut t = trial(i as u64, TrialState::Complete, Some(1.0), &p, None);
            t.started_at = Some(s + 5000.0);
            t.finished_at = Some(e + 5000.0);
            t
        })
        .collect();
    let data = build_report_data(&study("t", Direction::Maximize, None), &trials, &ReportOptions::default());
    let Section::Ready(tl) = &data.timeline else { panic!() };
    assert!(tl.inferred);
    let lanes: Vec<Vec<u64>> = tl.rows.iter().map(|r| r.bars.iter().map(|b| b.number).collect()).collect();
    assert_eq!(lanes, vec![vec![0, 3], vec![1, 2]]);
    assert_eq!(tl.span_s, 12.0);
}

fn img_sources(html: &str) -> Vec<String> {
    html.match_indices("<img src=\"").map(|(i, m)| html[i + m.len()..].split('"').next().unwrap().to_string()).collect()
}

fn assert_valid_page(dir: &Path, html: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.trim_end().ends_with("</html>"));
    for tag in ["main", "section", "table", "figure", "script", "style"] {
        let (open, close) = (html.matches(&format!("<{tag}")).count(), html.matches(&format!("</{tag}>")).count());
        assert_eq!(open, close, "<{tag}> opened {open} times, closed {close} times");
    }
    // No network resources of any kind.
    for bad in ["http://", "https://", "src=\"//", "href=\"//", "@import", "url("] {
        assert!(!html.contains(bad), "page references {bad}");
    }
    for src in img_sources(html) {
        assert!(!src.contains('/') && !src.contains(".."), "image {src} is not a sibling file");
        assert!(dir.join(&src).is_file(), "image {src} does not exist");
    }
}

#[test]
fn html_structure_of_a_full_report() {
    let (s, trials) = synthetic_sweep(60, 3);
    let dir = tempfile::tempdir().unwrap();
    let opts = ReportOptions { objective_metric: Some("validation accuracy".into()), max_steps: Some(10), ..Default::default() };
    let files = write_report(&s, &trials, &opts, dir.path()).unwrap();
    let html = std::fs::read_to_string(&files.index).unwrap();
    assert_valid_page(dir.path(), &html);
    assert_eq!(files.files.last().unwrap(), &files.index);

    // Sections in reading order.
    let order = ["id=\"summary\"", "id=\"comparison\"", "id=\"charts\"", "id=\"trials\""];
    let pos: Vec<usize> = order.iter().map(|id| html.find(id).unwrap_or_else(|| panic!("{id} missing"))).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "{pos:?}");
    assert!(html.contains("<title>fashion-finetune — nightshift sweep report</title>"));
    assert!(html.contains("Best validation accuracy"));
    assert!(html.contains("pruning saved"));
    assert!(html.contains("Which won: freeze_depth"));
    assert!(html.contains("fANOVA (Hutter et al., 2014)"));
    assert!(html.contains("nightshift trial --params-file best_params.json"));
    assert!(html.contains("Content-Security-Policy"));
    assert!(!html.contains("http-equiv=\"refresh\""));

    // Ranked table: one row per trial, one column per parameter, the best row marked.
    let table = &html[html.find("id=\"trials-table\"").unwrap()..];
    let body = &table[table.find("<tbody>").unwrap()..table.find("</tbody>").unwrap()];
    assert_eq!(body.matches("<tr").count(), 60);
    assert_eq!(body.matches("class=\"best\"").count(), 1);
    for p in ["learning_rate", "batch_size", "dropout", "weight_decay", "freeze_depth"] {
        assert!(table[..table.find("</thead>").unwrap()].contains(&format!("<th>{p}</th>")));
    }

    // Every chart the issue asks for, as PNG and SVG next to the page.
    let imgs = img_sources(&html);
    for stem in ["comparison", "history", "intermediate", "importance", "contour", "parallel", "timeline"] {
        assert!(imgs.contains(&format!("{stem}.png")), "{stem}.png not on the page: {imgs:?}");
        assert!(dir.path().join(format!("{stem}.svg")).is_file());
    }
    assert_eq!(imgs.iter().filter(|s| s.starts_with("slice-")).count(), 5);
    assert!(imgs.contains(&"slice-1-learning_rate.png".to_string()));

    // best_params.json holds the best trial's parameters.
    let best: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.path().join("best_params.json")).unwrap()).unwrap();
    let data = build_report_data(&s, &trials, &opts);
    let b = data.summary.best.as_ref().unwrap();
    assert_eq!(best.as_object().unwrap().len(), 5);
    assert_eq!(best["freeze_depth"], serde_json::to_value(&trials[b.number as usize].params["freeze_depth"]).unwrap());

    // A refreshing report says so.
    let opts = ReportOptions { refresh_seconds: Some(60), now: Some(1_700_003_600.0), ..opts };
    let files = write_report(&s, &trials, &opts, dir.path()).unwrap();
    let html = std::fs::read_to_string(&files.index).unwrap();
    assert!(html.contains("<meta http-equiv=\"refresh\" content=\"60\">"));
    assert!(html.contains("generated 2023-11-14 23:13 UTC"));
}

#[test]
fn retrain_command_template_is_filled_in() {
    let (s, trials) = synthetic_sweep(20, 5);
    let opts = ReportOptions {
        retrain_command: Some("nightshift trial --dataset data/x --params-file {params_file} # trial {trial}".into()),
        ..Default::default()
    };
    let data = build_report_data(&s, &trials, &opts);
    let best = data.summary.best.as_ref().unwrap().number;
    assert_eq!(
        data.summary.retrain.as_ref().unwrap().command,
        format!("nightshift trial --dataset data/x --params-file best_params.json # trial {best}")
    );
}

const HOSTILE: &str = "<script>alert(1)</script>";

#[test]
fn hostile_strings_are_escaped_everywhere() {
    let space_text = format!(
        "\"{HOSTILE}\": {{type: categorical, choices: [\"<img src=x onerror=alert(2)>\", \"b&b\"]}}\nfreeze_depth: {{type: int, low: 0, high: 2}}\n"
    );
    let mut s = study(HOSTILE, Direction::Maximize, Some(&space_text));
    s.user_attrs.insert("objective_metric".into(), "<i>acc</i>".into());
    let space = s.search_space.clone().unwrap();
    let mut trials = Vec::new();
    for n in 0..8u64 {
        let choice = if n % 2 == 0 { "<img src=x onerror=alert(2)>" } else { "b&b" };
        let p = [(HOSTILE, ParamValue::Str(choice.into())), ("freeze_depth", ParamValue::Int((n % 3) as i64))];
        let state = if n == 7 { TrialState::Fail } else { TrialState::Complete };
        let mut t = trial(n, state, (n != 7).then_some(0.5 + n as f64 / 100.0), &p, Some(&space));
        t.intermediate_values.insert(1, 0.4);
        t.started_at = Some(10.0 * n as f64);
        t.finished_at = Some(10.0 * n as f64 + 9.0);
        t.system_attrs.insert(attrs::DEVICE.into(), "</td><script>alert(5)</script>".into());
        if n == 7 {
            t.system_attrs.insert(attrs::FAIL_REASON.into(), "Traceback: </pre><script>alert(4)</script>".into());
        }
        trials.push(t);
    }
    let dir = tempfile::tempdir().unwrap();
    let opts =
        ReportOptions { retrain_command: Some("train '<script>alert(6)</script>' {params_file}".into()), ..Default::default() };
    let files = write_report(&s, &trials, &opts, dir.path()).unwrap();
    let html = std::fs::read_to_string(&files.index).unwrap();
    assert_valid_page(dir.path(), &html);
    assert_eq!(html.matches("<script").count(), 1, "only the page's own script may appear");
    for raw in ["<img src=x", "<i>acc</i>", "</td><script>", "</pre><script>"] {
        assert!(!html.contains(raw), "unescaped {raw}");
    }
    assert!(html.contains(&escape(HOSTILE)));
    assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
    assert!(html.contains("b&amp;b"));
    assert!(html.contains("Traceback: &lt;/pre&gt;&lt;script&gt;alert(4)&lt;/script&gt;"));
    assert!(html.contains("&lt;i&gt;acc&lt;/i&gt;"));
    // Chart files are named by slug, and the SVGs escape their text too.
    for f in &files.files {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)), "odd file name {name}");
        if name.ends_with(".svg") {
            let svg = std::fs::read_to_string(f).unwrap();
            assert!(!svg.contains("<script") && !svg.contains("<img"), "{name} carries markup");
        }
    }
    // CSV cells that a spreadsheet would execute are defused.
    let csv = std::fs::read_to_string(dir.path().join("trials.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains(&format!("params_{HOSTILE}")));
}

fn decode_png(path: &Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf)
}

#[test]
fn pngs_decode_have_the_expected_size_and_are_not_blank() {
    let (s, trials) = synthetic_sweep(80, 9);
    let data = build_report_data(&s, &trials, &ReportOptions::default());
    let specs = chart_specs(&data);
    assert_eq!(specs.len(), 7 + 5);
    let dir = tempfile::tempdir().unwrap();
    write_report(&s, &trials, &ReportOptions::default(), dir.path()).unwrap();
    for spec in &specs {
        let (w, h, rgb) = decode_png(&dir.path().join(spec.png_name()));
        assert_eq!((w, h), spec.size, "{}", spec.stem);
        let lum: Vec<f64> = rgb.chunks(3).map(|p| 0.299 * p[0] as f64 + 0.587 * p[1] as f64 + 0.114 * p[2] as f64).collect();
        let mean = lum.iter().sum::<f64>() / lum.len() as f64;
        let var = lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / lum.len() as f64;
        let inked = lum.iter().filter(|l| **l < 200.0).count() as f64 / lum.len() as f64;
        assert!(var > 100.0, "{}: luminance variance {var}", spec.stem);
        assert!(inked > 0.01, "{}: only {:.2}% of pixels drawn", spec.stem, inked * 100.0);
        // Colour is used (not only black text on white): some saturated pixels.
        let coloured = rgb.chunks(3).filter(|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 60).count();
        assert!(coloured > 200, "{}: {coloured} coloured pixels", spec.stem);
        let svg = std::fs::read_to_string(dir.path().join(spec.svg_name())).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{}", spec.stem);
    }
}

#[test]
fn a_blank_png_fails_the_pixel_check() {
    // The pixel check above must be able to fail: a white image has no variance.
    let rgb = vec![255u8; 30 * 20 * 3];
    let lum: Vec<f64> = rgb.chunks(3).map(|p| p[0] as f64).collect();
    let mean = lum.iter().sum::<f64>() / lum.len() as f64;
    assert_eq!(lum.iter().map(|l| (l - mean).powi(2)).sum::<f64>(), 0.0);
}

#[test]
fn empty_and_tiny_studies_produce_a_page_that_says_so() {
    let space = space();
    let p = params(1e-3, 32, 0.1, 1e-4, 1);
    let with_curve = |n: u64, state: TrialState, value: Option<f64>| {
        let mut t = trial(n, state, value, &p, Some(&space));
        if state != TrialState::Fail {
            t.intermediate_values.insert(1, value.unwrap_or(0.3));
        }
        t.started_at = Some(100.0 + n as f64);
        t.finished_at = (state != TrialState::Running).then_some(100.5 + n as f64);
        if state == TrialState::Fail {
            t.system_attrs.insert(attrs::FAIL_REASON.into(), "exit code 1".into());
        }
        t
    };
    let cases: Vec<(&str, Vec<FrozenTrial>, &str)> = vec![
        ("empty", vec![], "no trials yet"),
        ("one", vec![with_curve(0, TrialState::Complete, Some(0.7))], "Only 1 completed trial"),
        (
            "two",
            vec![with_curve(0, TrialState::Complete, Some(0.7)), with_curve(1, TrialState::Complete, Some(0.6))],
            "Only 2 completed trials",
        ),
        ("failed", (0..3).map(|n| with_curve(n, TrialState::Fail, None)).collect(), "every trial failed"),
        ("pruned", (0..3).map(|n| with_curve(n, TrialState::Pruned, Some(0.2))).collect(), "every trial was pruned"),
        ("running", vec![with_curve(0, TrialState::Running, None)], "still running"),
        ("nan", vec![with_curve(0, TrialState::Complete, Some(f64::NAN))], "No trial has completed"),
    ];
    for (name, trials, says) in cases {
        let dir = tempfile::tempdir().unwrap();
        let files = write_report(&study(name, Direction::Maximize, Some(SPACE)), &trials, &ReportOptions::default(), dir.path())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let html = std::fs::read_to_string(&files.index).unwrap();
        assert_valid_page(dir.path(), &html);
        assert!(html.contains(says), "{name}: page does not say {says:?}");
        assert!(html.contains("class=\"missing\""), "{name}: no chart is marked missing");
        let json: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("trials.json")).unwrap()).unwrap();
        assert_eq!(json["trials"].as_array().unwrap().len(), trials.len(), "{name}");
        assert_eq!(std::fs::read_to_string(dir.path().join("trials.csv")).unwrap().lines().count(), trials.len() + 1, "{name}");
    }
}

#[test]
fn csv_and_json_carry_every_trial() {
    let (s, trials) = synthetic_sweep(40, 2);
    let data = build_report_data(&s, &trials, &ReportOptions::default());
    let csv = trials_csv(&data);
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.len(), 41);
    assert!(lines[0].starts_with("rank,number,state,value,params_learning_rate,params_batch_size"));
    assert!(lines[1].starts_with("1,"));
    let json: serde_json::Value = serde_json::from_str(&trials_json(&data).unwrap()).unwrap();
    assert_eq!(json["study"], "fashion-finetune");
    assert_eq!(json["direction"], "maximize");
    let rows = json["trials"].as_array().unwrap();
    assert_eq!(rows.len(), 40);
    assert_eq!(rows[0]["rank"], 1);
    assert_eq!(json["best_trial"], rows[0]["number"]);
    assert!(rows[0]["params"]["batch_size"].is_i64());
    assert_eq!(rows[0]["intermediate_values"].as_object().unwrap().len(), 10);
    let by_number: BTreeMap<u64, &FrozenTrial> = trials.iter().map(|t| (t.number, t)).collect();
    for r in rows {
        let t = by_number[&r["number"].as_u64().unwrap()];
        assert_eq!(r["state"], t.state.as_str());
    }
}

#[test]
fn render_report_is_deterministic() {
    let (s, trials) = synthetic_sweep(30, 4);
    let a = render_report(&build_report_data(&s, &trials, &ReportOptions::default())).unwrap();
    let b = render_report(&build_report_data(&s, &trials, &ReportOptions::default())).unwrap();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.name, y.name);
        assert!(x.bytes == y.bytes, "{} differs between runs", x.name);
    }
}

/// The report of a study whose values reach the ends of f64 (a failure penalty of ±f64::MAX) or
/// whose parameter range is thinner than any tick (1e-320): written, in bounded time. Plotters'
/// key-point search never ended on such ranges, and the tick maker overflowed.
#[test]
fn values_and_ranges_at_the_ends_of_f64_are_drawn() {
    let space_text = "x: {type: float, low: -8.0e307, high: 8.0e307}\nd: {type: float, low: 0.0, high: 5.0e-324}\n";
    let s = study("extremes", Direction::Maximize, Some(space_text));
    let space = s.search_space.clone().unwrap();
    let values = [f64::MAX, -f64::MAX, 1e308, 0.5, -1e-320, 1.0];
    let trials: Vec<FrozenTrial> = values
        .iter()
        .enumerate()
        .map(|(n, &v)| {
            let p = [("x", ParamValue::Float(if n % 2 == 0 { 8e307 } else { -8e307 })), ("d", ParamValue::Float(0.0))];
            let mut t = trial(n as u64, TrialState::Complete, Some(v), &p, Some(&space));
            t.intermediate_values.insert(1, v);
            t.started_at = Some(10.0 * n as f64);
            t.finished_at = Some(10.0 * n as f64 + 9.0);
            t
        })
        .collect();
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let dir = tempfile::tempdir().unwrap();
        let files = write_report(&s, &trials, &ReportOptions::default(), dir.path()).map(|f| f.files.len());
        let _ = done.send(files);
    });
    match finished.recv_timeout(std::time::Duration::from_secs(120)) {
        Ok(files) => assert!(files.unwrap() > 3),
        Err(_) => panic!("the report did not finish in 120 s"),
    }
}

//! index.html: one self-contained page (inline CSS and a few lines of inline JS, charts as sibling
//! PNG files, nothing from the network). Every user-provided string goes through [`escape`].

use std::fmt::Write;

use nightshift_search::{Direction, TrialState};

use crate::axis::fmt_num;
use crate::charts::{ChartKind, ChartSpec};
use crate::data::{ReportData, Section};
use crate::sections::comparison::{ComparisonData, TournamentData};
use crate::sections::importance::IMPORTANCE_METHOD;

/// Escapes text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// "2 h 05 min", "3 min 12 s", "8.4 s".
pub fn fmt_duration(s: f64) -> String {
    if !s.is_finite() || s < 0.0 {
        return "—".into();
    }
    let whole = s.round() as u64;
    if whole >= 3600 {
        format!("{} h {:02} min", whole / 3600, (whole % 3600) / 60)
    } else if whole >= 60 {
        format!("{} min {:02} s", whole / 60, whole % 60)
    } else {
        format!("{s:.1} s")
    }
}

/// Unix seconds as "2025-01-31 23:59 UTC" (no time-zone database needed).
pub fn fmt_utc(t: f64) -> String {
    let secs = t.floor() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", rem / 3600, (rem % 3600) / 60)
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

const CSS: &str = r#"
:root{--fg:#1d1d1f;--muted:#5b5b66;--line:#d9d9e0;--bg:#fff;--panel:#f6f7f9;--blue:#0072B2;--orange:#E69F00;--verm:#D55E00;--green:#009E73;--grey:#808080}
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:var(--fg);background:var(--bg)}
main{max-width:1240px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:0 0 4px;overflow-wrap:anywhere}
h2{font-size:20px;margin:36px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
h3{font-size:16px;margin:20px 0 8px}
.sub,.muted{color:var(--muted)}
nav{margin:10px 0 0;font-size:14px}nav a{margin-right:14px}
a{color:var(--blue)}
.notice{background:#fff6e0;border-left:4px solid var(--orange);padding:10px 14px;margin:14px 0}
.missing{background:var(--panel);border:1px dashed var(--line);padding:12px 14px;color:var(--muted)}
.facts{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:10px;margin:12px 0}
.fact{background:var(--panel);border-radius:6px;padding:10px 14px}
.fact .k{font-size:13px;color:var(--muted)}.fact .v{font-size:20px;font-weight:600;overflow-wrap:anywhere}.fact .d{font-size:13px;color:var(--muted)}
.verdict{font-size:17px;padding:12px 16px;border-radius:6px;background:#e8f3fa;border-left:4px solid var(--blue)}
.verdict.noise{background:#f3f3f3;border-left-color:var(--grey)}
table{border-collapse:collapse;font-size:14px;margin:8px 0}
th,td{padding:4px 10px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;white-space:nowrap}
th{background:var(--panel);position:sticky;top:0}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" ▲"}table.sortable th[aria-sort=descending]::after{content:" ▼"}
.scroll{overflow:auto;max-height:640px;border:1px solid var(--line)}
.scroll table{margin:0}
td.reason{max-width:360px;white-space:pre-wrap;overflow-wrap:anywhere;color:var(--verm)}
tr.best td{background:#eef7ee}
.state{display:inline-block;padding:0 6px;border-radius:4px;font-size:12px;font-weight:600;color:#fff}
.s-COMPLETE{background:var(--blue)}.s-PRUNED{background:var(--orange);color:#000}.s-FAIL{background:var(--verm)}.s-RUNNING{background:var(--green)}.s-WAITING{background:var(--grey)}
pre{background:#1d1f24;color:#f2f2f2;padding:12px 14px;border-radius:6px;overflow:auto;font-size:13px}
figure{margin:16px 0}figure img{max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{font-size:13px;color:var(--muted)}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:8px}
footer{margin-top:40px;font-size:13px;color:var(--muted)}
"#;

const JS: &str = r#"
(function(){
function key(td){var v=td.getAttribute('data-v');if(v===null)v=td.textContent.trim();if(v==='')return null;var n=Number(v);return isNaN(n)?v.toLowerCase():n;}
document.querySelectorAll('table.sortable').forEach(function(table){
 var ths=table.querySelectorAll('thead th');
 ths.forEach(function(th,i){
  th.tabIndex=0;
  function sort(){
   var asc=th.getAttribute('aria-sort')!=='ascending';
   ths.forEach(function(h){h.removeAttribute('aria-sort');});
   th.setAttribute('aria-sort',asc?'ascending':'descending');
   var body=table.tBodies[0],rows=Array.prototype.slice.call(body.rows);
   rows.sort(function(a,b){var x=key(a.cells[i]),y=key(b.cells[i]);
    if(x===y)return 0;if(x===null)return 1;if(y===null)return -1;
    if(typeof x!==typeof y){x=String(x);y=String(y);}
    return (x<y?-1:1)*(asc?1:-1);});
   rows.forEach(function(r){body.appendChild(r);});
  }
  th.addEventListener('click',sort);
  th.addEventListener('keydown',function(e){if(e.key==='Enter')sort();});
 });
});
window.addEventListener('load',function(){
 var bad=[];
 document.querySelectorAll('img').forEach(function(img){
  if(!img.complete||img.naturalWidth===0){
   bad.push(img.getAttribute('src'));
   var p=document.createElement('p');p.className='missing';p.textContent='Chart not available: '+img.getAttribute('src')+' is missing (the report may be being rewritten; reload).';
   img.replaceWith(p);
  }
 });
 document.body.setAttribute('data-images',bad.length?'missing':'ok');
 if(bad.length)console.error('nightshift report: missing images: '+bad.join(', '));
});
})();
"#;

fn figure(out: &mut String, spec: &ChartSpec<'_>, caption: &str) {
    let (w, h) = spec.size;
    let _ = writeln!(
        out,
        "<figure id=\"fig-{stem}\"><img src=\"{png}\" width=\"{w}\" height=\"{h}\" alt=\"{alt}\">\
         <figcaption>{caption} <a href=\"{svg}\">SVG</a></figcaption></figure>",
        stem = escape(&spec.stem),
        png = escape(&spec.png_name()),
        svg = escape(&spec.svg_name()),
        alt = escape(&spec.alt),
    );
}

fn missing(out: &mut String, why: &str) {
    let _ = writeln!(out, "<p class=\"missing\">{}</p>", escape(why));
}

fn fact(out: &mut String, key: &str, value: &str, detail: &str) {
    let _ = write!(out, "<div class=\"fact\"><div class=\"k\">{key}</div><div class=\"v\">{value}</div>");
    if !detail.is_empty() {
        let _ = write!(out, "<div class=\"d\">{detail}</div>");
    }
    out.push_str("</div>\n");
}

fn state_badge(state: TrialState) -> String {
    format!("<span class=\"state s-{0}\">{0}</span>", state.as_str())
}

/// Renders the page. `charts` are the specs whose PNG/SVG files sit next to it.
pub fn render_html(data: &ReportData, charts: &[ChartSpec<'_>]) -> String {
    let s = &data.summary;
    let chart = |stem: &str| charts.iter().find(|c| c.stem == stem);
    let name = escape(&s.study_name);
    let metric = escape(&s.metric);
    let mut o = String::with_capacity(64 * 1024 + data.table.rows.len() * 600);
    o.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    o.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    // Nothing may come from the network: the page works offline and leaks nothing when opened.
    o.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n");
    if let Some(r) = s.refresh_seconds {
        let _ = writeln!(o, "<meta http-equiv=\"refresh\" content=\"{r}\">");
    }
    let _ = writeln!(o, "<title>{name} — nightshift sweep report</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>");
    let _ = writeln!(o, "<header><h1>Sweep report: {name}</h1>");
    let better = if s.direction == Direction::Maximize { "higher is better" } else { "lower is better" };
    let _ = write!(o, "<p class=\"sub\">Objective: <strong>{metric}</strong> ({}, {better})", s.direction);
    if let Some(t) = s.generated_at {
        let _ = write!(o, " · generated {}", fmt_utc(t));
    }
    if let Some(r) = s.refresh_seconds {
        let _ = write!(o, " · refreshes every {r} s while the sweep runs");
    }
    o.push_str("</p>\n<nav><a href=\"#summary\">Summary</a><a href=\"#comparison\">Which won</a><a href=\"#charts\">Charts</a><a href=\"#trials\">All trials</a></nav></header>\n");
    for n in &s.notes {
        let _ = writeln!(o, "<p class=\"notice\">{}</p>", escape(n));
    }

    // 1. Summary
    o.push_str("<section id=\"summary\"><h2>Summary</h2>\n<div class=\"facts\">\n");
    match &s.best {
        Some(b) => fact(&mut o, &format!("Best {metric}"), &escape(&fmt_num(b.value)), &format!("trial #{}", b.number)),
        None => fact(&mut o, &format!("Best {metric}"), "—", "no completed trial yet"),
    }
    let c = &s.counts;
    fact(
        &mut o,
        "Trials",
        &c.total.to_string(),
        &format!(
            "{} complete · {} pruned · {} failed · {} running{}",
            c.complete,
            c.pruned,
            c.failed,
            c.running,
            if c.waiting > 0 { format!(" · {} waiting", c.waiting) } else { String::new() }
        ),
    );
    fact(
        &mut o,
        "Wall time",
        &s.wall_seconds.map(fmt_duration).unwrap_or_else(|| "—".into()),
        "first trial start to last finish",
    );
    match (s.epochs_unpruned, s.max_steps, s.savings()) {
        (Some(u), Some((m, given)), Some(saved)) => fact(
            &mut o,
            "Epochs trained",
            &format!("{} of {u}", s.epochs_trained),
            &format!(
                "pruning saved {} of an unpruned sweep ({m} epochs per trial, {})",
                pct(saved.max(0.0)),
                if given { "as configured" } else { "the most any completed trial ran" }
            ),
        ),
        _ => {
            fact(&mut o, "Epochs trained", &s.epochs_trained.to_string(), "per-trial epoch budget unknown: savings not computed")
        }
    }
    match s.utilisation {
        Some(u) => {
            let per: Vec<String> = s
                .devices
                .iter()
                .map(|d| format!("{}: {}", escape(&d.label), d.utilisation.map(pct).unwrap_or_else(|| "—".into())))
                .collect();
            fact(
                &mut o,
                "Device utilisation",
                &pct(u),
                &format!("{} slot{} · {}", s.slots, if s.slots == 1 { "" } else { "s" }, per.join(" · ")),
            );
        }
        None => fact(&mut o, "Device utilisation", "—", "no trial timing recorded"),
    }
    o.push_str("</div>\n");
    if let Some(b) = &s.best {
        let _ = writeln!(o, "<h3>Best trial: #{}</h3>", b.number);
        o.push_str("<table class=\"params\"><thead><tr><th>Parameter</th><th>Value</th></tr></thead><tbody>\n");
        for (k, v) in &b.params {
            let _ = writeln!(o, "<tr><td>{}</td><td>{}</td></tr>", escape(k), escape(v));
        }
        let _ = writeln!(
            o,
            "</tbody></table>\n<p class=\"muted\">{} epochs · {} · device {}</p>",
            b.epochs,
            b.duration_s.map(fmt_duration).unwrap_or_else(|| "duration unknown".into()),
            escape(b.device.as_deref().unwrap_or("not recorded"))
        );
    }
    if let Some(r) = &s.retrain {
        let _ = writeln!(
            o,
            "<h3>Retrain or reuse the best trial</h3>\n<pre><code>{}</code></pre>\n<p class=\"muted\">Run from this report's directory; \
             <a href=\"{file}\">{file}</a> holds the parameters:</p>\n<pre><code>{}</code></pre>",
            escape(&r.command),
            escape(&r.params_json),
            file = crate::BEST_PARAMS_FILE
        );
    }
    o.push_str("</section>\n");

    // 2. Which won
    o.push_str("<section id=\"comparison\">");
    match &data.comparison {
        Section::Ready(d) => comparison(&mut o, d, chart("comparison")),
        Section::Missing(why) => {
            o.push_str("<h2>Freeze strategy: which won</h2>\n");
            missing(&mut o, why);
        }
    }
    o.push_str("</section>\n");

    // 3. Charts
    o.push_str("<section id=\"charts\"><h2>Charts</h2>\n");
    o.push_str("<h3>Optimization history</h3>\n");
    match (&data.history, chart("history")) {
        (Section::Ready(_), Some(c)) => figure(
            &mut o,
            c,
            &format!("Each trial's {metric}; pruned trials show their last reported value; the line is the best so far."),
        ),
        (Section::Missing(why), _) => missing(&mut o, why),
        _ => {}
    }
    o.push_str("<h3>Learning curves</h3>\n");
    match (&data.curves, chart("intermediate")) {
        (Section::Ready(_), Some(c)) => figure(
            &mut o,
            c,
            "Per-epoch values; pruned trials in orange, × where the pruner stopped them; the best trial in black.",
        ),
        (Section::Missing(why), _) => missing(&mut o, why),
        _ => {}
    }
    o.push_str("<h3>Hyperparameter importance</h3>\n");
    let _ = writeln!(o, "<p>{}</p>", escape(IMPORTANCE_METHOD));
    match (&data.importance, chart("importance")) {
        (Section::Ready(d), Some(c)) => {
            figure(&mut o, c, &format!("fANOVA importance over {} completed trials.", d.n_trials));
            if !d.skipped.is_empty() {
                let names: Vec<String> = d.skipped.iter().map(|n| escape(n)).collect();
                let _ = writeln!(
                    o,
                    "<p class=\"muted\">Left out (not set in every completed trial, or never varied): {}.</p>",
                    names.join(", ")
                );
            }
        }
        (Section::Missing(why), _) => missing(&mut o, why),
        _ => {}
    }
    o.push_str("<h3>Contour of the two most important parameters</h3>\n");
    match (&data.contour, chart("contour")) {
        (Section::Ready(_), Some(c)) => {
            figure(&mut o, c, "Colour: the forest's predicted objective, averaged over the other parameters; circles: trials.")
        }
        (Section::Missing(why), _) => missing(&mut o, why),
        _ => {}
    }
    o.push_str("<h3>Parallel coordinates</h3>\n");
    match (&data.parallel, chart("parallel")) {
        (Section::Ready(_), Some(c)) => {
            figure(&mut o, c, "One line per completed trial, from its parameters to its objective; darker is better.")
        }
        (Section::Missing(why), _) => missing(&mut o, why),
        _ => {}
    }
    o.push_str("<h3>Slices</h3>\n");
    match &data.slices {
        Section::Ready(_) => {
            o.push_str("<div class=\"grid\">\n");
            for c in charts.iter().filter(|c| matches!(c.kind, ChartKind::Slice(_))) {
                figure(&mut o, c, &escape(&c.title));
            }
            o.push_str("</div>\n");
        }
        Section::Missing(why) => missing(&mut o, why),
    }
    o.push_str("<h3>Timeline</h3>\n");
    match (&data.timeline, chart("timeline")) {
        (Section::Ready(d), Some(c)) => {
            let how = if d.inferred {
                "No trial recorded a device or slot, so rows are lanes of non-overlapping trials."
            } else {
                "One row per device slot (system attributes \u{201c}device\u{201d} and \u{201c}slot\u{201d})."
            };
            figure(&mut o, c, how);
        }
        (Section::Missing(why), _) => missing(&mut o, why),
        _ => {}
    }
    o.push_str("</section>\n");

    // 4. All trials
    trials_table(&mut o, data);

    o.push_str(
        "<footer>Generated by nightshift. Charts are PNG files next to this page, each also as SVG; trials also as \
                <a href=\"trials.csv\">trials.csv</a> and <a href=\"trials.json\">trials.json</a>.</footer>\n</main>\n",
    );
    let _ = write!(o, "<script>{JS}</script>\n</body>\n</html>\n");
    o
}

fn comparison(o: &mut String, d: &ComparisonData, chart: Option<&ChartSpec<'_>>) {
    if let Some(t) = &d.tournament {
        return tournament(o, d, t, chart);
    }
    let _ = writeln!(o, "<h2>Which won: {}</h2>", escape(&d.param));
    let class = if d.within_noise == Some(false) { "verdict" } else { "verdict noise" };
    let _ = writeln!(o, "<p class=\"{class}\">{}</p>", escape(&d.verdict));
    let metric = escape(&d.metric);
    let _ = writeln!(
        o,
        "<table class=\"stats\"><thead><tr><th>{}</th><th class=\"n\">completed</th><th class=\"n\">pruned</th><th class=\"n\">failed</th>\
         <th class=\"n\">mean {metric}</th><th class=\"n\">sd</th><th class=\"n\">95% CI of the mean</th><th class=\"n\">median</th><th>best trial</th></tr></thead><tbody>",
        escape(&d.param)
    );
    for (i, g) in d.groups.iter().enumerate() {
        let num = |x: f64| if x.is_finite() { fmt_num(x) } else { "—".into() };
        let ci = g.ci95.map(|(a, b)| format!("[{}, {}]", fmt_num(a), fmt_num(b))).unwrap_or_else(|| "—".into());
        let best = g.best_trial.as_ref().map(|(n, _)| format!("#{n}")).unwrap_or_else(|| "—".into());
        let cls = if d.best == Some(i) { " class=\"best\"" } else { "" };
        let _ = writeln!(
            o,
            "<tr{cls}><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            escape(&g.value.to_string()),
            g.n(),
            g.n_pruned,
            g.n_failed,
            num(g.mean),
            num(g.sd),
            ci,
            num(g.median),
            best
        );
    }
    o.push_str("</tbody></table>\n<p class=\"muted\">Statistics use completed trials only (pruned trials stopped early and are not comparable). \
                The verdict compares the best value with the runner-up by Welch's t-test; a difference with p ≥ 0.05 is called within noise.</p>\n");
    if let Some(c) = chart {
        figure(
            o,
            c,
            "Left: final value of each completed trial, quartile box, median, mean ◆ with 95% CI. Right: each value's best learning curve.",
        );
    }
}

/// A tournament: the verdict, the replicate table (mean, 95% CI, compute per arm), the best arm against each
/// other, and the best-so-far curves.
fn tournament(o: &mut String, d: &ComparisonData, t: &TournamentData, chart: Option<&ChartSpec<'_>>) {
    let c = &t.config;
    let _ = writeln!(o, "<h2>Which won: {} (tournament)</h2>", escape(&d.param));
    let class = if t.verdict.winner.is_some() { "verdict" } else { "verdict noise" };
    let _ = writeln!(o, "<p class=\"{class}\">{}</p>", escape(&d.verdict));
    let _ = writeln!(
        o,
        "<p class=\"muted\">Each arm had {} search trials, tuned from its own trials only; then its {} best configuration(s) ran again with {} fresh seeds each. \
         The verdict uses those replicates alone (on the test split where the trainer has one).</p>",
        c.budget_per_arm, c.replicate_top, c.seeds
    );
    let metric = escape(&d.metric);
    let num = |x: Option<f64>| x.filter(|v| v.is_finite()).map(fmt_num).unwrap_or_else(|| "—".into());
    let _ = writeln!(
        o,
        "<table class=\"stats\"><thead><tr><th>{}</th><th class=\"n\">search trials</th><th>best trial</th><th>replicates ({metric})</th>\
         <th class=\"n\">mean</th><th class=\"n\">95% CI</th><th class=\"n\">epochs spent</th></tr></thead><tbody>",
        escape(&d.param)
    );
    for (i, a) in t.arms.iter().enumerate() {
        let cls = if t.verdict.winner == Some(i) { " class=\"best\"" } else { "" };
        let best = a.best.as_ref().map(|(n, _)| format!("#{n}")).unwrap_or_else(|| "—".into());
        let mut reps: Vec<String> = a.replicates.iter().map(|(n, v)| format!("{} (#{n})", fmt_num(*v))).collect();
        if a.replicates_failed > 0 {
            reps.push(format!("{} failed", a.replicates_failed));
        }
        let ci = a.ci95.map(|(lo, hi)| format!("[{}, {}]", fmt_num(lo), fmt_num(hi))).unwrap_or_else(|| "—".into());
        let _ = writeln!(
            o,
            "<tr{cls}><td>{}</td><td class=\"n\">{}</td><td>{best}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{ci}</td><td class=\"n\">{}</td></tr>",
            escape(&a.value.to_string()),
            a.trials,
            escape(&if reps.is_empty() { "—".to_string() } else { reps.join(", ") }),
            num(a.mean),
            a.epochs_spent
        );
    }
    o.push_str("</tbody></table>\n");
    if let Some(b) = t.verdict.best
        && !t.verdict.pairwise.is_empty()
    {
        let _ = writeln!(
            o,
            "<table class=\"stats\"><thead><tr><th>{} against</th><th class=\"n\">difference of means</th><th class=\"n\">95% CI</th>\
             <th class=\"n\">p (Welch)</th><th class=\"n\">p (Holm)</th><th>beaten</th></tr></thead><tbody>",
            escape(&t.arms[b].value.to_string())
        );
        for p in &t.verdict.pairwise {
            let _ = writeln!(
                o,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">[{}, {}]</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
                escape(&t.arms[p.other].value.to_string()),
                fmt_num(p.diff),
                fmt_num(p.ci95.0),
                fmt_num(p.ci95.1),
                fmt_num(p.p),
                fmt_num(p.p_holm),
                if p.beaten { "yes" } else { "no" }
            );
        }
        o.push_str("</tbody></table>\n");
    }
    o.push_str("<p class=\"muted\">Also as data in <a href=\"summary.json\">summary.json</a>.</p>\n");
    if let Some(c) = chart {
        figure(o, c, "Each arm's best search value so far, against its trials (left) and against the epochs it trained (right).");
    }
}

fn trials_table(o: &mut String, data: &ReportData) {
    let t = &data.table;
    let _ = writeln!(
        o,
        "<section id=\"trials\"><h2>All trials</h2>\n<p class=\"muted\">{} trials, completed ones ranked by {} (ties: lower trial number first). \
         Click a column to sort. Also as <a href=\"trials.csv\">trials.csv</a> and <a href=\"trials.json\">trials.json</a>.</p>",
        t.rows.len(),
        escape(&data.summary.metric)
    );
    if t.rows.is_empty() {
        missing(o, "No trials yet.");
        o.push_str("</section>\n");
        return;
    }
    o.push_str("<div class=\"scroll\"><table class=\"sortable\" id=\"trials-table\"><thead><tr><th class=\"n\">Rank</th><th class=\"n\">Trial</th><th>State</th><th class=\"n\">Value</th>");
    for p in &t.params {
        let _ = write!(o, "<th>{}</th>", escape(p));
    }
    o.push_str(
        "<th class=\"n\">Epochs</th><th class=\"n\">Duration</th><th>Device</th><th>Failure reason</th></tr></thead>\n<tbody>\n",
    );
    let opt_num = |x: Option<f64>| x.filter(|v| !v.is_nan()).map(|v| v.to_string()).unwrap_or_default();
    for r in &t.rows {
        let cls = if r.rank == Some(1) { " class=\"best\"" } else { "" };
        let _ = write!(
            o,
            "<tr{cls}><td class=\"n\">{}</td><td class=\"n\" data-v=\"{}\">{}</td><td data-v=\"{}\">{}</td><td class=\"n\" data-v=\"{}\">{}</td>",
            r.rank.map(|x| x.to_string()).unwrap_or_default(),
            r.number,
            match r.replicate_of {
                Some(source) =>
                    format!("{} <span class=\"muted\" title=\"a tournament replicate\">(replicate of #{source})</span>", r.number),
                None => r.number.to_string(),
            },
            r.state.as_str(),
            state_badge(r.state),
            opt_num(r.value),
            r.value.map(fmt_num).unwrap_or_default()
        );
        for p in &r.params {
            let _ = write!(o, "<td>{}</td>", escape(p.as_deref().unwrap_or("")));
        }
        let device = match (&r.device, &r.slot) {
            (Some(d), Some(s)) => format!("{d} · slot {s}"),
            (Some(d), None) => d.clone(),
            (None, Some(s)) => format!("slot {s}"),
            (None, None) => String::new(),
        };
        let reason = r.fail_reason.as_deref().unwrap_or("");
        let short: String = reason.chars().take(300).collect();
        let _ = writeln!(
            o,
            "<td class=\"n\">{}</td><td class=\"n\" data-v=\"{}\">{}</td><td>{}</td><td class=\"reason\" title=\"{}\">{}{}</td></tr>",
            r.epochs,
            opt_num(r.duration_s),
            r.duration_s.map(fmt_duration).unwrap_or_default(),
            escape(&device),
            escape(reason),
            escape(&short),
            if short.len() < reason.len() { "…" } else { "" }
        );
    }
    o.push_str("</tbody></table></div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_matters() {
        assert_eq!(
            escape("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn formats_time() {
        assert_eq!(fmt_utc(0.0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_utc(1_700_000_000.0), "2023-11-14 22:13 UTC");
        assert_eq!(fmt_duration(7530.0), "2 h 05 min");
        assert_eq!(fmt_duration(192.0), "3 min 12 s");
        assert_eq!(fmt_duration(8.44), "8.4 s");
    }
}

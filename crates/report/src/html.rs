//! index.html: one self-contained page (inline CSS and a few lines of inline JS, charts as sibling
//! PNG files, nothing from the network). Every user-provided string goes through [`escape`].
//!
//! This module holds the page's frame (head, styles, navigation, footer), the helpers every section
//! writes with ([`figure`], [`missing`], [`fact`]) and each chart's figure and caption; the summary,
//! comparison and table sections write their own markup (`crate::sections`).

use std::fmt::Write;

use nightshift_search::Direction;

use crate::charts::{ChartKind, ChartSpec};
use crate::data::{ReportData, Section};
use crate::sections::importance::IMPORTANCE_METHOD;
use crate::sections::{comparison, summary, table};

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

pub(crate) fn pct(x: f64) -> String {
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

pub(crate) fn figure(out: &mut String, spec: &ChartSpec<'_>, caption: &str) {
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

pub(crate) fn missing(out: &mut String, why: &str) {
    let _ = writeln!(out, "<p class=\"missing\">{}</p>", escape(why));
}

pub(crate) fn fact(out: &mut String, key: &str, value: &str, detail: &str) {
    let _ = write!(out, "<div class=\"fact\"><div class=\"k\">{key}</div><div class=\"v\">{value}</div>");
    if !detail.is_empty() {
        let _ = write!(out, "<div class=\"d\">{detail}</div>");
    }
    out.push_str("</div>\n");
}

/// A section's chart with its caption, or why the section is missing; the section's data when
/// its chart was drawn.
fn chart_figure<'d, T>(
    o: &mut String,
    section: &'d Section<T>,
    chart: Option<&ChartSpec<'_>>,
    caption: impl FnOnce(&T) -> String,
) -> Option<&'d T> {
    match (section, chart) {
        (Section::Ready(d), Some(c)) => {
            figure(o, c, &caption(d));
            Some(d)
        }
        (Section::Missing(why), _) => {
            missing(o, why);
            None
        }
        (Section::Ready(_), None) => None,
    }
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

    summary::html(&mut o, s);
    comparison::html(&mut o, &data.comparison, chart("comparison"));

    o.push_str("<section id=\"charts\"><h2>Charts</h2>\n");
    o.push_str("<h3>Optimization history</h3>\n");
    chart_figure(&mut o, &data.history, chart("history"), |_| {
        format!("Each trial's {metric}; pruned trials show their last reported value; the line is the best so far.")
    });
    o.push_str("<h3>Learning curves</h3>\n");
    chart_figure(&mut o, &data.curves, chart("intermediate"), |_| {
        "Per-epoch values; pruned trials in orange, × where the pruner stopped them; the best trial in black.".into()
    });
    o.push_str("<h3>Hyperparameter importance</h3>\n");
    let _ = writeln!(o, "<p>{}</p>", escape(IMPORTANCE_METHOD));
    if let Some(d) = chart_figure(&mut o, &data.importance, chart("importance"), |d| {
        format!("fANOVA importance over {} completed trials.", d.n_trials)
    }) && !d.skipped.is_empty()
    {
        let names: Vec<String> = d.skipped.iter().map(|n| escape(n)).collect();
        let _ = writeln!(
            o,
            "<p class=\"muted\">Left out (not set in every completed trial, or never varied): {}.</p>",
            names.join(", ")
        );
    }
    o.push_str("<h3>Contour of the two most important parameters</h3>\n");
    chart_figure(&mut o, &data.contour, chart("contour"), |_| {
        "Colour: the forest's predicted objective, averaged over the other parameters; circles: trials.".into()
    });
    o.push_str("<h3>Parallel coordinates</h3>\n");
    chart_figure(&mut o, &data.parallel, chart("parallel"), |_| {
        "One line per completed trial, from its parameters to its objective; darker is better.".into()
    });
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
    chart_figure(&mut o, &data.timeline, chart("timeline"), |d| {
        if d.inferred {
            "No trial recorded a device or slot, so rows are lanes of non-overlapping trials.".into()
        } else {
            "One row per device slot (system attributes \u{201c}device\u{201d} and \u{201c}slot\u{201d}).".into()
        }
    });
    o.push_str("</section>\n");

    table::html(&mut o, &data.table, &s.metric);

    o.push_str(
        "<footer>Generated by nightshift. Charts are PNG files next to this page, each also as SVG; trials also as \
                <a href=\"trials.csv\">trials.csv</a> and <a href=\"trials.json\">trials.json</a>.</footer>\n</main>\n",
    );
    let _ = write!(o, "<script>{JS}</script>\n</body>\n</html>\n");
    o
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

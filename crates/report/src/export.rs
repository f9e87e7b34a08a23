//! trials.csv and trials.json: the ranked table for spreadsheets and scripts.

use serde::Serialize;

use crate::data::ReportData;
use crate::sections::table::TrialRow;

/// The ranked table as CSV (RFC 4180 quoting). Parameter columns are `params_<name>` as in Optuna's
/// `trials_dataframe`. Text cells that a spreadsheet would run as a formula (=, +, -, @ first) get
/// a leading apostrophe.
pub fn trials_csv(data: &ReportData) -> String {
    let t = &data.table;
    let mut header: Vec<String> = ["rank", "number", "state", "value"].iter().map(|s| s.to_string()).collect();
    header.extend(t.params.iter().map(|p| format!("params_{p}")));
    header.extend(
        ["epochs", "duration_s", "device", "slot", "started_at", "finished_at", "fail_reason"].iter().map(|s| s.to_string()),
    );
    let mut out = String::new();
    push_row(&mut out, header.iter().map(|h| text_cell(h)));
    let num = |x: Option<f64>| x.map(|v| v.to_string()).unwrap_or_default();
    for r in &t.rows {
        let mut cells =
            vec![r.rank.map(|x| x.to_string()).unwrap_or_default(), r.number.to_string(), r.state.to_string(), num(r.value)];
        // Full precision here; the page rounds.
        cells.extend(t.params.iter().map(|name| r.raw_params.get(name).map(|v| param_cell(&v.to_string())).unwrap_or_default()));
        cells.extend([
            r.epochs.to_string(),
            num(r.duration_s),
            r.device.as_deref().map(text_cell).unwrap_or_default(),
            r.slot.as_deref().map(text_cell).unwrap_or_default(),
            num(r.started_at),
            num(r.finished_at),
            r.fail_reason.as_deref().map(text_cell).unwrap_or_default(),
        ]);
        push_row(&mut out, cells.into_iter());
    }
    out
}

fn push_row(out: &mut String, cells: impl Iterator<Item = String>) {
    let cells: Vec<String> = cells.map(|c| quote(&c)).collect();
    out.push_str(&cells.join(","));
    out.push_str("\r\n");
}

fn quote(cell: &str) -> String {
    if cell.contains([',', '"', '\n', '\r']) { format!("\"{}\"", cell.replace('"', "\"\"")) } else { cell.to_string() }
}

/// Neutralises spreadsheet formulas in free text.
fn text_cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) { format!("'{s}") } else { s.to_string() }
}

/// Parameter values: numbers stay numbers (a negative number is not a formula).
fn param_cell(s: &str) -> String {
    if s.parse::<f64>().is_ok() { s.to_string() } else { text_cell(s) }
}

#[derive(Serialize)]
struct TrialsJson<'a> {
    study: &'a str,
    direction: nightshift_search::Direction,
    metric: &'a str,
    best_trial: Option<u64>,
    trials: &'a [TrialRow],
}

/// The ranked table as JSON: study, direction, metric, best trial number and every trial with its
/// parameters as recorded, state, rank, epochs, timing, device and learning curve.
pub fn trials_json(data: &ReportData) -> serde_json::Result<String> {
    let s = &data.summary;
    let doc = TrialsJson {
        study: &s.study_name,
        direction: s.direction,
        metric: &s.metric,
        best_trial: s.best.as_ref().map(|b| b.number),
        trials: &data.table.rows,
    };
    serde_json::to_string_pretty(&doc)
}

/// summary.json: a tournament's outcome as data — the compared parameter, the winner (or null) and per arm
/// its search trials, best parameters, replicate values, their mean and 95% interval, and the epochs it cost.
pub fn summary_json(data: &ReportData) -> serde_json::Result<String> {
    let comparison = data.comparison.ready().and_then(|c| Some((c, c.tournament.as_ref()?))).map(|(c, t)| {
        let arms: Vec<serde_json::Value> = t
            .arms
            .iter()
            .map(|a| {
                serde_json::json!({
                    "value": a.value,
                    "trials": a.trials,
                    "best_trial": a.best.as_ref().map(|b| b.0),
                    "best_params": a.best.as_ref().map(|b| &b.1),
                    "replicates": a.values(),
                    "replicates_failed": a.replicates_failed,
                    "mean": a.mean,
                    "ci95": a.ci95.map(|(lo, hi)| [lo, hi]),
                    "epochs_spent": a.epochs_spent,
                })
            })
            .collect();
        serde_json::json!({
            "param": c.param,
            "winner": t.verdict.winner.map(|w| &t.arms[w].value),
            "tied": t.verdict.tied.iter().map(|&i| &t.arms[i].value).collect::<Vec<_>>(),
            "unjudged": t.verdict.unjudged.iter().map(|&i| &t.arms[i].value).collect::<Vec<_>>(),
            "never_ran": t.verdict.never_ran.iter().map(|&i| &t.arms[i].value).collect::<Vec<_>>(),
            "finished": t.finished,
            "verdict": c.verdict,
            "budget_per_arm": t.config.budget_per_arm,
            "replicate_top": t.config.replicate_top,
            "seeds": t.config.seeds,
            "arms": arms,
            "pairwise": t.verdict.pairwise.iter().map(|p| serde_json::json!({
                "best": t.verdict.best.map(|b| &t.arms[b].value),
                "other": &t.arms[p.other].value,
                "diff": p.diff,
                "ci95": [p.ci95.0, p.ci95.1],
                "p": p.p,
                "p_holm": p.p_holm,
                "beaten": p.beaten,
            })).collect::<Vec<_>>(),
        })
    });
    serde_json::to_string_pretty(&serde_json::json!({ "comparison": comparison }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses() {
        assert_eq!(quote("a,b"), "\"a,b\"");
        assert_eq!(quote("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(text_cell("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(param_cell("-0.5"), "-0.5");
        assert_eq!(param_cell("-cmd"), "'-cmd");
    }
}

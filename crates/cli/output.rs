//! Printing studies and trials as aligned tables or JSON.

use clap::ValueEnum;
use nightshift_search::{FrozenTrial, StudyRecord, TrialState};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Json,
}

/// A left-aligned text table with a header row.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells.iter().zip(&widths).map(|(c, w)| format!("{c:<w$}")).collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(headers.to_vec());
    out += &line(widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>().iter().map(String::as_str).collect());
    for row in rows {
        out += &line(row.iter().map(String::as_str).collect());
    }
    out
}

pub fn trial_json(trial: &FrozenTrial) -> Value {
    json!({
        "number": trial.number,
        "state": trial.state,
        "value": trial.value,
        "params": trial.params,
        "intermediate_values": trial.intermediate_values,
        "user_attrs": trial.user_attrs,
        "system_attrs": trial.system_attrs,
        "datetime_start": trial.started_at,
        "datetime_complete": trial.finished_at,
        "duration": trial.duration(),
    })
}

pub fn trials_table(trials: &[FrozenTrial]) -> String {
    let mut names: Vec<&str> = trials.iter().flat_map(|t| t.params.keys().map(String::as_str)).collect();
    names.sort_unstable();
    names.dedup();
    let mut headers = vec!["number", "state", "value"];
    headers.extend(names.iter().copied());
    headers.push("duration_s");
    let rows: Vec<Vec<String>> = trials
        .iter()
        .map(|t| {
            let mut row = vec![t.number.to_string(), t.state.to_string(), t.value.map(fmt_value).unwrap_or_default()];
            row.extend(names.iter().map(|n| t.params.get(*n).map(|v| v.to_string()).unwrap_or_default()));
            row.push(t.duration().map(|d| format!("{d:.3}")).unwrap_or_default());
            if t.state == TrialState::Fail
                && let Some(reason) = t.system_attrs.get(nightshift_search::attrs::FAIL_REASON).and_then(Value::as_str)
            {
                row.last_mut().expect("rows end with the duration").push_str(&format!("  ({reason})"));
            }
            row
        })
        .collect();
    table(&headers, &rows)
}

pub fn studies_table(studies: &[(StudyRecord, Vec<FrozenTrial>)]) -> String {
    let rows: Vec<Vec<String>> = studies
        .iter()
        .map(|(s, trials)| {
            let count = |state| trials.iter().filter(|t| t.state == state).count().to_string();
            let best = nightshift_search::best_of(trials, s.direction).and_then(|t| t.value).map(fmt_value).unwrap_or_default();
            vec![
                s.name.clone(),
                s.direction.to_string(),
                trials.len().to_string(),
                count(TrialState::Complete),
                count(TrialState::Pruned),
                count(TrialState::Fail),
                count(TrialState::Running),
                best,
            ]
        })
        .collect();
    table(&["name", "direction", "n_trials", "complete", "pruned", "fail", "running", "best_value"], &rows)
}

fn fmt_value(v: f64) -> String {
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns() {
        let out = table(&["a", "long"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(out, "a    long\n---  ----\nxyz  1\n");
    }
}

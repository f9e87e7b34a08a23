//! The summary at the top of the page: counts, the best trial, pruning savings, device use and
//! the command that retrains the winner.

use std::fmt::Write;

use nightshift_search::{Direction, FrozenTrial, StudyRecord, TrialState, attrs};
use serde::Serialize;

use super::timeline::TimelineData;
use crate::axis::fmt_num;
use crate::data::{ReportOptions, attr_string, display_value, epochs_reached, param_axes};
use crate::html::{escape, fact, fmt_duration, pct};

/// How many trials are in each state.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StateCounts {
    /// All trials.
    pub total: usize,
    /// COMPLETE trials.
    pub complete: usize,
    /// PRUNED trials.
    pub pruned: usize,
    /// FAIL trials.
    pub failed: usize,
    /// RUNNING trials.
    pub running: usize,
    /// WAITING (enqueued) trials.
    pub waiting: usize,
}

/// The summary at the top of the page.
#[derive(Clone, Debug, PartialEq)]
pub struct SummaryData {
    /// The study's name.
    pub study_name: String,
    /// Whether the objective is minimised or maximised.
    pub direction: Direction,
    /// The objective's name, e.g. "validation accuracy".
    pub metric: String,
    /// Trials by state.
    pub counts: StateCounts,
    /// The best completed trial, if any.
    pub best: Option<BestTrialData>,
    /// The sweep's wall-clock seconds, when known.
    pub wall_seconds: Option<f64>,
    /// Epochs actually trained, over all trials.
    pub epochs_trained: u64,
    /// Epochs the same trials would have cost without pruning; `None` when the epoch budget is unknown.
    pub epochs_unpruned: Option<u64>,
    /// The per-trial epoch budget used for `epochs_unpruned`, and whether it was given or inferred.
    pub max_steps: Option<(u64, bool)>,
    /// Use of each device slot, in timeline order.
    pub devices: Vec<DeviceUse>,
    /// Busy slot-seconds / (slots × wall seconds).
    pub utilisation: Option<f64>,
    /// Concurrent trial slots.
    pub slots: usize,
    /// How to retrain the best trial, if there is one.
    pub retrain: Option<RetrainData>,
    /// Plain-language notes about the state of the study ("no trials yet", "all trials failed").
    pub notes: Vec<String>,
    /// Unix time the page was generated, when given (no timestamp keeps output reproducible).
    pub generated_at: Option<f64>,
    /// The page's auto-refresh period, for reports rewritten during a run.
    pub refresh_seconds: Option<u32>,
}

impl SummaryData {
    /// Fraction of epochs pruning saved, when known.
    pub fn savings(&self) -> Option<f64> {
        let unpruned = self.epochs_unpruned? as f64;
        (unpruned > 0.0).then(|| 1.0 - self.epochs_trained as f64 / unpruned)
    }
}

/// The best completed trial, for the summary.
#[derive(Clone, Debug, PartialEq)]
pub struct BestTrialData {
    /// Trial number.
    pub number: u64,
    /// Objective value.
    pub value: f64,
    /// Parameter names and display values, in search-space order.
    pub params: Vec<(String, String)>,
    /// Epochs it trained.
    pub epochs: u64,
    /// Seconds from start to finish, when both are known.
    pub duration_s: Option<f64>,
    /// The device it ran on, when recorded.
    pub device: Option<String>,
}

/// How to retrain the best trial.
#[derive(Clone, Debug, PartialEq)]
pub struct RetrainData {
    /// The shell command, with the parameters file filled in.
    pub command: String,
    /// Contents of best_params.json.
    pub params_json: String,
}

/// How busy one device slot (a timeline row) was.
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceUse {
    /// The slot's label, e.g. "cuda:0 · slot 1".
    pub label: String,
    /// Trials it ran.
    pub trials: usize,
    /// Seconds it was running a trial.
    pub busy_seconds: f64,
    /// Busy seconds over the wall-clock time, when that is known.
    pub utilisation: Option<f64>,
}

fn count_states(trials: &[FrozenTrial]) -> StateCounts {
    let mut c = StateCounts { total: trials.len(), ..Default::default() };
    for t in trials {
        match t.state {
            TrialState::Complete => c.complete += 1,
            TrialState::Pruned => c.pruned += 1,
            TrialState::Fail => c.failed += 1,
            TrialState::Running => c.running += 1,
            TrialState::Waiting => c.waiting += 1,
        }
    }
    c
}

pub(crate) fn build(
    study: &StudyRecord,
    trials: &[FrozenTrial],
    ranked: &[&FrozenTrial],
    metric: &str,
    options: &ReportOptions,
    timeline: Option<&TimelineData>,
) -> SummaryData {
    let counts = count_states(trials);
    let best = ranked.first().map(|t| BestTrialData {
        number: t.number,
        value: t.value.unwrap(),
        params: param_axes(study, trials)
            .iter()
            .filter_map(|a| Some((a.name.clone(), display_value(t.params.get(&a.name)?))))
            .collect(),
        epochs: epochs_reached(t),
        duration_s: t.duration(),
        device: attr_string(t, attrs::DEVICE),
    });

    let epochs_trained: u64 = trials.iter().map(epochs_reached).sum();
    let max_steps = match options.max_steps {
        Some(m) => Some((m, true)),
        None => ranked.iter().map(|t| epochs_reached(t)).max().filter(|m| *m > 0).map(|m| (m, false)),
    };
    // Without pruning, every completed or pruned trial would have run the full budget; failed and
    // running trials cost what they cost either way.
    let epochs_unpruned = max_steps.map(|(m, _)| {
        trials
            .iter()
            .map(|t| match t.state {
                TrialState::Complete | TrialState::Pruned => m.max(epochs_reached(t)),
                _ => epochs_reached(t),
            })
            .sum()
    });

    let wall_seconds = options.wall_clock_seconds.or(timeline.map(|t| t.span_s)).filter(|w| *w > 0.0);
    let mut devices: Vec<DeviceUse> = Vec::new();
    if let Some(tl) = timeline {
        for row in &tl.rows {
            let busy: f64 = row.bars.iter().map(|b| b.end_s - b.start_s).sum();
            devices.push(DeviceUse {
                label: row.label.clone(),
                trials: row.bars.len(),
                busy_seconds: busy,
                utilisation: wall_seconds.map(|w| (busy / w).min(1.0)),
            });
        }
    }
    let slots = options.slots.unwrap_or(devices.len());
    let busy_total: f64 = devices.iter().map(|d| d.busy_seconds).sum();
    let utilisation = wall_seconds.filter(|_| slots > 0).map(|w| (busy_total / (w * slots as f64)).min(1.0));

    let retrain = ranked.first().map(|t| {
        let template = options.retrain_command.as_deref().unwrap_or("nightshift trial --params-file {params_file}");
        let params: serde_json::Map<String, serde_json::Value> =
            t.params.iter().map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(serde_json::Value::Null))).collect();
        let command =
            template.replace("{params_file}", &shell_quote(crate::BEST_PARAMS_FILE)).replace("{trial}", &t.number.to_string());
        RetrainData {
            command: fill_params(&command, &t.params),
            params_json: serde_json::to_string_pretty(&params).unwrap_or_else(|_| "{}".into()),
        }
    });

    let mut notes = Vec::new();
    if counts.total == 0 {
        notes.push("This study has no trials yet.".to_string());
    } else if ranked.is_empty() {
        let why = if counts.failed == counts.total {
            "every trial failed — see the failure reasons in the table below".to_string()
        } else if counts.pruned == counts.total {
            "every trial was pruned".to_string()
        } else if counts.running + counts.waiting > 0 {
            "trials are still running".to_string()
        } else {
            format!("{} pruned, {} failed", counts.pruned, counts.failed)
        };
        notes.push(format!("No trial has completed yet ({why}), so there is no best trial and no ranking."));
    } else if ranked.len() < 3 {
        notes.push(format!(
            "Only {} completed trial{}: too few for importance or comparisons to mean much.",
            ranked.len(),
            if ranked.len() == 1 { "" } else { "s" }
        ));
    }
    if counts.running > 0 {
        notes.push(format!(
            "{} trial{} still running: this report shows the state so far.",
            counts.running,
            if counts.running == 1 { " is" } else { "s are" }
        ));
    }

    SummaryData {
        study_name: study.name.clone(),
        direction: study.direction,
        metric: metric.to_string(),
        counts,
        best,
        wall_seconds,
        epochs_trained,
        epochs_unpruned,
        max_steps,
        devices,
        utilisation,
        slots,
        retrain,
        notes,
        generated_at: options.now,
        refresh_seconds: options.refresh_seconds,
    }
}

/// Quotes a path for a POSIX shell when it needs it.
/// `template` with each `{name}` of a parameter replaced by the trial's value (shell-quoted) and `{{`, `}}`
/// made single braces, as a `command:` trial's argv is rendered; other placeholders (`{seed}`,
/// `{trial_dir}`) are kept, with a note that they are filled in as for a trial.
fn fill_params(template: &str, params: &nightshift_search::Params) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    let mut unfilled = false;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
        } else if let (true, Some(end)) = (tail.starts_with('{'), tail.find('}')) {
            match params.get(&tail[1..end]) {
                Some(value) => out.push_str(&shell_quote(&value.to_string())),
                None => {
                    out.push_str(&tail[..=end]);
                    unfilled = true;
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push_str(&tail[..1]);
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    if unfilled {
        out.push_str("   # {…}: filled in as for a trial (docs/protocol.md)");
    }
    out
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The summary section of the page: the facts, the best trial and how to retrain it.
pub(crate) fn html(o: &mut String, s: &SummaryData) {
    let metric = escape(&s.metric);
    o.push_str("<section id=\"summary\"><h2>Summary</h2>\n<div class=\"facts\">\n");
    match &s.best {
        Some(b) => fact(o, &format!("Best {metric}"), &escape(&fmt_num(b.value)), &format!("trial #{}", b.number)),
        None => fact(o, &format!("Best {metric}"), "—", "no completed trial yet"),
    }
    let c = &s.counts;
    fact(
        o,
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
    fact(o, "Wall time", &s.wall_seconds.map(fmt_duration).unwrap_or_else(|| "—".into()), "first trial start to last finish");
    match (s.epochs_unpruned, s.max_steps, s.savings()) {
        (Some(u), Some((m, given)), Some(saved)) => fact(
            o,
            "Epochs trained",
            &format!("{} of {u}", s.epochs_trained),
            &format!(
                "pruning saved {} of an unpruned sweep ({m} epochs per trial, {})",
                pct(saved.max(0.0)),
                if given { "as configured" } else { "the most any completed trial ran" }
            ),
        ),
        _ => fact(o, "Epochs trained", &s.epochs_trained.to_string(), "per-trial epoch budget unknown: savings not computed"),
    }
    match s.utilisation {
        Some(u) => {
            let per: Vec<String> = s
                .devices
                .iter()
                .map(|d| format!("{}: {}", escape(&d.label), d.utilisation.map(pct).unwrap_or_else(|| "—".into())))
                .collect();
            fact(
                o,
                "Device utilisation",
                &pct(u),
                &format!("{} slot{} · {}", s.slots, if s.slots == 1 { "" } else { "s" }, per.join(" · ")),
            );
        }
        None => fact(o, "Device utilisation", "—", "no trial timing recorded"),
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_search::ParamValue;

    #[test]
    fn a_command_sweeps_retrain_line_carries_the_best_values() {
        // Found by a user: the report's retrain command kept `{x}` and `{{x}}` as written.
        let params: nightshift_search::Params =
            [("x".to_string(), ParamValue::Float(0.25)), ("opt".into(), ParamValue::Str("adam w".into()))].into();
        let filled = fill_params("python3 train.py --x {x} --opt {opt} --literal={{x}}", &params);
        assert_eq!(filled, "python3 train.py --x 0.25 --opt 'adam w' --literal={x}");
        let filled = fill_params("train --seed {seed} --x {x}", &params);
        assert_eq!(filled, "train --seed {seed} --x 0.25   # {…}: filled in as for a trial (docs/protocol.md)");
    }
}

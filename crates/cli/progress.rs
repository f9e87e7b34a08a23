//! Live progress of `run`/`resume`/`worker`: the orchestrator emits [`Event`]s, this draws them — an
//! indicatif bar plus one line per slot on a terminal, plain lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use nightshift_search::{Direction, ParamValue, Params, Role, TrialState, attrs};

use nightshift_orchestrator::{Event, Observer};

/// Prints progress to stderr (stdout is for results): bars on a terminal that can draw them, a line
/// per event otherwise (a pipe, a log file, `TERM=dumb`), nothing when quiet.
pub struct ConsoleProgress {
    mode: Mode,
    state: Mutex<State>,
}

enum Mode {
    Bars { multi: MultiProgress, overall: ProgressBar, slots: Mutex<Vec<ProgressBar>> },
    Plain,
    Quiet,
}

struct State {
    budget: u64,
    done: u64,
    pruned: u64,
    failed: u64,
    interrupted: u64,
    best: Option<(u64, f64)>,
    direction: Direction,
    last_plain_report: Instant,
}

impl ConsoleProgress {
    pub fn new(quiet: bool) -> Self {
        let mode = if quiet {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() && !ProgressDrawTarget::stderr().is_hidden() {
            // indicatif hides bars on a terminal it cannot draw on (`TERM=dumb` or unset); those get lines.
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template("{bar:30.cyan/blue} {pos}/{len} trials  {msg}  [{elapsed_precise}, ETA {eta}]")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            overall.enable_steady_tick(Duration::from_millis(500));
            Mode::Bars { multi, overall, slots: Mutex::new(Vec::new()) }
        } else {
            Mode::Plain
        };
        let state = State {
            budget: 0,
            done: 0,
            pruned: 0,
            failed: 0,
            interrupted: 0,
            best: None,
            direction: Direction::Maximize,
            last_plain_report: Instant::now(),
        };
        Self { mode, state: Mutex::new(state) }
    }

    fn summary(state: &State) -> String {
        let best = state.best.map(|(n, v)| format!("best {} (#{n})", fmt_value(v))).unwrap_or_else(|| "best —".into());
        let interrupted = if state.interrupted > 0 { format!(" · interrupted {}", state.interrupted) } else { String::new() };
        format!("pruned {} · failed {}{interrupted} · {best}", state.pruned, state.failed)
    }

    fn println(&self, line: &str) {
        match &self.mode {
            Mode::Bars { multi, .. } => {
                let _ = multi.println(line);
            }
            Mode::Plain => eprintln!("{line}"),
            Mode::Quiet => {}
        }
    }

    fn slot_bar(&self, index: usize, message: String) {
        if let Mode::Bars { slots, .. } = &self.mode
            && let Some(bar) = slots.lock().expect("progress lock").get(index)
        {
            bar.set_message(message);
        }
    }
}

impl Observer for ConsoleProgress {
    fn event(&self, event: &Event<'_>) {
        if matches!(self.mode, Mode::Quiet) {
            return;
        }
        let mut state = self.state.lock().expect("progress lock");
        match event {
            Event::Started { study, slots, budget, used, stale, best } => {
                state.budget = *budget;
                state.done = *used;
                state.best = *best;
                state.direction = study.direction;
                let devices: Vec<String> = slots.iter().map(|s| s.device.to_string()).collect();
                let resumed = if *used > 0 { format!(", {used} already in the study") } else { String::new() };
                let (trials, slots_word) =
                    (if *budget == 1 { "trial" } else { "trials" }, if slots.len() == 1 { "slot" } else { "slots" });
                self.println(&format!(
                    "study {}: {budget} {trials} on {} {slots_word} ({}){resumed}",
                    study.name,
                    slots.len(),
                    devices.join(", ")
                ));
                if !stale.is_empty() {
                    self.println(&format!(
                        "failed {} stale trial(s) left RUNNING by a dead orchestrator: {stale:?} (with \
                         `reenqueue_stale: true` in the spec their parameters run again)",
                        stale.len()
                    ));
                }
                if let Mode::Bars { multi, overall, slots: bars } = &self.mode {
                    overall.set_length(*budget);
                    overall.set_position(*used);
                    let mut bars = bars.lock().expect("progress lock");
                    for slot in *slots {
                        let bar = multi.add(ProgressBar::new_spinner());
                        bar.set_style(
                            ProgressStyle::with_template("  {prefix:>8} {msg}")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        bar.set_prefix(slot.device.to_string());
                        bar.set_message("idle");
                        bars.push(bar);
                    }
                }
            }
            Event::TrialStarted { slot, trial } => {
                let msg = format!("#{} {}", trial.number, short_params(&trial.params));
                self.slot_bar(slot.index, format!("{msg}  starting"));
                if matches!(self.mode, Mode::Plain) {
                    eprintln!(
                        "trial {} started on {} (slot {}): {}",
                        trial.number,
                        slot.device,
                        slot.index,
                        short_params(&trial.params)
                    );
                }
            }
            Event::TrialReport { slot, number, step, value } => {
                self.slot_bar(slot.index, format!("#{number}  step {step}  value {}", fmt_value(*value)));
                if matches!(self.mode, Mode::Plain) && state.last_plain_report.elapsed() >= Duration::from_secs(10) {
                    state.last_plain_report = Instant::now();
                    eprintln!("trial {number}: step {step} value {}", fmt_value(*value));
                }
            }
            Event::TrialFinished { slot, trial, rerun } => {
                let reason = trial.system_attrs.get(attrs::FAIL_REASON).and_then(|r| r.as_str());
                // A replicate is scored for the verdict (on the test split when there is one), not a search result.
                let replicate = Role::of(trial) == Some(Role::Replicate);
                match trial.state {
                    // Stopped by Ctrl-C, not by its program: counted apart from the failures.
                    TrialState::Fail if reason == Some(attrs::FAIL_REASON_INTERRUPTED) => state.interrupted += 1,
                    TrialState::Pruned => state.pruned += 1,
                    TrialState::Fail => state.failed += 1,
                    TrialState::Complete if !replicate => {
                        if let Some(v) = trial.value {
                            state.best = best_so_far(state.best, (trial.number, v), state.direction);
                        }
                    }
                    _ => {}
                }
                // A re-run takes the failed trial's place in the budget.
                if !rerun {
                    state.done += 1;
                }
                self.slot_bar(slot.index, "idle".into());
                let value = trial.value.map(fmt_value).unwrap_or_else(|| "—".into());
                let reason = reason.map(|r| format!(": {r}")).unwrap_or_default();
                let line = format!("trial {} {} value {value}{reason}", trial.number, trial.state);
                match &self.mode {
                    Mode::Bars { overall, .. } => {
                        overall.set_position(state.done.min(state.budget.max(state.done)));
                        overall.set_message(Self::summary(&state));
                        if trial.state == TrialState::Fail {
                            self.println(&line);
                        }
                    }
                    _ => eprintln!("{line}  [{}/{} · {}]", state.done, state.budget, Self::summary(&state)),
                }
            }
            Event::Stopping { reason } => self.println(&format!("stopping: {reason}")),
            Event::Notice(text) => self.println(text),
        }
    }
}

impl Drop for ConsoleProgress {
    fn drop(&mut self) {
        if let Mode::Bars { overall, slots, .. } = &self.mode {
            for bar in slots.lock().expect("progress lock").iter() {
                bar.finish_and_clear();
            }
            overall.finish();
        }
    }
}

/// `lr=1.2e-3 bs=32 opt=adam`
pub fn short_params(params: &Params) -> String {
    params
        .iter()
        .map(|(k, v)| {
            let v = match v {
                ParamValue::Float(f) => fmt_value(*f),
                other => other.to_string(),
            };
            format!("{k}={v}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn fmt_value(v: f64) -> String {
    if v == 0.0 || (1e-2..1e4).contains(&v.abs()) {
        format!("{v:.4}").trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.2e}")
    }
}

/// The best (trial number, value) after `finished`; ties go to the lower trial number, as in the
/// summary ([`nightshift_search::best_of`]), whatever order the trials finish in.
fn best_so_far(best: Option<(u64, f64)>, finished: (u64, f64), direction: Direction) -> Option<(u64, f64)> {
    let (number, value) = finished;
    match best {
        Some((n, b)) if !(direction.is_better(value, b) || (value == b && number < n)) => best,
        _ => Some(finished),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_so_far_breaks_ties_as_the_summary_does() {
        let mut best = None;
        for finished in [(1, 0.856), (0, 0.856), (2, 0.5), (3, 0.9)] {
            best = best_so_far(best, finished, Direction::Maximize);
        }
        assert_eq!(best, Some((3, 0.9)));
        let best = [(1, 0.856), (0, 0.856), (2, 0.9)].into_iter().fold(None, |b, f| best_so_far(b, f, Direction::Minimize));
        assert_eq!(best, Some((0, 0.856)), "trial 0 ties trial 1, which finished first");
    }
}

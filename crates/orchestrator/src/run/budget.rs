//! When the sweep stops: the budget (re-runs replace the trials they retry), `timeout`/`stop_at`, the
//! target, and the strata of `compare:`.

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use nightshift_search::{Direction, FrozenTrial, TrialState};

use crate::spec::{Budget, Spec};

/// System attribute on a re-run trial naming the trial it replaces (which then no longer counts
/// toward the budget).
pub const RETRY_OF_ATTR: &str = "retry_of";

/// Why a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    Budget { trials: u64 },
    Timeout(Duration),
    StopAt(u32, u32),
    Target { value: f64, trial: u64 },
    ConsecutiveFailures { count: u32, last_reason: String },
    SpaceExhausted(String),
    Shutdown,
    Interrupted,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Budget { trials } => write!(f, "budget reached: the study has {trials} trials"),
            Self::Timeout(d) => {
                write!(f, "timeout reached ({}); running trials were allowed to finish", crate::process::fmt_duration(*d))
            }
            Self::StopAt(h, m) => write!(f, "stop time {h:02}:{m:02} reached; running trials were allowed to finish"),
            Self::Target { value, trial } => write!(f, "target reached: trial {trial} scored {value}"),
            Self::ConsecutiveFailures { count, last_reason } => write!(
                f,
                "stopped after {count} consecutive failed trials (last: {last_reason}); look at reports/<study>/trials/<n>/stderr.log, fix the trial program, then `nightshift resume`"
            ),
            Self::SpaceExhausted(m) => write!(f, "search space exhausted: {m}"),
            Self::Shutdown => write!(f, "stopped by request; running trials finished (`nightshift resume` continues)"),
            Self::Interrupted => {
                write!(f, "interrupted; running trials were stopped and re-enqueued (`nightshift resume` continues)")
            }
        }
    }
}

/// Trials that count toward the budget: everything but WAITING trials and trials replaced by a re-run.
pub fn budget_used(trials: &[FrozenTrial]) -> u64 {
    let replaced: HashSet<u64> = trials.iter().filter_map(|t| t.system_attrs.get(RETRY_OF_ATTR)?.as_u64()).collect();
    trials.iter().filter(|t| t.state != TrialState::Waiting && !replaced.contains(&t.number)).count() as u64
}

/// Time from `now` until the next local `hh:mm` (tomorrow's when today's has passed).
pub fn until_clock(now: chrono::NaiveDateTime, (h, m): (u32, u32)) -> Duration {
    let today = now.date().and_hms_opt(h, m, 0).expect("validated clock time");
    let at = if today > now { today } else { today + chrono::Duration::days(1) };
    (at - now).to_std().unwrap_or_default()
}

/// The earliest of the budget's `timeout` (from `t0`) and `stop_at` (the next such local time after `now`).
pub(super) fn deadline(budget: &Budget, t0: Instant, now: chrono::NaiveDateTime) -> Option<(Instant, StopReason)> {
    let mut candidates = Vec::new();
    if let Some(t) = budget.timeout {
        candidates.push((t0 + t, StopReason::Timeout(t)));
    }
    if let Some((h, m)) = budget.stop_at {
        candidates.push((t0 + until_clock(now, (h, m)), StopReason::StopAt(h, m)));
    }
    candidates.into_iter().min_by_key(|(at, _)| *at)
}

/// The stratum value the next trial should take: the least used so far (ties: first listed).
pub fn next_stratum<'a>(
    trials: &[FrozenTrial],
    param: &str,
    values: &'a [nightshift_search::ParamValue],
) -> &'a nightshift_search::ParamValue {
    let replaced: HashSet<u64> = trials.iter().filter_map(|t| t.system_attrs.get(RETRY_OF_ATTR)?.as_u64()).collect();
    let count = |v: &nightshift_search::ParamValue| {
        trials.iter().filter(|t| !replaced.contains(&t.number) && t.params.get(param) == Some(v)).count()
    };
    values.iter().min_by_key(|v| count(v)).expect("compare has values")
}

pub(super) fn target_reached(spec: &Spec, trials: &[FrozenTrial]) -> Option<StopReason> {
    let target = spec.budget.target?;
    let best = nightshift_search::best_of(trials, spec.objective.direction)?;
    let value = best.value?;
    let reached = match spec.objective.direction {
        Direction::Maximize => value >= target,
        Direction::Minimize => value <= target,
    };
    reached.then_some(StopReason::Target { value, trial: best.number })
}

#[cfg(test)]
mod tests {
    use super::*;
    use nightshift_search::{ParamValue, TrialState};
    fn trial(number: u64, state: TrialState, k: i64) -> FrozenTrial {
        let mut t = FrozenTrial::new(number as i64, number, state);
        t.params.insert("k".into(), ParamValue::Int(k));
        t
    }

    #[test]
    fn budget_skips_waiting_and_replaced_trials() {
        let mut trials = vec![trial(0, TrialState::Complete, 0), trial(1, TrialState::Fail, 1), trial(2, TrialState::Waiting, 1)];
        assert_eq!(budget_used(&trials), 2);
        trials[2].system_attrs.insert(RETRY_OF_ATTR.into(), 1.into());
        assert_eq!(budget_used(&trials), 1, "trial 1 is replaced by its re-run, which is still waiting");
        trials[2].state = TrialState::Running;
        assert_eq!(budget_used(&trials), 2);
    }

    #[test]
    fn strata_get_equal_shares() {
        let values = [ParamValue::Int(0), ParamValue::Int(1), ParamValue::Int(2)];
        let mut trials = Vec::new();
        for n in 0..9 {
            let v = next_stratum(&trials, "k", &values).clone();
            let ParamValue::Int(k) = v else { panic!() };
            trials.push(trial(n, TrialState::Complete, k));
        }
        for k in 0..3 {
            assert_eq!(trials.iter().filter(|t| t.params["k"] == ParamValue::Int(k)).count(), 3);
        }
    }

    #[test]
    fn clock_deadlines_roll_over_to_tomorrow() {
        let at = |h, m| chrono::NaiveDate::from_ymd_opt(2025, 1, 1).unwrap().and_hms_opt(h, m, 0).unwrap();
        assert_eq!(until_clock(at(23, 0), (7, 0)), Duration::from_secs(8 * 3600));
        assert_eq!(until_clock(at(6, 30), (7, 0)), Duration::from_secs(1800));
        assert_eq!(until_clock(at(7, 0), (7, 0)), Duration::from_secs(24 * 3600));
    }
}

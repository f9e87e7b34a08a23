//! When the sweep stops: the budget (re-runs replace the trials they retry), `timeout`/`stop_at`, the
//! target, and the strata of `compare:`.

use nightshift_search::attrs;
use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, TimeDelta, TimeZone};

use nightshift_search::{Direction, FrozenTrial, Step, TrialState};

use crate::spec::{Budget, Spec};

/// Why a run ended.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// `budget.trials` reached.
    Budget {
        /// The study's trials that count toward the budget.
        trials: u64,
    },
    /// `budget.timeout` passed.
    Timeout(Duration),
    /// `budget.stop_at` (hour, minute) reached.
    StopAt(u32, u32),
    /// A trial reached `budget.target`.
    Target {
        /// Its value.
        value: f64,
        /// Its number.
        trial: u64,
    },
    /// `budget.max_consecutive_failures` trials failed in a row.
    ConsecutiveFailures {
        /// How many.
        count: u32,
        /// Why the last one failed.
        last_reason: String,
        /// The last one's directory: its stderr.log and stdout.log say why.
        trial_dir: std::path::PathBuf,
    },
    /// The sampler has nothing left to propose (every grid point was tried), in words.
    SpaceExhausted(String),
    /// A first Ctrl-C (drain): running trials finished.
    Shutdown,
    /// A second Ctrl-C (kill): running trials were stopped and re-enqueued.
    Interrupted,
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Budget { trials } => {
                write!(f, "budget reached: {trials} trials count toward it (re-runs replace the trials they re-run)")
            }
            Self::Timeout(d) => {
                write!(f, "timeout reached ({}): no new trials; running ones finish", crate::process::fmt_duration(*d))
            }
            Self::StopAt(h, m) => write!(f, "stop time {h:02}:{m:02} reached: no new trials; running ones finish"),
            Self::Target { value, trial } => write!(f, "target reached: trial {trial} scored {value}"),
            Self::ConsecutiveFailures { count, last_reason, trial_dir } => write!(
                f,
                "stopped after {count} consecutive failed trials (last: {last_reason}); look at {0}/stderr.log and \
                 {0}/stdout.log, fix the trial program (or, when failures come from some parameters, raise \
                 `budget.max_consecutive_failures`), then `nightshift resume`",
                trial_dir.display()
            ),
            Self::SpaceExhausted(m) => write!(f, "search space exhausted: {m}"),
            // Announced at the first Ctrl-C, while the running trials are still running.
            Self::Shutdown => write!(f, "stopped by request: no new trials; running ones finish (`nightshift resume` continues)"),
            Self::Interrupted => {
                write!(f, "interrupted; running trials were stopped and re-enqueued (`nightshift resume` continues)")
            }
        }
    }
}

/// Trials that count toward the budget: everything but WAITING trials and trials replaced by a re-run.
pub fn budget_used(trials: &[FrozenTrial]) -> u64 {
    let replaced: HashSet<u64> = trials.iter().filter_map(|t| t.system_attrs.get(attrs::RETRY_OF)?.as_u64()).collect();
    trials.iter().filter(|t| t.state != TrialState::Waiting && !replaced.contains(&t.number)).count() as u64
}

/// Time from `now` until the next `hh:mm` on the clock of `now`'s time zone (tomorrow's when today's has
/// passed). Counted in real time, so a night with a daylight-saving change is an hour shorter or longer than
/// the clock says; an `hh:mm` that the change skips is taken as the instant the clock jumps past it, one it
/// shows twice as the first.
pub fn until_clock<Tz: TimeZone>(now: &DateTime<Tz>, (h, m): (u32, u32)) -> Duration {
    let zone = now.timezone();
    let today = now.naive_local().date();
    for day in 0..=2 {
        let Some(clock) = (today + Days::new(day)).and_hms_opt(h, m, 0) else { continue };
        // A skipped time: the first minute the clock shows after it (a gap is at most a few hours).
        let at = (0..=240).find_map(|k| zone.from_local_datetime(&(clock + TimeDelta::minutes(k))).earliest());
        if let Some(at) = at.filter(|at| at > now) {
            return at.signed_duration_since(now).to_std().unwrap_or_default();
        }
    }
    Duration::ZERO
}

/// The earliest of the budget's `timeout` (from `t0`) and `stop_at` (the next such local time after `now`).
pub(super) fn deadline<Tz: TimeZone>(budget: &Budget, t0: Instant, now: &DateTime<Tz>) -> Option<(Instant, StopReason)> {
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
    let replaced: HashSet<u64> = trials.iter().filter_map(|t| t.system_attrs.get(attrs::RETRY_OF)?.as_u64()).collect();
    let count = |v: &nightshift_search::ParamValue| {
        trials.iter().filter(|t| !replaced.contains(&t.number) && t.params.get(param) == Some(v)).count()
    };
    values.iter().min_by_key(|v| count(v)).expect("compare has values")
}

/// Whether another trial may be launched now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Room {
    Open,
    /// Not now: a tournament's replicates wait for its last search trials.
    Wait,
    /// The budget (or the whole tournament) is used up.
    Full,
}

/// The room for a trial: the budget's, or in a tournament its phases' (search trials, then replicates,
/// counted apart from `budget.trials`).
pub(super) fn room(spec: &Spec, trials: &[FrozenTrial], direction: Direction) -> Room {
    match spec.compare.as_ref().and_then(|c| c.tournament.as_ref()) {
        Some(tournament) => match tournament.next(trials, direction) {
            Step::Launch(_) => Room::Open,
            Step::Wait => Room::Wait,
            Step::Done => Room::Full,
        },
        None if budget_used(trials) >= spec.budget.trials => Room::Full,
        None => Room::Open,
    }
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
        trials[2].system_attrs.insert(attrs::RETRY_OF.into(), 1.into());
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
        let at = |h, m| chrono::Utc.with_ymd_and_hms(2025, 1, 1, h, m, 0).unwrap();
        assert_eq!(until_clock(&at(23, 0), (7, 0)), Duration::from_secs(8 * 3600));
        assert_eq!(until_clock(&at(6, 30), (7, 0)), Duration::from_secs(1800));
        assert_eq!(until_clock(&at(7, 0), (7, 0)), Duration::from_secs(24 * 3600));
    }

    /// The zone of the DST test: Central European time as a POSIX rule, so no tz database is needed.
    const BERLIN: &str = "CET-1CEST,M3.5.0,M10.5.0/3";

    /// chrono's `Local` reads `TZ`; a child run of this test binary gets a fixed zone without changing this
    /// process's environment (which other tests share).
    #[test]
    fn stop_at_counts_real_time_across_daylight_saving() {
        let exe = std::env::current_exe().unwrap();
        let out = std::process::Command::new(exe)
            .args(["--exact", "run::budget::tests::stop_at_in_central_european_time", "--ignored", "--test-threads=1"])
            .env("TZ", BERLIN)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    }

    #[test]
    #[ignore = "run by stop_at_counts_real_time_across_daylight_saving, with TZ set"]
    fn stop_at_in_central_european_time() {
        assert_eq!(std::env::var("TZ").as_deref(), Ok(BERLIN), "run with TZ={BERLIN}");
        use chrono::Local;
        // The night of 2025-03-30, clocks jump from 02:00 to 03:00: 23:00 to 07:00 is 7 hours.
        let spring = Local.with_ymd_and_hms(2025, 3, 29, 23, 0, 0).unwrap();
        assert_eq!(until_clock(&spring, (7, 0)), Duration::from_secs(7 * 3600));
        // 02:30 does not exist that night: the sweep stops when the clock jumps, an hour after 01:00.
        let before_gap = Local.with_ymd_and_hms(2025, 3, 30, 1, 0, 0).unwrap();
        assert_eq!(until_clock(&before_gap, (2, 30)), Duration::from_secs(3600));
        // The night of 2025-10-26, clocks go back from 03:00 to 02:00: 23:00 to 07:00 is 9 hours.
        let autumn = Local.with_ymd_and_hms(2025, 10, 25, 23, 0, 0).unwrap();
        assert_eq!(until_clock(&autumn, (7, 0)), Duration::from_secs(9 * 3600));
        // A night without a change: 8 hours.
        let plain = Local.with_ymd_and_hms(2025, 6, 1, 23, 0, 0).unwrap();
        assert_eq!(until_clock(&plain, (7, 0)), Duration::from_secs(8 * 3600));
    }
}

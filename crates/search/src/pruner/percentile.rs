//! `PercentilePruner` and `MedianPruner` (its 50th percentile), as Optuna's `_percentile.py`.
//!
//! A trial is pruned at a check step when the best of its intermediate values so far is worse
//! than the given percentile of the values that COMPLETE trials reported at that same step.
//! Exactly as Optuna:
//! - only COMPLETE trials count, both for `n_startup_trials` and for the percentile (pruned
//!   and running trials do not);
//! - the percentile is over the values reported at exactly the current step; fewer than
//!   `n_min_trials` of them (NaN included in that count) means no decision;
//! - NaN values of other trials are ignored (numpy's `nanpercentile`, linear interpolation);
//! - the trial's own score is its best value over all its steps, ignoring NaN, so a trial whose
//!   every reported value is NaN is pruned, and one NaN after finite values is judged on them;
//! - for `maximize` the (100 − p)-th percentile is used; ties are never pruned.

use serde::{Deserialize, Serialize};

use super::{PruneContext, Pruner, best_intermediate, config_error, is_first_in_interval_step};
use crate::error::Result;
use crate::trial::{Direction, FrozenTrial, TrialState};

/// Options of [`PercentilePruner`], Optuna's defaults except `percentile`, which is required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PercentileConfig {
    /// Keep trials in the best `percentile`% (0–100): 25 prunes the worst three quarters.
    pub percentile: f64,
    /// No pruning until this many trials are COMPLETE.
    #[serde(default = "default_startup")]
    pub n_startup_trials: usize,
    /// No pruning before this step.
    #[serde(default)]
    pub n_warmup_steps: u64,
    /// Judge only every `interval_steps` steps after the warm-up.
    #[serde(default = "one")]
    pub interval_steps: u64,
    /// No decision unless at least this many COMPLETE trials reported the current step.
    #[serde(default = "one_usize")]
    pub n_min_trials: usize,
}

impl PercentileConfig {
    /// Optuna's defaults with the given percentile.
    pub fn new(percentile: f64) -> Self {
        Self { percentile, n_startup_trials: 5, n_warmup_steps: 0, interval_steps: 1, n_min_trials: 1 }
    }

    /// Checks the options, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if !(0.0..=100.0).contains(&self.percentile) {
            return Err(config_error(format!("percentile must be between 0 and 100 inclusive, got {}", self.percentile)));
        }
        check_common(self.interval_steps, self.n_min_trials)
    }
}

/// Options of [`MedianPruner`], Optuna's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MedianConfig {
    /// Trials that must finish before any is pruned.
    pub n_startup_trials: usize,
    /// Steps of each trial never pruned.
    pub n_warmup_steps: u64,
    /// Judge every this many steps.
    pub interval_steps: u64,
    /// Trials that must have reported a step before it is judged.
    pub n_min_trials: usize,
}

impl Default for MedianConfig {
    fn default() -> Self {
        Self { n_startup_trials: 5, n_warmup_steps: 0, interval_steps: 1, n_min_trials: 1 }
    }
}

impl MedianConfig {
    /// Checks the options, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        check_common(self.interval_steps, self.n_min_trials)
    }

    /// The same options as a 50th-percentile configuration.
    pub fn as_percentile(&self) -> PercentileConfig {
        PercentileConfig {
            percentile: 50.0,
            n_startup_trials: self.n_startup_trials,
            n_warmup_steps: self.n_warmup_steps,
            interval_steps: self.interval_steps,
            n_min_trials: self.n_min_trials,
        }
    }
}

fn check_common(interval_steps: u64, n_min_trials: usize) -> Result<()> {
    if interval_steps < 1 {
        return Err(config_error(format!("interval_steps must be at least 1, got {interval_steps}")));
    }
    if n_min_trials < 1 {
        return Err(config_error(format!("n_min_trials must be at least 1, got {n_min_trials}")));
    }
    Ok(())
}

fn default_startup() -> usize {
    5
}
fn one() -> u64 {
    1
}
fn one_usize() -> usize {
    1
}

/// Prunes a trial whose best intermediate value is outside the best `percentile`% of the
/// COMPLETE trials' values at the same step.
#[derive(Clone, Debug)]
pub struct PercentilePruner {
    config: PercentileConfig,
}

impl PercentilePruner {
    /// The pruner with these options, once they are checked.
    pub fn new(config: PercentileConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::from_config(&config))
    }

    /// Builds without failing: out-of-range options are clamped.
    pub(crate) fn from_config(config: &PercentileConfig) -> Self {
        let mut config = config.clone();
        config.percentile = if config.percentile.is_nan() { 50.0 } else { config.percentile.clamp(0.0, 100.0) };
        config.interval_steps = config.interval_steps.max(1);
        config.n_min_trials = config.n_min_trials.max(1);
        Self { config }
    }

    /// Its options.
    pub fn config(&self) -> &PercentileConfig {
        &self.config
    }
}

impl Pruner for PercentilePruner {
    fn reads(&self) -> super::Reads {
        super::Reads::CompleteTrials
    }

    fn prune(&self, ctx: &PruneContext<'_>, trial: &FrozenTrial) -> bool {
        let c = &self.config;
        let complete: Vec<&FrozenTrial> =
            ctx.trials.iter().filter(|t| t.state == TrialState::Complete && t.number != trial.number).collect();
        if complete.is_empty() || complete.len() < c.n_startup_trials {
            return false;
        }
        let Some((step, _)) = trial.last_step() else { return false };
        if step < c.n_warmup_steps || !is_first_in_interval_step(trial, step, c.n_warmup_steps, c.interval_steps) {
            return false;
        }
        let best = best_intermediate(trial, ctx.direction);
        if best.is_nan() {
            return true;
        }
        let at_step: Vec<f64> = complete.iter().filter_map(|t| t.intermediate_values.get(&step).copied()).collect();
        if at_step.len() < c.n_min_trials {
            return false;
        }
        let q = match ctx.direction {
            Direction::Minimize => c.percentile,
            Direction::Maximize => 100.0 - c.percentile,
        };
        let threshold = nan_percentile(at_step, q);
        if threshold.is_nan() {
            return false;
        }
        match ctx.direction {
            Direction::Minimize => best > threshold,
            Direction::Maximize => best < threshold,
        }
    }
}

/// Prunes a trial whose best intermediate value is worse than the median of the COMPLETE
/// trials' values at the same step: [`PercentilePruner`] at 50.
#[derive(Clone, Debug)]
pub struct MedianPruner(PercentilePruner);

impl MedianPruner {
    /// The pruner with these options, once they are checked.
    pub fn new(config: MedianConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::from_config(&config))
    }

    pub(crate) fn from_config(config: &MedianConfig) -> Self {
        Self(PercentilePruner::from_config(&config.as_percentile()))
    }
}

impl Default for MedianPruner {
    fn default() -> Self {
        Self::from_config(&MedianConfig::default())
    }
}

impl Pruner for MedianPruner {
    fn reads(&self) -> super::Reads {
        self.0.reads()
    }

    fn prune(&self, ctx: &PruneContext<'_>, trial: &FrozenTrial) -> bool {
        self.0.prune(ctx, trial)
    }
}

/// numpy's `nanpercentile` with its default linear interpolation; NaN when no value is a number.
fn nan_percentile(mut values: Vec<f64>, q: f64) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let rank = q / 100.0 * (values.len() - 1) as f64;
    let lo = rank.floor() as usize;
    let hi = (rank.ceil() as usize).min(values.len() - 1);
    let (a, b, t) = (values[lo], values[hi], rank - lo as f64);
    if a == b || t == 0.0 {
        return a;
    }
    // numpy interpolates from the nearer end, which keeps results exact at the ends.
    let diff = b - a;
    if t >= 0.5 { b - diff * (1.0 - t) } else { a + diff * t }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{decide, trial, trial_at};
    use super::*;
    use crate::trial::Direction::{Maximize, Minimize};
    use crate::trial::TrialState::{Complete, Fail, Pruned, Running};

    fn median(n_startup_trials: usize, n_warmup_steps: u64, interval_steps: u64) -> MedianPruner {
        MedianPruner::new(MedianConfig { n_startup_trials, n_warmup_steps, interval_steps, n_min_trials: 1 }).unwrap()
    }

    /// `finished` COMPLETE trials with the given curves, then a RUNNING trial with `current`.
    fn history(finished: &[&[f64]], current: &[f64]) -> Vec<FrozenTrial> {
        let mut h: Vec<FrozenTrial> = finished.iter().enumerate().map(|(i, v)| trial(i as u64, Complete, v)).collect();
        h.push(trial(finished.len() as u64, Running, current));
        h
    }

    #[test]
    fn numpy_percentiles() {
        assert_eq!(nan_percentile(vec![1.0, 2.0, 3.0, 4.0], 50.0), 2.5);
        assert_eq!(nan_percentile(vec![4.0, 1.0, 3.0], 50.0), 3.0);
        assert_eq!(nan_percentile(vec![1.0, 2.0, 3.0, 4.0, 5.0], 25.0), 2.0);
        assert_eq!(nan_percentile(vec![0.0, 10.0], 75.0), 7.5);
        assert_eq!(nan_percentile(vec![f64::NAN, 1.0, 3.0], 50.0), 2.0);
        assert!(nan_percentile(vec![f64::NAN], 50.0).is_nan());
        assert_eq!(nan_percentile(vec![1.0, 2.0, 3.0], 0.0), 1.0);
        assert_eq!(nan_percentile(vec![1.0, 2.0, 3.0], 100.0), 3.0);
    }

    #[test]
    fn median_minimize_and_maximize() {
        let p = median(0, 0, 1);
        // Median of the completed trials at step 0 is 2.
        let done: &[&[f64]] = &[&[1.0], &[2.0], &[3.0]];
        assert!(decide(&p, Minimize, &history(done, &[2.5])));
        assert!(!decide(&p, Minimize, &history(done, &[1.5])));
        assert!(!decide(&p, Maximize, &history(done, &[2.5])));
        assert!(decide(&p, Maximize, &history(done, &[1.5])));
        // Ties are kept in both directions.
        assert!(!decide(&p, Minimize, &history(done, &[2.0])));
        assert!(!decide(&p, Maximize, &history(done, &[2.0])));
    }

    #[test]
    fn the_best_value_over_steps_is_compared() {
        let p = median(0, 0, 1);
        let done: &[&[f64]] = &[&[5.0, 1.0], &[5.0, 2.0], &[5.0, 3.0]];
        // Minimize: the step-1 value 9 is bad, but the trial's best (0.5 at step 0) beats median 2.
        assert!(!decide(&p, Minimize, &history(done, &[0.5, 9.0])));
        assert!(decide(&p, Minimize, &history(done, &[2.5, 9.0])));
        // Maximize: best is max over steps.
        assert!(!decide(&p, Maximize, &history(done, &[9.0, 0.0])));
    }

    #[test]
    fn startup_counts_only_complete_trials() {
        let p = median(3, 0, 1);
        let mut h =
            vec![trial(0, Complete, &[1.0]), trial(1, Complete, &[1.0]), trial(2, Pruned, &[1.0]), trial(3, Fail, &[1.0])];
        h.push(trial(4, Running, &[100.0]));
        // Two COMPLETE trials: pruned and failed ones do not count towards n_startup_trials.
        assert!(!decide(&p, Minimize, &h));
        h.insert(4, trial(4, Complete, &[1.0]));
        h.last_mut().unwrap().number = 5;
        assert!(decide(&p, Minimize, &h));
        // No completed trial at all: never prune, even with n_startup_trials = 0.
        let alone = vec![trial(0, Pruned, &[0.0]), trial(1, Running, &[100.0])];
        assert!(!decide(&median(0, 0, 1), Minimize, &alone));
    }

    #[test]
    fn pruned_and_running_trials_do_not_enter_the_percentile() {
        let p = median(1, 0, 1);
        let h = vec![trial(0, Complete, &[10.0]), trial(1, Pruned, &[0.0]), trial(2, Running, &[0.0]), trial(3, Running, &[5.0])];
        // Only trial 0 (10.0) is compared against: 5 < 10, kept.
        assert!(!decide(&p, Minimize, &h));
    }

    #[test]
    fn warmup_and_interval_steps() {
        let p = median(0, 2, 2);
        let done: &[&[f64]] = &[&[1.0; 6], &[1.0; 6]];
        // Steps 0 and 1 are warm-up: a terrible value is not pruned.
        assert!(!decide(&p, Minimize, &history(done, &[9.0])));
        assert!(!decide(&p, Minimize, &history(done, &[9.0, 9.0])));
        // Step 2 is a check point, 3 is not, 4 is.
        assert!(decide(&p, Minimize, &history(done, &[9.0, 9.0, 9.0])));
        assert!(!decide(&p, Minimize, &history(done, &[9.0, 9.0, 9.0, 9.0])));
        assert!(decide(&p, Minimize, &history(done, &[9.0, 9.0, 9.0, 9.0, 9.0])));
        // A check point without a report is postponed to the next report: steps 0, 1, 3.
        let mut h = history(done, &[]);
        h.last_mut().unwrap().intermediate_values = [(0, 9.0), (1, 9.0), (3, 9.0)].into();
        assert!(decide(&p, Minimize, &h));
    }

    #[test]
    fn only_values_at_exactly_the_current_step_count() {
        let p = median(0, 0, 1);
        let h = vec![
            trial_at(0, Complete, &[(0, 1.0), (2, 1.0)]),
            trial_at(1, Complete, &[(0, 1.0), (2, 1.0)]),
            trial_at(2, Running, &[(0, 5.0), (1, 5.0)]),
        ];
        // Nobody completed reported step 1: n_min_trials (1) not met, no decision.
        assert!(!decide(&p, Minimize, &h));
        let strict = MedianPruner::new(MedianConfig { n_startup_trials: 0, n_min_trials: 3, ..MedianConfig::default() }).unwrap();
        let h = history(&[&[1.0], &[1.0]], &[5.0]);
        assert!(!decide(&strict, Minimize, &h), "two values at the step, three required");
        let h = history(&[&[1.0], &[1.0], &[f64::NAN]], &[5.0]);
        assert!(decide(&strict, Minimize, &h), "NaN counts towards n_min_trials but not the median");
    }

    #[test]
    fn nan_handling() {
        let p = median(0, 0, 1);
        let done: &[&[f64]] = &[&[1.0, 1.0], &[2.0, 2.0], &[3.0, 3.0]];
        // All of the trial's values NaN: pruned (Optuna prunes when nanmin is NaN).
        assert!(decide(&p, Minimize, &history(done, &[f64::NAN])));
        assert!(decide(&p, Maximize, &history(done, &[f64::NAN, f64::NAN])));
        // A NaN after a good finite value: judged on the finite one, as Optuna.
        assert!(!decide(&p, Minimize, &history(done, &[0.5, f64::NAN])));
        assert!(decide(&p, Minimize, &history(done, &[7.0, f64::NAN])));
        // Other trials' NaN values are skipped; all NaN means no decision.
        assert!(!decide(&p, Minimize, &history(&[&[f64::NAN], &[f64::NAN]], &[100.0])));
    }

    #[test]
    fn percentile_directions() {
        let p = PercentilePruner::new(PercentileConfig { n_startup_trials: 0, ..PercentileConfig::new(25.0) }).unwrap();
        // Values 0..=8: 25th percentile 2, 75th 6.
        let curves: Vec<Vec<f64>> = (0..9).map(|i| vec![i as f64]).collect();
        let done: Vec<&[f64]> = curves.iter().map(|v| v.as_slice()).collect();
        assert!(!decide(&p, Minimize, &history(&done, &[2.0])));
        assert!(decide(&p, Minimize, &history(&done, &[2.1])));
        assert!(!decide(&p, Maximize, &history(&done, &[6.0])));
        assert!(decide(&p, Maximize, &history(&done, &[5.9])));
        // 0 keeps only the very best, 100 keeps everything.
        let p0 = PercentilePruner::new(PercentileConfig { n_startup_trials: 0, ..PercentileConfig::new(0.0) }).unwrap();
        assert!(decide(&p0, Minimize, &history(&done, &[0.5])));
        let p100 = PercentilePruner::new(PercentileConfig { n_startup_trials: 0, ..PercentileConfig::new(100.0) }).unwrap();
        assert!(!decide(&p100, Minimize, &history(&done, &[8.0])));
        assert!(decide(&p100, Minimize, &history(&done, &[8.5])));
    }

    #[test]
    fn a_trial_without_reports_is_never_pruned() {
        assert!(!decide(&median(0, 0, 1), Minimize, &history(&[&[1.0]], &[])));
    }
}

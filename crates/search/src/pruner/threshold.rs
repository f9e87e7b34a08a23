//! `ThresholdPruner`, as Optuna's `_threshold.py`: prunes a trial whose latest value leaves
//! `[lower, upper]`, or is NaN, at the check steps after the warm-up.
//!
//! One deliberate difference: a latest value of ±infinity is always pruned (a diverged run),
//! where Optuna prunes it only when it is beyond a given bound (so `+inf` passes a pruner that
//! has only `lower`).

use serde::{Deserialize, Serialize};

use super::{PruneContext, Pruner, config_error, is_first_in_interval_step};
use crate::error::Result;
use crate::trial::FrozenTrial;

/// Options of [`ThresholdPruner`]: at least one of `lower` and `upper`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// Prune below this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lower: Option<f64>,
    /// Prune above this value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upper: Option<f64>,
    /// Steps of each trial never pruned.
    #[serde(default)]
    pub n_warmup_steps: u64,
    /// Judge every this many steps.
    #[serde(default = "one")]
    pub interval_steps: u64,
}

fn one() -> u64 {
    1
}

impl ThresholdConfig {
    /// Checks the options, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.lower.is_none() && self.upper.is_none() {
            return Err(config_error("the threshold pruner needs lower, upper or both".into()));
        }
        for (name, bound) in [("lower", self.lower), ("upper", self.upper)] {
            if bound.is_some_and(f64::is_nan) {
                return Err(config_error(format!("{name} must be a number, got NaN")));
            }
        }
        if let (Some(lower), Some(upper)) = (self.lower, self.upper)
            && lower > upper
        {
            return Err(config_error(format!("lower ({lower}) must not exceed upper ({upper})")));
        }
        if self.interval_steps < 1 {
            return Err(config_error(format!("interval_steps must be at least 1, got {}", self.interval_steps)));
        }
        Ok(())
    }
}

/// Prunes values outside `[lower, upper]`, NaN and infinities.
#[derive(Clone, Debug)]
pub struct ThresholdPruner {
    lower: f64,
    upper: f64,
    n_warmup_steps: u64,
    interval_steps: u64,
}

impl ThresholdPruner {
    /// The pruner with these options, once they are checked.
    pub fn new(config: ThresholdConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::from_config(&config))
    }

    pub(crate) fn from_config(config: &ThresholdConfig) -> Self {
        let lower = config.lower.filter(|v| !v.is_nan()).unwrap_or(f64::NEG_INFINITY);
        let upper = config.upper.filter(|v| !v.is_nan()).unwrap_or(f64::INFINITY);
        Self { lower, upper, n_warmup_steps: config.n_warmup_steps, interval_steps: config.interval_steps.max(1) }
    }
}

impl Pruner for ThresholdPruner {
    fn reads(&self) -> super::Reads {
        super::Reads::OwnReports
    }

    fn prune(&self, _ctx: &PruneContext<'_>, trial: &FrozenTrial) -> bool {
        let Some((step, value)) = trial.last_step() else { return false };
        if step < self.n_warmup_steps || !is_first_in_interval_step(trial, step, self.n_warmup_steps, self.interval_steps) {
            return false;
        }
        !value.is_finite() || value < self.lower || value > self.upper
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{decide, trial, trial_at};
    use super::*;
    use crate::trial::Direction::{Maximize, Minimize};
    use crate::trial::TrialState::Running;

    fn threshold(lower: Option<f64>, upper: Option<f64>, n_warmup_steps: u64, interval_steps: u64) -> ThresholdPruner {
        ThresholdPruner::new(ThresholdConfig { lower, upper, n_warmup_steps, interval_steps }).unwrap()
    }

    #[test]
    fn bounds_in_both_directions() {
        let upper = threshold(None, Some(1.0), 0, 1);
        let lower = threshold(Some(0.0), None, 0, 1);
        for direction in [Minimize, Maximize] {
            // Optuna's doc example: [0.0, 0.1, 0.2, 0.5, 1.2] is pruned at 1.2 only.
            let ys = [0.0, 0.1, 0.2, 0.5, 1.2];
            for n in 1..=ys.len() {
                assert_eq!(decide(&upper, direction, &[trial(0, Running, &ys[..n])]), n == 5, "{n}");
            }
            let ys = [100.0, 90.0, 0.1, 0.0, -1.0];
            for n in 1..=ys.len() {
                assert_eq!(decide(&lower, direction, &[trial(0, Running, &ys[..n])]), n == 5, "{n}");
            }
            // The bounds themselves are inside.
            assert!(!decide(&upper, direction, &[trial(0, Running, &[1.0])]));
            assert!(!decide(&lower, direction, &[trial(0, Running, &[0.0])]));
        }
    }

    #[test]
    fn nan_and_infinities_are_pruned() {
        let lower = threshold(Some(0.0), None, 0, 1);
        assert!(decide(&lower, Minimize, &[trial(0, Running, &[f64::NAN])]));
        assert!(decide(&lower, Minimize, &[trial(0, Running, &[f64::INFINITY])]));
        assert!(decide(&lower, Minimize, &[trial(0, Running, &[f64::NEG_INFINITY])]));
        // Only the latest value counts.
        assert!(!decide(&lower, Minimize, &[trial(0, Running, &[f64::NAN, 1.0])]));
    }

    #[test]
    fn warmup_and_interval() {
        let p = threshold(None, Some(1.0), 2, 3);
        assert!(!decide(&p, Minimize, &[trial(0, Running, &[5.0, 5.0])]));
        assert!(decide(&p, Minimize, &[trial(0, Running, &[5.0, 5.0, 5.0])]));
        assert!(!decide(&p, Minimize, &[trial(0, Running, &[5.0, 5.0, 5.0, 5.0])]));
        assert!(decide(&p, Minimize, &[trial(0, Running, &[5.0; 6])]));
        // Check point 5 skipped: judged at the next report (6).
        assert!(decide(&p, Minimize, &[trial_at(0, Running, &[(2, 0.0), (3, 0.0), (6, 5.0)])]));
        assert!(!decide(&p, Minimize, &[trial(0, Running, &[])]));
    }
}

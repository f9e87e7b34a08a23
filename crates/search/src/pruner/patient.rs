//! `PatientPruner`, as Optuna's `_patient.py`: lets another pruner act only once a trial has
//! stopped improving for `patience` consecutive reports.
//!
//! With `n` reports sorted by step, the best value of all but the last `patience + 1` is compared
//! with the best of those last `patience + 1` (NaN ignored, as numpy's `nanmin`/`nanmax`). If the
//! recent ones are worse by more than `min_delta`, the wrapped pruner decides; without a wrapped
//! pruner, the trial is pruned (plain early stopping). Fewer than `patience + 2` reports: never.

use serde::{Deserialize, Serialize};

use super::{PruneContext, Pruner, PrunerConfig, config_error, nan_best};
use crate::error::Result;
use crate::trial::{Direction, FrozenTrial};

/// Options of [`PatientPruner`]. `wrapped` absent means early stopping on the trial's own curve;
/// `wrapped: {type: none}` means never prune.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientConfig {
    /// Reports without improvement tolerated before the wrapped pruner may act.
    pub patience: usize,
    /// How much better a value must be to count as an improvement (≥ 0).
    #[serde(default)]
    pub min_delta: f64,
    /// The pruner that decides once patience runs out; none: the trial is pruned then (plain early stopping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wrapped: Option<Box<PrunerConfig>>,
}

impl PatientConfig {
    /// Checks the options, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.min_delta.is_nan() || self.min_delta < 0.0 {
            return Err(config_error(format!("min_delta must be non-negative, got {}", self.min_delta)));
        }
        match &self.wrapped {
            Some(wrapped) => wrapped.validate(),
            None => Ok(()),
        }
    }
}

/// Wraps another pruner with tolerance for plateaus.
pub struct PatientPruner {
    wrapped: Option<Box<dyn Pruner>>,
    patience: usize,
    min_delta: f64,
}

impl PatientPruner {
    /// `wrapped: None` prunes as soon as the patience is exhausted.
    pub fn new(wrapped: Option<Box<dyn Pruner>>, patience: usize, min_delta: f64) -> Result<Self> {
        PatientConfig { patience, min_delta, wrapped: None }.validate()?;
        Ok(Self { wrapped, patience, min_delta })
    }

    pub(crate) fn from_config(config: &PatientConfig) -> Self {
        let min_delta = if config.min_delta >= 0.0 { config.min_delta } else { 0.0 };
        Self { wrapped: config.wrapped.as_ref().map(|w| w.build()), patience: config.patience, min_delta }
    }
}

impl Pruner for PatientPruner {
    fn reads(&self) -> super::Reads {
        self.wrapped.as_ref().map_or(super::Reads::OwnReports, |w| w.reads().max(super::Reads::OwnReports))
    }

    fn prune(&self, ctx: &PruneContext<'_>, trial: &FrozenTrial) -> bool {
        // Sorted by step (the map's order).
        let values: Vec<f64> = trial.intermediate_values.values().copied().collect();
        if values.len() <= self.patience + 1 {
            return false;
        }
        let (before, after) = values.split_at(values.len() - self.patience - 1);
        let best_before = nan_best(before.iter().copied(), ctx.direction);
        let best_after = nan_best(after.iter().copied(), ctx.direction);
        // Comparisons with NaN are false: no decision when either side is all NaN.
        let stalled = match ctx.direction {
            Direction::Minimize => best_before + self.min_delta < best_after,
            Direction::Maximize => best_before - self.min_delta > best_after,
        };
        stalled && self.wrapped.as_ref().is_none_or(|w| w.prune(ctx, trial))
    }

    fn bracket(&self, study_name: &str, trial_number: u64, trials: &[FrozenTrial]) -> Option<usize> {
        self.wrapped.as_ref().and_then(|w| w.bracket(study_name, trial_number, trials))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{decide, trial};
    use super::super::{MedianPruner, NopPruner, PrunerConfig};
    use super::*;
    use crate::trial::Direction::{Maximize, Minimize};
    use crate::trial::TrialState::{Complete, Running};

    fn alone(values: &[f64]) -> Vec<FrozenTrial> {
        vec![trial(0, Running, values)]
    }

    #[test]
    fn early_stopping_without_a_wrapped_pruner() {
        let p = PatientPruner::new(None, 2, 0.0).unwrap();
        // Needs patience + 2 = 4 reports.
        assert!(!decide(&p, Minimize, &alone(&[1.0, 2.0, 3.0])));
        // Best of [1.0] vs best of [0.5, 0.6, 0.7]: improved, keep.
        assert!(!decide(&p, Minimize, &alone(&[1.0, 0.5, 0.6, 0.7])));
        // Best of [0.5] vs best of [0.6, 0.7, 0.8]: three reports without improvement, prune.
        assert!(decide(&p, Minimize, &alone(&[0.5, 0.6, 0.7, 0.8])));
        // Equal is not worse.
        assert!(!decide(&p, Minimize, &alone(&[0.5, 0.6, 0.5, 0.8])));
        // Maximize mirrors it.
        assert!(decide(&p, Maximize, &alone(&[0.8, 0.7, 0.6, 0.5])));
        assert!(!decide(&p, Maximize, &alone(&[0.5, 0.6, 0.7, 0.8])));
    }

    #[test]
    fn min_delta_is_tolerance() {
        let p = PatientPruner::new(None, 1, 0.2).unwrap();
        // Minimize: 0.5 + 0.2 < 0.6 is false, keep; 0.5 + 0.2 < 0.8 is true, prune.
        assert!(!decide(&p, Minimize, &alone(&[0.5, 0.6, 0.6])));
        assert!(decide(&p, Minimize, &alone(&[0.5, 0.8, 0.9])));
        assert!(!decide(&p, Maximize, &alone(&[0.5, 0.4, 0.35])));
        assert!(decide(&p, Maximize, &alone(&[0.5, 0.2, 0.25])));
    }

    #[test]
    fn nan_values_are_ignored_and_all_nan_never_decides() {
        let p = PatientPruner::new(None, 1, 0.0).unwrap();
        assert!(decide(&p, Minimize, &alone(&[0.1, f64::NAN, 0.5, 0.6])));
        assert!(!decide(&p, Minimize, &alone(&[f64::NAN, 0.5, 0.6])));
        assert!(!decide(&p, Minimize, &alone(&[0.1, f64::NAN, f64::NAN])));
    }

    #[test]
    fn the_wrapped_pruner_decides_once_patience_runs_out() {
        let never = PatientPruner::new(Some(Box::new(NopPruner)), 0, 0.0).unwrap();
        assert!(!decide(&never, Minimize, &alone(&[0.1, 0.9])));
        let median = MedianPruner::new(super::super::MedianConfig { n_startup_trials: 1, ..Default::default() }).unwrap();
        let p = PatientPruner::new(Some(Box::new(median)), 1, 0.0).unwrap();
        let done = trial(0, Complete, &[0.5, 0.5, 0.5]);
        // Stalled (0.4 then 0.6, 0.7) and above the median 0.5 at step 2 (best 0.4 < 0.5): kept by the median.
        assert!(!decide(&p, Minimize, &[done.clone(), trial(1, Running, &[0.4, 0.6, 0.7])]));
        // Stalled and worse than the median: pruned.
        assert!(decide(&p, Minimize, &[done.clone(), trial(1, Running, &[0.55, 0.6, 0.7])]));
        // Worse than the median but still improving: patience protects it.
        assert!(!decide(&p, Minimize, &[done, trial(1, Running, &[0.9, 0.8, 0.7])]));
    }

    #[test]
    fn built_from_config_passes_brackets_through() {
        let c: PrunerConfig =
            serde_yaml::from_str("{type: patient, patience: 2, wrapped: {type: hyperband, max_resource: 9}}").unwrap();
        assert_eq!(c.build().bracket("study", 3, &[]), Some(2));
        let c: PrunerConfig = serde_yaml::from_str("{type: patient, patience: 0}").unwrap();
        let p = c.build();
        assert!(decide(p.as_ref(), Minimize, &alone(&[0.1, 0.2])));
        assert_eq!(p.bracket("study", 3, &[]), None);
    }
}

//! `SuccessiveHalvingPruner`: asynchronous successive halving (ASHA, Li et al. 2018), as
//! Optuna's `_successive_halving.py`.
//!
//! Rung `r` ends at step `min_resource · reduction_factor^(min_early_stopping_rate + r)`. When a
//! trial first reports a step at or past the end of its current rung, it is promoted if its
//! latest value is in the best `1/reduction_factor` of all the values recorded for that rung (the
//! best one of them while fewer than `reduction_factor` trials are there), otherwise pruned. A
//! trial that passes several rung ends in one report is judged at each in turn with that value.
//!
//! ## Rungs without writes
//! Optuna records each rung's value in the trial's system attributes (`completed_rung_r`) when it
//! judges it. Our pruners only read snapshots, so rung membership is derived from the reported
//! values instead: a trial is in rung `r` once it has reported a step `≥` the rung's end, and its
//! rung value is the value at the first such step (NaN values are not recorded, as Optuna prunes
//! at a NaN before recording it). For trials that ask `should_prune` after every report, which is
//! how a rung value is recorded in Optuna too, this is the same set of values. It differs only
//! for a trial that ignored a prune decision and kept reporting (we count it in later rungs),
//! and for rungs a trial passed before "auto" could be resolved (Optuna judges them late with a
//! later value; we treat them as passed).
//!
//! "auto" `min_resource` is Optuna's rule, `max(last_step // 100, 1)`, applied to the first
//! COMPLETE trial (by finish time) so that it does not drift as more trials finish; until a trial
//! has completed, nothing is pruned.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{PruneContext, Pruner, config_error, first_completed_with_steps};
use crate::error::Result;
use crate::trial::{Direction, FrozenTrial};

/// A number of steps, or `auto`: estimated from the first COMPLETE trial. Written `auto` or a
/// whole number in configurations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resource {
    /// Estimated from the first COMPLETE trial.
    #[default]
    Auto,
    /// This many steps.
    Steps(u64),
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Auto => serializer.serialize_str("auto"),
            Self::Steps(n) => serializer.serialize_u64(*n),
        }
    }
}

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct ResourceVisitor;
        impl serde::de::Visitor<'_> for ResourceVisitor {
            type Value = Resource;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("'auto' or a whole number of steps")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Resource, E> {
                Ok(Resource::Steps(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Resource, E> {
                u64::try_from(v).map(Resource::Steps).map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> std::result::Result<Resource, E> {
                if v.fract() == 0.0 && (0.0..9.0e15).contains(&v) {
                    Ok(Resource::Steps(v as u64))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Float(v), &self))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Resource, E> {
                if v.eq_ignore_ascii_case("auto") {
                    Ok(Resource::Auto)
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        deserializer.deserialize_any(ResourceVisitor)
    }
}

/// Options of [`SuccessiveHalvingPruner`], Optuna's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SuccessiveHalvingConfig {
    /// Steps of the first rung (`r` in the paper), or `auto`.
    pub min_resource: Resource,
    /// About `1/reduction_factor` of the trials are promoted at each rung (`η`).
    pub reduction_factor: u64,
    /// Skips the first rungs (`s`): rung 0 ends at `min_resource · η^s`.
    pub min_early_stopping_rate: u32,
    /// Trials that reach a rung while fewer than this many (themselves included) have are pruned.
    pub bootstrap_count: usize,
}

impl Default for SuccessiveHalvingConfig {
    fn default() -> Self {
        Self { min_resource: Resource::Auto, reduction_factor: 4, min_early_stopping_rate: 0, bootstrap_count: 0 }
    }
}

impl SuccessiveHalvingConfig {
    /// Checks the options, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.min_resource == Resource::Steps(0) {
            return Err(config_error("min_resource must be at least 1 (or 'auto'), got 0".into()));
        }
        check_reduction_factor(self.reduction_factor)?;
        if self.bootstrap_count > 0 && self.min_resource == Resource::Auto {
            return Err(config_error(format!(
                "bootstrap_count > 0 needs an explicit min_resource, not 'auto' (bootstrap_count is {})",
                self.bootstrap_count
            )));
        }
        Ok(())
    }
}

pub(crate) fn check_reduction_factor(reduction_factor: u64) -> Result<()> {
    if reduction_factor < 2 {
        return Err(config_error(format!("reduction_factor must be at least 2, got {reduction_factor}")));
    }
    Ok(())
}

/// Asynchronous successive halving.
#[derive(Clone, Debug)]
pub struct SuccessiveHalvingPruner {
    config: SuccessiveHalvingConfig,
}

impl SuccessiveHalvingPruner {
    /// The pruner with these options, once they are checked.
    pub fn new(config: SuccessiveHalvingConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::from_config(&config))
    }

    pub(crate) fn from_config(config: &SuccessiveHalvingConfig) -> Self {
        let mut config = config.clone();
        config.reduction_factor = config.reduction_factor.max(2);
        if config.min_resource == Resource::Steps(0) {
            config.min_resource = Resource::Steps(1);
        }
        Self { config }
    }

    /// Its options.
    pub fn config(&self) -> &SuccessiveHalvingConfig {
        &self.config
    }

    /// The `min_resource` in force: the configured one, or Optuna's estimate from the first
    /// COMPLETE trial's last step (`max(last_step // 100, 1)`); `None` until a trial completed.
    pub fn min_resource(&self, trials: &[FrozenTrial]) -> Option<u64> {
        match self.config.min_resource {
            Resource::Steps(n) => Some(n),
            Resource::Auto => {
                let (last_step, _) = first_completed_with_steps(trials)?.last_step()?;
                Some((last_step / 100).max(1))
            }
        }
    }
}

impl Pruner for SuccessiveHalvingPruner {
    fn reads(&self) -> super::Reads {
        super::Reads::AllTrials
    }

    fn prune(&self, ctx: &PruneContext<'_>, trial: &FrozenTrial) -> bool {
        let Some(min_resource) = self.min_resource(ctx.trials) else { return false };
        let c = &self.config;
        let rungs =
            Rungs { min_resource, reduction_factor: c.reduction_factor, min_early_stopping_rate: c.min_early_stopping_rate };
        judge(ctx.trials.iter(), trial, ctx.direction, rungs, c.bootstrap_count)
    }
}

/// Where the rungs end.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rungs {
    pub min_resource: u64,
    pub reduction_factor: u64,
    pub min_early_stopping_rate: u32,
}

impl Rungs {
    /// The step at which rung `rung` is complete; `None` past `u64`.
    fn end(&self, rung: u32) -> Option<u64> {
        let exponent = self.min_early_stopping_rate.checked_add(rung)?;
        self.reduction_factor.checked_pow(exponent)?.checked_mul(self.min_resource)
    }
}

/// The ASHA decision for `trial` against `history` (the trials it competes with; `trial` itself
/// is skipped if present).
pub(crate) fn judge<'a>(
    history: impl Iterator<Item = &'a FrozenTrial>,
    trial: &FrozenTrial,
    direction: Direction,
    rungs: Rungs,
    bootstrap_count: usize,
) -> bool {
    let Some((step, value)) = trial.last_step() else { return false };
    // Rungs completed by earlier reports were judged then.
    let previous = trial.intermediate_values.range(..step).next_back().map(|(s, _)| *s);
    let mut rung = 0u32;
    while let (Some(prev), Some(end)) = (previous, rungs.end(rung)) {
        if end > prev {
            break;
        }
        rung += 1;
    }
    let others: Vec<&FrozenTrial> = history.filter(|t| t.number != trial.number).collect();
    loop {
        let Some(end) = rungs.end(rung) else { return false };
        if step < end {
            return false;
        }
        if value.is_nan() {
            return true;
        }
        let mut competing: Vec<f64> = others
            .iter()
            .filter_map(|t| t.intermediate_values.range(end..).next().map(|(_, v)| *v))
            .filter(|v| !v.is_nan())
            .collect();
        competing.push(value);
        if competing.len() <= bootstrap_count {
            return true;
        }
        if !is_promotable(value, competing, rungs.reduction_factor, direction) {
            return true;
        }
        rung += 1;
    }
}

/// Whether `value` is in the best `1/reduction_factor` of `competing` (which includes it); the
/// best one while there are fewer than `reduction_factor` values, as Optuna cannot suspend trials.
fn is_promotable(value: f64, mut competing: Vec<f64>, reduction_factor: u64, direction: Direction) -> bool {
    let index = (competing.len() / reduction_factor as usize).saturating_sub(1);
    competing.sort_by(f64::total_cmp);
    match direction {
        Direction::Minimize => value <= competing[index],
        Direction::Maximize => value >= competing[competing.len() - 1 - index],
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{decide, trial, trial_at};
    use super::*;
    use crate::pruner::PrunerConfig;
    use crate::trial::Direction::{Maximize, Minimize};
    use crate::trial::TrialState::{Complete, Fail, Pruned, Running};

    fn sha(
        min_resource: u64,
        reduction_factor: u64,
        min_early_stopping_rate: u32,
        bootstrap_count: usize,
    ) -> SuccessiveHalvingPruner {
        SuccessiveHalvingPruner::new(SuccessiveHalvingConfig {
            min_resource: Resource::Steps(min_resource),
            reduction_factor,
            min_early_stopping_rate,
            bootstrap_count,
        })
        .unwrap()
    }

    #[test]
    fn promotion_against_earlier_rung_values() {
        // min_resource 1, η = 2: rungs end at steps 1, 2, 4, 8, …
        let p = sha(1, 2, 0, 0);
        // Alone at rung 0: promoted (the best of one).
        let first = trial_at(0, Running, &[(0, 5.0), (1, 1.0)]);
        assert!(!decide(&p, Minimize, std::slice::from_ref(&first)));
        // Step 0 is before the first rung: never pruned there.
        let h = vec![first.clone(), trial_at(1, Running, &[(0, 100.0)])];
        assert!(!decide(&p, Minimize, &h));
        // Second at rung 0 with 2.0 against 1.0: competing [1, 2], promotable index 2/2-1 = 0.
        let h = vec![first.clone(), trial_at(1, Running, &[(0, 0.0), (1, 2.0)])];
        assert!(decide(&p, Minimize, &h));
        assert!(!decide(&p, Maximize, &h));
        // A tie with the best is promoted in both directions.
        let h = vec![first.clone(), trial_at(1, Running, &[(1, 1.0)])];
        assert!(!decide(&p, Minimize, &h));
        assert!(!decide(&p, Maximize, &h));
    }

    #[test]
    fn top_fraction_with_many_competitors() {
        // η = 4: with 8 values at rung 0 (7 others + this one) the 2 best are promoted.
        let p = sha(1, 4, 0, 0);
        let mut h: Vec<FrozenTrial> = (0..7).map(|i| trial_at(i, Complete, &[(1, (i + 1) as f64)])).collect();
        h.push(trial_at(7, Running, &[(1, 2.0)]));
        // Sorted [1, 2, 2, 3, …]: index 8/4-1 = 1, value 2 ≤ 2 → promoted.
        assert!(!decide(&p, Minimize, &h));
        h.last_mut().unwrap().intermediate_values.insert(1, 2.5);
        assert!(decide(&p, Minimize, &h));
        // Maximize: the two largest of [1..7, 6.5] are 7 and 6.5.
        h.last_mut().unwrap().intermediate_values.insert(1, 6.5);
        assert!(!decide(&p, Maximize, &h));
        h.last_mut().unwrap().intermediate_values.insert(1, 5.5);
        assert!(decide(&p, Maximize, &h));
    }

    #[test]
    fn every_state_counts_and_rung_values_are_first_reports_past_the_end() {
        let p = sha(1, 2, 0, 0);
        // Trial 0 pruned at rung 0, trial 1 failed later, trial 2 skipped straight to step 3:
        // all three are in rung 0 with values 3.0, 4.0 and 0.5 (its value at step 3).
        let h = vec![
            trial_at(0, Pruned, &[(0, 9.0), (1, 3.0)]),
            trial_at(1, Fail, &[(1, 4.0), (2, 8.0)]),
            trial_at(2, Running, &[(0, 9.0), (3, 0.5)]),
            trial_at(3, Running, &[(1, 3.5)]),
        ];
        // Competing [3, 4, 0.5, 3.5]: index 4/2-1 = 1, sorted [0.5, 3, 3.5, 4]: 3.5 ≤ 3 fails.
        assert!(decide(&p, Minimize, &h));
        let mut better = h.clone();
        better[3].intermediate_values.insert(1, 3.0);
        assert!(!decide(&p, Minimize, &better));
    }

    #[test]
    fn rungs_already_passed_are_not_judged_again() {
        let p = sha(1, 2, 0, 0);
        // Others reached rung 1 (step 2) with 1.0 and 1.5.
        let others = [trial_at(0, Complete, &[(1, 1.0), (2, 1.0)]), trial_at(1, Complete, &[(1, 2.0), (2, 1.5)])];
        // This trial passed rung 0 at step 1 (with 0.5) and now reports step 2 (rung 1's end).
        let mut h = others.to_vec();
        h.push(trial_at(2, Running, &[(1, 0.5), (2, 1.2)]));
        // Rung 1 competing [1.0, 1.5, 1.2]: index 3/2-1 = 0 → must be ≤ 1.0: pruned.
        assert!(decide(&p, Minimize, &h));
        // Step 3 is inside rung 2 (ends at 4): nothing to judge, whatever the value.
        h.last_mut().unwrap().intermediate_values = [(1, 0.5), (2, 0.9), (3, 100.0)].into();
        assert!(!decide(&p, Minimize, &h));
    }

    #[test]
    fn one_report_can_pass_several_rungs() {
        let p = sha(1, 2, 0, 0);
        // Rung 0: others 1.0 (t0), 3.0 (t1); rung 1 (step 2): only t0 with 1.0.
        let h0 = vec![trial_at(0, Running, &[(2, 1.0)]), trial_at(1, Pruned, &[(1, 3.0)])];
        // First report at step 2 with 2.0: rung 0 competing [1, 3, 2], index 0 → 2 ≤ 1 fails.
        let mut h = h0.clone();
        h.push(trial_at(2, Running, &[(2, 2.0)]));
        assert!(decide(&p, Minimize, &h));
        // With 0.9 it is promoted at rung 0 (≤ 1), then at rung 1 against [1.0, 0.9] (≤ 0.9).
        h.last_mut().unwrap().intermediate_values.insert(2, 0.9);
        assert!(!decide(&p, Minimize, &h));
        // Maximize with 2.0: rung 0 [1, 3, 2] index 0 from the top → 2 ≥ 3 fails.
        h.last_mut().unwrap().intermediate_values.insert(2, 2.0);
        assert!(decide(&p, Maximize, &h));
    }

    #[test]
    fn nan_is_pruned_at_a_rung_end_only() {
        let p = sha(2, 2, 0, 0);
        let h = vec![trial_at(0, Running, &[(1, f64::NAN)])];
        assert!(!decide(&p, Minimize, &h), "step 1 is before rung 0 (ends at 2)");
        let h = vec![trial_at(0, Running, &[(2, f64::NAN)])];
        assert!(decide(&p, Minimize, &h));
        assert!(decide(&p, Maximize, &h));
        // Another trial's NaN at the rung is not a competitor.
        let h = vec![trial_at(0, Pruned, &[(2, f64::NAN)]), trial_at(1, Running, &[(2, 5.0)])];
        assert!(!decide(&p, Minimize, &h));
    }

    #[test]
    fn min_early_stopping_rate_moves_the_first_rung() {
        // min 1, η 3, s = 2: rung 0 ends at step 9.
        let p = sha(1, 3, 2, 0);
        let best = trial_at(0, Complete, &[(9, 0.0)]);
        assert!(!decide(&p, Minimize, &[best.clone(), trial_at(1, Running, &[(8, 5.0)])]));
        assert!(decide(&p, Minimize, &[best, trial_at(1, Running, &[(9, 5.0)])]));
    }

    #[test]
    fn bootstrap_prunes_the_first_arrivals() {
        let p = sha(1, 2, 0, 2);
        assert!(decide(&p, Minimize, &[trial_at(0, Running, &[(1, 0.0)])]));
        assert!(decide(&p, Minimize, &[trial_at(0, Pruned, &[(1, 0.0)]), trial_at(1, Running, &[(1, 0.0)])]));
        let h = [trial_at(0, Pruned, &[(1, 1.0)]), trial_at(1, Pruned, &[(1, 1.0)]), trial_at(2, Running, &[(1, 0.0)])];
        assert!(!decide(&p, Minimize, &h));
    }

    #[test]
    fn auto_min_resource_from_the_first_completed_trial() {
        let p = SuccessiveHalvingPruner::new(SuccessiveHalvingConfig::default()).unwrap();
        // Nothing complete: never prune.
        let h = vec![trial_at(0, Pruned, &[(500, 9.0)]), trial_at(1, Running, &[(300, 99.0)])];
        assert!(!decide(&p, Minimize, &h));
        assert_eq!(p.min_resource(&h), None);
        // First completed trial reached step 250: min_resource 2, rung 0 ends at step 2.
        let mut done = trial(0, Complete, &[1.0; 251]);
        done.finished_at = Some(10.0);
        let mut later = trial(1, Complete, &[1.0; 1001]);
        later.finished_at = Some(20.0);
        assert_eq!(p.min_resource(&[later.clone(), done.clone()]), Some(2));
        assert!(!decide(&p, Minimize, &[done.clone(), later.clone(), trial(2, Running, &[9.0, 9.0])]));
        assert!(decide(&p, Minimize, &[done.clone(), later.clone(), trial(2, Running, &[9.0, 9.0, 9.0])]));
        // Fewer than 100 steps: at least 1.
        assert_eq!(p.min_resource(&[trial(0, Complete, &[1.0; 40])]), Some(1));
    }

    #[test]
    fn built_from_config() {
        let config: PrunerConfig =
            serde_yaml::from_str("{type: successive_halving, min_resource: 1, reduction_factor: 2}").unwrap();
        let p = config.build();
        let h = vec![trial_at(0, Complete, &[(1, 1.0)]), trial_at(1, Running, &[(1, 2.0)])];
        assert!(decide(p.as_ref(), Minimize, &h));
        assert!(p.bracket("s", 3, &[]).is_none());
    }
}

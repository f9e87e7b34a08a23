//! `HyperbandPruner` (Li et al. 2018), as Optuna's `_hyperband.py`: several successive-halving
//! brackets that differ in how early they start pruning, built by composition from
//! [`super::successive_halving`].
//!
//! Bracket `b` is successive halving with `min_early_stopping_rate = b`. The number of brackets
//! is `floor(log_η(max_resource / min_resource)) + 1`, computed in floating point exactly as
//! Optuna does (so at an exact power such as 243 = 3⁵ it is one fewer than the integer
//! formula would give, as in Optuna). A trial's bracket is `crc32("{study_name}_{number}")`
//! modulo the total budget, walked through the brackets' budgets
//! `ceil(n_brackets · η^s / (s + 1))` with `s = n_brackets − 1 − b`: the same stable hash and
//! weights as Optuna, so a study of the same name puts each trial number in the same bracket as
//! Optuna would. Trials only compete with trials of their own bracket, and
//! [`Pruner::bracket`] lets the study show the sampler only those.
//!
//! `max_resource: auto` is the first COMPLETE trial's last step + 1 (Optuna: the largest last
//! step among the COMPLETE trials when it first prunes, which in a sequential study is the first
//! one). Until it is known nothing is pruned, and, because [`Pruner::bracket`] sees no history,
//! all trials are one sampler group; [`HyperbandPruner::bracket_in`] resolves it from a history.

use serde::{Deserialize, Serialize};

use super::successive_halving::{Rungs, check_reduction_factor, judge};
use super::{PruneContext, Pruner, Resource, config_error, first_completed_with_steps};
use crate::error::Result;
use crate::trial::FrozenTrial;

/// Options of [`HyperbandPruner`], Optuna's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HyperbandConfig {
    /// Steps of the first rung of the most aggressive bracket (`r`).
    pub min_resource: u64,
    /// The most steps a trial runs (e.g. epochs), or `auto`.
    pub max_resource: Resource,
    /// `η`, shared by every bracket.
    pub reduction_factor: u64,
    /// As [`super::SuccessiveHalvingConfig::bootstrap_count`]; needs an explicit `max_resource`.
    pub bootstrap_count: usize,
}

impl Default for HyperbandConfig {
    fn default() -> Self {
        Self { min_resource: 1, max_resource: Resource::Auto, reduction_factor: 3, bootstrap_count: 0 }
    }
}

impl HyperbandConfig {
    /// Checks the options, naming the first bad one.
    pub fn validate(&self) -> Result<()> {
        if self.min_resource < 1 {
            return Err(config_error(format!("min_resource must be at least 1, got {}", self.min_resource)));
        }
        check_reduction_factor(self.reduction_factor)?;
        match self.max_resource {
            Resource::Steps(max) if max < self.min_resource => {
                Err(config_error(format!("max_resource ({max}) must be at least min_resource ({})", self.min_resource)))
            }
            Resource::Auto if self.bootstrap_count > 0 => Err(config_error(format!(
                "bootstrap_count > 0 needs an explicit max_resource, not 'auto' (bootstrap_count is {})",
                self.bootstrap_count
            ))),
            _ => Ok(()),
        }
    }
}

/// Hyperband: successive-halving brackets chosen per trial by a stable hash.
#[derive(Clone, Debug)]
pub struct HyperbandPruner {
    config: HyperbandConfig,
}

impl HyperbandPruner {
    /// The pruner with these options, once they are checked.
    pub fn new(config: HyperbandConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self::from_config(&config))
    }

    pub(crate) fn from_config(config: &HyperbandConfig) -> Self {
        let mut config = config.clone();
        config.min_resource = config.min_resource.max(1);
        config.reduction_factor = config.reduction_factor.max(2);
        Self { config }
    }

    /// Its options.
    pub fn config(&self) -> &HyperbandConfig {
        &self.config
    }

    /// The `max_resource` in force: configured, or the first COMPLETE trial's last step + 1.
    pub fn max_resource(&self, trials: &[FrozenTrial]) -> Option<u64> {
        match self.config.max_resource {
            Resource::Steps(n) => Some(n),
            Resource::Auto => first_completed_with_steps(trials)?.last_step().map(|(s, _)| s + 1),
        }
    }

    /// `floor(log_η(max / min)) + 1` in floating point, as Optuna (0 when max < min).
    pub fn n_brackets(&self, max_resource: u64) -> usize {
        let ratio = max_resource as f64 / self.config.min_resource as f64;
        let n = (ratio.ln() / (self.config.reduction_factor as f64).ln()).floor() + 1.0;
        if n >= 1.0 { n as usize } else { 0 }
    }

    /// Each bracket's share of the trials, Hyperband's `n` per bracket.
    pub fn budgets(&self, max_resource: u64) -> Vec<u64> {
        let n = self.n_brackets(max_resource) as u64;
        let eta = self.config.reduction_factor as u128;
        (0..n)
            .map(|bracket| {
                let s = (n - 1 - bracket) as u32;
                let numerator = (n as u128).saturating_mul(eta.saturating_pow(s));
                numerator.div_ceil(s as u128 + 1).min(u64::MAX as u128 / 4096) as u64
            })
            .collect()
    }

    /// The bracket of a trial, given the history needed to resolve `max_resource: auto`.
    pub fn bracket_in(&self, study_name: &str, trial_number: u64, trials: &[FrozenTrial]) -> Option<usize> {
        let budgets = self.budgets(self.max_resource(trials)?);
        (!budgets.is_empty()).then(|| bracket_of(&budgets, study_name, trial_number))
    }
}

impl Pruner for HyperbandPruner {
    fn reads(&self) -> super::Reads {
        super::Reads::AllTrials
    }

    fn prune(&self, ctx: &PruneContext<'_>, trial: &FrozenTrial) -> bool {
        let Some(max_resource) = self.max_resource(ctx.trials) else { return false };
        let budgets = self.budgets(max_resource);
        if budgets.is_empty() {
            return false;
        }
        let bracket = bracket_of(&budgets, ctx.study_name, trial.number);
        let same_bracket = ctx.trials.iter().filter(|t| bracket_of(&budgets, ctx.study_name, t.number) == bracket);
        let rungs = Rungs {
            min_resource: self.config.min_resource,
            reduction_factor: self.config.reduction_factor,
            min_early_stopping_rate: bracket as u32,
        };
        judge(same_bracket, trial, ctx.direction, rungs, self.config.bootstrap_count)
    }

    /// Known only with an explicit `max_resource` (see [`HyperbandPruner::bracket_in`]).
    fn bracket(&self, study_name: &str, trial_number: u64, trials: &[FrozenTrial]) -> Option<usize> {
        self.bracket_in(study_name, trial_number, trials)
    }
}

/// Optuna's `_get_bracket_id`: a CRC-32 of `"{study}_{number}"` walked through the budgets.
fn bracket_of(budgets: &[u64], study_name: &str, trial_number: u64) -> usize {
    let total: u64 = budgets.iter().sum();
    let mut n = crc32(format!("{study_name}_{trial_number}").as_bytes()) as u64 % total.max(1);
    for (bracket, &budget) in budgets.iter().enumerate() {
        if n < budget {
            return bracket;
        }
        n -= budget;
    }
    budgets.len() - 1
}

/// CRC-32 (IEEE 802.3, reflected, as zlib's and Python's `binascii.crc32`).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= byte as u32;
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{decide, trial, trial_at};
    use super::super::{SuccessiveHalvingConfig, SuccessiveHalvingPruner};
    use super::*;
    use crate::trial::Direction::{Maximize, Minimize};
    use crate::trial::TrialState::{Complete, Running};

    fn hyperband(max_resource: Resource) -> HyperbandPruner {
        HyperbandPruner::new(HyperbandConfig { max_resource, ..HyperbandConfig::default() }).unwrap()
    }

    #[test]
    fn crc32_is_zlibs() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn brackets_and_budgets_as_optuna() {
        let h = hyperband(Resource::Steps(81));
        assert_eq!(h.n_brackets(81), 5);
        assert_eq!(h.budgets(81), [81, 34, 15, 8, 5]);
        assert_eq!(h.n_brackets(9), 3);
        assert_eq!(h.budgets(9), [9, 5, 3]);
        // Optuna's floating-point log: log_3(243) = 4.999… → 5 brackets, log_3(27) = 3.000…04 → 4.
        assert_eq!(h.n_brackets(243), 5);
        assert_eq!(h.n_brackets(27), 4);
        assert_eq!(h.n_brackets(1), 1);
        // Reference values from Python: binascii.crc32(f"{name}_{n}".encode()) walked through the budgets.
        let study: Vec<usize> = (0..20).map(|n| h.bracket("study", n, &[]).unwrap()).collect();
        assert_eq!(study, [1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 2, 0, 1, 0, 1, 0]);
        let other: Vec<usize> = (0..20).map(|n| h.bracket("mnist-resnet", n, &[]).unwrap()).collect();
        assert_eq!(other, [1, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 3, 1, 0, 0, 1, 0, 0, 3, 0]);
        let nine: Vec<usize> = (0..20).map(|n| hyperband(Resource::Steps(9)).bracket("study", n, &[]).unwrap()).collect();
        assert_eq!(nine, [0, 0, 1, 2, 0, 0, 0, 1, 1, 0, 0, 1, 2, 2, 0, 1, 1, 1, 0, 0]);
    }

    #[test]
    fn bracket_sizes_follow_the_budgets() {
        let h = hyperband(Resource::Steps(81));
        let mut counts = [0usize; 5];
        for n in 0..14_300 {
            counts[h.bracket("distribution", n, &[]).unwrap()] += 1;
        }
        // Budgets 81, 34, 15, 8, 5 of 143: expected 8100, 3400, 1500, 800, 500.
        for (count, expected) in counts.iter().zip([8100.0, 3400.0, 1500.0, 800.0, 500.0]) {
            assert!((*count as f64 - expected).abs() < 0.15 * expected, "{counts:?}");
        }
    }

    #[test]
    fn auto_max_resource_waits_for_a_completed_trial() {
        let h = hyperband(Resource::Auto);
        assert_eq!(h.bracket("study", 0, &[]), None);
        let running = [trial(0, Running, &[1.0; 30])];
        assert_eq!(h.max_resource(&running), None);
        assert!(!decide(&h, Minimize, &running));
        assert_eq!(h.bracket_in("study", 0, &running), None);
        // A completed trial that reported steps 0..=80: max_resource 81, five brackets.
        let done = [trial(0, Complete, &[1.0; 81])];
        assert_eq!(h.max_resource(&done), Some(81));
        assert_eq!(h.bracket_in("study", 14, &done), Some(2));
        assert_eq!(h.bracket_in("study", 14, &done), hyperband(Resource::Steps(81)).bracket("study", 14, &[]));
    }

    #[test]
    fn trials_compete_only_within_their_bracket() {
        // max 9, η 3: brackets 0 (rungs end at 1, 3, 9), 1 (3, 9), 2 (9).
        // In study "study": trials 0, 1, 4, 5, 6 are in bracket 0; 2, 7, 8 in 1; 3 in 2.
        let h = hyperband(Resource::Steps(9));
        let base = vec![trial_at(1, Complete, &[(1, 3.0), (9, 3.0)]), trial_at(2, Complete, &[(1, 1.0), (3, 1.0), (9, 1.0)])];
        let with = |t: FrozenTrial| {
            let mut v = base.clone();
            v.push(t);
            v
        };
        // Trial 4 (bracket 0) at step 1 with 2.0 competes with trial 1's 3.0 only: promoted.
        let h4 = with(trial_at(4, Running, &[(1, 2.0)]));
        assert!(!decide(&h, Minimize, &h4));
        // Plain successive halving would also count trial 2's 1.0 and prune it.
        let sha = SuccessiveHalvingPruner::new(SuccessiveHalvingConfig {
            min_resource: Resource::Steps(1),
            reduction_factor: 3,
            ..SuccessiveHalvingConfig::default()
        })
        .unwrap();
        assert!(decide(&sha, Minimize, &h4));
        // In maximize, 2.0 against 3.0 is pruned.
        assert!(decide(&h, Maximize, &h4));
        // Trial 3 (bracket 2) is first judged at step 9, however bad it is before.
        assert!(!decide(&h, Minimize, &with(trial_at(3, Running, &[(1, 100.0), (8, 100.0)]))));
        assert!(!decide(&h, Minimize, &with(trial_at(3, Running, &[(9, 100.0)]))), "alone in its bracket's rung");
        // Trial 7 (bracket 1): rung 0 ends at step 3, where trial 2 (same bracket) has 1.0.
        assert!(!decide(&h, Minimize, &with(trial_at(7, Running, &[(1, 100.0)]))));
        assert!(decide(&h, Minimize, &with(trial_at(7, Running, &[(3, 2.0)]))));
        assert!(!decide(&h, Minimize, &with(trial_at(7, Running, &[(3, 0.5)]))));
    }

    #[test]
    fn built_from_config_reports_brackets() {
        let config: crate::pruner::PrunerConfig = serde_yaml::from_str("{type: hyperband, max_resource: 9}").unwrap();
        let p = config.build();
        assert_eq!(p.bracket("study", 3, &[]), Some(2));
        let auto: crate::pruner::PrunerConfig = serde_yaml::from_str("type: hyperband").unwrap();
        assert_eq!(auto.build().bracket("study", 3, &[]), None);
    }
}

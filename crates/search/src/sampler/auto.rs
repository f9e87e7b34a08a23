//! `auto`, the default sampler: a Gaussian process while it pays off, TPE beyond.
//!
//! Over the 20–100 trials of a typical overnight sweep, Gaussian-process Bayesian optimisation
//! finds better points than TPE per trial (docs/search.md measures both against Optuna 5.0), but
//! its cost grows with the cube of the history and it learns only from COMPLETE trials. So, per
//! ask, from the study's history alone (a resumed study continues exactly as it would have):
//! - more than a quarter of the finished trials PRUNED, or fewer COMPLETE trials than the GP's
//!   start-up count but enough finished ones (COMPLETE, PRUNED and out-of-memory FAIL) for TPE's
//!   start-up: **TPE**.
//!   The GP learns from COMPLETE trials only (as Optuna's); blind to pruned ones, it keeps
//!   proposing the regions the pruner just stopped (seen in the demo sweep: trial after trial at
//!   the edges of the space, each pruned). TPE ranks pruned trials among the bad ones;
//! - otherwise fewer COMPLETE trials than the GP's start-up count: **QMC**, points of a scrambled
//!   Sobol sequence (trial `i` takes point `i`), which cover the space more evenly than the
//!   uniform random start-up of Optuna's samplers, so the GP's first model sees more of it. With
//!   parallel workers the start-up ends once that many trials are asked (COMPLETE and RUNNING)
//!   and half of them are COMPLETE, not when the last result is in: every ask made while waiting
//!   for it would be one more unguided point;
//! - fewer than `gp_max_trials` finished trials: **GP**;
//! - otherwise: **TPE**.
//!
//! Trials that ran out of memory count as finished; TPE and the GP both treat them as infeasible
//! (see their modules), so whichever samples steers away from them.
//!
//! The decision depends on the history only, never on the space, so the three sampler calls of
//! one ask always go to the same sampler.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{GpConfig, GpSampler, QmcConfig, QmcSampler, Sampler, SamplingContext, TpeConfig, TpeSampler, TrialNotes};
use crate::error::Result;
use crate::space::{Distribution, ParamValue, SearchSpace};
use crate::trial::TrialState;

/// `auto` options. The GP and TPE inside use their own defaults (Optuna 5.0's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AutoConfig {
    /// Switch from the GP to TPE once the study has this many finished (COMPLETE + PRUNED) trials.
    pub gp_max_trials: usize,
}

impl Default for AutoConfig {
    fn default() -> Self {
        Self { gp_max_trials: DEFAULT_GP_MAX_TRIALS }
    }
}

/// Where `auto` hands over from the GP to TPE by default; see docs/search.md for the measurements
/// behind it (GP quality against Optuna, ask latency against the history size).
pub const DEFAULT_GP_MAX_TRIALS: usize = 200;

impl AutoConfig {
    /// The policy in one sentence, for `nightshift check` and the start of a sweep.
    pub fn describe(&self) -> String {
        let gp = GpConfig::default();
        format!(
            "auto: {} space-filling (Sobol) trials, then a Gaussian process (GP) until {} finished trials, \
             then TPE (TPE also while more than a quarter of the finished trials are pruned: the GP learns \
             from complete trials only; with parallel workers the GP starts once the {} start-up trials are \
             asked and half of them complete)",
            gp.n_startup_trials, self.gp_max_trials, gp.n_startup_trials
        )
    }
}

/// Which sampler `auto` used for one ask.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AutoChoice {
    /// Space-filling start-up (scrambled Sobol).
    Qmc,
    /// The Gaussian process.
    Gp,
    /// TPE.
    Tpe,
}

impl fmt::Display for AutoChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Qmc => "qmc",
            Self::Gp => "gp",
            Self::Tpe => "tpe",
        })
    }
}

/// `auto`'s choice for one ask and the reason, in words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AutoDecision {
    /// The sampler chosen.
    pub choice: AutoChoice,
    /// Why, in words.
    pub reason: String,
}

/// The `auto` sampler. See the module documentation.
#[derive(Debug)]
pub struct AutoSampler {
    config: AutoConfig,
    qmc: QmcSampler,
    gp: GpSampler,
    tpe: TpeSampler,
}

impl AutoSampler {
    /// The sampler with these options.
    pub fn new(config: AutoConfig) -> Self {
        Self {
            config,
            qmc: QmcSampler::new(QmcConfig { scramble: true }),
            gp: GpSampler::new(GpConfig::default()),
            tpe: TpeSampler::new(TpeConfig::default()),
        }
    }

    /// Its options.
    pub fn config(&self) -> &AutoConfig {
        &self.config
    }

    /// The sampler this ask goes to, and why.
    pub fn decide(&self, ctx: &SamplingContext<'_>) -> AutoDecision {
        let others = ctx.trials.iter().filter(|t| t.number != ctx.trial_number);
        let (mut complete, mut pruned, mut oom) = (0usize, 0usize, 0usize);
        for t in others {
            match t.state {
                TrialState::Complete => complete += 1,
                TrialState::Pruned => pruned += 1,
                TrialState::Fail if t.is_oom() => oom += 1,
                _ => {}
            }
        }
        // Out-of-memory trials are finished too: both models learn where they were (as infeasible).
        let finished = complete + pruned + oom;
        let gp_startup = self.gp.config().n_startup_trials;
        let tpe_startup = self.tpe.config().n_startup_trials;
        let (choice, reason) = if finished >= self.config.gp_max_trials {
            (AutoChoice::Tpe, format!("{finished} finished trials ≥ gp_max_trials {}", self.config.gp_max_trials))
        } else if pruned * 4 > finished && finished >= tpe_startup {
            (
                AutoChoice::Tpe,
                format!("{pruned} of {finished} finished trials were pruned: the GP would not learn from them, TPE does"),
            )
        } else if complete < gp_startup && finished >= tpe_startup {
            (
                AutoChoice::Tpe,
                format!(
                    "{complete} COMPLETE trials are fewer than the GP's {gp_startup} start-up trials, \
                     but TPE can learn from the {pruned} pruned and {oom} out-of-memory ones too"
                ),
            )
        } else if self.gp.in_startup(ctx) {
            (AutoChoice::Qmc, format!("start-up: {complete} of {gp_startup} COMPLETE trials, Sobol points"))
        } else if complete < gp_startup {
            (
                AutoChoice::Gp,
                format!(
                    "the {gp_startup} start-up trials are asked and {complete} of them COMPLETE: the GP takes over, \
                     modelling the running and failed ones"
                ),
            )
        } else {
            (AutoChoice::Gp, format!("{finished} finished trials < gp_max_trials {}", self.config.gp_max_trials))
        };
        AutoDecision { choice, reason }
    }

    fn pick(&self, ctx: &SamplingContext<'_>) -> &dyn Sampler {
        match self.decide(ctx).choice {
            AutoChoice::Qmc => &self.qmc,
            AutoChoice::Gp => &self.gp,
            AutoChoice::Tpe => &self.tpe,
        }
    }
}

impl Sampler for AutoSampler {
    fn infer_relative_search_space(&self, ctx: &SamplingContext<'_>, space: &SearchSpace) -> SearchSpace {
        self.pick(ctx).infer_relative_search_space(ctx, space)
    }

    fn sample_relative(&self, ctx: &SamplingContext<'_>, space: &SearchSpace) -> Result<BTreeMap<String, ParamValue>> {
        self.pick(ctx).sample_relative(ctx, space)
    }

    fn sample_relative_noted(
        &self,
        ctx: &SamplingContext<'_>,
        space: &SearchSpace,
    ) -> Result<(BTreeMap<String, ParamValue>, TrialNotes)> {
        self.pick(ctx).sample_relative_noted(ctx, space)
    }

    fn sample_independent(&self, ctx: &SamplingContext<'_>, name: &str, distribution: &Distribution) -> Result<ParamValue> {
        self.pick(ctx).sample_independent(ctx, name, distribution)
    }

    fn sample_all_noted(
        &self,
        ctx: &SamplingContext<'_>,
        space: &SearchSpace,
    ) -> Result<(BTreeMap<String, ParamValue>, TrialNotes)> {
        self.pick(ctx).sample_all_noted(ctx, space)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::{Direction, FrozenTrial};

    fn history(complete: usize, pruned: usize, running: usize) -> Vec<FrozenTrial> {
        let states = std::iter::repeat_n(TrialState::Complete, complete)
            .chain(std::iter::repeat_n(TrialState::Pruned, pruned))
            .chain(std::iter::repeat_n(TrialState::Running, running));
        states
            .enumerate()
            .map(|(i, state)| {
                let mut t = FrozenTrial::new(i as i64, i as u64, state);
                if state == TrialState::Complete {
                    t.value = Some(i as f64);
                }
                t
            })
            .collect()
    }

    fn decide(sampler: &AutoSampler, trials: &[FrozenTrial]) -> AutoChoice {
        let ctx = SamplingContext {
            study_name: "s",
            direction: Direction::Minimize,
            seed: 1,
            trials,
            trial_number: trials.len() as u64,
        };
        sampler.decide(&ctx).choice
    }

    #[test]
    fn gp_from_the_start_until_the_limit_then_tpe() {
        let auto = AutoSampler::new(AutoConfig { gp_max_trials: 50 });
        assert_eq!(decide(&auto, &history(0, 0, 0)), AutoChoice::Qmc);
        assert_eq!(decide(&auto, &history(9, 0, 0)), AutoChoice::Qmc);
        assert_eq!(decide(&auto, &history(10, 0, 0)), AutoChoice::Gp);
        assert_eq!(decide(&auto, &history(49, 0, 0)), AutoChoice::Gp);
        assert_eq!(decide(&auto, &history(50, 0, 0)), AutoChoice::Tpe);
        assert_eq!(decide(&auto, &history(40, 10, 0)), AutoChoice::Tpe, "pruned trials count as finished");
    }

    #[test]
    fn tpe_when_many_trials_are_pruned_or_the_gp_is_still_starting_up() {
        let auto = AutoSampler::new(AutoConfig::default());
        assert_eq!(decide(&auto, &history(4, 6, 0)), AutoChoice::Tpe);
        assert_eq!(decide(&auto, &history(4, 5, 0)), AutoChoice::Qmc, "both samplers are still in start-up");
        assert_eq!(decide(&auto, &history(12, 4, 0)), AutoChoice::Gp, "a quarter pruned: the GP misses little");
        assert_eq!(decide(&auto, &history(12, 5, 0)), AutoChoice::Tpe, "more than a quarter pruned");
        assert_eq!(decide(&auto, &history(10, 30, 0)), AutoChoice::Tpe);
    }

    #[test]
    fn with_parallel_workers_the_start_up_ends_once_its_trials_are_asked_and_half_finished() {
        let auto = AutoSampler::new(AutoConfig::default());
        assert_eq!(decide(&auto, &history(7, 0, 3)), AutoChoice::Gp, "four workers: the 11th ask");
        assert_eq!(decide(&auto, &history(5, 0, 5)), AutoChoice::Gp);
        assert_eq!(decide(&auto, &history(4, 0, 8)), AutoChoice::Qmc, "fewer than half have finished");
        assert_eq!(decide(&auto, &history(6, 0, 3)), AutoChoice::Qmc, "not all start-up trials are asked");
        let trials = history(7, 0, 3);
        let ctx = SamplingContext {
            study_name: "s",
            direction: Direction::Minimize,
            seed: 1,
            trials: &trials,
            trial_number: trials.len() as u64,
        };
        let reason = auto.decide(&ctx).reason;
        assert!(reason.contains("running"), "{reason}");
    }

    #[test]
    fn the_trial_being_sampled_does_not_count() {
        let auto = AutoSampler::new(AutoConfig { gp_max_trials: 10 });
        let mut trials = history(9, 0, 0);
        trials.push(FrozenTrial::new(9, 9, TrialState::Complete));
        let ctx = SamplingContext { study_name: "s", direction: Direction::Minimize, seed: 1, trials: &trials, trial_number: 9 };
        assert_eq!(auto.decide(&ctx).choice, AutoChoice::Qmc);
    }

    #[test]
    fn the_policy_is_described_with_its_numbers() {
        let text = AutoConfig { gp_max_trials: 123 }.describe();
        assert!(text.contains("123") && text.contains("TPE") && text.contains("Gaussian process"), "{text}");
    }
}

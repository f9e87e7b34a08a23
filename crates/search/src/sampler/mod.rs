//! Samplers: given a study's history, suggest the next trial's parameters.
//!
//! The seam is Optuna's three calls: infer which parameters to sample jointly ("relative"),
//! sample those, then sample each remaining parameter on its own ("independent"). A sampler may
//! do all three in one call ([`Sampler::sample_all_noted`]; TPE does, to read the history once).
//! Every suggestion is a deterministic function of (study seed, trial number, history), so an `ask`
//! in a brand-new process reproduces, and concurrent start-up trials differ.

/// `auto`: start-up, then GP, then TPE.
pub mod auto;
/// Gaussian-process Bayesian optimisation.
pub mod gp;
/// Every combination of a grid, once.
pub mod grid;
/// Scrambled Sobol points.
pub mod qmc;
/// Uniform random sampling.
pub mod random;
/// Tree-structured Parzen Estimator.
pub mod tpe;

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::space::{Distribution, ParamValue, SearchSpace};
use crate::trial::{Direction, FrozenTrial};

pub use auto::{AutoChoice, AutoConfig, AutoDecision, AutoSampler};
pub use gp::{GpConfig, GpSampler};
pub use grid::GridSampler;
pub use qmc::{QmcConfig, QmcSampler};
pub use random::RandomSampler;
pub use tpe::{TpeConfig, TpeSampler};

/// What a sampler may look at: the study's snapshot of trials and the trial being sampled.
#[derive(Clone, Copy, Debug)]
pub struct SamplingContext<'a> {
    /// The study's name.
    pub study_name: &'a str,
    /// Whether the objective is minimised or maximised.
    pub direction: Direction,
    /// The study's seed (chosen at creation and stored, so every process agrees).
    pub seed: u64,
    /// All trials of the study (any state) that the sampler may learn from, ordered by number.
    /// It includes the trial being sampled, which samplers must skip.
    pub trials: &'a [FrozenTrial],
    /// The trial being sampled.
    pub trial_number: u64,
}

impl SamplingContext<'_> {
    /// A random generator for this trial, independent of anything but seed, trial number and `salt`.
    pub fn rng(&self, salt: &str) -> StdRng {
        StdRng::seed_from_u64(mix_seed(self.seed, self.trial_number, salt))
    }
}

/// SplitMix64-style mixing of the study seed, trial number and a salt (e.g. a parameter name).
/// The seed is absorbed like every other input: (seed s, trial n) and (seed s + 1, trial n − 1)
/// must not collide, or studies with neighbouring seeds would replay each other's trials.
pub fn mix_seed(seed: u64, trial_number: u64, salt: &str) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64;
    let mut absorb = |x: u64| {
        h = h.wrapping_add(x).wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = h;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        h = z ^ (z >> 31);
    };
    absorb(seed);
    absorb(trial_number);
    for chunk in salt.as_bytes().chunks(8) {
        let mut buf = [0u8; 8];
        buf[..chunk.len()].copy_from_slice(chunk);
        absorb(u64::from_le_bytes(buf));
    }
    absorb(salt.len() as u64);
    h
}

/// System attributes a sampler leaves on the trial it sampled, for later asks to read back from
/// the history (the GP's fitted kernel, which the next fit starts from). Being stored with the
/// trial, they keep every suggestion a function of (seed, trial number, history) in any process.
pub type TrialNotes = BTreeMap<String, serde_json::Value>;

/// The sampler seam (Optuna's `BaseSampler`).
pub trait Sampler: Send + Sync {
    /// Whether the sampler can run out of points (the grid): then [`Sampler::exhausted`] is asked
    /// before a new trial is created. Default: no.
    fn can_run_out(&self) -> bool {
        false
    }

    /// The error a new trial's ask would end in because every point of `space` was taken by `trials`,
    /// so that no trial is created only to fail. Default: never.
    fn exhausted(&self, _trials: &[FrozenTrial], _space: &SearchSpace) -> Option<Error> {
        None
    }

    /// The subset of `space` to sample jointly with [`Sampler::sample_relative`]. Default: none.
    fn infer_relative_search_space(&self, _ctx: &SamplingContext<'_>, _space: &SearchSpace) -> SearchSpace {
        SearchSpace::new()
    }

    /// Jointly samples the parameters of `space`. Parameters it leaves out are sampled independently.
    fn sample_relative(&self, _ctx: &SamplingContext<'_>, _space: &SearchSpace) -> Result<BTreeMap<String, ParamValue>> {
        Ok(BTreeMap::new())
    }

    /// [`Sampler::sample_relative`], and the notes to store with the trial. Default: no notes.
    fn sample_relative_noted(
        &self,
        ctx: &SamplingContext<'_>,
        space: &SearchSpace,
    ) -> Result<(BTreeMap<String, ParamValue>, TrialNotes)> {
        Ok((self.sample_relative(ctx, space)?, TrialNotes::new()))
    }

    /// Samples one parameter on its own.
    fn sample_independent(&self, ctx: &SamplingContext<'_>, name: &str, distribution: &Distribution) -> Result<ParamValue>;

    /// Samples every parameter of `space`, with the notes to store with the trial. Default: the
    /// three calls above ([`sample_in_parts`]). A sampler may override it to read the history
    /// once for all of them, provided the result is the same.
    fn sample_all_noted(
        &self,
        ctx: &SamplingContext<'_>,
        space: &SearchSpace,
    ) -> Result<(BTreeMap<String, ParamValue>, TrialNotes)> {
        sample_in_parts(self, ctx, space)
    }
}

/// Samples every parameter of `space`, as [`crate::Study::ask`] does ([`Sampler::sample_all_noted`]),
/// without the notes.
pub fn sample_space(
    sampler: &dyn Sampler,
    ctx: &SamplingContext<'_>,
    space: &SearchSpace,
) -> Result<BTreeMap<String, ParamValue>> {
    Ok(sampler.sample_all_noted(ctx, space)?.0)
}

/// The seam's three calls, as Optuna's `Study` makes them: the relative space jointly, then each
/// parameter it left out on its own.
pub fn sample_in_parts<S: Sampler + ?Sized>(
    sampler: &S,
    ctx: &SamplingContext<'_>,
    space: &SearchSpace,
) -> Result<(BTreeMap<String, ParamValue>, TrialNotes)> {
    let relative_space = sampler.infer_relative_search_space(ctx, space);
    let (relative, notes) = if relative_space.is_empty() {
        (BTreeMap::new(), TrialNotes::new())
    } else {
        sampler.sample_relative_noted(ctx, &relative_space)?
    };
    Ok((sample_rest_independently(sampler, ctx, space, relative)?, notes))
}

/// `relative` (jointly sampled values), completed with every other parameter of `space` sampled
/// on its own, in the order of `space`.
pub(crate) fn sample_rest_independently<S: Sampler + ?Sized>(
    sampler: &S,
    ctx: &SamplingContext<'_>,
    space: &SearchSpace,
    mut relative: BTreeMap<String, ParamValue>,
) -> Result<BTreeMap<String, ParamValue>> {
    let mut params = BTreeMap::new();
    for (name, dist) in space.iter() {
        let value = match relative.remove(name) {
            Some(v) => v,
            None => sampler.sample_independent(ctx, name, dist)?,
        };
        params.insert(name.to_string(), value);
    }
    Ok(params)
}

/// Which sampler a study uses, as written in specs and stored with the study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SamplerConfig {
    /// A Gaussian process while it pays off, TPE beyond (the default; see [`AutoSampler`]).
    Auto(AutoConfig),
    /// Uniform random sampling.
    Random,
    /// Tree-structured Parzen Estimator.
    Tpe(TpeConfig),
    /// Every combination of the grid, once.
    Grid,
    /// Scrambled Sobol points.
    Qmc(QmcConfig),
    /// Gaussian-process Bayesian optimisation.
    Gp(GpConfig),
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self::Auto(AutoConfig::default())
    }
}

impl SamplerConfig {
    /// The sampler this configuration describes.
    pub fn build(&self) -> Box<dyn Sampler> {
        match self {
            Self::Auto(config) => Box::new(AutoSampler::new(config.clone())),
            Self::Random => Box::new(RandomSampler),
            Self::Tpe(config) => Box::new(TpeSampler::new(config.clone())),
            Self::Grid => Box::new(GridSampler),
            Self::Qmc(config) => Box::new(QmcSampler::new(config.clone())),
            Self::Gp(config) => Box::new(GpSampler::new(config.clone())),
        }
    }

    /// The sampler's name (as specs spell it).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Auto(_) => "auto",
            Self::Random => "random",
            Self::Tpe(_) => "tpe",
            Self::Grid => "grid",
            Self::Qmc(_) => "qmc",
            Self::Gp(_) => "gp",
        }
    }

    /// The sampler and its options in words, for `nightshift check` and the start of a sweep;
    /// for `auto`, its policy (which sampler it uses when, and why).
    pub fn describe(&self) -> String {
        if let Self::Auto(config) = self {
            return config.describe();
        }
        crate::describe_tagged(self)
    }

    /// Parses a sampler name as Optuna's CLI spells it (`TPESampler`) or as ours (`tpe`),
    /// with optional keyword arguments as JSON (`{"n_startup_trials": 5}`).
    pub fn from_name_and_kwargs(name: &str, kwargs: Option<&serde_json::Value>) -> Result<Self> {
        let kind = match name.to_ascii_lowercase().trim_end_matches("sampler") {
            "tpe" => "tpe",
            "random" => "random",
            "grid" => "grid",
            "qmc" => "qmc",
            "gp" => "gp",
            "auto" => "auto",
            _ => {
                return Err(crate::Error::Config {
                    what: "sampler",
                    message: format!(
                        "unknown sampler '{name}' (valid: auto, tpe, gp, random, grid, qmc; Optuna names such as TPESampler work too)"
                    ),
                });
            }
        };
        let mut object = match kwargs {
            Some(serde_json::Value::Object(map)) => map.clone(),
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(other) => {
                return Err(crate::Error::Config {
                    what: "sampler",
                    message: format!("sampler kwargs must be a JSON object, got {other}"),
                });
            }
        };
        // The seed belongs to the study (so every process agrees on it); callers take it out first.
        object.remove("seed");
        // serde lets unknown keys through on option-less variants: say it rather than drop them.
        if matches!(kind, "random" | "grid") && !object.is_empty() {
            let keys: Vec<&str> = object.keys().map(String::as_str).collect();
            let grid =
                if kind == "grid" { "; the grid is the search space's own (categorical choices, stepped ranges)" } else { "" };
            return Err(crate::Error::Config {
                what: "sampler",
                message: format!("the {kind} sampler takes no options besides seed, got: {}{grid}", keys.join(", ")),
            });
        }
        object.insert("type".into(), kind.into());
        serde_json::from_value(serde_json::Value::Object(object))
            .map_err(|e| crate::Error::Config { what: "sampler", message: e.to_string() })
    }
}

//! Gaussian-process Bayesian optimisation, following Optuna 5.0's `GPSampler`.
//!
//! Per ask, once `n_startup_trials` trials are COMPLETE (or, with parallel workers, that many are
//! asked and half of them COMPLETE; before that, and for parameters outside the joint space, a
//! composed [`RandomSampler`] samples, as Optuna's independent sampler does):
//! 1. **Space**: the parameters of the asked space that every COMPLETE trial has (Optuna's
//!    `IntersectionSearchSpace`), minus single-valued ones, encoded in the unit cube
//!    ([`normalize`]: log scale for log parameters; ints and stepped floats widened by half a
//!    step and rounded back onto their grid; categoricals as choice indices).
//! 2. **Data**: COMPLETE trials only (PRUNED and FAIL are ignored, as in Optuna, except
//!    out-of-memory trials: see below); values as losses
//!    (sign flipped for `maximize`), negated to be maximised, infinities clipped to the finite
//!    extremes (`warn_and_convert_inf`), then standardised.
//! 3. **Model** ([`kernel`], [`regressor`], [`fit`]): Matérn-5/2 ARD kernel (Hamming distance for
//!    categoricals) with a kernel scale and a noise variance (≥ 1e-6, fixed at 1e-6 with
//!    `deterministic_objective`), fitted by maximising the log marginal likelihood plus Optuna's
//!    default log prior with L-BFGS ([`lbfgs`]) on the log-parameters with analytic gradients.
//! 4. **Acquisition** ([`acquisition`]): log expected improvement over the best observed
//!    standardised value, computed stably in the far tail.
//! 5. **Optimisation** ([`optimize`]): Sobol preliminary samples, roulette-selected starting
//!    points plus the best trial, then local searches mixing L-BFGS-B on the continuous
//!    dimensions with exhaustive or line search on the discrete ones (tolerance 1e-4).
//!
//! Where it differs from Optuna:
//! - **Where the fit starts.** Optuna warm-starts the hyper-parameter fit from the previous
//!   ask's result, kept in the sampler object. Here each ask stores its fitted kernel with its
//!   trial ([`attrs::GP_KERNEL`]), and beyond 64 observations the fit starts from the latest
//!   stored kernel of the same joint parameters (else from Optuna's default point): a suggestion
//!   still depends only on (study seed, trial number, stored history), so a CLI `ask` in a fresh
//!   process reproduces it. The warm start needs about half the likelihood evaluations (each an
//!   O(n³) factorisation). Up to 64 observations, where a fit is cheap, every ask fits from the
//!   default point and from all λ = 10 and all λ = 0.1, and keeps the best posterior, which made
//!   the 25- and 50-trial regret on Hartmann-6 and Rosenbrock-4 better over 30 seeds than one
//!   start. A fit that fails falls back to the default kernel parameters, as Optuna's does; one
//!   that stops at an iteration limit with a finite likelihood is kept (Optuna would discard it).
//! - **RUNNING trials** (parallel workers): instead of Optuna's qLogEI, a *capped Kriging
//!   believer*: every other RUNNING trial that has all the joint parameters joins the data, in
//!   trial-number order, as a pseudo-observation at the posterior mean there of the GP
//!   conditioned on the data and the pseudo-observations before it, capped at the incumbent best
//!   value, with the fitted hyper-parameters unchanged. The posterior variance collapses at
//!   pending points and the cap removes any predicted improvement there, so concurrent workers
//!   spread out. Conditioning one pending point at a time (rather than taking every mean from
//!   the GP of the finished trials alone) lowered the geometric-mean regret of 4 workers against
//!   1 worker from 1.74× to 1.60× at 50 trials (3.29× to 3.22× at 25; 40 seeds of
//!   `benches/vs_optuna`, arms `ns-auto` and `ns-auto-4workers`). Other pending-value rules
//!   measured worse there: the uncapped mean, the mean ± one posterior standard deviation
//!   (capped), the worst or the mean observed value, and ignoring pending trials. So did
//!   Optuna's own rule, qLogEI over the pending points and the new one (tried 2026-12-01 with 128
//!   joint draws and x's improvement integrated exactly: 2.46× one worker at 50 trials against the
//!   believer's 1.64×, 40 seeds, and about 200 ms per ask), which explores more while trials run.
//! - **Start-up with parallel workers.** Optuna samples at random until `n_startup_trials` trials
//!   are COMPLETE, so with k workers k − 1 more unguided trials go out while the last start-up
//!   results come in. Here the GP takes over once that many trials are asked (COMPLETE and
//!   RUNNING) and half of them are COMPLETE; the running ones enter through the believer. Over
//!   40 seeds of `benches/vs_optuna` (2026-12-02) the regret of 4 workers against one worker
//!   went from 3.23× to 2.23× at 25 trials (1.59× / 1.63× at 50, 0.89× / 0.85× at 100), of 8
//!   workers from 6.67× to 5.62× at 25 and 4.92× to 3.78× at 50.
//! - **Discrete line search**: golden-section search over grid indices instead of Brent's
//!   method in the encoded coordinate (only for grids of more than 16 values).
//! - **Box-constrained L-BFGS** is a projected L-BFGS without the generalised Cauchy point.
//! - **Preliminary samples**: 2048 by default, as Optuna; `n_preliminary_samples` lowers it for latency.
//!
//! Checked against Optuna 5.0: on the same history, the fitted hyper-parameters agree with
//! Optuna's `fit_kernel_params` (no cache) to about four digits, and the acquisition maximum
//! found is equal or higher. Regret against Optuna's GPSampler on a suite of seven problems, and
//! ask latency against Optuna's: docs/search.md (`benches/vs_optuna/`). An ask over 100 finished
//! trials of the 5-parameter space of `benches/gp_ask.rs` took about 16 ms of CPU time (9 ms at
//! 50, 81 ms at 200; group `gp_ask_cpu`) with nalgebra; with faer's Cholesky factor and inverse, 1.3×
//! less at 100 and 2× less at 200; with the likelihood's buffers reused, kernel values through a
//! vectorised exp and the Sobol design built incrementally, another 1.5× less at 100 and 1.4× at 200;
//! with fits warm-started from the previous ask's kernel, another 1.6× less at 100 and 1.3× at 200
//! (docs/search.md). What is left is mostly the O(n³) factor and inverse in each of the ~20
//! likelihood evaluations of a warm-started fit, and the O(n²) posterior variance at 2,048 Sobol points.
//!
//! Out of memory: trials that failed for lack of (device) memory ([`FrozenTrial::is_oom`]) are
//! infeasible, as trials violating a constraint are for Optuna's `GPSampler` with a
//! `constraints_func`: a second GP is fitted to feasibility (+1 for COMPLETE and PRUNED trials,
//! −1 for out-of-memory ones, standardised) and the log probability that it is above the labels'
//! midpoint is added to log EI ([`acquisition::LogPof`]); while no trial has completed, that
//! probability alone is maximised. Unlike Optuna, they also join the objective's data at the worst
//! value observed: the feasibility GP reverts to its prior away from the points it has seen, and
//! on a log-int batch size EI's extrapolation then kept pulling the search back into the region
//! along the other parameters (45 % of the suggestions avoided it; 97 % with the imputation,
//! `tests/oom_avoidance.rs`). Out-of-memory trials count toward the start-up trials, as Optuna's
//! infeasible (COMPLETE) trials do. Without such trials nothing changes.
//!
//! Every other failed trial (diverged, a NaN objective, told `fail`; not one stopped by Ctrl-C) is
//! infeasible in the same way ([`FrozenTrial::is_infeasible`]). Optuna's `GPSampler` ignores them;
//! here the acquisition is deterministic for a given history, so a point that failed would be
//! suggested again at every ask, and a sweep stopped by its consecutive failures.
//!
//! Numerics never fail an ask: non-positive-definite covariances get growing jitter; a failed
//! fit falls back to the default kernel parameters; if even those cannot be factorised, the
//! joint parameters are left to the random sampler for that ask. [`GpSampler::suggest`] reports
//! which fallback (if any) was taken.

/// Log expected improvement.
pub mod acquisition;
/// Fitting the kernel hyper-parameters by maximum marginal likelihood.
pub mod fit;
/// The Matérn-5/2 kernel.
pub mod kernel;
/// The L-BFGS-B minimiser.
pub mod lbfgs;
/// Encoding parameters into the unit cube.
pub mod normalize;
/// Maximising the acquisition function.
pub mod optimize;
/// The GP posterior.
pub mod regressor;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use self::acquisition::{Acquisition, LogEi, LogPof};
use self::kernel::KernelParams;
use self::normalize::Dim;
use self::optimize::Effort;
use self::regressor::{GpRegressor, Observations};
use super::{RandomSampler, Sampler, SamplingContext, TrialNotes};
use crate::error::Result;
use crate::space::{Distribution, ParamValue, SearchSpace};
use crate::storage::attrs;
use crate::trial::{FrozenTrial, TrialState};

/// GP sampler options; the defaults are Optuna 5.0's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpConfig {
    /// COMPLETE trials sampled at random before the GP takes over (with parallel workers: trials
    /// asked, once half of them are COMPLETE: see the module documentation).
    pub n_startup_trials: usize,
    /// Fix the noise variance at its minimum (the objective has no noise).
    pub deterministic_objective: bool,
    /// Sobol points evaluated before the local searches.
    pub n_preliminary_samples: usize,
    /// Local searches per ask (starting points).
    pub n_local_search: usize,
}

impl Default for GpConfig {
    fn default() -> Self {
        Self { n_startup_trials: 10, deterministic_objective: false, n_preliminary_samples: 2048, n_local_search: 10 }
    }
}

/// Why an ask did not use the fitted GP as designed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpFallback {
    /// The hyper-parameter fit failed; the default kernel parameters were used.
    DefaultKernelParams,
    /// No GP could be built (not even with default parameters and jitter); the joint parameters
    /// were left to random sampling.
    Random,
}

impl std::fmt::Display for GpFallback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::DefaultKernelParams => "the kernel fit failed; this ask used the default hyper-parameters",
            Self::Random => "no Gaussian process could be factorised; this ask sampled at random",
        })
    }
}

/// What [`GpSampler::suggest`] decided.
#[derive(Clone, Debug, PartialEq)]
pub struct GpSuggestion {
    /// The jointly sampled parameters (empty: sample them independently, at random).
    pub params: BTreeMap<String, ParamValue>,
    /// Why the GP was not used as such, when it was not.
    pub fallback: Option<GpFallback>,
    /// The objective's fitted kernel, for the next ask's fit to start from ([`attrs::GP_KERNEL`]).
    pub kernel: Option<KernelNote>,
}

/// The fitted kernel an ask leaves on its trial ([`attrs::GP_KERNEL`]): the joint parameters'
/// names (in the order of the λs) and the hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelNote {
    /// The joint parameters, sorted by name: the dimensions of `kernel`.
    pub params: Vec<String>,
    /// The fitted hyper-parameters.
    #[serde(flatten)]
    pub kernel: KernelParams,
}

impl KernelNote {
    /// The kernel left by the latest trial before the one being sampled that fitted the same
    /// joint parameters, if any.
    fn latest(ctx: &SamplingContext<'_>, params: &[&str]) -> Option<KernelParams> {
        ctx.trials.iter().rev().filter(|t| t.number < ctx.trial_number).find_map(|t| {
            let note = KernelNote::deserialize(t.system_attrs.get(attrs::GP_KERNEL)?).ok()?;
            (note.params.iter().map(String::as_str).eq(params.iter().copied())
                && note.kernel.inv_sq_lengthscales.len() == params.len())
            .then_some(note.kernel)
        })
    }
}

/// The GP sampler. See the module documentation for the algorithm.
#[derive(Clone, Debug, Default)]
pub struct GpSampler {
    config: GpConfig,
}

impl GpSampler {
    /// The sampler with these options.
    pub fn new(config: GpConfig) -> Self {
        Self { config }
    }

    /// Its options.
    pub fn config(&self) -> &GpConfig {
        &self.config
    }

    fn completed<'a>(&self, ctx: &'a SamplingContext<'_>) -> impl Iterator<Item = &'a FrozenTrial> + 'a {
        let current = ctx.trial_number;
        ctx.trials.iter().filter(move |t| t.state == TrialState::Complete && t.number != current)
    }

    /// COMPLETE trials and those that ran out of memory (infeasible ones, which Optuna's
    /// constraint handling counts too: there they are COMPLETE): what the start-up count and the
    /// joint space go by.
    fn informative<'a>(&self, ctx: &'a SamplingContext<'_>) -> impl Iterator<Item = &'a FrozenTrial> + 'a {
        let current = ctx.trial_number;
        ctx.trials.iter().filter(move |t| (t.state == TrialState::Complete || t.is_infeasible()) && t.number != current)
    }

    /// Whether this ask is still in the start-up phase: fewer than `n_startup_trials` COMPLETE
    /// (or out-of-memory) trials, unless parallel workers have that many asked (finished and
    /// RUNNING) and at least half of them have finished. The start-up design is then complete:
    /// waiting for its last results would only add unguided trials (with 4 workers, 13 instead
    /// of 10), while the GP already sees the running ones through the believer.
    pub(crate) fn in_startup(&self, ctx: &SamplingContext<'_>) -> bool {
        let n = self.config.n_startup_trials.max(1);
        let finished = self.informative(ctx).take(n).count();
        if finished >= n {
            return false;
        }
        let running = ctx.trials.iter().filter(|t| t.state == TrialState::Running && t.number != ctx.trial_number).count();
        finished + running < n || finished < n.div_ceil(2).max(2)
    }

    /// Jointly samples `space` (already the relative space) and says which fallback was taken.
    pub fn suggest(&self, ctx: &SamplingContext<'_>, space: &SearchSpace) -> GpSuggestion {
        let mut out = GpSuggestion { params: BTreeMap::new(), fallback: None, kernel: None };
        let mut params: Vec<(&str, &Distribution)> = space.iter().filter(|(_, d)| !d.is_single()).collect();
        if params.is_empty() {
            return out;
        }
        params.sort_by(|a, b| a.0.cmp(b.0));
        let dims: Vec<Dim> = params.iter().map(|(_, d)| Dim::new(d)).collect();
        let categorical: Vec<bool> = dims.iter().map(Dim::is_categorical).collect();
        let encode = |t: &FrozenTrial, row: &mut Vec<f64>| -> bool {
            row.clear();
            for ((name, dist), dim) in params.iter().zip(&dims) {
                match t.params.get(*name).map(|v| dist.to_internal(v)) {
                    Some(Ok(internal)) => row.push(dim.encode(internal)),
                    _ => return false,
                }
            }
            true
        };

        // Observations: COMPLETE trials, values as gains (negated losses).
        let mut obs = Observations::new(dims.len(), categorical.clone());
        let mut row = Vec::with_capacity(dims.len());
        for t in self.completed(ctx) {
            let Some(value) = t.value.filter(|v| !v.is_nan()) else { continue };
            if encode(t, &mut row) {
                obs.push(&row, -ctx.direction.to_loss(value));
            }
        }
        // Feasibility, only once some trial ran out of memory: +1 for trials that ran (COMPLETE,
        // PRUNED), −1 for those that did not.
        let mut feasibility = Observations::new(dims.len(), categorical);
        if ctx.trials.iter().any(|t| t.is_infeasible() && t.number != ctx.trial_number) {
            let ran = |t: &FrozenTrial| matches!(t.state, TrialState::Complete | TrialState::Pruned);
            for t in ctx.trials.iter().filter(|t| t.number != ctx.trial_number && (ran(t) || t.is_infeasible())) {
                if encode(t, &mut row) {
                    feasibility.push(&row, if ran(t) { 1.0 } else { -1.0 });
                }
            }
        }
        if obs.is_empty() && feasibility.is_empty() {
            return out;
        }

        let objective = if obs.is_empty() {
            None
        } else {
            // Out-of-memory trials also join the objective's data at the worst value seen: where a
            // region is known not to fit, the model must not promise improvement there either (the
            // feasibility GP alone, reverting to its prior away from the observed points, let EI's
            // extrapolation pull the search back into the region along the other parameters).
            let worst = obs.y.iter().copied().filter(|v| v.is_finite()).fold(f64::INFINITY, f64::min);
            if worst.is_finite() {
                for t in ctx.trials.iter().filter(|t| t.is_infeasible() && t.number != ctx.trial_number) {
                    if encode(t, &mut row) {
                        obs.push(&row, worst);
                    }
                }
            }
            standardize(&mut obs.y);
            let names: Vec<&str> = params.iter().map(|(name, _)| *name).collect();
            let warm_start = KernelNote::latest(ctx, &names);
            let fit = fit::fit(&obs, self.config.deterministic_objective, warm_start.as_ref());
            if fit.fallback.is_some() {
                out.fallback = Some(GpFallback::DefaultKernelParams);
            }
            let Some(mut gp) = fit.gp else {
                out.fallback = Some(GpFallback::Random);
                return out;
            };
            if fit.fallback.is_none() {
                let params = names.iter().map(|name| name.to_string()).collect();
                out.kernel = Some(KernelNote { params, kernel: gp.params().clone() });
            }
            let best = argmax(&obs.y);
            let threshold = obs.y[best];
            let best_row = obs.row(best).to_vec();
            // Capped Kriging believer for the other RUNNING trials, conditioned on one at a time (in
            // trial-number order), so that each pseudo-observation sees the ones before it.
            let mut augmented = obs.clone();
            for t in ctx.trials.iter().filter(|t| t.state == TrialState::Running && t.number != ctx.trial_number) {
                if encode(t, &mut row) {
                    let (mean, _) = gp.posterior(&row);
                    augmented.push(&row, mean.min(threshold));
                    if let Some(believer) = GpRegressor::new(augmented.clone(), gp.params().clone()) {
                        gp = believer;
                    }
                }
            }
            Some((gp, threshold, best_row))
        };
        let feasibility = if feasibility.is_empty() {
            None
        } else {
            // Where the labels' midpoint (0) lies after standardising. With one label only (every
            // trial so far ran out of memory) standardising would erase it: the raw −1s keep the
            // model low near them and back at the midpoint far away.
            let both = feasibility.y.iter().any(|&y| y > 0.0) && feasibility.y.iter().any(|&y| y < 0.0);
            let threshold = if both {
                let (mean, std) = standardize(&mut feasibility.y);
                -mean / std
            } else {
                0.0
            };
            let fit = fit::fit(&feasibility, true, None);
            match fit.gp {
                Some(gp) => Some((gp, threshold)),
                // Without a feasibility model the objective alone decides; with neither, random.
                None if objective.is_some() => None,
                None => {
                    out.fallback = Some(GpFallback::Random);
                    return out;
                }
            }
        };

        let acqf = Acquisition {
            ei: objective.as_ref().map(|(gp, threshold, _)| LogEi { gp, threshold: *threshold }),
            feasibility: feasibility.as_ref().map(|(gp, threshold)| LogPof { gp, threshold: *threshold }),
        };
        let effort = Effort {
            n_preliminary_samples: self.config.n_preliminary_samples.max(1),
            n_local_search: self.config.n_local_search.max(1),
            tol: 1e-4,
        };
        let mut rng = ctx.rng("gp");
        let best_row = objective.as_ref().map(|(_, _, row)| row.as_slice());
        let (x, _) = optimize::maximize(&acqf, &dims, best_row, effort, &mut rng);
        for (((name, dist), dim), &u) in params.iter().zip(&dims).zip(&x) {
            out.params.insert(name.to_string(), dist.to_external(dim.decode(u)));
        }
        out
    }
}

/// Clips infinities to the finite extremes (0 when there are none) and standardises to mean 0
/// and standard deviation 1 (Optuna's `warn_and_convert_inf` and `_standardize_values`); returns
/// the mean and the divisor used.
pub(crate) fn standardize(y: &mut [f64]) -> (f64, f64) {
    let finite = y.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 0.0) };
    y.iter_mut().for_each(|v| *v = v.clamp(lo, hi));
    let n = y.len() as f64;
    let mean = y.iter().sum::<f64>() / n;
    let std = (y.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n).sqrt();
    y.iter_mut().for_each(|v| *v = (*v - mean) / std.max(1e-10));
    (mean, std.max(1e-10))
}

fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

impl Sampler for GpSampler {
    /// The non-single parameters of `space` that every COMPLETE (or out-of-memory) trial has
    /// (with a value in range); empty during the start-up phase.
    fn infer_relative_search_space(&self, ctx: &SamplingContext<'_>, space: &SearchSpace) -> SearchSpace {
        let mut relative = SearchSpace::new();
        if self.in_startup(ctx) {
            return relative;
        }
        for (name, dist) in space.iter().filter(|(_, d)| !d.is_single()) {
            if self.informative(ctx).all(|t| t.params.get(name).is_some_and(|v| dist.to_internal(v).is_ok())) {
                relative.insert(name, dist.clone());
            }
        }
        relative
    }

    fn sample_relative(&self, ctx: &SamplingContext<'_>, space: &SearchSpace) -> Result<BTreeMap<String, ParamValue>> {
        Ok(self.sample_relative_noted(ctx, space)?.0)
    }

    /// The notes: the fitted kernel ([`attrs::GP_KERNEL`]), which the next ask's fit starts from.
    fn sample_relative_noted(
        &self,
        ctx: &SamplingContext<'_>,
        space: &SearchSpace,
    ) -> Result<(BTreeMap<String, ParamValue>, TrialNotes)> {
        let mut notes = TrialNotes::new();
        if space.is_empty() || self.in_startup(ctx) {
            return Ok((BTreeMap::new(), notes));
        }
        let suggestion = self.suggest(ctx, space);
        if let Some(fallback) = suggestion.fallback {
            tracing::warn!(study = ctx.study_name, trial = ctx.trial_number, "GP sampler: {fallback}");
        }
        if let Some(kernel) = suggestion.kernel.and_then(|k| serde_json::to_value(k).ok()) {
            notes.insert(attrs::GP_KERNEL.to_string(), kernel);
        }
        Ok((suggestion.params, notes))
    }

    fn sample_independent(&self, ctx: &SamplingContext<'_>, name: &str, distribution: &Distribution) -> Result<ParamValue> {
        RandomSampler.sample_independent(ctx, name, distribution)
    }
}

#[cfg(test)]
mod tests;

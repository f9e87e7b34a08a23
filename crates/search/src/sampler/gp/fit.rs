//! Fitting the kernel hyper-parameters: maximise the log marginal likelihood plus Optuna's
//! default log prior, over the logarithms of the parameters, with L-BFGS and analytic gradients.
//!
//! Parameters (all positive, optimised as logarithms): λ_d (inverse squared length scales), the
//! kernel scale `s` and the noise variance `σ² = exp(ρ) + min_noise` (fixed at `min_noise` for a
//! deterministic objective). Log prior (Optuna's `prior.py`, constants dropped):
//! `−Σ_d (0.1/λ_d + 0.1·λ_d) + (log s − s) + (0.1·log σ² − 30·σ²)`, i.e. Gamma(2, 1) on the
//! scale and Gamma(1.1, 30) on the noise.
//!
//! Log marginal likelihood: `−½ log det C − ½ yᵀC⁻¹y` with `C = K + σ²I`; its gradient is
//! `½ tr((ααᵀ − C⁻¹) ∂C/∂θ)` with `α = C⁻¹y`.

use std::cell::RefCell;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Accum, Col, Mat, Par};

use super::kernel::{KernelParams, matern52_with_derivative, sq_diff};
use super::lbfgs::{self, Options};
use super::regressor::{GpRegressor, Observations};

/// Optuna's `DEFAULT_MINIMUM_NOISE_VAR`.
pub const MINIMUM_NOISE_VAR: f64 = 1e-6;

/// Why a fit did not produce fitted hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FitFallback {
    /// The likelihood could not be evaluated at the starting point or the optimum; the default
    /// kernel parameters were used instead.
    DefaultParams,
}

/// The negative log posterior of the hyper-parameters as a function of their logarithms.
pub struct Objective<'a> {
    obs: &'a Observations,
    y: Col<f64>,
    /// δ_d between observations i > j, dimension-major over the pairs in column order of the
    /// lower triangle ((1, 0), (2, 0), …, (n−1, 0), (2, 1), …): `deltas[d·n_pairs + pair]`, so
    /// that every pass over the pairs is a contiguous (vectorisable) loop.
    deltas: Vec<f64>,
    n_pairs: usize,
    deterministic: bool,
    min_noise: f64,
    scratch: RefCell<Scratch>,
}

/// Buffers that [`Objective::eval`] reuses: per pair r², m, dm and W·dm; the covariance
/// factorised in place; L⁻¹; C⁻¹; α; faer's workspace.
struct Scratch {
    r2: Vec<f64>,
    m: Vec<f64>,
    dm: Vec<f64>,
    w_dm: Vec<f64>,
    factor: Mat<f64>,
    l_inv: Mat<f64>,
    inverse: Mat<f64>,
    alpha: Col<f64>,
    stack: MemBuffer,
}

impl Scratch {
    fn new(n: usize, n_pairs: usize) -> Self {
        let pairs = || vec![0.0; n_pairs];
        Self {
            r2: pairs(),
            m: pairs(),
            dm: pairs(),
            w_dm: pairs(),
            factor: Mat::zeros(n, n),
            l_inv: Mat::zeros(n, n),
            inverse: Mat::zeros(n, n),
            alpha: Col::zeros(n),
            stack: MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(n, Par::Seq, Default::default())),
        }
    }
}

impl<'a> Objective<'a> {
    /// The marginal-likelihood objective of `obs`; `deterministic` fixes the noise at `min_noise`.
    pub fn new(obs: &'a Observations, deterministic: bool, min_noise: f64) -> Self {
        let (n, d) = (obs.len(), obs.dims);
        let n_pairs = n * n.saturating_sub(1) / 2;
        let mut deltas = Vec::with_capacity(n_pairs * d);
        for c in 0..d {
            for j in 0..n {
                let b = obs.row(j)[c];
                deltas.extend((j + 1..n).map(|i| sq_diff(obs.row(i)[c], b, obs.categorical[c])));
            }
        }
        let scratch = RefCell::new(Scratch::new(n, n_pairs));
        Self { obs, y: Col::from_fn(n, |i| obs.y[i]), deltas, n_pairs, deterministic, min_noise, scratch }
    }

    /// Raw (log) parameters → kernel parameters.
    pub fn params(&self, raw: &[f64]) -> KernelParams {
        let d = self.obs.dims;
        KernelParams {
            inv_sq_lengthscales: raw[..d].iter().map(|v| v.exp()).collect(),
            scale: raw[d].exp(),
            noise_var: if self.deterministic { self.min_noise } else { raw[d + 1].exp() + self.min_noise },
        }
    }

    /// Kernel parameters → raw (log) parameters (the inverse of [`Objective::params`]).
    pub fn raw(&self, params: &KernelParams) -> Vec<f64> {
        let mut raw: Vec<f64> = params.inv_sq_lengthscales.iter().map(|v| v.ln()).collect();
        raw.push(params.scale.ln());
        // Keep the noise a little above its minimum so that its logarithm is finite.
        raw.push((params.noise_var - 0.99 * self.min_noise).max(0.01 * self.min_noise).ln());
        raw
    }

    /// Negative (log marginal likelihood + log prior) at `raw`, writing its gradient; +∞ when the
    /// covariance is not positive definite.
    pub fn eval(&self, raw: &[f64], grad: &mut [f64]) -> f64 {
        let (n, d) = (self.obs.len(), self.obs.dims);
        let p = self.params(raw);
        let (s, noise) = (p.scale, p.noise_var);
        if !s.is_finite() || !noise.is_finite() || p.inv_sq_lengthscales.iter().any(|v| !v.is_finite()) {
            return f64::INFINITY;
        }
        let mut scratch = self.scratch.borrow_mut();
        let Scratch { r2, m, dm, w_dm, factor, l_inv, inverse, alpha, stack } = &mut *scratch;
        // Kernel correlations m and their derivatives dm per pair, then the covariance's lower
        // triangle (what the factorisation reads): column j below the diagonal is a run of pairs.
        let n_pairs = self.n_pairs;
        r2.fill(0.0);
        for (lambda, deltas) in p.inv_sq_lengthscales.iter().zip(self.deltas.chunks_exact(n_pairs.max(1))) {
            r2.iter_mut().zip(deltas).for_each(|(r, delta)| *r += lambda * delta);
        }
        for ((r, mi), dmi) in r2.iter().zip(m.iter_mut()).zip(dm.iter_mut()) {
            (*mi, *dmi) = matern52_with_derivative(*r);
        }
        let mut start = 0;
        for j in 0..n {
            let col = &mut factor.col_as_slice_mut(j)[j..];
            col[0] = s + noise;
            let run = &m[start..start + col.len() - 1];
            col[1..].iter_mut().zip(run).for_each(|(entry, mi)| *entry = s * mi);
            start += run.len();
        }
        // In place, into buffers kept across evaluations: the fit evaluates this some 40 times,
        // and fresh n × n matrices cost as much as the arithmetic on them.
        let stack = MemStack::new(stack);
        if llt::factor::cholesky_in_place(factor.as_mut(), Default::default(), Par::Seq, stack, Default::default()).is_err() {
            return f64::INFINITY;
        }
        let log_det: f64 = 2.0 * (0..n).map(|i| factor[(i, i)].ln()).sum::<f64>();
        alpha.copy_from(&self.y);
        llt::solve::solve_in_place(factor.as_ref(), alpha.as_mat_mut(), Par::Seq, stack);
        let lml = -0.5 * log_det - 0.5 * (self.y.transpose() * &*alpha);
        // C⁻¹ = L⁻ᵀL⁻¹, lower triangle only (all the gradient reads).
        invert_lower_triangular(l_inv.as_mut(), factor.as_ref(), Par::Seq);
        triangular::matmul(
            inverse.as_mut(),
            BlockStructure::TriangularLower,
            Accum::Replace,
            l_inv.transpose(),
            BlockStructure::TriangularUpper,
            l_inv.as_ref(),
            BlockStructure::TriangularLower,
            1.0,
            Par::Seq,
        );
        let alpha = alpha.try_as_col_major().expect("an owned column is contiguous").as_slice();
        // W = ααᵀ − C⁻¹; ∂lml/∂θ = ½ Σ_ij W_ij ∂C_ij/∂θ, the off-diagonal pairs counted twice:
        // per pair, W·m for the scale and W·dm for the length scales (times δ_d below).
        let mut g_scale = 0.0;
        let mut g_noise = 0.0;
        for (i, &a) in alpha.iter().enumerate() {
            let w = a * a - inverse[(i, i)];
            g_scale += 0.5 * w * s;
            g_noise += 0.5 * w;
        }
        let mut w_m = 0.0;
        let mut start = 0;
        for j in 0..n {
            let inverse_col = &inverse.col_as_slice(j)[j + 1..];
            let end = start + inverse_col.len();
            let a_j = alpha[j];
            let pairs = w_dm[start..end].iter_mut().zip(&m[start..end]).zip(&dm[start..end]);
            for (((out, mi), dmi), (a_i, inverse_ij)) in pairs.zip(alpha[j + 1..].iter().zip(inverse_col)) {
                let w = a_i * a_j - inverse_ij;
                w_m += w * mi;
                *out = w * dmi;
            }
            start = end;
        }
        g_scale += s * w_m;
        grad.iter_mut().for_each(|g| *g = 0.0);
        for (g, deltas) in grad.iter_mut().zip(self.deltas.chunks_exact(n_pairs.max(1))) {
            *g = s * w_dm.iter().zip(deltas).map(|(a, b)| a * b).sum::<f64>();
        }
        // Chain rule to log λ, and the prior.
        let mut prior = s.ln() - s + 0.1 * noise.ln() - 30.0 * noise;
        for (g, &lambda) in grad.iter_mut().zip(&p.inv_sq_lengthscales) {
            prior -= 0.1 / lambda + 0.1 * lambda;
            *g = -(*g * lambda + 0.1 / lambda - 0.1 * lambda);
        }
        grad[d] = -(g_scale + 1.0 - s);
        grad[d + 1] = if self.deterministic {
            0.0
        } else {
            let e = raw[d + 1].exp();
            -(g_noise * e + (0.1 / noise - 30.0) * e)
        };
        -(lml + prior)
    }
}

/// A fitted GP, and why the fit fell back to defaults if it did.
pub struct Fit {
    /// The GP, unless no covariance could be factorised.
    pub gp: Option<GpRegressor>,
    /// Why the fit fell back, if it did.
    pub fallback: Option<FitFallback>,
}

/// Up to this many observations, [`fit`] also starts from shorter and longer length scales.
pub const MULTI_START_MAX_OBSERVATIONS: usize = 64;

/// Fits the hyper-parameters to `obs`, stopping when the gradient is at most 1e-2 as Optuna's
/// `gtol` does. Up to [`MULTI_START_MAX_OBSERVATIONS`] observations the fit starts from Optuna's
/// default point (every λ, the scale and the noise 1) and from λ = 10 and λ = 0.1, and keeps the
/// best posterior: a fit is cheap there and the likelihood often has several optima. Beyond, it
/// starts from `warm_start` (the parameters of an earlier fit of the same space, as Optuna's
/// `GPSampler` starts from its previous ask's fit) when given, else from the default point. Falls
/// back to the default parameters when the fit fails, and returns no GP when even those cannot be
/// factorised.
pub fn fit(obs: &Observations, deterministic: bool, warm_start: Option<&KernelParams>) -> Fit {
    let objective = Objective::new(obs, deterministic, MINIMUM_NOISE_VAR);
    let start = |lambda: f64| {
        let mut p = KernelParams::default_for(obs.dims);
        p.inv_sq_lengthscales.iter_mut().for_each(|v| *v = lambda);
        objective.raw(&p)
    };
    if obs.len() > MULTI_START_MAX_OBSERVATIONS {
        // A warm start that fails (an earlier fit of very different data) is retried from the default.
        if let Some(warm) = warm_start.filter(|w| w.inv_sq_lengthscales.len() == obs.dims)
            && let fit @ Fit { fallback: None, .. } = fit_from(obs, deterministic, &objective.raw(warm))
        {
            return fit;
        }
        return fit_from(obs, deterministic, &start(1.0));
    }
    let mut best = fit_from(obs, deterministic, &start(1.0));
    let mut grad = vec![0.0; obs.dims + 2];
    let mut loss = |fit: &Fit| match (&fit.gp, fit.fallback) {
        (Some(gp), None) => objective.eval(&objective.raw(gp.params()), &mut grad),
        _ => f64::INFINITY,
    };
    let mut best_loss = loss(&best);
    for lambda in [10.0, 0.1] {
        let candidate = fit_from(obs, deterministic, &start(lambda));
        let candidate_loss = loss(&candidate);
        if candidate_loss < best_loss {
            (best, best_loss) = (candidate, candidate_loss);
        }
    }
    best
}

/// [`fit`] from the raw (log) parameters `x0`.
pub fn fit_from(obs: &Observations, deterministic: bool, x0: &[f64]) -> Fit {
    let objective = Objective::new(obs, deterministic, MINIMUM_NOISE_VAR);
    let default = KernelParams::default_for(obs.dims);
    let options = Options { pgtol: 1e-2, max_iters: 200, ..Options::default() };
    let out = lbfgs::minimize(|raw, grad| objective.eval(raw, grad), x0, None, &options);
    if out.f.is_finite()
        && let Some(gp) = GpRegressor::new(obs.clone(), objective.params(&out.x))
    {
        return Fit { gp: Some(gp), fallback: None };
    }
    let mut params = default;
    if deterministic {
        params.noise_var = MINIMUM_NOISE_VAR;
    }
    Fit { gp: GpRegressor::new(obs.clone(), params), fallback: Some(FitFallback::DefaultParams) }
}

#[cfg(test)]
mod tests {
    use faer::linalg::solvers::DenseSolveCore;

    use super::*;

    fn data() -> Observations {
        let mut obs = Observations::new(3, vec![false, false, true]);
        for i in 0..12 {
            let t = i as f64;
            let row = [(t * 0.37).fract(), (t * 0.61 + 0.2).fract(), (i % 3) as f64];
            obs.push(&row, (4.0 * row[0]).sin() + row[1] * row[1] + 0.3 * row[2]);
        }
        let mean = obs.y.iter().sum::<f64>() / obs.y.len() as f64;
        obs.y.iter_mut().for_each(|v| *v -= mean);
        obs
    }

    #[test]
    fn likelihood_gradient_matches_finite_differences() {
        let obs = data();
        for deterministic in [false, true] {
            let objective = Objective::new(&obs, deterministic, MINIMUM_NOISE_VAR);
            let raw = [0.3, -0.5, 0.2, 0.1, -3.0];
            let mut grad = [0.0; 5];
            let f = objective.eval(&raw, &mut grad);
            assert!(f.is_finite());
            for k in 0..5 {
                let h = 1e-6;
                let (mut rp, mut rm) = (raw, raw);
                rp[k] += h;
                rm[k] -= h;
                let fd = (objective.eval(&rp, &mut [0.0; 5]) - objective.eval(&rm, &mut [0.0; 5])) / (2.0 * h);
                assert!(
                    (fd - grad[k]).abs() < 1e-5 * fd.abs().max(1.0),
                    "deterministic {deterministic}, k {k}: {fd} vs {}",
                    grad[k]
                );
            }
            if deterministic {
                assert_eq!(grad[4], 0.0);
            }
        }
    }

    #[test]
    fn likelihood_value_matches_the_direct_formula() {
        let obs = data();
        let objective = Objective::new(&obs, false, MINIMUM_NOISE_VAR);
        let raw = [0.3, -0.5, 0.2, 0.1, -3.0];
        let p = objective.params(&raw);
        // The covariance in full (the function fills the lower triangle), then LU, not Cholesky.
        let lower = super::super::regressor::covariance(&obs, &p);
        let c = Mat::from_fn(obs.len(), obs.len(), |i, j| if i >= j { lower[(i, j)] } else { lower[(j, i)] });
        let y = Col::from_fn(obs.len(), |i| obs.y[i]);
        let lu = c.partial_piv_lu();
        let lml = -0.5 * c.determinant().ln() - 0.5 * (y.transpose() * (lu.inverse() * &y));
        let prior = -p.inv_sq_lengthscales.iter().map(|l| 0.1 / l + 0.1 * l).sum::<f64>() + p.scale.ln() - p.scale
            + 0.1 * p.noise_var.ln()
            - 30.0 * p.noise_var;
        let f = objective.eval(&raw, &mut [0.0; 5]);
        assert!((f + lml + prior).abs() < 1e-8, "{f} vs {}", -(lml + prior));
    }

    #[test]
    fn fitting_raises_the_posterior_and_learns_an_irrelevant_dimension() {
        // y depends on x0 only: the fitted λ of x1 must come out much smaller than that of x0.
        let mut obs = Observations::new(2, vec![false, false]);
        for i in 0..25 {
            let t = i as f64;
            let row = [(t * 0.381_966).fract(), (t * 0.618_034 + 0.1).fract()];
            obs.push(&row, (6.0 * row[0]).sin());
        }
        let fit = fit(&obs, false, None);
        assert!(fit.fallback.is_none());
        let gp = fit.gp.unwrap();
        let lambda = &gp.params().inv_sq_lengthscales;
        assert!(lambda[0] > 10.0 * lambda[1], "{lambda:?}");
        let objective = Objective::new(&obs, false, MINIMUM_NOISE_VAR);
        let fitted = objective.eval(&objective.raw(gp.params()), &mut [0.0; 4]);
        let start = objective.eval(&objective.raw(&KernelParams::default_for(2)), &mut [0.0; 4]);
        assert!(fitted < start - 1.0, "{fitted} vs {start}");
    }

    #[test]
    fn multi_start_keeps_the_best_posterior_and_is_deterministic() {
        let obs = data();
        let objective = Objective::new(&obs, false, MINIMUM_NOISE_VAR);
        let loss = |fit: &Fit| objective.eval(&objective.raw(fit.gp.as_ref().unwrap().params()), &mut [0.0; 5]);
        let best = fit(&obs, false, None);
        for lambda in [1.0, 10.0, 0.1] {
            let mut p = KernelParams::default_for(3);
            p.inv_sq_lengthscales.iter_mut().for_each(|v| *v = lambda);
            let single = fit_from(&obs, false, &objective.raw(&p));
            assert!(loss(&best) <= loss(&single) + 1e-12, "λ0 = {lambda}");
        }
        assert_eq!(best.gp.unwrap().params(), fit(&obs, false, None).gp.unwrap().params());
    }

    #[test]
    fn a_warm_start_from_the_previous_fit_reaches_the_same_posterior_sooner() {
        // 80 observations of a smooth function of 3 dimensions (one categorical), as a study's
        // history grows by one: the fit over 79 is where the fit over 80 starts.
        let mut all = Observations::new(3, vec![false, false, true]);
        for i in 0..80 {
            let t = i as f64;
            let row = [(t * 0.381_966).fract(), (t * 0.618_034 + 0.1).fract(), (i % 4) as f64];
            all.push(&row, (5.0 * row[0]).sin() + (row[1] - 0.4).powi(2) + 0.2 * row[2]);
        }
        let first = |n: usize| {
            let mut obs = Observations::new(3, vec![false, false, true]);
            (0..n).for_each(|i| obs.push(all.row(i), all.y[i]));
            crate::sampler::gp::standardize(&mut obs.y);
            obs
        };
        let (before, now) = (first(79), first(80));
        let previous = fit(&before, false, None).gp.unwrap().params().clone();
        let objective = Objective::new(&now, false, MINIMUM_NOISE_VAR);
        let options = Options { pgtol: 1e-2, max_iters: 200, ..Options::default() };
        let mut evals = [0, 0];
        let run = |start: &KernelParams, count: &mut usize| {
            lbfgs::minimize(
                |raw, g| {
                    *count += 1;
                    objective.eval(raw, g)
                },
                &objective.raw(start),
                None,
                &options,
            )
        };
        let cold = run(&KernelParams::default_for(3), &mut evals[0]);
        let warm = run(&previous, &mut evals[1]);
        assert!((warm.f - cold.f).abs() < 1e-3 * cold.f.abs().max(1.0), "{} vs {}", warm.f, cold.f);
        assert!(evals[1] * 4 <= evals[0] * 3, "evaluations warm {} vs cold {}", evals[1], evals[0]);
        // fit() beyond 64 observations takes the warm start.
        assert_eq!(fit(&now, false, Some(&previous)).gp.unwrap().params(), &objective.params(&warm.x));
        assert_eq!(fit(&now, false, None).gp.unwrap().params(), &objective.params(&cold.x));
    }

    #[test]
    fn degenerate_data_still_gives_a_model() {
        // One point; all-equal values; duplicated points.
        let mut one = Observations::new(2, vec![false, true]);
        one.push(&[0.5, 1.0], 0.0);
        assert!(fit(&one, false, None).gp.is_some());
        let mut same = Observations::new(1, vec![false]);
        for i in 0..6 {
            same.push(&[i as f64 / 5.0], 0.0);
        }
        assert!(fit(&same, true, None).gp.is_some());
        let mut dup = Observations::new(1, vec![false]);
        for i in 0..6 {
            dup.push(&[0.25], if i % 2 == 0 { 1.0 } else { -1.0 });
        }
        let fit = fit(&dup, true, None);
        assert!(fit.gp.is_some());
    }

    #[test]
    fn a_failed_fit_falls_back_to_the_default_parameters_or_to_nothing() {
        let obs = data();
        // A start where the likelihood is not finite (λ = e^800 overflows): default parameters.
        let fit = fit_from(&obs, false, &[800.0, 0.0, 0.0, 0.0, 0.0]);
        assert_eq!(fit.fallback, Some(FitFallback::DefaultParams));
        assert_eq!(fit.gp.unwrap().params(), &KernelParams::default_for(3));
        // Data that no parameters can model (a NaN coordinate): no GP at all.
        let mut bad = Observations::new(1, vec![false]);
        bad.push(&[f64::NAN], 1.0);
        bad.push(&[0.5], 0.0);
        let fit = super::fit(&bad, false, None);
        assert_eq!(fit.fallback, Some(FitFallback::DefaultParams));
        assert!(fit.gp.is_none());
    }
}

//! Log expected improvement, computed stably far into the tail (Ament et al. 2023, "Unexpected
//! Improvements to Expected Improvement for Bayesian Optimization", eq. 9), as Optuna's `logei`.
//!
//! For `y ~ N(μ, σ²)` and incumbent `f₀` (values are maximised): `EI = σ·h(z)` with
//! `z = (μ − f₀)/σ` and `h(z) = z·Φ(z) + φ(z)`. Where `z ≥ −25`, `log h` is taken directly;
//! below, `h(z) = φ(z)·(1 + z·r(z))` with `r = Φ/φ`, and `1 + z·r(z)` comes from its asymptotic
//! series `z⁻² − 3z⁻⁴ + 15z⁻⁶ − …` instead of the cancelling difference.

use super::regressor::GpRegressor;

const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
const LOG_SQRT_2PI: f64 = 0.918_938_533_204_672_7;
const FRAC_1_SQRT_2: f64 = std::f64::consts::FRAC_1_SQRT_2;
/// Added to the posterior variance, as Optuna's `stabilizing_noise`.
const STABILIZING_NOISE: f64 = 1e-12;

/// `log h(z)` and its derivative `Φ(z)/h(z)`.
pub fn standard_log_ei(z: f64) -> (f64, f64) {
    if z >= -25.0 {
        let cdf = 0.5 * libm::erfc(-FRAC_1_SQRT_2 * z);
        let pdf = (-0.5 * z * z).exp() * INV_SQRT_2PI;
        let h = z * cdf + pdf;
        (h.ln(), cdf / h)
    } else {
        // With u = 1/z²: 1 + z·r(z) = u(1 − 3u + 15u² − 105u³ + 945u⁴ − 10395u⁵) and
        // r(z) = −(1/z)(1 − u + 3u² − 15u³ + 105u⁴ − 945u⁵).
        let u = 1.0 / (z * z);
        let tail = u * (1.0 + u * (-3.0 + u * (15.0 + u * (-105.0 + u * (945.0 - 10395.0 * u)))));
        let r = -(1.0 / z) * (1.0 + u * (-1.0 + u * (3.0 + u * (-15.0 + u * (105.0 - 945.0 * u)))));
        (-0.5 * z * z - LOG_SQRT_2PI + tail.ln(), r / tail)
    }
}

/// log EI of a GP posterior with respect to the incumbent `threshold` (standardised, maximised).
pub struct LogEi<'a> {
    /// The fitted GP.
    pub gp: &'a GpRegressor,
    /// The incumbent (best standardised value so far).
    pub threshold: f64,
}

impl LogEi<'_> {
    fn of_moments(&self, mean: f64, var: f64) -> f64 {
        let sigma = (var + STABILIZING_NOISE).sqrt();
        standard_log_ei((mean - self.threshold) / sigma).0 + sigma.ln()
    }

    /// log EI at `x`.
    pub fn eval(&self, x: &[f64]) -> f64 {
        let (mean, var) = self.gp.posterior(x);
        self.of_moments(mean, var)
    }

    /// log EI at the rows of `xs`.
    pub fn eval_batch(&self, xs: &[f64]) -> Vec<f64> {
        self.gp.posterior_batch(xs).into_iter().map(|(m, v)| self.of_moments(m, v)).collect()
    }

    /// log EI at `x`, writing its gradient with respect to `x` (zero along categorical dimensions).
    pub fn eval_with_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let mut dvar = vec![0.0; x.len()];
        let (mean, var) = self.gp.posterior_with_grad(x, grad, &mut dvar);
        let sigma = (var + STABILIZING_NOISE).sqrt();
        let z = (mean - self.threshold) / sigma;
        let (log_h, dlog_h) = standard_log_ei(z);
        // ∂/∂μ = h'/h / σ; ∂/∂σ = (1 − z·h'/h)/σ and ∂σ/∂var = 1/(2σ).
        let d_mean = dlog_h / sigma;
        let d_var = (1.0 - z * dlog_h) / sigma / (2.0 * sigma);
        for (g, dv) in grad.iter_mut().zip(&dvar) {
            *g = d_mean * *g + d_var * dv;
        }
        log_h + sigma.ln()
    }
}

/// `log Φ(z)` of the standard normal distribution and its derivative `φ(z)/Φ(z)`, stable for
/// very negative `z` (where Φ underflows): below −20 from the asymptotic series
/// `Φ(z) = φ(z)/(−z)·(1 − u + 3u² − 15u³ + 105u⁴ − …)`, `u = 1/z²`.
pub fn log_ndtr(z: f64) -> (f64, f64) {
    if z > -20.0 {
        let cdf = 0.5 * libm::erfc(-FRAC_1_SQRT_2 * z);
        let pdf = (-0.5 * z * z).exp() * INV_SQRT_2PI;
        (cdf.ln(), pdf / cdf)
    } else {
        let u = 1.0 / (z * z);
        let series = 1.0 + u * (-1.0 + u * (3.0 + u * (-15.0 + u * (105.0 - 945.0 * u))));
        (-0.5 * z * z - LOG_SQRT_2PI - (-z).ln() + series.ln(), -z / series)
    }
}

/// Log probability of feasibility: `log P(c(x) > threshold)` under a GP `c` fitted to the
/// feasibility of past trials (+1 ran, −1 ran out of memory; standardised, so `threshold` is
/// where 0 went). Added to log EI, it is Optuna's constrained log EI (`GPSampler` with
/// `constraints_func`: one GP per constraint, log PI of feasibility added) for one 0/1 constraint.
pub struct LogPof<'a> {
    /// The GP of the feasibility labels.
    pub gp: &'a GpRegressor,
    /// The standardised boundary between infeasible and feasible.
    pub threshold: f64,
}

impl LogPof<'_> {
    fn of_moments(&self, mean: f64, var: f64) -> f64 {
        log_ndtr((mean - self.threshold) / (var + STABILIZING_NOISE).sqrt()).0
    }

    /// log P(feasible) at `x`, writing its gradient with respect to `x`.
    fn eval_with_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let mut dvar = vec![0.0; x.len()];
        let (mean, var) = self.gp.posterior_with_grad(x, grad, &mut dvar);
        let sigma = (var + STABILIZING_NOISE).sqrt();
        let z = (mean - self.threshold) / sigma;
        let (value, dz) = log_ndtr(z);
        // ∂z/∂μ = 1/σ; ∂z/∂var = −z/(2σ²).
        for (g, dv) in grad.iter_mut().zip(&dvar) {
            *g = dz * (*g / sigma - z * dv / (2.0 * sigma * sigma));
        }
        value
    }
}

/// What the GP sampler maximises: log EI of the objective GP, plus log P(feasible) when some
/// trials ran out of memory; only the latter when no trial has completed yet. With no
/// out-of-memory trials it is log EI exactly.
pub struct Acquisition<'a> {
    /// Log EI of the objective, when some trial completed.
    pub ei: Option<LogEi<'a>>,
    /// The feasibility term, when some trial ran out of memory.
    pub feasibility: Option<LogPof<'a>>,
}

impl Acquisition<'_> {
    /// The acquisition at `x`.
    pub fn eval(&self, x: &[f64]) -> f64 {
        let ei = self.ei.as_ref().map_or(0.0, |ei| ei.eval(x));
        let pof = self.feasibility.as_ref().map_or(0.0, |f| {
            let (mean, var) = f.gp.posterior(x);
            f.of_moments(mean, var)
        });
        ei + pof
    }

    /// The acquisition at the rows of `xs`.
    pub fn eval_batch(&self, xs: &[f64]) -> Vec<f64> {
        let mut values = match &self.ei {
            Some(ei) => ei.eval_batch(xs),
            None => vec![0.0; xs.len().checked_div(self.dims()).unwrap_or(0)],
        };
        if let Some(f) = &self.feasibility {
            for (v, (mean, var)) in values.iter_mut().zip(f.gp.posterior_batch(xs)) {
                *v += f.of_moments(mean, var);
            }
        }
        values
    }

    /// The acquisition at `x`, writing its gradient with respect to `x` to `grad`.
    pub fn eval_with_grad(&self, x: &[f64], grad: &mut [f64]) -> f64 {
        let mut value = 0.0;
        grad.iter_mut().for_each(|g| *g = 0.0);
        if let Some(ei) = &self.ei {
            value += ei.eval_with_grad(x, grad);
        }
        if let Some(f) = &self.feasibility {
            let mut g = vec![0.0; x.len()];
            value += f.eval_with_grad(x, &mut g);
            grad.iter_mut().zip(&g).for_each(|(a, b)| *a += b);
        }
        value
    }

    /// The length scales the local searches precondition with: the objective GP's, else the
    /// feasibility GP's.
    pub fn lengthscales(&self) -> Vec<f64> {
        match (&self.ei, &self.feasibility) {
            (Some(ei), _) => ei.gp.params().lengthscales(),
            (None, Some(f)) => f.gp.params().lengthscales(),
            (None, None) => Vec::new(),
        }
    }

    fn dims(&self) -> usize {
        let gp = self.ei.as_ref().map(|e| e.gp).or(self.feasibility.as_ref().map(|f| f.gp));
        gp.map_or(1, |gp| gp.observations().dims.max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::super::kernel::KernelParams;
    use super::super::regressor::Observations;
    use super::*;

    fn direct_h(z: f64) -> f64 {
        let cdf = 0.5 * libm::erfc(-z / 2f64.sqrt());
        z * cdf + (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
    }

    #[test]
    fn log_ei_matches_the_direct_formula_where_that_is_stable() {
        for z in [-6.0, -2.0, -0.5, 0.0, 0.7, 3.0, 10.0] {
            let (v, _) = standard_log_ei(z);
            assert!((v - direct_h(z).ln()).abs() < 1e-12, "z {z}");
        }
        assert!((standard_log_ei(0.0).0 - (INV_SQRT_2PI).ln()).abs() < 1e-15);
    }

    #[test]
    fn log_ei_is_continuous_and_finite_in_the_far_tail() {
        let (a, da) = standard_log_ei(-25.0 + 1e-9);
        let (b, db) = standard_log_ei(-25.0 - 1e-9);
        assert!((a - b).abs() < 1e-7, "{a} vs {b}");
        assert!((da - db).abs() < 1e-6 * da.abs(), "{da} vs {db}");
        // Far below, log h ≈ −z²/2 − log √(2π) − 2 log |z|, and the derivative ≈ −z.
        for z in [-30.0, -100.0, -1e4, -1e8] {
            let (v, d) = standard_log_ei(z);
            let approx = -0.5 * z * z - LOG_SQRT_2PI - 2.0 * (-z).ln();
            assert!(v.is_finite() && d.is_finite());
            assert!((v - approx).abs() < 5.0 / (z * z), "z {z}: {v} vs {approx}");
            assert!((d / -z - 1.0).abs() < 5.0 / (z * z), "z {z}: {d}");
        }
    }

    #[test]
    fn log_ei_derivative_matches_finite_differences() {
        for z in [-40.0, -26.0, -24.0, -3.0, 0.0, 2.0, 8.0] {
            let h = 1e-6;
            let fd = (standard_log_ei(z + h).0 - standard_log_ei(z - h).0) / (2.0 * h);
            let (_, d) = standard_log_ei(z);
            assert!((fd - d).abs() < 1e-5 * d.abs().max(1.0), "z {z}: {fd} vs {d}");
        }
    }

    #[test]
    fn log_ndtr_is_exact_where_direct_continuous_at_the_switch_and_finite_far_out() {
        for z in [-10.0, -3.0, 0.0, 1.5, 8.0] {
            let direct = (0.5 * libm::erfc(-z / 2f64.sqrt())).ln();
            assert!((log_ndtr(z).0 - direct).abs() < 1e-12 * direct.abs().max(1.0), "z {z}");
        }
        let (a, da) = log_ndtr(-20.0 + 1e-9);
        let (b, db) = log_ndtr(-20.0 - 1e-9);
        assert!((a - b).abs() < 1e-7 && (da - db).abs() < 1e-6 * da, "{a} {b} {da} {db}");
        for z in [-40.0, -1e3, -1e8] {
            let (v, d) = log_ndtr(z);
            assert!(v.is_finite() && d.is_finite() && d > 0.0, "z {z}");
        }
        for z in [-30.0, -19.0, -2.0, 0.5, 4.0] {
            let h = 1e-6;
            let fd = (log_ndtr(z + h).0 - log_ndtr(z - h).0) / (2.0 * h);
            assert!((fd - log_ndtr(z).1).abs() < 1e-5 * fd.abs().max(1.0), "z {z}");
        }
    }

    #[test]
    fn feasibility_term_and_its_gradient() {
        let mut obs = Observations::new(2, vec![false, false]);
        for (x, y) in [([0.1, 0.3], 1.0), ([0.2, 0.8], 1.0), ([0.9, 0.4], -1.0), ([0.8, 0.9], -1.0)] {
            obs.push(&x, y);
        }
        let params = KernelParams { inv_sq_lengthscales: vec![4.0, 2.0], scale: 1.0, noise_var: 1e-4 };
        let gp = GpRegressor::new(obs, params).unwrap();
        let acqf = Acquisition { ei: None, feasibility: Some(LogPof { gp: &gp, threshold: 0.0 }) };
        assert!(acqf.eval(&[0.15, 0.5]) > acqf.eval(&[0.85, 0.6]), "feasible where trials ran");
        assert!(acqf.eval(&[0.85, 0.6]) < 0.5f64.ln(), "unlikely to fit where they ran out of memory");
        let batch = acqf.eval_batch(&[0.15, 0.5, 0.85, 0.6]);
        assert!((batch[0] - acqf.eval(&[0.15, 0.5])).abs() < 1e-12 && (batch[1] - acqf.eval(&[0.85, 0.6])).abs() < 1e-12);
        assert_gradients_match(|x| acqf.eval(x), |x, g| acqf.eval_with_grad(x, g), &[[0.3, 0.5], [0.6, 0.2], [0.5, 0.95]]);
    }

    #[test]
    fn acquisition_gradient_matches_finite_differences() {
        let mut obs = Observations::new(2, vec![false, false]);
        for (x, y) in [([0.1, 0.3], -1.0), ([0.8, 0.2], 0.5), ([0.4, 0.9], 1.2), ([0.6, 0.6], 0.1)] {
            obs.push(&x, y);
        }
        let params = KernelParams { inv_sq_lengthscales: vec![4.0, 2.0], scale: 1.0, noise_var: 1e-4 };
        let gp = GpRegressor::new(obs, params).unwrap();
        let acqf = LogEi { gp: &gp, threshold: 1.2 };
        assert_gradients_match(|x| acqf.eval(x), |x, g| acqf.eval_with_grad(x, g), &[[0.3, 0.5], [0.05, 0.95], [0.7, 0.7]]);
    }

    /// `eval_with_grad` agrees with `eval` and with its central finite differences at each point.
    fn assert_gradients_match(
        eval: impl Fn(&[f64]) -> f64,
        eval_with_grad: impl Fn(&[f64], &mut [f64]) -> f64,
        points: &[[f64; 2]],
    ) {
        for x in points {
            let mut grad = [0.0; 2];
            let v = eval_with_grad(x, &mut grad);
            assert!((v - eval(x)).abs() < 1e-12);
            for c in 0..2 {
                let h = 1e-6;
                let (mut xp, mut xm) = (*x, *x);
                xp[c] += h;
                xm[c] -= h;
                let fd = (eval(&xp) - eval(&xm)) / (2.0 * h);
                assert!((fd - grad[c]).abs() < 1e-5 * fd.abs().max(1.0), "{x:?} dim {c}: {fd} vs {}", grad[c]);
            }
        }
    }
}

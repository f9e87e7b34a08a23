//! The Matérn-5/2 kernel with automatic relevance determination, as Optuna's GPSampler uses it.
//!
//! `k(x, x') = scale · m(r²)` with `r² = Σ_d λ_d · δ_d(x, x')`, where `λ_d` is the inverse squared
//! length scale of dimension `d` and `δ_d` is the squared difference for numerical dimensions
//! and the Hamming distance (0 when equal, 1 otherwise) for categorical ones; `m(r²) =
//! (1 + √5·r + 5/3·r²)·exp(−√5·r)`. Observations carry an additional noise variance.

use serde::{Deserialize, Serialize};

use crate::sampler::tpe::truncnorm::fast_exp;

/// Kernel hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelParams {
    /// λ_d = 1 / ℓ_d², one per dimension.
    pub inv_sq_lengthscales: Vec<f64>,
    /// Prior variance of the function (k(x, x)).
    pub scale: f64,
    /// Observation noise variance, added to the diagonal of the training covariance.
    pub noise_var: f64,
}

impl KernelParams {
    /// Optuna's starting point: every λ, the scale and the noise variance equal to 1.
    pub fn default_for(dims: usize) -> Self {
        Self { inv_sq_lengthscales: vec![1.0; dims], scale: 1.0, noise_var: 1.0 }
    }

    /// The length scales ℓ_d = λ_d^(−1/2).
    pub fn lengthscales(&self) -> Vec<f64> {
        self.inv_sq_lengthscales.iter().map(|l| 1.0 / l.sqrt()).collect()
    }
}

/// `m(r²)`, the unit-scale Matérn-5/2 correlation as a function of the squared distance.
#[inline(always)]
pub fn matern52(r2: f64) -> f64 {
    let s = (5.0 * r2).sqrt();
    exp_neg(s) * (5.0 / 3.0 * r2 + s + 1.0)
}

/// `m(r²)` and its derivative with respect to `r²` (finite at `r² = 0`: −5/6).
#[inline(always)]
pub fn matern52_with_derivative(r2: f64) -> (f64, f64) {
    let s = (5.0 * r2).sqrt();
    let e = exp_neg(s);
    (e * (5.0 / 3.0 * r2 + s + 1.0), -5.0 / 6.0 * (1.0 + s) * e)
}

/// e^−s for s ≥ 0 without a call into libm, so that loops over kernel values vectorise (a
/// relative error below 1e-13, far under what the fit and the acquisition resolve); 0 where
/// e^−s is below 1e-304.
#[inline(always)]
fn exp_neg(s: f64) -> f64 {
    if s < 700.0 { fast_exp(-s) } else { 0.0 }
}

/// The per-dimension distance δ_d: squared difference, or Hamming distance for categoricals.
#[inline]
pub fn sq_diff(a: f64, b: f64, categorical: bool) -> f64 {
    if categorical { if a == b { 0.0 } else { 1.0 } } else { (a - b) * (a - b) }
}

/// `r² = Σ_d λ_d δ_d(a, b)`.
#[inline]
pub fn scaled_sq_dist(a: &[f64], b: &[f64], inv_sq_lengthscales: &[f64], categorical: &[bool]) -> f64 {
    let mut r2 = 0.0;
    for d in 0..a.len() {
        r2 += inv_sq_lengthscales[d] * sq_diff(a[d], b[d], categorical[d]);
    }
    r2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matern_values() {
        assert_eq!(matern52(0.0), 1.0);
        // r = 1: (1 + √5 + 5/3) e^{−√5}
        let want = (1.0 + 5f64.sqrt() + 5.0 / 3.0) * (-(5f64.sqrt())).exp();
        assert!((matern52(1.0) - want).abs() < 1e-15);
        assert!(matern52(1e6) < 1e-300 || matern52(1e6) == 0.0);
        // Decreasing in the distance.
        assert!(matern52(0.1) > matern52(0.2));
    }

    #[test]
    fn matern_derivative_matches_finite_differences() {
        for r2 in [1e-4f64, 0.01, 0.3, 1.0, 4.0, 25.0] {
            let h = 1e-6 * r2.max(1e-3);
            let fd = (matern52(r2 + h) - matern52(r2 - h)) / (2.0 * h);
            let (_, d) = matern52_with_derivative(r2);
            assert!((fd - d).abs() < 1e-6 * d.abs().max(1e-3), "r2 {r2}: {fd} vs {d}");
        }
        assert_eq!(matern52_with_derivative(0.0).1, -5.0 / 6.0);
    }

    #[test]
    fn categorical_dimensions_use_the_hamming_distance() {
        let lambda = [2.0, 3.0];
        let cat = [false, true];
        assert_eq!(scaled_sq_dist(&[0.1, 0.0], &[0.4, 2.0], &lambda, &cat), 2.0 * 0.09f64 + 3.0);
        assert!((scaled_sq_dist(&[0.1, 1.0], &[0.4, 1.0], &lambda, &cat) - 0.18).abs() < 1e-15);
    }
}

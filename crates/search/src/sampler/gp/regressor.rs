//! The Gaussian-process posterior for fixed kernel hyper-parameters: the Cholesky factor of the
//! training covariance, the weights `C⁻¹y`, and the posterior mean and variance (with their
//! gradients) at new points.

use nalgebra::{Cholesky, DMatrix, DVector, Dyn};

use super::kernel::{KernelParams, matern52, matern52_with_derivative, scaled_sq_dist};

/// Training data in the unit cube: `x` holds one row of `dims` coordinates per observation
/// (categoricals as choice indices), `y` the standardised values to be maximised.
#[derive(Clone, Debug, Default)]
pub struct Observations {
    /// Coordinates, `dims` per row.
    pub x: Vec<f64>,
    /// Standardised values, to be maximised.
    pub y: Vec<f64>,
    /// Coordinates per observation.
    pub dims: usize,
    /// Which coordinates are categorical.
    pub categorical: Vec<bool>,
}

impl Observations {
    /// No observations yet.
    pub fn new(dims: usize, categorical: Vec<bool>) -> Self {
        Self { x: Vec::new(), y: Vec::new(), dims, categorical }
    }

    /// How many observations.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The coordinates of observation `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.dims..(i + 1) * self.dims]
    }

    /// Adds one observation.
    pub fn push(&mut self, row: &[f64], y: f64) {
        debug_assert_eq!(row.len(), self.dims);
        self.x.extend_from_slice(row);
        self.y.push(y);
    }
}

/// Largest diagonal jitter (relative to the kernel scale) tried before giving up on a covariance.
const MAX_RELATIVE_JITTER: f64 = 1e-2;

/// Cholesky factor of `c`, adding a growing multiple of the identity while it is not positive
/// definite (1e-10 · scale up to 1e-2 · scale). `None` when even that fails or `c` has a non-finite entry.
pub fn cholesky_with_jitter(mut c: DMatrix<f64>, scale: f64) -> Option<Cholesky<f64, Dyn>> {
    if c.iter().any(|v| !v.is_finite()) {
        return None;
    }
    if let Some(chol) = Cholesky::new(c.clone()) {
        return Some(chol);
    }
    let mut jitter = 1e-10 * scale.max(f64::MIN_POSITIVE);
    let mut added = 0.0;
    while jitter <= MAX_RELATIVE_JITTER * scale {
        for i in 0..c.nrows() {
            c[(i, i)] += jitter - added;
        }
        added = jitter;
        if let Some(chol) = Cholesky::new(c.clone()) {
            return Some(chol);
        }
        jitter *= 10.0;
    }
    None
}

/// `L⁻¹` for a lower-triangular `l` (the upper triangle of `l` is ignored): column `j` solves
/// `L x = e_j` from row `j` down, the rows above being zero.
pub fn lower_inverse(l: &DMatrix<f64>) -> DMatrix<f64> {
    let n = l.nrows();
    let mut x = DMatrix::zeros(n, n);
    let ls = l.as_slice();
    let xs = x.as_mut_slice();
    for j in 0..n {
        let col = &mut xs[j * n..(j + 1) * n];
        col[j] = 1.0;
        for k in j..n {
            let lk = &ls[k * n..(k + 1) * n];
            let xk = col[k] / lk[k];
            col[k] = xk;
            for i in k + 1..n {
                col[i] -= xk * lk[i];
            }
        }
    }
    x
}

/// The training covariance `K + σ²I`.
pub fn covariance(obs: &Observations, params: &KernelParams) -> DMatrix<f64> {
    let n = obs.len();
    let mut c = DMatrix::zeros(n, n);
    for i in 0..n {
        c[(i, i)] = params.scale + params.noise_var;
        for j in 0..i {
            let r2 = scaled_sq_dist(obs.row(i), obs.row(j), &params.inv_sq_lengthscales, &obs.categorical);
            let k = params.scale * matern52(r2);
            c[(i, j)] = k;
            c[(j, i)] = k;
        }
    }
    c
}

/// A GP conditioned on observations.
#[derive(Clone, Debug)]
pub struct GpRegressor {
    params: KernelParams,
    obs: Observations,
    /// Inverse of the lower Cholesky factor of `K + σ²I` (applied by matrix products, which
    /// are several times faster than triangular solves here).
    l_inv: DMatrix<f64>,
    /// `(K + σ²I)⁻¹ y`.
    alpha: DVector<f64>,
}

impl GpRegressor {
    /// Conditions on `obs`; `None` when the covariance cannot be factorised even with jitter.
    pub fn new(obs: Observations, params: KernelParams) -> Option<Self> {
        let chol = cholesky_with_jitter(covariance(&obs, &params), params.scale)?;
        let alpha = chol.solve(&DVector::from_column_slice(&obs.y));
        if alpha.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let l_inv = lower_inverse(&chol.unpack());
        if l_inv.iter().any(|v| !v.is_finite()) {
            return None;
        }
        Some(Self { l_inv, alpha, params, obs })
    }

    /// The kernel hyper-parameters.
    pub fn params(&self) -> &KernelParams {
        &self.params
    }

    /// The training data.
    pub fn observations(&self) -> &Observations {
        &self.obs
    }

    fn cross_covariance(&self, x: &[f64], out: &mut DVector<f64>) {
        for i in 0..self.obs.len() {
            let r2 = scaled_sq_dist(x, self.obs.row(i), &self.params.inv_sq_lengthscales, &self.obs.categorical);
            out[i] = self.params.scale * matern52(r2);
        }
    }

    /// Posterior mean and variance at `x`.
    pub fn posterior(&self, x: &[f64]) -> (f64, f64) {
        let mut k = DVector::zeros(self.obs.len());
        self.cross_covariance(x, &mut k);
        let mean = k.dot(&self.alpha);
        let v = &self.l_inv * &k;
        (mean, (self.params.scale - v.norm_squared()).max(0.0))
    }

    /// Posterior means and variances at the rows of `xs` (`dims` coordinates each), solving for
    /// all points at once.
    pub fn posterior_batch(&self, xs: &[f64]) -> Vec<(f64, f64)> {
        let d = self.obs.dims;
        let m = xs.len().checked_div(d).unwrap_or(0);
        let n = self.obs.len();
        let mut k = DMatrix::zeros(n, m);
        for p in 0..m {
            let x = &xs[p * d..(p + 1) * d];
            for i in 0..n {
                let r2 = scaled_sq_dist(x, self.obs.row(i), &self.params.inv_sq_lengthscales, &self.obs.categorical);
                k[(i, p)] = self.params.scale * matern52(r2);
            }
        }
        let means = k.tr_mul(&self.alpha);
        let v = &self.l_inv * &k;
        (0..m).map(|p| (means[p], (self.params.scale - v.column(p).norm_squared()).max(0.0))).collect()
    }

    /// Posterior mean and variance at `x`, with their gradients with respect to `x` written to
    /// `dmean` and `dvar` (zero along categorical dimensions, and for the variance where it is clamped at 0).
    pub fn posterior_with_grad(&self, x: &[f64], dmean: &mut [f64], dvar: &mut [f64]) -> (f64, f64) {
        let n = self.obs.len();
        let lambda = &self.params.inv_sq_lengthscales;
        let mut k = DVector::zeros(n);
        let mut dk = vec![0.0; n];
        for i in 0..n {
            let r2 = scaled_sq_dist(x, self.obs.row(i), lambda, &self.obs.categorical);
            let (m, dm) = matern52_with_derivative(r2);
            k[i] = self.params.scale * m;
            dk[i] = self.params.scale * dm;
        }
        let mean = k.dot(&self.alpha);
        let v = &self.l_inv * &k;
        let raw_var = self.params.scale - v.norm_squared();
        // w = C⁻¹ k = L⁻ᵀ L⁻¹ k
        let v = self.l_inv.tr_mul(&v);
        dmean.iter_mut().for_each(|g| *g = 0.0);
        dvar.iter_mut().for_each(|g| *g = 0.0);
        for i in 0..n {
            let row = self.obs.row(i);
            let (a, w) = (self.alpha[i] * dk[i], -2.0 * v[i] * dk[i]);
            for c in 0..x.len() {
                if self.obs.categorical[c] {
                    continue;
                }
                // ∂r²/∂x_c = 2 λ_c (x_c − X_ic)
                let dr2 = 2.0 * lambda[c] * (x[c] - row[c]);
                dmean[c] += a * dr2;
                dvar[c] += w * dr2;
            }
        }
        if raw_var <= 0.0 {
            dvar.iter_mut().for_each(|g| *g = 0.0);
        }
        (mean, raw_var.max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy() -> GpRegressor {
        let mut obs = Observations::new(3, vec![false, false, true]);
        let pts = [[0.1, 0.2, 0.0], [0.7, 0.4, 1.0], [0.3, 0.9, 2.0], [0.5, 0.5, 1.0], [0.9, 0.1, 0.0]];
        for (i, p) in pts.iter().enumerate() {
            obs.push(p, (i as f64 * 1.3).sin());
        }
        let params = KernelParams { inv_sq_lengthscales: vec![3.0, 0.7, 0.5], scale: 1.4, noise_var: 1e-3 };
        GpRegressor::new(obs, params).unwrap()
    }

    #[test]
    fn posterior_gradients_match_finite_differences() {
        let gp = toy();
        let x = [0.42, 0.61, 1.0];
        let (mut dm, mut dv) = ([0.0; 3], [0.0; 3]);
        let (m0, v0) = gp.posterior_with_grad(&x, &mut dm, &mut dv);
        let (m1, v1) = gp.posterior(&x);
        assert!((m0 - m1).abs() < 1e-12 && (v0 - v1).abs() < 1e-12);
        for c in 0..2 {
            let h = 1e-6;
            let (mut xp, mut xm) = (x, x);
            xp[c] += h;
            xm[c] -= h;
            let ((mp, vp), (mm, vm)) = (gp.posterior(&xp), gp.posterior(&xm));
            assert!(((mp - mm) / (2.0 * h) - dm[c]).abs() < 1e-6, "mean dim {c}");
            assert!(((vp - vm) / (2.0 * h) - dv[c]).abs() < 1e-6, "var dim {c}");
        }
        assert_eq!((dm[2], dv[2]), (0.0, 0.0));
    }

    #[test]
    fn batch_posterior_equals_pointwise() {
        let gp = toy();
        let xs = [0.0, 0.0, 0.0, 0.3, 0.9, 2.0, 1.0, 1.0, 1.0];
        let batch = gp.posterior_batch(&xs);
        for (p, &(m, v)) in batch.iter().enumerate() {
            let (m1, v1) = gp.posterior(&xs[p * 3..p * 3 + 3]);
            assert!((m - m1).abs() < 1e-12 && (v - v1).abs() < 1e-12);
        }
        // At a training point the posterior interpolates (small noise).
        assert!((batch[1].0 - (2.0f64 * 1.3).sin()).abs() < 1e-2 && batch[1].1 < 1e-2);
    }

    #[test]
    fn lower_inverse_inverts() {
        let gp = toy();
        let c = covariance(&gp.obs, &gp.params);
        let chol = Cholesky::new(c).unwrap();
        let l = chol.unpack();
        let product = &l * lower_inverse(&l);
        assert!((product - DMatrix::<f64>::identity(5, 5)).abs().max() < 1e-12);
    }

    #[test]
    fn duplicate_points_without_noise_are_factorised_with_jitter() {
        let mut obs = Observations::new(1, vec![false]);
        for _ in 0..4 {
            obs.push(&[0.5], 1.0);
        }
        let params = KernelParams { inv_sq_lengthscales: vec![1.0], scale: 1.0, noise_var: 0.0 };
        let gp = GpRegressor::new(obs, params).expect("jitter makes it factorisable");
        assert!((gp.posterior(&[0.5]).0 - 1.0).abs() < 1e-3);
        // A non-finite value can never be factorised.
        let mut obs = Observations::new(1, vec![false]);
        obs.push(&[f64::NAN], 0.0);
        obs.push(&[0.5], 1.0);
        assert!(GpRegressor::new(obs, KernelParams::default_for(1)).is_none());
    }
}

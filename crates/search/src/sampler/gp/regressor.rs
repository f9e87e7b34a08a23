//! The Gaussian-process posterior for fixed kernel hyper-parameters: the Cholesky factor of the
//! training covariance, the weights `C⁻¹y`, and the posterior mean and variance (with their
//! gradients) at new points.

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::linalg::solvers::{Llt, Solve};
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::{Accum, Col, Mat, Par, Side};

use super::kernel::{KernelParams, matern52, matern52_with_derivative, scaled_sq_dist, sq_diff};

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

/// Cholesky factor of `c` (its lower triangle is read), adding a growing multiple of the
/// identity while it is not positive definite (1e-10 · scale up to 1e-2 · scale). `None` when
/// even that fails or `c` has a non-finite entry.
pub fn cholesky_with_jitter(mut c: Mat<f64>, scale: f64) -> Option<Llt<f64>> {
    let n = c.nrows();
    if (0..n).any(|j| c.col_as_slice(j)[j..].iter().any(|v| !v.is_finite())) {
        return None;
    }
    if let Ok(llt) = c.llt(Side::Lower) {
        return Some(llt);
    }
    let mut jitter = 1e-10 * scale.max(f64::MIN_POSITIVE);
    let mut added = 0.0;
    while jitter <= MAX_RELATIVE_JITTER * scale {
        for i in 0..n {
            c[(i, i)] += jitter - added;
        }
        added = jitter;
        if let Ok(llt) = c.llt(Side::Lower) {
            return Some(llt);
        }
        jitter *= 10.0;
    }
    None
}

/// `L⁻¹` of a Cholesky factor (zero above the diagonal).
pub fn lower_inverse(llt: &Llt<f64>) -> Mat<f64> {
    let n = llt.L().nrows();
    let mut inverse = Mat::zeros(n, n);
    invert_lower_triangular(inverse.as_mut(), llt.L(), Par::Seq);
    inverse
}

/// The training covariance `K + σ²I`, lower triangle only (what the Cholesky factorisation reads).
pub fn covariance(obs: &Observations, params: &KernelParams) -> Mat<f64> {
    let n = obs.len();
    let mut c = Mat::zeros(n, n);
    for j in 0..n {
        let col = c.col_as_slice_mut(j);
        col[j] = params.scale + params.noise_var;
        for (i, entry) in col.iter_mut().enumerate().skip(j + 1) {
            let r2 = scaled_sq_dist(obs.row(i), obs.row(j), &params.inv_sq_lengthscales, &obs.categorical);
            *entry = params.scale * matern52(r2);
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
    l_inv: Mat<f64>,
    /// `(K + σ²I)⁻¹ y`.
    alpha: Col<f64>,
    /// The observations' coordinates, dimension-major (`coords[d·n + i]`), for batch posteriors.
    coords: Vec<f64>,
}

impl GpRegressor {
    /// Conditions on `obs`; `None` when the covariance cannot be factorised even with jitter.
    pub fn new(obs: Observations, params: KernelParams) -> Option<Self> {
        let chol = cholesky_with_jitter(covariance(&obs, &params), params.scale)?;
        let alpha = chol.solve(Col::from_fn(obs.len(), |i| obs.y[i]));
        if alpha.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let l_inv = lower_inverse(&chol);
        if (0..l_inv.ncols()).any(|j| l_inv.col_as_slice(j).iter().any(|v| !v.is_finite())) {
            return None;
        }
        let n = obs.len();
        let (x, d) = (&obs.x, obs.dims);
        let coords = (0..d).flat_map(|c| (0..n).map(move |i| x[i * d + c])).collect();
        Some(Self { l_inv, alpha, params, obs, coords })
    }

    /// The kernel hyper-parameters.
    pub fn params(&self) -> &KernelParams {
        &self.params
    }

    /// The training data.
    pub fn observations(&self) -> &Observations {
        &self.obs
    }

    fn cross_covariance(&self, x: &[f64]) -> Col<f64> {
        Col::from_fn(self.obs.len(), |i| {
            let r2 = scaled_sq_dist(x, self.obs.row(i), &self.params.inv_sq_lengthscales, &self.obs.categorical);
            self.params.scale * matern52(r2)
        })
    }

    /// Posterior mean and variance at `x`.
    pub fn posterior(&self, x: &[f64]) -> (f64, f64) {
        let k = self.cross_covariance(x);
        let mean = k.transpose() * &self.alpha;
        let v = &self.l_inv * &k;
        (mean, (self.params.scale - v.squared_norm_l2()).max(0.0))
    }

    /// Posterior means and variances at the rows of `xs` (`dims` coordinates each), solving for
    /// all points at once.
    pub fn posterior_batch(&self, xs: &[f64]) -> Vec<(f64, f64)> {
        let d = self.obs.dims;
        let n = self.obs.len();
        let m = xs.len().checked_div(d).unwrap_or(0);
        // A block of points at a time, so that K(X, block) and L⁻¹K stay in cache (and are not
        // allocated and zero-filled afresh at thousands of columns).
        const BLOCK: usize = 128;
        let mut k = Mat::<f64>::zeros(n, BLOCK.min(m));
        let mut v = Mat::<f64>::zeros(n, BLOCK.min(m));
        let mut out = Vec::with_capacity(m);
        let lambda = &self.params.inv_sq_lengthscales;
        for block in xs.chunks(BLOCK * d.max(1)) {
            let b = block.len().checked_div(d).unwrap_or(0);
            // K(X, block), column by column: r² summed over the dimensions, then the kernel, each
            // a contiguous loop over the observations (the coordinates dimension-major) that vectorises.
            for p in 0..b {
                let x = &block[p * d..(p + 1) * d];
                let col = k.col_as_slice_mut(p);
                col.fill(0.0);
                for c in 0..d {
                    let (coords, lambda, xc, categorical) =
                        (&self.coords[c * n..(c + 1) * n], lambda[c], x[c], self.obs.categorical[c]);
                    col.iter_mut().zip(coords).for_each(|(r2, &v)| *r2 += lambda * sq_diff(xc, v, categorical));
                }
                let scale = self.params.scale;
                col.iter_mut().for_each(|v| *v = scale * matern52(*v));
            }
            let (k, mut v) = (k.subcols(0, b), v.subcols_mut(0, b));
            let means = k.transpose() * &self.alpha;
            // v = L⁻¹K, reading only the lower triangle of L⁻¹ (half the work of a dense product).
            triangular::matmul(
                v.as_mut(),
                BlockStructure::Rectangular,
                Accum::Replace,
                &self.l_inv,
                BlockStructure::TriangularLower,
                k,
                BlockStructure::Rectangular,
                1.0,
                Par::Seq,
            );
            out.extend((0..b).map(|p| (means[p], (self.params.scale - v.as_ref().col(p).squared_norm_l2()).max(0.0))));
        }
        out
    }

    /// Posterior mean and variance at `x`, with their gradients with respect to `x` written to
    /// `dmean` and `dvar` (zero along categorical dimensions, and for the variance where it is clamped at 0).
    pub fn posterior_with_grad(&self, x: &[f64], dmean: &mut [f64], dvar: &mut [f64]) -> (f64, f64) {
        let n = self.obs.len();
        let lambda = &self.params.inv_sq_lengthscales;
        let mut k = Col::zeros(n);
        let mut dk = vec![0.0; n];
        for i in 0..n {
            let r2 = scaled_sq_dist(x, self.obs.row(i), lambda, &self.obs.categorical);
            let (m, dm) = matern52_with_derivative(r2);
            k[i] = self.params.scale * m;
            dk[i] = self.params.scale * dm;
        }
        let mean = k.transpose() * &self.alpha;
        let v = &self.l_inv * &k;
        let raw_var = self.params.scale - v.squared_norm_l2();
        // w = C⁻¹ k = L⁻ᵀ L⁻¹ k
        let v = self.l_inv.transpose() * &v;
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
        // Across blocks of points, the last one partial.
        let many: Vec<f64> =
            (0..300).flat_map(|i| [(i as f64 * 0.618).fract(), (i as f64 * 0.382).fract(), (i % 2) as f64]).collect();
        let batch = gp.posterior_batch(&many);
        assert_eq!(batch.len(), 300);
        for (p, &(m, v)) in batch.iter().enumerate() {
            let (m1, v1) = gp.posterior(&many[p * 3..p * 3 + 3]);
            assert!((m - m1).abs() < 1e-12 && (v - v1).abs() < 1e-12, "point {p}");
        }
    }

    #[test]
    fn lower_inverse_inverts() {
        let gp = toy();
        let chol = covariance(&gp.obs, &gp.params).llt(Side::Lower).unwrap();
        let product = chol.L() * lower_inverse(&chol);
        let error = product - Mat::<f64>::identity(5, 5);
        assert!(error.norm_max() < 1e-12, "{error:?}");
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

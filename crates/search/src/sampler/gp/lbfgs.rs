//! A small limited-memory BFGS minimiser with optional box bounds (a projected L-BFGS in the
//! spirit of L-BFGS-B).
//!
//! Unbounded, it is textbook L-BFGS (two-loop recursion, backtracking Armijo line search). With
//! bounds, variables that sit on a bound with the gradient pushing outwards are held fixed for
//! the iteration, the quasi-Newton direction is taken over the free variables, and the line
//! search follows the projected path `P(x + t·d)`. Convergence is scipy's: the largest
//! component of the projected gradient is at most `pgtol`, or the relative decrease of `f` is
//! at most `ftol`. Unlike L-BFGS-B there is no generalised Cauchy point; for the smooth,
//! low-dimensional problems of the GP sampler this loses nothing measurable.
//!
//! The objective never makes it fail: a non-finite value is treated as "too far" and the step
//! is shortened; if no step helps, the best point so far is returned.

use std::collections::VecDeque;

/// Stopping rules and memory.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Correction pairs kept (scipy's `m`).
    pub memory: usize,
    /// Largest number of iterations.
    pub max_iters: usize,
    /// Largest number of objective evaluations.
    pub max_evals: usize,
    /// Stop when every component of the projected gradient is at most this in magnitude.
    pub pgtol: f64,
    /// Stop when `(f_k − f_{k+1}) / max(|f_k|, |f_{k+1}|, 1)` is at most this.
    pub ftol: f64,
}

impl Default for Options {
    fn default() -> Self {
        // scipy's defaults: m = 10, factr = 1e7 (ftol = factr · machine epsilon).
        Self { memory: 10, max_iters: 200, max_evals: 1000, pgtol: 1e-5, ftol: 1e7 * f64::EPSILON }
    }
}

/// Where the minimiser stopped.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The best point found.
    pub x: Vec<f64>,
    /// The objective there.
    pub f: f64,
    /// Iterations run.
    pub iterations: usize,
    /// A stopping rule was met (rather than an iteration/evaluation limit or a failed line search).
    pub converged: bool,
}

/// Minimises `f` from `x0`; `f(x, grad)` returns the value and writes the gradient.
/// `bounds`, when given, holds one `(low, high)` per variable.
pub fn minimize<F>(mut f: F, x0: &[f64], bounds: Option<&[(f64, f64)]>, options: &Options) -> Outcome
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    let n = x0.len();
    let project = |x: &mut [f64]| {
        if let Some(b) = bounds {
            for (xi, &(lo, hi)) in x.iter_mut().zip(b) {
                *xi = xi.clamp(lo, hi);
            }
        }
    };
    let mut x = x0.to_vec();
    project(&mut x);
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    let mut evals = 1;
    if !fx.is_finite() || g.iter().any(|v| !v.is_finite()) {
        return Outcome { x, f: fx, iterations: 0, converged: false };
    }
    let mut history: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::with_capacity(options.memory);
    let (mut xn, mut gn, mut d) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut free = vec![true; n];
    let mut alpha = vec![0.0; options.memory];
    for iteration in 0..options.max_iters {
        // Free variables and the projected gradient.
        let mut pg_max = 0.0f64;
        for i in 0..n {
            let (at_low, at_high) = match bounds {
                Some(b) => (x[i] <= b[i].0, x[i] >= b[i].1),
                None => (false, false),
            };
            free[i] = !((at_low && g[i] > 0.0) || (at_high && g[i] < 0.0));
            if free[i] {
                pg_max = pg_max.max(g[i].abs());
            }
        }
        if pg_max <= options.pgtol {
            return Outcome { x, f: fx, iterations: iteration, converged: true };
        }
        two_loop(&history, &g, &free, &mut d, &mut alpha);
        let mut slope: f64 = d.iter().zip(&g).map(|(a, b)| a * b).sum();
        if slope.is_nan() || slope >= 0.0 {
            // Not a descent direction: forget the curvature pairs and go down the gradient.
            history.clear();
            for i in 0..n {
                d[i] = if free[i] { -g[i] } else { 0.0 };
            }
            slope = d.iter().zip(&g).map(|(a, b)| a * b).sum();
        }
        let norm = d.iter().map(|v| v * v).sum::<f64>().sqrt();
        let mut t = if history.is_empty() { (1.0 / norm).min(1.0) } else { 1.0 };
        let mut accepted = None;
        for _ in 0..30 {
            if evals >= options.max_evals {
                break;
            }
            for i in 0..n {
                xn[i] = x[i] + t * d[i];
            }
            project(&mut xn);
            let decrease: f64 = (0..n).map(|i| g[i] * (xn[i] - x[i])).sum();
            if decrease == 0.0 {
                break;
            }
            let fnew = f(&xn, &mut gn);
            evals += 1;
            if fnew.is_finite() && gn.iter().all(|v| v.is_finite()) && fnew <= fx + 1e-4 * decrease.min(0.0) {
                accepted = Some(fnew);
                break;
            }
            // Quadratic interpolation of the step, kept within [0.1 t, 0.5 t].
            let t_quad = if fnew.is_finite() {
                let denom = 2.0 * (fnew - fx - t * slope);
                if denom > 0.0 { -slope * t * t / denom } else { 0.5 * t }
            } else {
                0.1 * t
            };
            t = t_quad.clamp(0.1 * t, 0.5 * t);
        }
        let Some(fnew) = accepted else {
            if history.is_empty() {
                return Outcome { x, f: fx, iterations: iteration, converged: false };
            }
            history.clear();
            continue;
        };
        let s: Vec<f64> = (0..n).map(|i| xn[i] - x[i]).collect();
        let y: Vec<f64> = (0..n).map(|i| gn[i] - g[i]).collect();
        let sy: f64 = s.iter().zip(&y).map(|(a, b)| a * b).sum();
        let yy: f64 = y.iter().map(|v| v * v).sum();
        if sy > f64::EPSILON * yy && sy > 0.0 {
            if history.len() == options.memory {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / sy));
        }
        let relative = (fx - fnew) / fx.abs().max(fnew.abs()).max(1.0);
        std::mem::swap(&mut x, &mut xn);
        std::mem::swap(&mut g, &mut gn);
        fx = fnew;
        if relative <= options.ftol {
            return Outcome { x, f: fx, iterations: iteration + 1, converged: true };
        }
        if evals >= options.max_evals {
            return Outcome { x, f: fx, iterations: iteration + 1, converged: false };
        }
    }
    Outcome { x, f: fx, iterations: options.max_iters, converged: false }
}

/// `d = −H·g` over the free variables (zero elsewhere) by the two-loop recursion.
fn two_loop(history: &VecDeque<(Vec<f64>, Vec<f64>, f64)>, g: &[f64], free: &[bool], d: &mut [f64], alpha: &mut [f64]) {
    let masked_dot = |a: &[f64], b: &[f64]| -> f64 { (0..a.len()).filter(|&i| free[i]).map(|i| a[i] * b[i]).sum() };
    for i in 0..g.len() {
        d[i] = if free[i] { -g[i] } else { 0.0 };
    }
    for (k, (s, y, rho)) in history.iter().enumerate().rev() {
        let a = rho * masked_dot(s, d);
        alpha[k] = a;
        for i in 0..d.len() {
            if free[i] {
                d[i] -= a * y[i];
            }
        }
    }
    if let Some((s, y, _)) = history.back() {
        let (sy, yy) = (masked_dot(s, y), masked_dot(y, y));
        if sy > 0.0 && yy > 0.0 {
            let gamma = sy / yy;
            d.iter_mut().for_each(|v| *v *= gamma);
        }
    }
    for (k, (s, y, rho)) in history.iter().enumerate() {
        let b = rho * masked_dot(y, d);
        for i in 0..d.len() {
            if free[i] {
                d[i] += (alpha[k] - b) * s[i];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rosenbrock(x: &[f64], g: &mut [f64]) -> f64 {
        let (a, b) = (x[0], x[1]);
        g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
        g[1] = 200.0 * (b - a * a);
        (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
    }

    #[test]
    fn unbounded_rosenbrock_reaches_the_minimum() {
        let options = Options { pgtol: 1e-8, ftol: 0.0, max_iters: 500, ..Options::default() };
        let out = minimize(rosenbrock, &[-1.2, 1.0], None, &options);
        assert!(out.converged, "{out:?}");
        assert!((out.x[0] - 1.0).abs() < 1e-5 && (out.x[1] - 1.0).abs() < 1e-5, "{out:?}");
    }

    #[test]
    fn bounded_rosenbrock_stops_on_the_active_bound() {
        // With x ≤ 0.5 the constrained minimum is on the bound: x = 0.5, y = 0.25.
        let options = Options { pgtol: 1e-8, ftol: 0.0, max_iters: 500, ..Options::default() };
        let bounds = [(-2.0, 0.5), (-2.0, 2.0)];
        let out = minimize(rosenbrock, &[-1.2, 1.0], Some(&bounds), &options);
        assert!((out.x[0] - 0.5).abs() < 1e-6 && (out.x[1] - 0.25).abs() < 1e-4, "{out:?}");
    }

    #[test]
    fn bounded_quadratic_with_the_minimum_outside_the_box() {
        // f = Σ (x_i − c_i)² with c = (3, −3, 0.2) in [0, 1]³: minimum at (1, 0, 0.2).
        let c = [3.0, -3.0, 0.2];
        let f = |x: &[f64], g: &mut [f64]| {
            let mut v = 0.0;
            for i in 0..3 {
                g[i] = 2.0 * (x[i] - c[i]);
                v += (x[i] - c[i]).powi(2);
            }
            v
        };
        let out = minimize(f, &[0.5, 0.5, 0.5], Some(&[(0.0, 1.0); 3]), &Options::default());
        assert!(out.converged);
        for (xi, want) in out.x.iter().zip([1.0, 0.0, 0.2]) {
            assert!((xi - want).abs() < 1e-6, "{out:?}");
        }
    }

    #[test]
    fn a_non_finite_objective_shortens_the_step_and_never_fails() {
        // log-barrier: +inf for x ≤ 0; minimum of x − ln x at x = 1.
        let f = |x: &[f64], g: &mut [f64]| {
            if x[0] <= 0.0 {
                g[0] = f64::NAN;
                return f64::INFINITY;
            }
            g[0] = 1.0 - 1.0 / x[0];
            x[0] - x[0].ln()
        };
        let out = minimize(f, &[5.0], None, &Options { pgtol: 1e-9, ..Options::default() });
        assert!((out.x[0] - 1.0).abs() < 1e-6, "{out:?}");
        // A non-finite start returns at once.
        let out = minimize(f, &[-1.0], None, &Options::default());
        assert!(!out.converged && out.iterations == 0);
    }
}

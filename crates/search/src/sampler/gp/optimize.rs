//! Maximising the acquisition function over a mixed space, as Optuna's `optim_mixed.py`.
//!
//! 1. Evaluate `n_preliminary_samples` points of a scrambled Sobol sequence (rounded onto the
//!    grids of discrete dimensions).
//! 2. Start local searches from the best of them, from up to `n_local_search − 2` more picked by
//!    roulette (probability ∝ exp(acqf − max acqf), without replacement), and from the best
//!    observed point.
//! 3. Each local search alternates (a) L-BFGS over the continuous dimensions in the box, in
//!    coordinates scaled by the length scales (a cheap preconditioner), and (b) for each discrete
//!    dimension in turn, an exhaustive search over its values (categoricals, and grids of at
//!    most 16 points) or a golden-section line search over the linear interpolation between
//!    grid points; it stops when a round changes nothing, or after 100 rounds.
//! 4. The best end point wins.

use rand::Rng;
use rand::rngs::StdRng;

use super::acquisition::Acquisition;
use super::lbfgs::{self, Options};
use super::normalize::{Dim, DimKind};
use crate::sampler::qmc::{MAX_DIMENSIONS, QmcConfig, QmcSampler};

/// Grids larger than this are line-searched rather than enumerated (Optuna's
/// `MAX_INT_EXHAUSTIVE_SEARCH_PARAMS`).
const MAX_EXHAUSTIVE: usize = 16;
const MAX_ROUNDS: usize = 100;

/// Effort spent on maximising the acquisition function.
#[derive(Clone, Copy, Debug)]
pub struct Effort {
    /// Sobol candidates scored before the local searches.
    pub n_preliminary_samples: usize,
    /// Local searches started from the best candidates.
    pub n_local_search: usize,
    /// Convergence tolerance of each local search.
    pub tol: f64,
}

/// The encoded point that maximises `acqf` (found as described in the module documentation),
/// and its value. `best_observed` is the encoded best trial, used as one more starting point.
pub fn maximize(
    acqf: &Acquisition<'_>,
    dims: &[Dim],
    best_observed: Option<&[f64]>,
    effort: Effort,
    rng: &mut StdRng,
) -> (Vec<f64>, f64) {
    let d = dims.len();
    let n = effort.n_preliminary_samples.max(1);
    // Preliminary samples: a Sobol design scrambled afresh for every ask.
    let qmc = QmcSampler::new(QmcConfig { scramble: true });
    let seed: u64 = rng.random();
    let sobol: Vec<Vec<f64>> = (0..d.min(MAX_DIMENSIONS)).map(|j| qmc.coordinates(seed, j, n)).collect();
    let mut samples = vec![0.0; n * d];
    for p in 0..n {
        for (j, dim) in dims.iter().enumerate() {
            let u = if j < MAX_DIMENSIONS { sobol[j][p] } else { rng.random::<f64>() };
            samples[p * d + j] = dim.from_uniform(u);
        }
    }
    let values = acqf.eval_batch(&samples);
    let best = argmax(&values);

    // Roulette selection of further starting points.
    let mut weights: Vec<f64> = values.iter().map(|v| (v - values[best]).exp()).collect();
    weights[best] = 0.0;
    weights.iter_mut().for_each(|w| {
        if !w.is_finite() {
            *w = 0.0;
        }
    });
    let warm = usize::from(best_observed.is_some());
    let positive = weights.iter().filter(|&&w| w > 0.0).count();
    let extra = effort.n_local_search.saturating_sub(warm + 1).min(positive);
    let mut starts: Vec<Vec<f64>> = vec![samples[best * d..(best + 1) * d].to_vec()];
    let mut total: f64 = weights.iter().sum();
    for _ in 0..extra {
        if total.is_nan() || total <= 0.0 {
            break;
        }
        let mut target = rng.random::<f64>() * total;
        let mut pick = None;
        for (i, &w) in weights.iter().enumerate() {
            if w > 0.0 {
                pick = Some(i);
                if target < w {
                    break;
                }
                target -= w;
            }
        }
        let Some(i) = pick else { break };
        starts.push(samples[i * d..(i + 1) * d].to_vec());
        total -= weights[i];
        weights[i] = 0.0;
    }
    if let Some(b) = best_observed {
        starts.push(b.to_vec());
    }

    let lengthscales: Vec<f64> = acqf.lengthscales();
    let mut winner = (starts[0].clone(), f64::NEG_INFINITY);
    for start in starts {
        let (x, f) = local_search(acqf, dims, start, &lengthscales, effort.tol);
        if f > winner.1 {
            winner = (x, f);
        }
    }
    winner
}

fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] || values[best].is_nan() {
            best = i;
        }
    }
    best
}

/// Coordinate-wise local search from `x`: continuous block by L-BFGS, discrete dimensions one by one.
fn local_search(acqf: &Acquisition<'_>, dims: &[Dim], mut x: Vec<f64>, lengthscales: &[f64], tol: f64) -> (Vec<f64>, f64) {
    let continuous: Vec<usize> = (0..dims.len()).filter(|&j| dims[j].kind == DimKind::Continuous).collect();
    let discrete: Vec<usize> = (0..dims.len()).filter(|&j| dims[j].kind != DimKind::Continuous).collect();
    let mut f = acqf.eval(&x);
    // The dimension changed last (`None`: the continuous block, or nothing yet).
    let mut last_changed: Option<usize> = None;
    for _ in 0..MAX_ROUNDS {
        if !continuous.is_empty() && gradient_ascent(acqf, &mut x, &mut f, &continuous, lengthscales, tol) {
            last_changed = None;
        }
        for &j in &discrete {
            if last_changed == Some(j) {
                // Nothing moved since this dimension was last optimised.
                return (x, f);
            }
            if discrete_search(acqf, &mut x, &mut f, j, &dims[j]) {
                last_changed = Some(j);
            }
        }
        if last_changed.is_none() {
            return (x, f);
        }
    }
    (x, f)
}

/// L-BFGS over the continuous dimensions in coordinates `z = x / ℓ` (box [0, 1/ℓ]); true when it improved `f`.
fn gradient_ascent(
    acqf: &Acquisition<'_>,
    x: &mut [f64],
    f: &mut f64,
    continuous: &[usize],
    lengthscales: &[f64],
    tol: f64,
) -> bool {
    let scale: Vec<f64> = continuous.iter().map(|&j| lengthscales[j]).collect();
    let z0: Vec<f64> = continuous.iter().zip(&scale).map(|(&j, s)| x[j] / s).collect();
    let bounds: Vec<(f64, f64)> = scale.iter().map(|s| (0.0, 1.0 / s)).collect();
    let mut point = x.to_vec();
    let mut full_grad = vec![0.0; x.len()];
    let objective = |z: &[f64], grad: &mut [f64]| -> f64 {
        for (k, &j) in continuous.iter().enumerate() {
            point[j] = z[k] * scale[k];
        }
        let v = acqf.eval_with_grad(&point, &mut full_grad);
        for (k, &j) in continuous.iter().enumerate() {
            grad[k] = -full_grad[j] * scale[k];
        }
        -v
    };
    let options = Options { pgtol: tol.sqrt(), max_iters: 200, ..Options::default() };
    let out = lbfgs::minimize(objective, &z0, Some(&bounds), &options);
    let value = -out.f;
    if out.iterations > 0 && value > *f {
        for (k, &j) in continuous.iter().enumerate() {
            x[j] = (out.x[k] * scale[k]).clamp(0.0, 1.0);
        }
        *f = value;
        true
    } else {
        false
    }
}

/// Optimises dimension `j` alone over its values; true when it improved `f`.
fn discrete_search(acqf: &Acquisition<'_>, x: &mut [f64], f: &mut f64, j: usize, dim: &Dim) -> bool {
    match &dim.kind {
        DimKind::Continuous => false,
        DimKind::Categorical(n) => {
            let choices: Vec<f64> = (0..*n).map(|i| i as f64).collect();
            *n > 1 && exhaustive(acqf, x, f, j, &choices)
        }
        DimKind::Discrete(grid) if grid.len() <= 1 => false,
        DimKind::Discrete(grid) if grid.len() <= MAX_EXHAUSTIVE => exhaustive(acqf, x, f, j, grid),
        DimKind::Discrete(grid) => line_search(acqf, x, f, j, grid),
    }
}

fn exhaustive(acqf: &Acquisition<'_>, x: &mut [f64], f: &mut f64, j: usize, choices: &[f64]) -> bool {
    let others: Vec<f64> = choices.iter().copied().filter(|&c| c != x[j]).collect();
    let mut batch = Vec::with_capacity(others.len() * x.len());
    for &c in &others {
        let start = batch.len();
        batch.extend_from_slice(x);
        batch[start + j] = c;
    }
    let values = acqf.eval_batch(&batch);
    let i = argmax(&values);
    if values[i] > *f {
        x[j] = others[i];
        *f = values[i];
        true
    } else {
        false
    }
}

/// Golden-section search over grid indices of the piecewise-linear interpolation of the
/// acquisition between grid points, bracketed by the ends of the grid and the current value;
/// stops at a quarter of a grid step.
fn line_search(acqf: &Acquisition<'_>, x: &mut [f64], f: &mut f64, j: usize, grid: &[f64]) -> bool {
    let last = grid.len() - 1;
    let current = super::normalize::nearest(grid, x[j]);
    // Evaluated grid points (a few dozen at most, so a list beats a table the size of the grid).
    let mut cache: Vec<(usize, f64)> = vec![(current, -*f)];
    let mut point = x.to_vec();
    let mut at = |i: usize, cache: &mut Vec<(usize, f64)>| -> f64 {
        if let Some(&(_, v)) = cache.iter().find(|(k, _)| *k == i) {
            return v;
        }
        point[j] = grid[i];
        let v = -acqf.eval(&point);
        cache.push((i, v));
        v
    };
    // Negative acquisition, linearly interpolated; +∞ outside the grid.
    let mut g = |t: f64, cache: &mut Vec<(usize, f64)>| -> f64 {
        if !(0.0..=last as f64).contains(&t) {
            return f64::INFINITY;
        }
        let left = (t.floor() as usize).min(last - 1);
        let w = t - left as f64;
        let (a, b) = (at(left, cache), at(left + 1, cache));
        if w == 0.0 {
            a
        } else if w == 1.0 {
            b
        } else {
            (1.0 - w) * a + w * b
        }
    };
    const GOLDEN: f64 = 0.381_966_011_250_105;
    let (mut a, mut b, mut c) = (-1e-12, current as f64, last as f64 + 1e-12);
    let mut gb = g(b, &mut cache);
    for _ in 0..200 {
        if c - a <= 0.25 {
            break;
        }
        let t = if c - b > b - a { b + GOLDEN * (c - b) } else { b - GOLDEN * (b - a) };
        let gt = g(t, &mut cache);
        if gt < gb {
            if t > b {
                a = b;
            } else {
                c = b;
            }
            b = t;
            gb = gt;
        } else if t > b {
            c = t;
        } else {
            a = t;
        }
    }
    let best = (b.round().max(0.0) as usize).min(last);
    let value = -at(best, &mut cache);
    if best != current && value > *f {
        x[j] = grid[best];
        *f = value;
        true
    } else {
        false
    }
}

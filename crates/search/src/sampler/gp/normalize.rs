//! The unit-cube encoding of a search space, as Optuna's `_gp/search_space.py`.
//!
//! A float or int maps linearly (in log space for `log`) from its range to [0, 1]; an int or a
//! stepped float first widens its range by half a step at each end, so that every grid value
//! owns an equal share of the interval, and the GP's suggestion is rounded back onto the grid.
//! A categorical stays its choice index (the kernel only asks whether two indices are equal).

use crate::space::Distribution;

/// Largest int/stepped grid enumerated as a discrete dimension.
pub const MAX_GRID: usize = 4096;

/// How the acquisition optimiser treats a dimension.
#[derive(Clone, Debug, PartialEq)]
pub enum DimKind {
    /// A continuous range.
    Continuous,
    /// Int or stepped float: the encoded grid values, increasing.
    Discrete(Vec<f64>),
    /// Choice indices 0..n.
    Categorical(usize),
}

/// One encoded parameter.
#[derive(Clone, Debug)]
pub struct Dim {
    /// How it is encoded.
    pub kind: DimKind,
    distribution: Distribution,
    /// Encoding bounds (widened, in log space for log parameters).
    low: f64,
    high: f64,
    log: bool,
}

impl Dim {
    /// The encoding of one distribution.
    pub fn new(distribution: &Distribution) -> Self {
        let (low, high, log, step) = match *distribution {
            Distribution::Float { low, high, log, step } => (low, high, log, step.unwrap_or(0.0)),
            Distribution::Int { low, high, log, step } => (low as f64, high as f64, log, step as f64),
            Distribution::Categorical { ref choices } => {
                return Self {
                    kind: DimKind::Categorical(choices.len()),
                    distribution: distribution.clone(),
                    low: 0.0,
                    high: 0.0,
                    log: false,
                };
            }
        };
        // Widen by half a step, unless that would leave the positive axis of a log parameter.
        let half = if log && low - 0.5 * step <= 0.0 { 0.0 } else { 0.5 * step };
        let (mut lo, mut hi) = (low - half, high + half);
        if log {
            (lo, hi) = (lo.ln(), hi.ln());
        }
        let mut dim = Self { kind: DimKind::Continuous, distribution: distribution.clone(), low: lo, high: hi, log };
        let count = ((high - low) / step).round() + 1.0;
        // A grid too large to enumerate is searched as a continuous range and rounded at the end.
        if step > 0.0 && count <= MAX_GRID as f64 {
            let count = count as usize;
            let grid = (0..count).map(|k| dim.encode((low + k as f64 * step).min(high))).collect();
            dim.kind = DimKind::Discrete(grid);
        }
        dim
    }

    /// Whether it is a categorical (Hamming distance in the kernel).
    pub fn is_categorical(&self) -> bool {
        matches!(self.kind, DimKind::Categorical(_))
    }

    /// Internal value (see [`Distribution::to_internal`]) → encoded coordinate.
    pub fn encode(&self, internal: f64) -> f64 {
        if self.is_categorical() {
            return internal;
        }
        let v = if self.log { internal.ln() } else { internal };
        if self.high == self.low { 0.5 } else { (v - self.low) / (self.high - self.low) }
    }

    /// Encoded coordinate → internal value, clipped into range and rounded onto the grid.
    pub fn decode(&self, u: f64) -> f64 {
        if self.is_categorical() {
            return self.distribution.snap(u);
        }
        let v = self.low + u.clamp(0.0, 1.0) * (self.high - self.low);
        self.distribution.snap(if self.log { v.exp() } else { v })
    }

    /// The encoded coordinate of the grid value nearest to `u` (identity for continuous dimensions).
    pub fn round(&self, u: f64) -> f64 {
        match &self.kind {
            DimKind::Continuous => u.clamp(0.0, 1.0),
            DimKind::Discrete(grid) => grid[nearest(grid, u)],
            DimKind::Categorical(n) => u.floor().clamp(0.0, (*n - 1) as f64),
        }
    }

    /// Maps a uniform draw in [0, 1) to an encoded coordinate (choices equally likely for categoricals).
    pub fn from_uniform(&self, u: f64) -> f64 {
        match self.kind {
            DimKind::Categorical(n) => (u * n as f64).floor().min((n - 1) as f64),
            _ => self.round(u),
        }
    }
}

/// Index of the grid value nearest to `u` (`grid` increasing and non-empty).
pub fn nearest(grid: &[f64], u: f64) -> usize {
    let i = grid.partition_point(|&g| g < u);
    if i == 0 {
        0
    } else if i == grid.len() || u - grid[i - 1] <= grid[i] - u {
        i - 1
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_grid_is_widened_by_half_a_step() {
        let dim = Dim::new(&Distribution::Int { low: 0, high: 4, log: false, step: 1 });
        // Range [−0.5, 4.5]: value k sits at (k + 0.5)/5.
        let DimKind::Discrete(grid) = &dim.kind else { panic!() };
        for (k, g) in grid.iter().enumerate() {
            assert!((g - (k as f64 + 0.5) / 5.0).abs() < 1e-12);
        }
        assert_eq!(dim.decode(0.0), 0.0);
        assert_eq!(dim.decode(0.999), 4.0);
        assert_eq!(dim.decode(0.35), 1.0);
        assert_eq!(dim.round(0.35), grid[1]);
        assert_eq!(dim.from_uniform(0.95), grid[4]);
    }

    #[test]
    fn log_and_stepped_floats_round_trip() {
        let lr = Dim::new(&Distribution::Float { low: 1e-5, high: 1e-1, log: true, step: None });
        assert!((lr.encode(1e-3) - 0.5).abs() < 1e-12);
        assert!((lr.decode(0.5) - 1e-3).abs() < 1e-15);
        assert_eq!(lr.decode(1.5), 1e-1);
        let dropout = Dim::new(&Distribution::Float { low: 0.0, high: 0.5, log: false, step: Some(0.05) });
        let DimKind::Discrete(grid) = &dropout.kind else { panic!() };
        assert_eq!(grid.len(), 11);
        assert!((dropout.decode(grid[3]) - 0.15).abs() < 1e-12);
        let log_int = Dim::new(&Distribution::Int { low: 1, high: 1024, log: true, step: 1 });
        let DimKind::Discrete(grid) = &log_int.kind else { panic!() };
        assert_eq!(grid.len(), 1024);
        assert!(grid.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(log_int.decode(log_int.encode(37.0)), 37.0);
    }

    #[test]
    fn huge_int_ranges_are_searched_as_continuous_and_rounded() {
        let dim = Dim::new(&Distribution::Int { low: 0, high: 1_000_000_000, log: false, step: 1 });
        assert_eq!(dim.kind, DimKind::Continuous);
        let v = dim.decode(0.123_456_789_9);
        assert_eq!(v.fract(), 0.0);
        assert!((v - 123_456_789.0).abs() <= 1.0, "{v}");
    }

    #[test]
    fn categorical_stays_an_index() {
        let dim = Dim::new(&Distribution::Categorical { choices: vec![crate::space::ParamValue::Int(1); 3] });
        assert!(dim.is_categorical());
        assert_eq!(dim.encode(2.0), 2.0);
        assert_eq!(dim.decode(1.0), 1.0);
        assert_eq!(dim.from_uniform(0.99), 2.0);
        assert_eq!(dim.from_uniform(0.0), 0.0);
    }

    #[test]
    fn nearest_grid_point() {
        let grid = [0.1, 0.3, 0.7];
        assert_eq!(nearest(&grid, -1.0), 0);
        assert_eq!(nearest(&grid, 0.19), 0);
        assert_eq!(nearest(&grid, 0.21), 1);
        assert_eq!(nearest(&grid, 0.6), 2);
        assert_eq!(nearest(&grid, 2.0), 2);
    }
}

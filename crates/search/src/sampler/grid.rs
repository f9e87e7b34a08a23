//! Grid search: every combination of a finite search space, each exactly once.
//!
//! Unlike Optuna's `GridSampler`, which picks a random unvisited point and may repeat points when
//! processes ask at the same time, the point of a trial is a function of the study seed and the
//! trial number: grid index `perm(number)` for a seeded pseudo-random permutation `perm` of the
//! grid. Processes that ask concurrently get distinct trial numbers from the storage, hence
//! distinct points, without seeing each other's trials. The permutation is a Feistel network with
//! cycle walking, so it costs O(1) memory whatever the grid's size.
//!
//! A point already taken by another trial (an enqueued one) is replaced by the last unvisited
//! point in permutation order, the one that later trial numbers reach last. An enqueued trial that
//! fixes some parameters gets an unvisited point that agrees with them (or, when all such points
//! are visited, the first that agrees). A trial number at or past the grid's size is
//! [`Error::GridExhausted`], as is a trial whose point is taken when every point is.
//!
//! The grid's axes are the parameters sorted by name; floats need a `step` (or become a
//! categorical), else the sampler refuses with [`Error::Config`].

use std::collections::{BTreeMap, HashSet};

use super::{Sampler, SamplingContext, mix_seed};
use crate::error::{Error, Result};
use crate::space::{Distribution, ParamValue, SearchSpace};
use crate::trial::FrozenTrial;

/// Largest grid we enumerate (far beyond any that could be run).
const MAX_GRID: u64 = 1 << 62;

/// Samples every point of a finite grid once, in a seeded order.
#[derive(Clone, Copy, Debug, Default)]
pub struct GridSampler;

impl GridSampler {
    /// The number of points of the grid over `space`, or why there is no grid (a float without a
    /// step, more than 2^62 points): for `nightshift check`, before any trial.
    pub fn grid_size(space: &SearchSpace) -> Result<u64> {
        Grid::new(space, None).map(|grid| grid.size)
    }
}

impl Sampler for GridSampler {
    fn can_run_out(&self) -> bool {
        true
    }

    fn exhausted(&self, trials: &[FrozenTrial], space: &SearchSpace) -> Option<Error> {
        let grid = Grid::new(space, None).ok()?;
        let visited: HashSet<u64> = trials.iter().filter_map(|t| grid.index_of(t)).collect();
        (visited.len() as u64 >= grid.size).then_some(Error::GridExhausted(grid.size as usize))
    }

    fn infer_relative_search_space(&self, _ctx: &SamplingContext<'_>, space: &SearchSpace) -> SearchSpace {
        space.clone()
    }

    fn sample_relative(&self, ctx: &SamplingContext<'_>, space: &SearchSpace) -> Result<BTreeMap<String, ParamValue>> {
        let current = ctx.trials.iter().find(|t| t.number == ctx.trial_number);
        let grid = Grid::new(space, current)?;
        let index = grid.choose(ctx)?;
        Ok(grid.point(index, space))
    }

    fn sample_independent(&self, ctx: &SamplingContext<'_>, name: &str, distribution: &Distribution) -> Result<ParamValue> {
        // Only reached for a parameter left out of the joint space; treat it as a grid of its own.
        let mut space = SearchSpace::new();
        space.insert(name, distribution.clone());
        let mut point = self.sample_relative(ctx, &space)?;
        point.remove(name).ok_or_else(|| Error::Param { param: name.into(), message: "not sampled by the grid".into() })
    }
}

/// One axis of the grid.
struct Axis {
    name: String,
    distribution: Distribution,
    len: u64,
    /// The coordinate the trial being sampled has fixed (enqueued), if any; `Some(None)` when the
    /// fixed value is not on the grid.
    fixed: Option<Option<u64>>,
}

impl Axis {
    fn new(name: &str, distribution: &Distribution) -> Result<Self> {
        let len = match *distribution {
            Distribution::Float { low, high, step: Some(step), .. } => {
                let steps = ((high - low) / step).round();
                // A step of 1e-300 must not saturate (and wrap the + 1) into an empty grid.
                if steps.is_nan() || steps >= MAX_GRID as f64 {
                    return Err(Error::Config {
                        what: "sampler",
                        message: format!(
                            "the grid over parameter '{name}' ({distribution}) has more than 2^62 points; use a larger step"
                        ),
                    });
                }
                steps as u64 + 1
            }
            Distribution::Float { .. } => {
                return Err(Error::Config {
                    what: "sampler",
                    message: format!(
                        "the grid sampler needs a finite grid, but parameter '{name}' is a float without a step \
                         ({distribution}); give it a step or make it a categorical"
                    ),
                });
            }
            Distribution::Int { low, high, step, .. } => ((high - low) / step) as u64 + 1,
            Distribution::Categorical { ref choices } => choices.len() as u64,
        };
        Ok(Self { name: name.to_string(), distribution: distribution.clone(), len, fixed: None })
    }

    fn value(&self, k: u64) -> ParamValue {
        match self.distribution {
            Distribution::Float { low, step: Some(step), .. } => self.distribution.to_external(low + k as f64 * step),
            Distribution::Float { low, .. } => ParamValue::Float(low),
            Distribution::Int { low, step, .. } => ParamValue::Int(low + k as i64 * step),
            Distribution::Categorical { ref choices } => choices[k as usize].clone(),
        }
    }

    fn coordinate(&self, value: &ParamValue) -> Option<u64> {
        let x = self.distribution.to_internal(value).ok()?;
        let k = match self.distribution {
            Distribution::Float { low, step: Some(step), .. } => ((x - low) / step).round(),
            Distribution::Float { .. } => return None,
            Distribution::Int { low, step, .. } => ((x - low as f64) / step as f64).round(),
            Distribution::Categorical { .. } => x,
        };
        (k >= 0.0 && (k as u64) < self.len).then_some(k as u64)
    }
}

struct Grid {
    /// Sorted by name; the last axis varies fastest in the grid index.
    axes: Vec<Axis>,
    size: u64,
}

impl Grid {
    /// The grid over `space` plus the parameters `current` already has (enqueued values).
    fn new(space: &SearchSpace, current: Option<&FrozenTrial>) -> Result<Self> {
        let mut by_name: BTreeMap<&str, Axis> = BTreeMap::new();
        for (name, dist) in space.iter() {
            by_name.insert(name, Axis::new(name, dist)?);
        }
        if let Some(trial) = current {
            for (name, value) in &trial.params {
                if by_name.contains_key(name.as_str()) {
                    continue;
                }
                let Some(dist) = trial.distributions.get(name) else { continue };
                let mut axis = Axis::new(name, dist)?;
                axis.fixed = Some(axis.coordinate(value));
                by_name.insert(name, axis);
            }
        }
        let axes: Vec<Axis> = by_name.into_values().collect();
        let size = axes
            .iter()
            .try_fold(1u64, |acc, a| acc.checked_mul(a.len).filter(|&n| n <= MAX_GRID))
            .ok_or_else(|| Error::Config { what: "sampler", message: "the grid has more than 2^62 points".into() })?;
        Ok(Self { axes, size })
    }

    fn coordinates(&self, mut index: u64) -> Vec<u64> {
        let mut coords = vec![0; self.axes.len()];
        for (slot, axis) in coords.iter_mut().zip(&self.axes).rev() {
            *slot = index % axis.len;
            index /= axis.len;
        }
        coords
    }

    /// The grid index of a trial's parameters, if it has a value on the grid for every axis.
    fn index_of(&self, trial: &FrozenTrial) -> Option<u64> {
        self.axes.iter().try_fold(0u64, |acc, axis| Some(acc * axis.len + axis.coordinate(trial.params.get(&axis.name)?)?))
    }

    fn agrees_with_fixed(&self, index: u64) -> bool {
        self.coordinates(index).iter().zip(&self.axes).all(|(k, axis)| axis.fixed.is_none_or(|f| f == Some(*k)))
    }

    fn choose(&self, ctx: &SamplingContext<'_>) -> Result<u64> {
        let number = ctx.trial_number;
        if number >= self.size {
            return Err(Error::GridExhausted(self.size as usize));
        }
        let perm = FeistelPermutation::new(self.size, mix_seed(ctx.seed, self.size, "grid"));
        let natural = perm.apply(number);
        if self.axes.iter().any(|a| a.fixed == Some(None)) {
            // An enqueued value off the grid: no grid point agrees; fill in the rest from ours.
            return Ok(natural);
        }
        let visited: HashSet<u64> = ctx.trials.iter().filter(|t| t.number != number).filter_map(|t| self.index_of(t)).collect();
        let open = |i: &u64| !visited.contains(i) && self.agrees_with_fixed(*i);
        if open(&natural) {
            return Ok(natural);
        }
        if let Some(index) = (0..self.size).rev().map(|j| perm.apply(j)).find(open) {
            return Ok(index);
        }
        if self.axes.iter().any(|a| a.fixed.is_some()) {
            // Every agreeing point was visited; the user asked for these values, so repeat one.
            if let Some(index) = (number..self.size).chain(0..number).map(|j| perm.apply(j)).find(|&i| self.agrees_with_fixed(i))
            {
                return Ok(index);
            }
        }
        Err(Error::GridExhausted(self.size as usize))
    }

    /// The values of `space`'s parameters at grid point `index`.
    fn point(&self, index: u64, space: &SearchSpace) -> BTreeMap<String, ParamValue> {
        self.coordinates(index)
            .into_iter()
            .zip(&self.axes)
            .filter(|(_, axis)| space.get(&axis.name).is_some())
            .map(|(k, axis)| (axis.name.clone(), axis.value(k)))
            .collect()
    }
}

/// A pseudo-random permutation of `0..size`: a 4-round Feistel network on the smallest even
/// number of bits that covers `size`, walking cycles until the image falls inside the range.
/// The domain is less than four times `size`, so a walk takes fewer than four steps on average.
struct FeistelPermutation {
    size: u64,
    half_bits: u32,
    key: u64,
}

impl FeistelPermutation {
    fn new(size: u64, key: u64) -> Self {
        let bits = 64 - size.saturating_sub(1).leading_zeros();
        Self { size, half_bits: bits.div_ceil(2).max(1), key }
    }

    fn apply(&self, index: u64) -> u64 {
        if self.size <= 1 {
            return 0;
        }
        let mask = (1u64 << self.half_bits) - 1;
        let mut x = index;
        loop {
            let (mut left, mut right) = (x >> self.half_bits, x & mask);
            for round in 0..4u64 {
                let f = round_function(right, self.key, round) & mask;
                (left, right) = (right, left ^ f);
            }
            x = (left << self.half_bits) | right;
            if x < self.size {
                return x;
            }
        }
    }
}

/// SplitMix64's finaliser over (value, key, round).
fn round_function(value: u64, key: u64, round: u64) -> u64 {
    let mut z = value ^ key.rotate_left(17 * round as u32 + 1) ^ (round + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use super::*;
    use crate::sampler::SamplerConfig;
    use crate::storage::{InMemoryStorage, NewStudy};
    use crate::study::{Study, TellOutcome};
    use crate::trial::Direction;

    const SPACE: &str = "a: {type: int, low: 0, high: 2}\nb: {type: categorical, choices: [x, y]}\nc: {type: float, low: 0.0, high: 0.5, step: 0.25}\n";

    fn space() -> SearchSpace {
        SearchSpace::parse(SPACE, "t").unwrap()
    }

    fn study(seed: u64) -> Study {
        let mut new = NewStudy::new("grid", Direction::Minimize, seed);
        new.sampler = SamplerConfig::Grid;
        new.search_space = Some(space());
        Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap()
    }

    fn key(params: &BTreeMap<String, ParamValue>) -> String {
        params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }

    fn ctx(seed: u64, trials: &[FrozenTrial], trial_number: u64) -> SamplingContext<'_> {
        SamplingContext { study_name: "grid", direction: Direction::Minimize, seed, trials, trial_number }
    }

    #[test]
    fn feistel_is_a_permutation() {
        for size in (1..300).chain([1000, 4097, 65_537]) {
            let perm = FeistelPermutation::new(size, 42);
            let image: HashSet<u64> = (0..size).map(|i| perm.apply(i)).collect();
            assert_eq!(image.len() as u64, size, "size {size}");
            assert!(image.iter().all(|&x| x < size));
        }
        // A large grid never materialises.
        assert!(FeistelPermutation::new(1 << 40, 7).apply(123_456_789) < 1 << 40);
    }

    #[test]
    fn every_combination_exactly_once_then_exhausted() {
        let study = study(3);
        let mut seen = BTreeSet::new();
        for _ in 0..18 {
            let trial = study.ask(&space()).unwrap();
            assert_eq!(trial.params.len(), 3);
            assert!(seen.insert(key(&trial.params)), "repeated {:?}", trial.params);
            study.tell(trial.number, TellOutcome::Value(1.0)).unwrap();
        }
        assert_eq!(seen.len(), 18);
        assert!(seen.contains("a=2,b=y,c=0.5") && seen.contains("a=0,b=x,c=0"), "{seen:?}");
        let err = study.ask(&space()).unwrap_err();
        assert!(matches!(err, Error::GridExhausted(18)), "{err}");
        assert_eq!(err.to_string(), "grid exhausted: all 18 combinations of the grid have been sampled");
    }

    #[test]
    fn the_point_depends_only_on_seed_and_number() {
        // Processes that cannot see each other's trials still get distinct points.
        let sample = |seed: u64, n: u64| key(&GridSampler.sample_relative(&ctx(seed, &[], n), &space()).unwrap());
        let points: HashSet<String> = (0..18).map(|n| sample(5, n)).collect();
        assert_eq!(points.len(), 18);
        assert_eq!(sample(5, 4), sample(5, 4));
        let order = |seed| (0..18).map(|n| sample(seed, n)).collect::<Vec<_>>();
        assert_ne!(order(5), order(6), "the order depends on the seed");
        assert!(matches!(GridSampler.sample_relative(&ctx(5, &[], 18), &space()), Err(Error::GridExhausted(18))));
    }

    #[test]
    fn enqueued_points_are_not_repeated() {
        let study = study(9);
        // Enqueue the point trial 1 would naturally get, and one partial point.
        let natural_1 = GridSampler.sample_relative(&ctx(9, &[], 1), &space()).unwrap();
        study.enqueue(&natural_1).unwrap();
        study.enqueue(&[("a".to_string(), ParamValue::Int(2))].into()).unwrap();
        let mut seen = BTreeSet::new();
        for i in 0..18 {
            let trial = study.ask(&space()).unwrap();
            if i == 1 {
                assert_eq!(trial.params["a"], ParamValue::Int(2));
            }
            assert!(seen.insert(key(&trial.params)), "trial {i} repeated {:?}", trial.params);
            study.tell(trial.number, TellOutcome::Value(0.0)).unwrap();
        }
        assert!(matches!(study.ask(&space()), Err(Error::GridExhausted(18))));
        // No trial was created only to fail (found by a user: one FAIL trial per process and run).
        assert!(matches!(study.ask(&space()), Err(Error::GridExhausted(18))));
        assert_eq!(study.trials().unwrap().len(), 18);
    }

    #[test]
    fn floats_need_a_step() {
        let space =
            SearchSpace::parse("lr: {type: float, low: 0.001, high: 0.1, log: true}\nk: {type: int, low: 0, high: 3}\n", "t")
                .unwrap();
        let err = GridSampler.sample_relative(&ctx(1, &[], 0), &space).unwrap_err().to_string();
        assert!(err.contains("invalid sampler configuration") && err.contains("'lr'") && err.contains("step"), "{err}");
    }

    #[test]
    fn config_parses() {
        let config: SamplerConfig = serde_yaml::from_str("type: grid").unwrap();
        assert_eq!(config, SamplerConfig::Grid);
        assert_eq!(SamplerConfig::from_name_and_kwargs("GridSampler", None).unwrap(), SamplerConfig::Grid);
    }
}

//! Quasi-Monte Carlo search: trial `i` takes point `i` of a Sobol sequence.
//!
//! The Sobol generator uses Joe and Kuo's direction numbers (`new-joe-kuo-6.21201`, the table
//! SciPy and hence Optuna's `QMCSampler` use) for the first [`MAX_DIMENSIONS`] dimensions;
//! parameters past that are sampled uniformly at random. With `scramble: true` (our default;
//! Optuna's is false) each dimension gets a nested uniform (Owen) scramble seeded by the study
//! seed, in the hash-based form of Burley, "Practical Hash-based Owen Scrambling" (JCGT 2020):
//! it keeps the sequence's stratification while moving the first point off the origin and
//! making every seed a different design.
//!
//! Like every sampler here the point is a function of (study seed, trial number), so concurrent
//! processes never pick the same point; the first `2^m` trials of a study form a `(t, m, s)`-net.
//! Dimensions are the parameters sorted by name (enqueued values keep theirs). A point in
//! `[0, 1)` maps to a value uniformly, in log space for `log: true`, and onto the `step` grid,
//! the integers or the choices by giving each value an equal slice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{RandomSampler, Sampler, SamplingContext, mix_seed};
use crate::error::Result;
use crate::space::{Distribution, ParamValue, SearchSpace};

/// Dimensions with Sobol direction numbers; more parameters than this fall back to random.
pub const MAX_DIMENSIONS: usize = 45;

/// Options of [`QmcSampler`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QmcConfig {
    /// Owen-scramble the sequence with the study seed.
    pub scramble: bool,
}

impl Default for QmcConfig {
    fn default() -> Self {
        Self { scramble: true }
    }
}

/// Samples trial `i` at the `i`-th point of a (scrambled) Sobol sequence.
#[derive(Clone, Debug, Default)]
pub struct QmcSampler {
    config: QmcConfig,
}

impl QmcSampler {
    /// The sampler with these options.
    pub fn new(config: QmcConfig) -> Self {
        Self { config }
    }

    /// Coordinate `dimension` of point `index` in `[0, 1)`.
    pub fn coordinate(&self, seed: u64, index: u64, dimension: usize) -> f64 {
        let mut x = sobol(index as u32, dimension);
        if self.config.scramble {
            x = owen_scramble(x, mix_seed(seed, dimension as u64, "qmc") as u32);
        }
        x as f64 / 4_294_967_296.0
    }

    /// Coordinate `dimension` of points `0..count`: the same values as [`QmcSampler::coordinate`],
    /// each point from the one before (Gray-code order changes one bit per step).
    pub fn coordinates(&self, seed: u64, dimension: usize, count: usize) -> Vec<f64> {
        let v = direction_numbers(dimension);
        let scramble = self.config.scramble.then(|| mix_seed(seed, dimension as u64, "qmc") as u32);
        let mut x = 0u32;
        (0..count)
            .map(|index| {
                if index > 0 {
                    x ^= v[(index as u32).trailing_zeros() as usize];
                }
                let y = scramble.map_or(x, |seed| owen_scramble(x, seed));
                y as f64 / 4_294_967_296.0
            })
            .collect()
    }
}

impl Sampler for QmcSampler {
    fn infer_relative_search_space(&self, _ctx: &SamplingContext<'_>, space: &SearchSpace) -> SearchSpace {
        space.clone()
    }

    fn sample_relative(&self, ctx: &SamplingContext<'_>, space: &SearchSpace) -> Result<BTreeMap<String, ParamValue>> {
        // Dimensions by name over this trial's whole space, so enqueued values do not shift them.
        let mut names: Vec<&str> = space.names().collect();
        if let Some(current) = ctx.trials.iter().find(|t| t.number == ctx.trial_number) {
            names.extend(current.params.keys().map(String::as_str).filter(|n| space.get(n).is_none()));
        }
        names.sort_unstable();
        let mut point = BTreeMap::new();
        for (dimension, name) in names.into_iter().enumerate() {
            let Some(dist) = space.get(name) else { continue };
            let value = if dimension < MAX_DIMENSIONS {
                dist.to_external(from_unit(self.coordinate(ctx.seed, ctx.trial_number, dimension), dist))
            } else {
                RandomSampler.sample_independent(ctx, name, dist)?
            };
            point.insert(name.to_string(), value);
        }
        Ok(point)
    }

    fn sample_independent(&self, ctx: &SamplingContext<'_>, name: &str, distribution: &Distribution) -> Result<ParamValue> {
        RandomSampler.sample_independent(ctx, name, distribution)
    }
}

/// Maps `u` in `[0, 1)` to the internal value of `dist`, each value of a discrete parameter
/// taking an equal share of the interval.
fn from_unit(u: f64, dist: &Distribution) -> f64 {
    let pick = |n: f64| (u * n).floor().min(n - 1.0);
    match *dist {
        Distribution::Float { low, high, log: true, .. } => (low.ln() + u * (high.ln() - low.ln())).exp().clamp(low, high),
        Distribution::Float { low, high, step: None, .. } => (low + u * (high - low)).clamp(low, high),
        Distribution::Float { low, high, step: Some(step), .. } => low + pick(((high - low) / step).round() + 1.0) * step,
        Distribution::Int { low, high, log: true, .. } => {
            let (a, b) = ((low as f64 - 0.5).ln(), (high as f64 + 0.5).ln());
            dist.snap((a + u * (b - a)).exp())
        }
        Distribution::Int { low, high, step, .. } => low as f64 + pick(((high - low) / step + 1) as f64) * step as f64,
        Distribution::Categorical { ref choices } => pick(choices.len() as f64),
    }
}

/// Joe–Kuo parameters for dimensions 2, 3, …: degree `s`, polynomial coefficients `a`, and the
/// initial direction integers `m_1 … m_s`.
const JOE_KUO: [(u32, u32, &[u32]); MAX_DIMENSIONS - 1] = [
    (1, 0, &[1]),
    (2, 1, &[1, 3]),
    (3, 1, &[1, 3, 1]),
    (3, 2, &[1, 1, 1]),
    (4, 1, &[1, 1, 3, 3]),
    (4, 4, &[1, 3, 5, 13]),
    (5, 2, &[1, 1, 5, 5, 17]),
    (5, 4, &[1, 1, 5, 5, 5]),
    (5, 7, &[1, 1, 7, 11, 19]),
    (5, 11, &[1, 1, 5, 1, 1]),
    (5, 13, &[1, 1, 1, 3, 11]),
    (5, 14, &[1, 3, 5, 5, 31]),
    (6, 1, &[1, 3, 3, 9, 7, 49]),
    (6, 13, &[1, 1, 1, 15, 21, 21]),
    (6, 16, &[1, 3, 1, 13, 27, 49]),
    (6, 19, &[1, 1, 1, 15, 7, 5]),
    (6, 22, &[1, 3, 1, 15, 13, 25]),
    (6, 25, &[1, 1, 5, 5, 19, 61]),
    (7, 1, &[1, 3, 7, 11, 23, 15, 103]),
    (7, 4, &[1, 3, 7, 13, 13, 15, 69]),
    (7, 7, &[1, 1, 3, 13, 7, 35, 63]),
    (7, 8, &[1, 3, 5, 9, 1, 25, 53]),
    (7, 14, &[1, 3, 1, 13, 9, 35, 107]),
    (7, 19, &[1, 3, 1, 5, 27, 61, 31]),
    (7, 21, &[1, 1, 5, 11, 19, 41, 61]),
    (7, 28, &[1, 3, 5, 3, 3, 13, 69]),
    (7, 31, &[1, 1, 7, 13, 1, 19, 1]),
    (7, 32, &[1, 3, 7, 5, 13, 19, 59]),
    (7, 37, &[1, 1, 3, 9, 25, 29, 41]),
    (7, 41, &[1, 3, 5, 13, 23, 1, 55]),
    (7, 42, &[1, 3, 7, 3, 13, 59, 17]),
    (7, 50, &[1, 3, 1, 3, 5, 53, 69]),
    (7, 55, &[1, 1, 5, 5, 23, 33, 13]),
    (7, 56, &[1, 1, 7, 7, 1, 61, 123]),
    (7, 59, &[1, 1, 7, 9, 13, 61, 49]),
    (7, 62, &[1, 3, 3, 5, 3, 55, 33]),
    (8, 14, &[1, 3, 1, 15, 31, 13, 49, 245]),
    (8, 21, &[1, 3, 5, 15, 31, 59, 63, 97]),
    (8, 22, &[1, 3, 1, 11, 11, 11, 77, 249]),
    (8, 38, &[1, 3, 1, 11, 27, 43, 71, 9]),
    (8, 47, &[1, 1, 7, 15, 21, 11, 81, 45]),
    (8, 49, &[1, 3, 7, 3, 25, 31, 65, 79]),
    (8, 50, &[1, 3, 1, 1, 19, 11, 3, 205]),
    (8, 52, &[1, 1, 5, 9, 19, 21, 29, 157]),
];

const BITS: usize = 32;

/// The 32 direction numbers `v_1 … v_32` of a dimension (as bit patterns of `v_j · 2^32`).
fn direction_numbers(dimension: usize) -> [u32; BITS] {
    let mut v = [0u32; BITS];
    if dimension == 0 {
        // The first dimension is van der Corput's sequence.
        for (j, slot) in v.iter_mut().enumerate() {
            *slot = 1 << (BITS - 1 - j);
        }
        return v;
    }
    let (s, a, m) = JOE_KUO[dimension - 1];
    let s = s as usize;
    for j in 0..s.min(BITS) {
        v[j] = m[j] << (BITS - 1 - j);
    }
    // v_j = v_{j-s} ⊕ (v_{j-s} >> s) ⊕ ⨁_{k=1}^{s-1} a_k · v_{j-k}, from the primitive polynomial.
    for j in s..BITS {
        let mut x = v[j - s] ^ (v[j - s] >> s);
        for k in 1..s {
            if (a >> (s - 1 - k)) & 1 == 1 {
                x ^= v[j - k];
            }
        }
        v[j] = x;
    }
    v
}

/// Coordinate `dimension` of Sobol point `index`, as a 32-bit fraction. Points come in Gray-code
/// order (Antonov–Saleev), as SciPy's and so Optuna's, so the unscrambled sequence is theirs.
fn sobol(index: u32, dimension: usize) -> u32 {
    let v = direction_numbers(dimension);
    let mut x = 0;
    let mut bits = index ^ (index >> 1);
    let mut j = 0;
    while bits != 0 {
        if bits & 1 == 1 {
            x ^= v[j];
        }
        bits >>= 1;
        j += 1;
    }
    x
}

/// Nested uniform scrambling: every output bit is the input bit flipped by a hash of the bits
/// above it. On reversed bits, adding a seed and `x ^= x · even` only ever move information
/// towards the more significant end, which is exactly that dependence.
fn owen_scramble(x: u32, seed: u32) -> u32 {
    let mut r = x.reverse_bits();
    r = r.wrapping_add(seed);
    r ^= r.wrapping_mul(0x6C50_B47C);
    r ^= r.wrapping_mul(0xB82F_1E52);
    r ^= r.wrapping_mul(0xC7AF_E638);
    r ^= r.wrapping_mul(0x8D22_F6E6);
    r.reverse_bits()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::sampler::SamplerConfig;
    use crate::trial::{Direction, FrozenTrial, TrialState};

    fn ctx(seed: u64, trials: &[FrozenTrial], trial_number: u64) -> SamplingContext<'_> {
        SamplingContext { study_name: "qmc", direction: Direction::Minimize, seed, trials, trial_number }
    }

    fn points(sampler: &QmcSampler, seed: u64, space: &SearchSpace, n: u64) -> Vec<BTreeMap<String, ParamValue>> {
        (0..n).map(|i| sampler.sample_relative(&ctx(seed, &[], i), space).unwrap()).collect()
    }

    #[test]
    fn unscrambled_sobol_matches_the_textbook_sequence() {
        // SciPy's `qmc.Sobol(d=3, scramble=False).random(8)`, column by column: dimension 0 is
        // van der Corput, 1 is x + 1 (m = 1), 2 is x² + x + 1 (m = 1, 3), all in Gray-code order.
        let s = QmcSampler::new(QmcConfig { scramble: false });
        let column = |d| (0..8).map(|i| s.coordinate(0, i, d)).collect::<Vec<f64>>();
        assert_eq!(column(0), [0.0, 0.5, 0.75, 0.25, 0.375, 0.875, 0.625, 0.125]);
        assert_eq!(column(1), [0.0, 0.5, 0.25, 0.75, 0.375, 0.875, 0.125, 0.625]);
        assert_eq!(column(2), [0.0, 0.5, 0.25, 0.75, 0.625, 0.125, 0.875, 0.375]);
    }

    #[test]
    fn coordinates_in_bulk_equal_those_one_by_one() {
        for scramble in [false, true] {
            let qmc = QmcSampler::new(QmcConfig { scramble });
            for dimension in [0, 1, 7, MAX_DIMENSIONS - 1] {
                let bulk = qmc.coordinates(42, dimension, 300);
                let one_by_one: Vec<f64> = (0..300).map(|i| qmc.coordinate(42, i, dimension)).collect();
                assert_eq!(bulk, one_by_one, "dimension {dimension}, scramble {scramble}");
            }
        }
    }

    #[test]
    fn direction_numbers_are_well_formed() {
        for (d, (s, a, m)) in JOE_KUO.iter().enumerate() {
            assert_eq!(m.len(), *s as usize, "dimension {}", d + 2);
            assert!(*a < 1 << (s - 1), "dimension {}", d + 2);
            for (k, &mk) in m.iter().enumerate() {
                assert!(mk % 2 == 1 && mk < 1 << (k + 1), "dimension {}: m_{} = {mk}", d + 2, k + 1);
            }
        }
        // Distinct dimensions are distinct sequences.
        let columns: HashSet<Vec<u32>> = (0..MAX_DIMENSIONS).map(|d| (0..64).map(|i| sobol(i, d)).collect()).collect();
        assert_eq!(columns.len(), MAX_DIMENSIONS);
    }

    #[test]
    fn every_dimension_is_stratified_in_both_modes() {
        for scramble in [false, true] {
            let s = QmcSampler::new(QmcConfig { scramble });
            for d in 0..MAX_DIMENSIONS {
                // The first 2^m points put exactly one point in each interval [k/2^m, (k+1)/2^m).
                let cells: HashSet<u64> = (0..256).map(|i| (s.coordinate(11, i, d) * 256.0) as u64).collect();
                assert_eq!(cells.len(), 256, "dimension {d}, scramble {scramble}");
            }
        }
    }

    #[test]
    fn sixty_four_points_cover_an_eight_by_eight_grid() {
        let space =
            SearchSpace::parse("x: {type: float, low: 0.0, high: 8.0}\ny: {type: float, low: -4.0, high: 4.0}\n", "t").unwrap();
        for scramble in [false, true] {
            for seed in [0, 1, 12_345] {
                let pts = points(&QmcSampler::new(QmcConfig { scramble }), seed, &space, 64);
                let cells: HashSet<(i64, i64)> = pts
                    .iter()
                    .map(|p| (p["x"].as_f64().unwrap().floor() as i64, (p["y"].as_f64().unwrap() + 4.0).floor() as i64))
                    .collect();
                assert_eq!(cells.len(), 64, "scramble {scramble}, seed {seed}");
            }
        }
        // Random search leaves cells empty (about 64/e of them).
        let random: HashSet<(i64, i64)> = (0..64)
            .map(|i| {
                let c = ctx(0, &[], i);
                let x = RandomSampler.sample_independent(&c, "x", space.get("x").unwrap()).unwrap().as_f64().unwrap();
                let y = RandomSampler.sample_independent(&c, "y", space.get("y").unwrap()).unwrap().as_f64().unwrap();
                (x.floor() as i64, (y + 4.0).floor() as i64)
            })
            .collect();
        assert!(random.len() < 56, "{}", random.len());
    }

    #[test]
    fn log_int_and_categorical_mapping() {
        let space = SearchSpace::parse(
            "lr: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}\nk: {type: int, low: 0, high: 7}\n\
             c: {type: categorical, choices: [a, b, c, d]}\nd: {type: float, low: 0.0, high: 0.3, step: 0.1}\n",
            "t",
        )
        .unwrap();
        let pts = points(&QmcSampler::default(), 3, &space, 64);
        // Half of the log range is below 1e-3: exactly half of 64 stratified points.
        assert_eq!(pts.iter().filter(|p| p["lr"].as_f64().unwrap() < 1e-3).count(), 32);
        for p in &pts {
            let lr = p["lr"].as_f64().unwrap();
            assert!((1e-5..=1e-1).contains(&lr));
        }
        let count = |name: &str, value: ParamValue| pts.iter().filter(|p| p[name] == value).count();
        for k in 0..8 {
            assert_eq!(count("k", ParamValue::Int(k)), 8, "k = {k}");
        }
        for c in ["a", "b", "c", "d"] {
            assert_eq!(count("c", ParamValue::Str(c.into())), 16, "c = {c}");
        }
        for step in [0.0, 0.1, 0.2, 0.3] {
            assert_eq!(count("d", ParamValue::Float(step)), 16, "d = {step}");
        }
        // Log ints: every value reachable and in range.
        // Geometric middle of [0.5, 2112.5] is 32.5, so half the points round to n ≤ 32.
        let space = SearchSpace::parse("n: {type: int, low: 1, high: 2112, log: true}", "t").unwrap();
        let ns: Vec<i64> = points(&QmcSampler::default(), 3, &space, 256)
            .iter()
            .map(|p| match p["n"] {
                ParamValue::Int(n) => n,
                _ => panic!(),
            })
            .collect();
        assert!(ns.iter().all(|n| (1..=2112).contains(n)));
        assert!(ns.contains(&1));
        assert_eq!(ns.iter().filter(|&&n| n <= 32).count(), 128, "half of the log range");
    }

    #[test]
    fn deterministic_in_seed_and_number() {
        let space = SearchSpace::parse("x: {type: float, low: 0.0, high: 1.0}", "t").unwrap();
        let s = QmcSampler::default();
        let a = points(&s, 7, &space, 4);
        assert_eq!(a, points(&s, 7, &space, 4));
        assert_ne!(a, points(&s, 8, &space, 4), "the scramble depends on the seed");
        assert_ne!(a[0]["x"], ParamValue::Float(0.0), "scrambling moves the first point off the origin");
        let plain = QmcSampler::new(QmcConfig { scramble: false });
        assert_eq!(points(&plain, 7, &space, 4), points(&plain, 8, &space, 4));
    }

    #[test]
    fn enqueued_parameters_keep_the_dimensions() {
        let full =
            SearchSpace::parse("a: {type: float, low: 0.0, high: 1.0}\nb: {type: float, low: 0.0, high: 1.0}\n", "t").unwrap();
        let s = QmcSampler::default();
        let all = s.sample_relative(&ctx(1, &[], 5), &full).unwrap();
        // Trial 5 was enqueued with `a` fixed: `b` keeps its dimension (1), not `a`'s (0).
        let mut enqueued = FrozenTrial::new(6, 5, TrialState::Running);
        enqueued.params.insert("a".into(), ParamValue::Float(0.3));
        let mut only_b = SearchSpace::new();
        only_b.insert("b", full.get("b").unwrap().clone());
        let trials = [enqueued];
        let partial = s.sample_relative(&ctx(1, &trials, 5), &only_b).unwrap();
        assert_eq!(partial.len(), 1);
        assert_eq!(partial["b"], all["b"]);
    }

    #[test]
    fn a_study_with_the_qmc_sampler_fills_the_space() {
        use std::sync::Arc;

        use crate::storage::{InMemoryStorage, NewStudy};
        use crate::study::{Study, TellOutcome};

        let space = SearchSpace::parse(
            "x: {type: int, low: 0, high: 7}\ny: {type: categorical, choices: [0, 1, 2, 3, 4, 5, 6, 7]}\n",
            "t",
        )
        .unwrap();
        let mut new = NewStudy::new("qmc", Direction::Minimize, 21);
        new.sampler = SamplerConfig::Qmc(QmcConfig::default());
        let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
        let mut cells = HashSet::new();
        for _ in 0..64 {
            let t = study.ask(&space).unwrap();
            cells.insert((t.params["x"].to_string(), t.params["y"].to_string()));
            study.tell(t.number, TellOutcome::Value(0.0)).unwrap();
        }
        assert_eq!(cells.len(), 64, "64 trials hit all 64 combinations");
    }

    #[test]
    fn config_parses() {
        let config: SamplerConfig = serde_yaml::from_str("{type: qmc, scramble: false}").unwrap();
        assert_eq!(config, SamplerConfig::Qmc(QmcConfig { scramble: false }));
        let config: SamplerConfig = serde_yaml::from_str("type: qmc").unwrap();
        assert_eq!(config, SamplerConfig::Qmc(QmcConfig { scramble: true }));
        let kwargs = serde_json::json!({"scramble": false, "seed": 3});
        assert_eq!(
            SamplerConfig::from_name_and_kwargs("QMCSampler", Some(&kwargs)).unwrap(),
            SamplerConfig::Qmc(QmcConfig { scramble: false })
        );
        assert!(serde_yaml::from_str::<SamplerConfig>("{type: qmc, scrambled: true}").is_err());
    }
}

//! Uniform random search (log-uniform for log parameters).

use rand::Rng;

use super::{Sampler, SamplingContext};
use crate::error::Result;
use crate::space::{Distribution, ParamValue};

/// Samples every parameter independently and uniformly (in log space for `log: true`).
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomSampler;

impl RandomSampler {
    /// One uniform draw from `distribution` in its internal representation.
    pub fn draw(rng: &mut impl Rng, distribution: &Distribution) -> f64 {
        match *distribution {
            Distribution::Float { low, high, log, step } => {
                let x = if log { rng.random_range(low.ln()..=high.ln()).exp() } else { rng.random_range(low..=high) };
                match step {
                    // Widen by half a step so the end points are as likely as the inner grid points.
                    Some(s) => distribution.snap(rng.random_range(low - s / 2.0..high + s / 2.0)),
                    None => x.clamp(low, high),
                }
            }
            Distribution::Int { low, high, log, step } => {
                let half = step as f64 / 2.0;
                let x = if log {
                    rng.random_range((low as f64 - 0.5).ln()..(high as f64 + 0.5).ln()).exp()
                } else {
                    rng.random_range(low as f64 - half..high as f64 + half)
                };
                distribution.snap(x)
            }
            Distribution::Categorical { ref choices } => rng.random_range(0..choices.len()) as f64,
        }
    }
}

impl Sampler for RandomSampler {
    fn sample_independent(&self, ctx: &SamplingContext<'_>, name: &str, distribution: &Distribution) -> Result<ParamValue> {
        let mut rng = ctx.rng(name);
        Ok(distribution.to_external(Self::draw(&mut rng, distribution)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::Direction;

    fn ctx(number: u64) -> SamplingContext<'static> {
        SamplingContext { study_name: "s", direction: Direction::Minimize, seed: 7, trials: &[], trial_number: number }
    }

    #[test]
    fn draws_cover_every_int_value_and_stay_in_range() {
        let dist = Distribution::Int { low: 0, high: 4, log: false, step: 1 };
        let mut counts = [0usize; 5];
        for n in 0..2000 {
            let ParamValue::Int(v) = RandomSampler.sample_independent(&ctx(n), "k", &dist).unwrap() else { panic!() };
            counts[v as usize] += 1;
        }
        // Each of the five values should get about 400 draws; the end points are not starved.
        assert!(counts.iter().all(|&c| (300..500).contains(&c)), "{counts:?}");
    }

    #[test]
    fn log_floats_are_log_uniform() {
        let dist = Distribution::Float { low: 1e-5, high: 1e-1, log: true, step: None };
        let below_1e3 = (0..4000)
            .filter(|&n| RandomSampler.sample_independent(&ctx(n), "lr", &dist).unwrap().as_f64().unwrap() < 1e-3)
            .count();
        // Half of the log range lies below 1e-3.
        assert!((1800..2200).contains(&below_1e3), "{below_1e3}");
    }

    #[test]
    fn same_seed_and_number_reproduce_different_numbers_differ() {
        let dist = Distribution::Float { low: 0.0, high: 1.0, log: false, step: None };
        let a = RandomSampler.sample_independent(&ctx(3), "x", &dist).unwrap();
        assert_eq!(a, RandomSampler.sample_independent(&ctx(3), "x", &dist).unwrap());
        assert_ne!(a, RandomSampler.sample_independent(&ctx(4), "x", &dist).unwrap());
        assert_ne!(a, RandomSampler.sample_independent(&ctx(3), "y", &dist).unwrap());
    }
}

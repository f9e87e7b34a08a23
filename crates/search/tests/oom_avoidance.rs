//! Out of memory as an outcome the samplers learn from: a trial that ran out of memory is told as
//! [`TellOutcome::OutOfMemory`], and TPE, the GP and `auto` treat it as infeasible, so that once
//! the first ones have happened, the suggestions avoid the region that runs out of memory.
//!
//! The problem is shaped like a fine-tuning sweep on a GPU too small for the largest batches:
//! larger batches train better, so the best feasible point sits right at the edge of the region
//! that runs out of memory (batch size ≥ [`OOM_FROM`]) and a sampler that ignored failures would
//! keep being pulled into it. What is measured: among the suggestions made after the samplers'
//! start-up phase (the first 10 trials, space-filling or random by design) and after at least one
//! trial ran out of memory, the fraction with a batch size below [`OOM_FROM`].

use std::sync::Arc;

use nightshift_search::{
    Direction, GpConfig, InMemoryStorage, NewStudy, SamplerConfig, SearchSpace, Study, TellOutcome, TpeConfig,
};

/// Batch sizes from this on run out of memory.
const OOM_FROM: f64 = 128.0;
/// Trials of the samplers' start-up phase, not counted.
const START_UP: u64 = 10;

const CATEGORICAL: &str = "learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
batch_size: {type: categorical, choices: [16, 32, 64, 128, 256, 512]}
dropout: {type: float, low: 0.0, high: 0.5}
";

const INTEGER: &str = "learning_rate: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
batch_size: {type: int, low: 8, high: 512, log: true}
dropout: {type: float, low: 0.0, high: 0.5}
";

/// Validation error: best near lr 3e-3 and dropout 0.2, and better the larger the batch.
fn error(lr: f64, batch: f64, dropout: f64) -> f64 {
    0.05 * (lr.log10() + 2.5).powi(2) + 0.2 * (1.0 - batch.log2() / 9.0) + (dropout - 0.2).powi(2)
}

/// (suggestions counted, of which below the out-of-memory batch size) over one study.
fn sweep(sampler: SamplerConfig, space: &str, seed: u64, trials: u64) -> (usize, usize) {
    let space = SearchSpace::parse(space, "oom").unwrap();
    let mut new = NewStudy::new("oom", Direction::Minimize, seed);
    new.sampler = sampler;
    let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
    let (mut counted, mut avoided, mut oom_seen) = (0, 0, false);
    for _ in 0..trials {
        let t = study.ask(&space).unwrap();
        let p = |name: &str| t.params[name].as_f64().unwrap();
        let (lr, batch, dropout) = (p("learning_rate"), p("batch_size"), p("dropout"));
        if t.number >= START_UP && oom_seen {
            counted += 1;
            avoided += usize::from(batch < OOM_FROM);
        }
        if batch >= OOM_FROM {
            oom_seen = true;
            study.tell(t.number, TellOutcome::OutOfMemory(format!("batch {batch} does not fit"))).unwrap();
        } else {
            study.tell(t.number, TellOutcome::Value(error(lr, batch, dropout))).unwrap();
        }
    }
    (counted, avoided)
}

/// The fraction of counted suggestions that avoided the region, over `seeds`.
fn avoidance(sampler: &SamplerConfig, space: &str, seeds: std::ops::Range<u64>, trials: u64) -> f64 {
    let (mut counted, mut avoided) = (0, 0);
    for seed in seeds {
        let (c, a) = sweep(sampler.clone(), space, seed, trials);
        counted += c;
        avoided += a;
    }
    assert!(counted > 0, "every seed ran out of memory at some point");
    let fraction = avoided as f64 / counted as f64;
    eprintln!(
        "{} on {}: {avoided} of {counted} later suggestions avoided the out-of-memory region ({fraction:.3})",
        sampler.name(),
        space.lines().nth(1).unwrap()
    );
    fraction
}

fn gp() -> SamplerConfig {
    // Fewer Sobol candidates than the default 2,048 keep this test quick in a debug build.
    SamplerConfig::Gp(GpConfig { n_preliminary_samples: 256, ..GpConfig::default() })
}

#[test]
fn tpe_avoids_the_region_that_ran_out_of_memory() {
    let tpe = SamplerConfig::Tpe(TpeConfig::default());
    for space in [CATEGORICAL, INTEGER] {
        let fraction = avoidance(&tpe, space, 0..8, 40);
        assert!(fraction >= 0.9, "TPE avoided the out-of-memory region in only {fraction:.3} of its suggestions");
    }
}

#[test]
fn gp_avoids_the_region_that_ran_out_of_memory() {
    for space in [CATEGORICAL, INTEGER] {
        let fraction = avoidance(&gp(), space, 0..5, 30);
        assert!(fraction >= 0.9, "the GP avoided the out-of-memory region in only {fraction:.3} of its suggestions");
    }
}

#[test]
fn auto_avoids_the_region_that_ran_out_of_memory() {
    let fraction = avoidance(&SamplerConfig::default(), CATEGORICAL, 0..3, 30);
    assert!(fraction >= 0.9, "auto avoided the out-of-memory region in only {fraction:.3} of its suggestions");
}

/// The measure can fail: a sampler that learns nothing from out-of-memory trials lands in the
/// region about as often as the region's share of the space (half the batch sizes here).
#[test]
fn random_search_does_not_avoid_it() {
    let fraction = avoidance(&SamplerConfig::Random, CATEGORICAL, 0..8, 40);
    assert!(fraction < 0.7, "random search avoided the out-of-memory region in {fraction:.3} of its suggestions");
}

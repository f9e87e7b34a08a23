//! Constructed studies for the report's tests and benchmark.
#![allow(dead_code)]

use std::collections::BTreeMap;

use nightshift_search::{
    Direction, FrozenTrial, ParamValue, PrunerConfig, SamplerConfig, SearchSpace, StudyRecord, TrialState, attrs,
};

pub const SPACE: &str = "\
learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
batch_size: {type: categorical, choices: [16, 32, 64, 128]}
dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
freeze_depth: {type: int, low: 0, high: 4}
";

pub fn study(name: &str, direction: Direction, space: Option<&str>) -> StudyRecord {
    StudyRecord {
        id: 1,
        name: name.into(),
        direction,
        seed: 7,
        sampler: SamplerConfig::default(),
        pruner: PrunerConfig::default(),
        search_space: space.map(|s| SearchSpace::parse(s, "test").unwrap()),
        user_attrs: BTreeMap::new(),
        created_at: 1_700_000_000.0,
    }
}

/// A trial with `params`, whose distributions come from `space` when it has them.
pub fn trial(
    number: u64,
    state: TrialState,
    value: Option<f64>,
    params: &[(&str, ParamValue)],
    space: Option<&SearchSpace>,
) -> FrozenTrial {
    let mut t = FrozenTrial::new(number as i64 + 1, number, state);
    t.value = value;
    for (name, v) in params {
        t.params.insert(name.to_string(), v.clone());
        if let Some(d) = space.and_then(|s| s.get(name)) {
            t.distributions.insert(name.to_string(), d.clone());
        }
    }
    t
}

/// SplitMix64, so fixtures are the same on every machine.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.uniform().max(1e-12), self.uniform());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

/// A realistic sweep of `n` trials over [`SPACE`] on two GPUs with two slots each: accuracy depends
/// mostly on learning rate and freeze depth, 10 epochs per trial, about a third pruned, a few failed.
pub fn synthetic_sweep(n: usize, seed: u64) -> (StudyRecord, Vec<FrozenTrial>) {
    let study = study("fashion-finetune", Direction::Maximize, Some(SPACE));
    let space = study.search_space.clone().unwrap();
    let mut rng = Rng(seed);
    let mut slot_free = [study.created_at; 4];
    let mut trials = Vec::with_capacity(n);
    for number in 0..n as u64 {
        let lr = 10f64.powf(-5.0 + 4.0 * rng.uniform());
        let batch = [16, 32, 64, 128][(rng.next_u64() % 4) as usize];
        let dropout = (rng.uniform() * 10.0).floor() * 0.05;
        let wd = 10f64.powf(-6.0 + 4.0 * rng.uniform());
        let freeze = (rng.next_u64() % 5) as i64;
        let params = [
            ("learning_rate", ParamValue::Float(lr)),
            ("batch_size", ParamValue::Int(batch)),
            ("dropout", ParamValue::Float(dropout)),
            ("weight_decay", ParamValue::Float(wd)),
            ("freeze_depth", ParamValue::Int(freeze)),
        ];
        let quality = 0.92 - 0.05 * (lr.log10() + 3.0).powi(2) - 0.012 * (freeze as f64 - 2.0).powi(2) - 0.1 * dropout * dropout;
        let roll = rng.uniform();
        let mut state = TrialState::Complete;
        let mut epochs = 10;
        if roll < 0.03 {
            state = TrialState::Fail;
            epochs = rng.next_u64() % 3;
        } else if roll < 0.38 && number > 8 {
            state = TrialState::Pruned;
            epochs = 2 + rng.next_u64() % 4;
        }
        let mut t = trial(number, state, None, &params, Some(&space));
        let mut acc = 0.1;
        for epoch in 1..=epochs {
            acc += (quality - acc) * 0.45 + 0.004 * rng.normal();
            t.intermediate_values.insert(epoch, acc.clamp(0.0, 1.0));
        }
        t.value = match state {
            TrialState::Complete | TrialState::Pruned => t.last_step().map(|(_, v)| v),
            _ => None,
        };
        if state == TrialState::Fail {
            t.system_attrs.insert(attrs::FAIL_REASON.into(), "CUDA out of memory: tried to allocate 2.00 GiB".into());
        }
        let slot = (number % 4) as usize;
        let start = slot_free[slot] + 2.0 * rng.uniform();
        let end = start + epochs.max(1) as f64 * (20.0 + 10.0 * rng.uniform()) * (batch as f64 / 64.0).sqrt();
        slot_free[slot] = end;
        t.started_at = Some(start);
        t.finished_at = Some(end);
        t.system_attrs.insert(attrs::DEVICE.into(), format!("cuda:{}", slot / 2).into());
        t.system_attrs.insert(attrs::SLOT.into(), ((slot % 2) as i64).into());
        trials.push(t);
    }
    (study, trials)
}

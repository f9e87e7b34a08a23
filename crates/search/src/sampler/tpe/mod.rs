//! Tree-structured Parzen Estimator (work in progress: filled in by the TPE implementation).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{RandomSampler, Sampler, SamplingContext};
use crate::error::Result;
use crate::space::{Distribution, ParamValue, SearchSpace};

/// TPE options, Optuna 5.0's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpeConfig {
    pub n_startup_trials: usize,
    pub n_ei_candidates: usize,
    pub prior_weight: f64,
    pub consider_magic_clip: bool,
    pub consider_endpoints: bool,
    pub multivariate: bool,
    pub group: bool,
    pub constant_liar: bool,
}

impl Default for TpeConfig {
    fn default() -> Self {
        Self {
            n_startup_trials: 10,
            n_ei_candidates: 24,
            prior_weight: 1.0,
            consider_magic_clip: true,
            consider_endpoints: false,
            multivariate: true,
            group: true,
            constant_liar: true,
        }
    }
}

pub struct TpeSampler {
    #[allow(dead_code)]
    config: TpeConfig,
}

impl TpeSampler {
    pub fn new(config: TpeConfig) -> Self {
        Self { config }
    }
}

impl Sampler for TpeSampler {
    fn infer_relative_search_space(&self, _ctx: &SamplingContext<'_>, _space: &SearchSpace) -> SearchSpace {
        SearchSpace::new()
    }
    fn sample_relative(&self, _ctx: &SamplingContext<'_>, _space: &SearchSpace) -> Result<BTreeMap<String, ParamValue>> {
        Ok(BTreeMap::new())
    }
    fn sample_independent(&self, ctx: &SamplingContext<'_>, name: &str, distribution: &Distribution) -> Result<ParamValue> {
        RandomSampler.sample_independent(ctx, name, distribution)
    }
}

//! What serde reads from the spec YAML, before any check (unknown fields are errors).

use nightshift_search::Direction;
use serde::Deserialize;

use super::HumanDuration;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSpec {
    pub(crate) study: String,
    #[serde(default)]
    pub(crate) storage: Option<String>,
    pub(crate) objective: RawObjective,
    #[serde(default)]
    pub(crate) sampler: Option<serde_yaml::Value>,
    #[serde(default)]
    pub(crate) pruner: Option<serde_yaml::Value>,
    pub(crate) budget: RawBudget,
    #[serde(default)]
    pub(crate) devices: Option<serde_yaml::Value>,
    #[serde(default)]
    pub(crate) trial: Option<serde_yaml::Value>,
    #[serde(default)]
    pub(crate) command: Option<serde_yaml::Value>,
    #[serde(default)]
    pub(crate) pretrain: Option<serde_yaml::Value>,
    pub(crate) params: serde_yaml::Value,
    /// A parameter name, or a tournament mapping (`{param, budget_per_arm, replicate_top, seeds}`).
    #[serde(default)]
    pub(crate) compare: Option<serde_yaml::Value>,
    #[serde(default)]
    pub(crate) heartbeat: Option<RawHeartbeat>,
    #[serde(default)]
    pub(crate) reenqueue_stale: Option<bool>,
    #[serde(default)]
    pub(crate) kill_grace: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObjective {
    pub(crate) metric: String,
    pub(crate) direction: Direction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBudget {
    pub(crate) trials: u64,
    #[serde(default)]
    pub(crate) timeout: Option<HumanDuration>,
    #[serde(default)]
    pub(crate) stop_at: Option<String>,
    #[serde(default)]
    pub(crate) target: Option<f64>,
    #[serde(default)]
    pub(crate) max_consecutive_failures: Option<u32>,
    #[serde(default)]
    pub(crate) trial_timeout: Option<HumanDuration>,
    #[serde(default)]
    pub(crate) retries: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawHeartbeat {
    #[serde(default)]
    pub(crate) interval: Option<HumanDuration>,
    #[serde(default)]
    pub(crate) stale_after: Option<HumanDuration>,
}

/// `compare:` as a tournament.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTournament {
    pub(crate) param: String,
    #[serde(default)]
    pub(crate) budget_per_arm: Option<u64>,
    #[serde(default)]
    pub(crate) replicate_top: Option<u64>,
    #[serde(default)]
    pub(crate) seeds: Option<u64>,
}

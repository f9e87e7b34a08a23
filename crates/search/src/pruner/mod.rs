//! Pruners: decide from a trial's intermediate values whether to stop it early.

use serde::{Deserialize, Serialize};

use crate::trial::{Direction, FrozenTrial};

/// What a pruner may look at.
#[derive(Clone, Copy, Debug)]
pub struct PruneContext<'a> {
    pub study_name: &'a str,
    pub direction: Direction,
    /// Every trial of the study (any state), ordered by number; includes the trial being judged.
    pub trials: &'a [FrozenTrial],
}

/// The pruner seam (Optuna's `BasePruner`).
pub trait Pruner: Send + Sync {
    /// Whether `trial` (RUNNING, with its latest intermediate value recorded) should stop now.
    fn prune(&self, ctx: &PruneContext<'_>, trial: &FrozenTrial) -> bool;

    /// The bracket a trial belongs to, for pruners (Hyperband) whose brackets must not share
    /// sampler history. `None`: all trials are one group.
    fn bracket(&self, _study_name: &str, _trial_number: u64) -> Option<usize> {
        None
    }
}

/// Never prunes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NopPruner;

impl Pruner for NopPruner {
    fn prune(&self, _ctx: &PruneContext<'_>, _trial: &FrozenTrial) -> bool {
        false
    }
}

/// Which pruner a study uses, as written in specs and stored with the study.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum PrunerConfig {
    #[default]
    #[serde(alias = "nop")]
    None,
}

impl PrunerConfig {
    pub fn build(&self) -> Box<dyn Pruner> {
        match self {
            Self::None => Box::new(NopPruner),
        }
    }
}

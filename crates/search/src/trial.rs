//! Trials as the samplers, pruners and storages see them: immutable snapshots.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::space::{Distribution, ParamValue};

/// Lifecycle of a trial. `Waiting` trials were enqueued with fixed parameters and are claimed by
/// the next `ask`; `Running` ones are being evaluated; the other three are final.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TrialState {
    /// Being evaluated.
    Running,
    /// Finished with a value.
    Complete,
    /// Stopped early by the pruner.
    Pruned,
    /// Failed (crashed, NaN, stale, …).
    Fail,
    /// Enqueued with fixed parameters, not yet claimed.
    Waiting,
}

impl TrialState {
    /// Every state, RUNNING first.
    pub const ALL: [TrialState; 5] = [Self::Running, Self::Complete, Self::Pruned, Self::Fail, Self::Waiting];

    /// The stored spelling, e.g. `COMPLETE`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Complete => "COMPLETE",
            Self::Pruned => "PRUNED",
            Self::Fail => "FAIL",
            Self::Waiting => "WAITING",
        }
    }

    /// Complete, pruned and failed trials never change again.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Complete | Self::Pruned | Self::Fail)
    }
}

impl fmt::Display for TrialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TrialState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown trial state '{s}' (valid: running, complete, pruned, fail, waiting)"))
    }
}

/// Whether the objective is to be minimised or maximised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Lower is better.
    Minimize,
    /// Higher is better.
    Maximize,
}

impl Direction {
    /// The stored spelling, `minimize` or `maximize`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minimize => "minimize",
            Self::Maximize => "maximize",
        }
    }

    /// True when `a` is strictly better than `b`.
    pub fn is_better(self, a: f64, b: f64) -> bool {
        match self {
            Self::Minimize => a < b,
            Self::Maximize => a > b,
        }
    }

    /// Maps a value so that smaller is always better (what samplers rank by).
    pub fn to_loss(self, value: f64) -> f64 {
        match self {
            Self::Minimize => value,
            Self::Maximize => -value,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "minimize" | "min" => Ok(Self::Minimize),
            "maximize" | "max" => Ok(Self::Maximize),
            _ => Err(format!("unknown direction '{s}' (valid: minimize, maximize)")),
        }
    }
}

/// A snapshot of one trial. Storages hand out copies: later writes never change a snapshot.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FrozenTrial {
    /// Storage-wide identifier.
    pub id: i64,
    /// 0, 1, 2, … within its study, in creation order.
    pub number: u64,
    /// Where it is in its lifecycle.
    pub state: TrialState,
    /// Final objective value (COMPLETE; for PRUNED the last intermediate value, if any).
    pub value: Option<f64>,
    /// Parameter values by name.
    pub params: BTreeMap<String, ParamValue>,
    /// The distribution each parameter was sampled from.
    pub distributions: BTreeMap<String, Distribution>,
    /// step → value, as reported during training (e.g. epoch → validation accuracy).
    pub intermediate_values: BTreeMap<u64, f64>,
    /// Attributes the user set.
    pub user_attrs: BTreeMap<String, serde_json::Value>,
    /// Attributes nightshift itself sets (failure reason, device, …).
    pub system_attrs: BTreeMap<String, serde_json::Value>,
    /// Unix time in seconds.
    pub started_at: Option<f64>,
    /// Unix time in seconds.
    pub finished_at: Option<f64>,
    /// Unix time of the last heartbeat, for trials whose asker sends them.
    pub heartbeat_at: Option<f64>,
}

impl FrozenTrial {
    /// A fresh RUNNING trial with nothing recorded yet; handy for tests and storages.
    pub fn new(id: i64, number: u64, state: TrialState) -> Self {
        Self {
            id,
            number,
            state,
            value: None,
            params: BTreeMap::new(),
            distributions: BTreeMap::new(),
            intermediate_values: BTreeMap::new(),
            user_attrs: BTreeMap::new(),
            system_attrs: BTreeMap::new(),
            started_at: None,
            finished_at: None,
            heartbeat_at: None,
        }
    }

    /// The parameter in the samplers' internal representation (categorical → choice index).
    pub fn internal_param(&self, name: &str) -> Option<f64> {
        let dist = self.distributions.get(name)?;
        dist.to_internal(self.params.get(name)?).ok()
    }

    /// The deepest reported step and its value.
    pub fn last_step(&self) -> Option<(u64, f64)> {
        self.intermediate_values.iter().next_back().map(|(s, v)| (*s, *v))
    }

    /// A FAIL trial that ran out of (device) memory ([`crate::attrs::FAIL_KIND`] is
    /// [`crate::attrs::FAIL_KIND_OOM`]). Samplers treat such a trial as *infeasible*: its
    /// parameters are a region to avoid, not a failure to ignore.
    pub fn is_oom(&self) -> bool {
        self.state == TrialState::Fail
            && self.system_attrs.get(crate::attrs::FAIL_KIND).and_then(|v| v.as_str()) == Some(crate::attrs::FAIL_KIND_OOM)
    }

    /// Whether the trial failed at its parameters: out of memory, diverged, a NaN objective, told
    /// `fail` — every FAIL but one stopped by Ctrl-C, which runs again. The GP sampler models these
    /// points as infeasible: ignoring them, as Optuna's `GPSampler` does, its deterministic
    /// acquisition suggests a failed point again at every ask.
    pub fn is_infeasible(&self) -> bool {
        let reason = self.system_attrs.get(crate::attrs::FAIL_REASON).and_then(|v| v.as_str());
        self.state == TrialState::Fail && reason != Some(crate::attrs::FAIL_REASON_INTERRUPTED)
    }

    /// Seconds between start and finish, when both are known.
    pub fn duration(&self) -> Option<f64> {
        Some(self.finished_at? - self.started_at?)
    }
}

/// Seconds since the Unix epoch, the time unit of every timestamp in a study.
pub fn now_unix() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

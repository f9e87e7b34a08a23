//! # nightshift-orchestrator
//!
//! The overnight run: trials as child processes on a pool of device slots, spoken to through a
//! line protocol, pruned early, heartbeated, and resumable after a crash.
//!
//! ## Layout
//! - [`Spec`] (`spec/`): the sweep spec YAML, parsed then validated, errors with `file:line`; a `trial:`
//!   section is checked by the caller's [`BuiltinTrainer`] (the binary knows the trainer, this crate does not).
//! - `protocol.rs`: the pure line protocol ([`protocol::parse_line`], [`protocol::Answer`], and the
//!   lines a trial written in Rust prints: [`protocol::Report::line`] and its kin);
//!   documented for trial authors in `docs/protocol.md`.
//! - [`DevicePool`] / [`Slot`] / [`Device`] (`pool.rs`): where trials run, at most K per device; [`plan_slots`]
//!   turns `devices:` into slots on a [`Host`] (`gpus.rs`: `nvidia-smi -L` with MIG instances and a timeout,
//!   an inherited `CUDA_VISIBLE_DEVICES`).
//! - [`run_trial`] (`process.rs`): one child process from spawn to [`Outcome`], with SIGTERM →
//!   SIGKILL escalation of its process group; the pure [`process::decide`] names how it ended.
//! - [`run()`] (`run/`): the sweep — one `Sweep` struct with a method per event (a trial finished, a
//!   heartbeat tick, a shutdown request), budget and timeouts, stale-trial recovery, two-stage [`Shutdown`],
//!   freeze-strategy strata and tournaments (`compare:`; the tournament's planning is
//!   `nightshift_search::tournament`), [`RunSummary`]; it tells an [`Observer`] what happens ([`Event`]),
//!   and the binary draws the progress.
//! - [`fault_point`] (`fault.rs`): a crash-test hook, inert unless `NIGHTSHIFT_FAULT_POINT` is set.
//!
//! The orchestrator knows the search engine (`nightshift-search`) but no storage backend and no
//! trainer: the caller passes an `Arc<dyn Storage>` and trials are processes.
//!
//! ## Example
//! ```
//! use std::sync::Arc;
//! use nightshift_orchestrator::{RunOptions, Shutdown, Spec, run};
//! use nightshift_search::InMemoryStorage;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let spec = Spec::parse(r#"
//! study: doc
//! objective: {metric: score, direction: maximize}
//! budget: {trials: 3}
//! devices: {cpu: 2}
//! command: [echo, '{{"result": {{"value": {x}}}}}']   # `{{`/`}}` are literal braces
//! params: {x: {type: float, low: 0.0, high: 1.0}}
//! "#, "doc.yaml", dir.path()).unwrap();
//! let rt = tokio::runtime::Runtime::new().unwrap();
//! let summary = rt
//!     .block_on(run(&spec, Arc::new(InMemoryStorage::new()), RunOptions::new(dir.path().join("reports/doc")), Shutdown::never()))
//!     .unwrap();
//! assert_eq!((summary.launched, summary.complete), (3, 3));
//! ```

#![warn(missing_docs)]

mod error;
mod fault;
pub mod gpus;
pub mod pool;
mod process;
pub mod protocol;
mod run;
pub mod spec;

pub use error::{Error, Result};
pub use fault::{FAULT_POINT_ENV, fault_point};
pub use gpus::{CudaDevice, Host};
pub use pool::{Device, DevicePool, Runs, Slot, SlotPlan, plan_slots};
pub use process::{Judge, Outcome, TrialLaunch, TrialLimits, TrialRun, decide, kill_leftovers, run_trial};
pub use run::{
    CACHE_DIR_ENV, Event, NoObserver, Observer, ReportHook, RunOptions, RunSummary, Shutdown, ShutdownLevel, ShutdownTrigger,
    StopReason, TrialTiming, budget_used, next_stratum, run, until_clock,
};
pub use spec::{
    Budget, BuiltinSections, BuiltinTrainer, Compare, DeviceSpec, FieldError, GpuBackend, Heartbeat, NoBuiltinTrainer, Objective,
    Program, ReplicateEval, Spec,
};

/// Re-exported for callers naming the process module's pure decision function.
pub mod process_api {
    pub use crate::process::{Facts, StopCause};
}

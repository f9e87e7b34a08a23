//! The keys of the system attributes nightshift writes on trials (and the one study attribute),
//! named once for every crate that writes or reads them.
//!
//! Values are JSON; what each holds is said on its key. Keys are part of the stored format:
//! renaming one would orphan the attributes of existing studies.

/// Why a trial failed, in words (a string); an out-of-memory failure's starts with `oom`.
pub const FAIL_REASON: &str = "fail_reason";
/// The [`FAIL_REASON`] of a trial stopped by Ctrl-C: it runs again (re-enqueued) and does not count.
pub const FAIL_REASON_INTERRUPTED: &str = "interrupted";
/// What kind of failure it was, when the trial said (a string): [`FAIL_KIND_OOM`] marks a trial
/// that ran out of device memory, which samplers treat as infeasible rather than ignore.
pub const FAIL_KIND: &str = "fail_kind";
/// The [`FAIL_KIND`] of a trial that ran out of (device) memory.
pub const FAIL_KIND_OOM: &str = "oom";
/// The device a trial ran on, e.g. `"cuda:0"` or `"cpu"` (a string).
pub const DEVICE: &str = "device";
/// The worker slot on that device (an integer; older studies may hold a string).
pub const SLOT: &str = "slot";
/// When the trial's process was launched, Unix seconds (a number).
pub const START: &str = "start";
/// When the trial's process ended, Unix seconds (a number).
pub const END: &str = "end";
/// The last step (epoch) the trial reported (an integer).
pub const EPOCHS: &str = "epochs";
/// How the trial's process exited, e.g. `"exit code 0"` or `"signal 9 (SIGKILL)"` (a string).
pub const EXIT: &str = "exit";
/// The trial's metrics by name, from its latest report and then its result (an object).
pub const METRICS: &str = "metrics";
/// Which retry of a failed trial this one is: 1 for the first retry (an integer; absent means 0).
pub const ATTEMPT: &str = "attempt";
/// The number of the trial this one retries (an integer).
pub const RETRY_OF: &str = "retry_of";
/// The trial re-runs an out-of-memory trial that shared its device, and must run alone on one (a bool).
pub const RUN_ALONE: &str = "run_alone";
/// The GP sampler's fitted kernel at this trial's ask (a [`crate::sampler::gp::KernelNote`]: the joint
/// parameters' names, their inverse squared length scales, the kernel scale and the noise variance). The
/// next ask over more than 64 observations starts its fit there, as Optuna's `GPSampler` starts from its
/// previous fit; stored with the trial so that an `ask` in a new process does the same.
pub const GP_KERNEL: &str = "gp_kernel";
/// Study user attribute: the sweep spec the study was run with (the stored spec JSON).
pub const STUDY_SPEC: &str = "spec";
/// A trial's role in a tournament (`compare: {param: …, budget_per_arm: …}`): `"search"` or `"replicate"`
/// (a string). Written in the same atomic step that creates the trial, so every worker counts it at once;
/// re-runs of a trial carry it too, with [`RETRY_OF`].
pub const TOURNAMENT_ROLE: &str = "tournament";
/// A replicate's source: the number of the search trial whose configuration it re-runs (an integer).
pub const REPLICATE_OF: &str = "replicate_of";
/// The seed a trial ran with (`{seed}`, `NIGHTSHIFT_SEED`, the built-in trainer's `--seed`; an integer).
pub const SEED: &str = "seed";
/// Study user attribute: the tournament's arms and budgets (a [`crate::tournament::Tournament`] as JSON).
pub const STUDY_TOURNAMENT: &str = "tournament";

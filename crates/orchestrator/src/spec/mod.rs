//! The sweep spec: one YAML file describing a whole overnight run.
//!
//! Layout: the validated types here; `raw.rs` what serde reads; `parse.rs` the checks that turn one into the
//! other; `duration.rs` durations and clock times; `template.rs` argv templates (`command:`); `devices.rs`
//! the `devices:` section and `--devices`; `builtin.rs` the seam to the built-in trainer; `locate.rs` where a
//! field sits in the file.
//!
//! Parse, then validate: serde reads the YAML into `Raw*` structs (unknown fields are errors),
//! then [`Spec::parse`] checks every value and builds the validated [`Spec`]. Every error names
//! `file:line:column`, the field, and what would be valid.
//!
//! ```yaml
//! study: fmnist-freeze
//! storage: sqlite:///reports/fmnist-freeze/study.db   # default: sqlite:///reports/<study>/study.db
//! objective: {metric: val_accuracy, direction: maximize}
//! sampler: {type: tpe, seed: 42}
//! pruner: {type: median, n_warmup_steps: 1}
//! budget: {trials: 40, timeout: 8h, stop_at: "07:00", target: 0.95, max_consecutive_failures: 5,
//!          trial_timeout: 30m, retries: 1}
//! devices: auto                    # or {cpu: 2} or {gpu: [0, 1], trials_per_device: 2, backend: cuda}
//! command: [python, train.py, --lr, "{learning_rate}"]   # or `trial:` (the built-in trainer)
//! params:
//!   learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
//! heartbeat: {interval: 5s, stale_after: 30s}
//! reenqueue_stale: true
//! kill_grace: 10s
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use nightshift_search::{Direction, ParamValue, PrunerConfig, SamplerConfig, SearchSpace, StudyRecord, Tournament};

use crate::error::{Error, Result};

mod builtin;
mod devices;
mod duration;
mod locate;
mod parse;
mod raw;
mod template;

pub use builtin::{BuiltinSections, BuiltinTrainer, FieldError, NoBuiltinTrainer, ReplicateEval};
pub use devices::{DeviceSpec, GpuBackend, MAX_SLOTS};
pub use duration::{HumanDuration, MAX_DURATION, parse_clock, parse_duration};
pub use parse::{check_study_name, default_storage};
pub use template::{ArgTemplate, BUILTIN_PLACEHOLDERS};

use locate::Locator;

/// A validated sweep spec.
#[derive(Clone, Debug)]
pub struct Spec {
    /// The study's name (also its directory under `reports/`).
    pub study: String,
    /// Storage URL (`sqlite:///relative.db`, `sqlite:////abs.db`, a path, `postgres://…`).
    pub storage: String,
    /// The metric to optimise and its direction.
    pub objective: Objective,
    /// What proposes each trial's parameters.
    pub sampler: SamplerConfig,
    /// The study's seed; `None` lets the caller pick one (stored with the study, so resume agrees).
    pub seed: Option<u64>,
    /// What stops trials early.
    pub pruner: PrunerConfig,
    /// When the sweep stops.
    pub budget: Budget,
    /// Where trials run.
    pub devices: DeviceSpec,
    /// What each trial runs.
    pub program: Program,
    /// An optional `pretrain:` section as written (checked by the [`BuiltinTrainer`]): a backbone the
    /// caller trains once before the sweep.
    pub pretrain: Option<serde_json::Value>,
    /// The parameters searched (`params:`).
    pub space: SearchSpace,
    /// `compare:`: a parameter whose values share the trials equally, or a tournament.
    pub compare: Option<Compare>,
    /// How live trials show they are alive.
    pub heartbeat: Heartbeat,
    /// Re-run the parameters of trials found stale (their orchestrator died) at start-up.
    pub reenqueue_stale: bool,
    /// How long a pruned child may take to exit before SIGTERM, and SIGTERM before SIGKILL.
    pub kill_grace: Duration,
    /// The spec file's directory: relative paths in the spec, and trial commands, start here.
    pub base_dir: PathBuf,
    /// Where the spec came from (a file name), for messages.
    pub origin: String,
    /// The YAML text, kept so the spec can be stored with the study.
    pub text: String,
}

/// What the sweep optimises: `objective: {metric, direction}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    /// The metric's name as trials report it.
    pub metric: String,
    /// Whether higher or lower is better.
    pub direction: Direction,
}

/// When the sweep stops. Timeouts stop *launching*; running trials finish (bounded by `trial_timeout`).
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// Total trials of the study, counting those of earlier runs (resume continues).
    pub trials: u64,
    /// After this long no trial is launched.
    pub timeout: Option<Duration>,
    /// Local wall-clock time (hour, minute) after which no trial is launched.
    pub stop_at: Option<(u32, u32)>,
    /// Stop once a COMPLETE trial reaches this value (≥ when maximising, ≤ when minimising).
    pub target: Option<f64>,
    /// The sweep stops after this many failed trials in a row (the trial program is likely broken).
    pub max_consecutive_failures: u32,
    /// A trial running this long is stopped and fails.
    pub trial_timeout: Option<Duration>,
    /// Re-runs of a trial that died of an infrastructure failure (killed by a signal we did not send).
    pub retries: u32,
}

/// What a trial runs: an argv whose elements may contain placeholders. Never run through a shell.
#[derive(Clone, Debug, PartialEq)]
pub enum Program {
    /// The built-in trainer: the `trial:` section as written, the argv the [`BuiltinTrainer`] made of it, and
    /// how a tournament replicate is evaluated on the test split (when the data has one), and the GPU backends
    /// it was built with.
    Builtin {
        /// The `trial:` section as written.
        trial: serde_json::Value,
        /// What runs each trial.
        argv: Vec<ArgTemplate>,
        /// Added for a tournament replicate, when the data has a test split.
        replicate: Option<ReplicateEval>,
        /// The GPU backends this binary was built with.
        gpu_backends: Vec<GpuBackend>,
    },
    /// Any program (`command:`), with `{param}` placeholders.
    Command {
        /// What runs each trial.
        argv: Vec<ArgTemplate>,
    },
}

impl Program {
    /// The argv template of every trial.
    pub fn argv(&self) -> &[ArgTemplate] {
        match self {
            Program::Builtin { argv, .. } | Program::Command { argv } => argv,
        }
    }

    /// The argv of a tournament replicate: the trial's, plus what evaluates it on the test split.
    pub fn replicate_argv(&self) -> Vec<ArgTemplate> {
        let mut argv = self.argv().to_vec();
        if let Program::Builtin { replicate: Some(eval), .. } = self {
            argv.extend(eval.args.iter().cloned());
        }
        argv
    }

    /// The result metric recorded as a replicate's value instead of the objective, if any.
    pub fn replicate_metric(&self) -> Option<&str> {
        match self {
            Program::Builtin { replicate: Some(eval), .. } => Some(&eval.metric),
            _ => None,
        }
    }

    /// What its trials can run on, for [`crate::pool::plan_slots`].
    pub fn runs(&self) -> crate::pool::Runs {
        match self {
            Program::Builtin { gpu_backends, .. } => crate::pool::Runs::BuiltinTrainer { gpu_backends: gpu_backends.clone() },
            Program::Command { .. } => crate::pool::Runs::AnyDevice,
        }
    }
}

/// `compare: <param>`: every value of the parameter gets an equal share of the trials; or
/// `compare: {param: <param>, budget_per_arm: N, replicate_top: K, seeds: S}`: a tournament.
#[derive(Clone, Debug, PartialEq)]
pub struct Compare {
    /// The compared parameter.
    pub param: String,
    /// Its values (a categorical's choices, an int range's values): the arms.
    pub values: Vec<ParamValue>,
    /// The tournament, for the mapping form.
    pub tournament: Option<Tournament>,
}

/// How live trials show they are alive: `heartbeat: {interval, stale_after}`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Heartbeat {
    /// How often a RUNNING trial's heartbeat is written.
    pub interval: Duration,
    /// A RUNNING trial whose heartbeat is older than this is considered dead.
    pub stale_after: Duration,
}

impl Spec {
    /// What is stored with the study (`spec` user attribute), so `resume` needs only the study name.
    pub fn to_stored(&self) -> serde_json::Value {
        serde_json::json!({"origin": self.origin, "base_dir": self.base_dir.display().to_string(), "yaml": self.text})
    }

    /// Rebuilds a spec from [`Spec::to_stored`]'s value; `trainer` checks a `trial:` section.
    pub fn from_stored(value: &serde_json::Value, trainer: &dyn BuiltinTrainer) -> Result<Self> {
        let field =
            |k: &str| value.get(k).and_then(|v| v.as_str()).ok_or_else(|| Error::Internal(format!("stored spec lacks '{k}'")));
        Self::parse_with(field("yaml")?, field("origin")?, Path::new(field("base_dir")?), trainer)
    }

    /// `file:line:column` of a dotted field (`trial.dataset`), or of its nearest parent found.
    pub fn locate(&self, field: &str) -> String {
        Locator { origin: &self.origin, text: &self.text }.at(field)
    }
}

impl Spec {
    /// Refuses a spec whose direction is not its existing study's: the study's trials were ranked the
    /// other way. `check` says it before `run` would.
    pub fn check_direction(&self, study: &StudyRecord) -> Result<()> {
        if study.direction == self.objective.direction {
            return Ok(());
        }
        Err(Error::Spec {
            location: self.locate("objective.direction"),
            field: "objective.direction".into(),
            message: format!(
                "study '{}' already exists with direction {}, and this spec says {}; use another study name (or \
                 `nightshift delete-study --study-name {}` to start it again)",
                study.name, study.direction, self.objective.direction, study.name
            ),
        })
    }

    /// What this spec's search space changes from `created`, the space its study was created
    /// with, in one line for the user; `None` when nothing. A resumed study keeps its earlier
    /// trials, and the samplers learn from an earlier value only where it fits the new space (a
    /// parameter that some finished trials lack, or hold outside its range, is then sampled on
    /// its own, not jointly with the others).
    pub fn space_changes_since(&self, created: &SearchSpace) -> Option<String> {
        let mut changes: Vec<String> = Vec::new();
        for (name, now) in self.space.iter() {
            match created.get(name) {
                None => changes.push(format!("{name} is new")),
                Some(before) if before != now => changes.push(format!("{name} was {before}, now {now}")),
                Some(_) => {}
            }
        }
        changes.extend(created.names().filter(|name| self.space.get(name).is_none()).map(|name| format!("{name} is gone")));
        (!changes.is_empty()).then(|| {
            format!(
                "the search space differs from the one study '{}' was created with ({}): earlier trials teach the \
                 sampler only where their values fit the new space",
                self.study,
                changes.join("; ")
            )
        })
    }

    /// Problems a run would hit at once, checked on this machine: the command's program exists. Empty when
    /// all is well. (The built-in trainer's paths are its caller's to check.)
    pub fn preflight(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Program::Command { argv } = &self.program {
            let program = argv[0].to_string();
            if !executable_exists(&program, &self.base_dir) {
                problems.push(format!(
                    "{}: field `command`: program '{program}' not found (not on PATH, nor relative to {})",
                    self.locate("command"),
                    self.base_dir.display()
                ));
            } else if program.contains('/') && !is_executable(&self.base_dir.join(&program)) {
                problems.push(format!(
                    "{}: field `command`: program '{program}' is not executable: `chmod +x {program}`, or name its \
                     interpreter first ([python3, {program}, …])",
                    self.locate("command"),
                ));
            }
            if let Some(script) = missing_script(argv, &self.base_dir) {
                problems.push(format!(
                    "{}: field `command`: script '{script}' not found (relative to {}, where trials run)",
                    self.locate("command"),
                    self.base_dir.display()
                ));
            }
        }
        problems
    }
}

/// Whether a file has an execute bit (else every trial fails with "Permission denied").
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o111 != 0)
}

/// The script an interpreter is given (`python3 -u train.py …`: the first argument that is not an
/// option, when it is a plain file name with a script's extension) if it does not exist. Every
/// trial would fail on it; `python -m module` and `-c code` name no file.
fn missing_script(argv: &[ArgTemplate], base_dir: &Path) -> Option<String> {
    const SCRIPT_EXTENSIONS: [&str; 10] = ["py", "sh", "bash", "R", "r", "jl", "pl", "rb", "js", "mjs"];
    let first = argv[1..].iter().find(|a| {
        let text = a.to_string();
        !text.starts_with('-') || matches!(text.as_str(), "-m" | "-c" | "-e")
    })?;
    if first.vars().next().is_some() {
        return None;
    }
    let name = first.to_string();
    let is_script = Path::new(&name).extension().and_then(|e| e.to_str()).is_some_and(|e| SCRIPT_EXTENSIONS.contains(&e));
    (is_script && !base_dir.join(&name).is_file()).then_some(name)
}

/// A program name as `Command` resolves it: a path (relative to `base_dir`) or a name on PATH.
fn executable_exists(program: &str, base_dir: &Path) -> bool {
    if program.contains('/') {
        return base_dir.join(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests;

//! The sweep spec: one YAML file describing a whole overnight run.
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

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nightshift_search::space::{locate_key, strip_yaml_location, yaml_location};
use nightshift_search::{Direction, Distribution, ParamValue, Params, PrunerConfig, SamplerConfig, SearchSpace};
use serde::Deserialize;

use crate::error::{Error, Result};

/// Placeholders a `command:` may use besides the parameters.
pub const BUILTIN_PLACEHOLDERS: [&str; 3] = ["trial_number", "trial_dir", "device"];

/// A validated sweep spec.
#[derive(Clone, Debug)]
pub struct Spec {
    pub study: String,
    /// Storage URL (`sqlite:///relative.db`, `sqlite:////abs.db`, a path, `postgres://…`).
    pub storage: String,
    pub objective: Objective,
    pub sampler: SamplerConfig,
    /// The study's seed; `None` lets the caller pick one (stored with the study, so resume agrees).
    pub seed: Option<u64>,
    pub pruner: PrunerConfig,
    pub budget: Budget,
    pub devices: DeviceSpec,
    pub program: Program,
    /// An optional `pretrain:` section as written (checked by the [`BuiltinTrainer`]): a backbone the
    /// caller trains once before the sweep.
    pub pretrain: Option<serde_json::Value>,
    pub space: SearchSpace,
    pub compare: Option<Compare>,
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

#[derive(Clone, Debug, PartialEq)]
pub struct Objective {
    pub metric: String,
    pub direction: Direction,
}

/// When the sweep stops. Timeouts stop *launching*; running trials finish (bounded by `trial_timeout`).
#[derive(Clone, Debug, PartialEq)]
pub struct Budget {
    /// Total trials of the study, counting those of earlier runs (resume continues).
    pub trials: u64,
    pub timeout: Option<Duration>,
    /// Local wall-clock time (hour, minute) after which no trial is launched.
    pub stop_at: Option<(u32, u32)>,
    /// Stop once a COMPLETE trial reaches this value (≥ when maximising, ≤ when minimising).
    pub target: Option<f64>,
    pub max_consecutive_failures: u32,
    pub trial_timeout: Option<Duration>,
    /// Re-runs of a trial that died of an infrastructure failure (killed by a signal we did not send).
    pub retries: u32,
}

/// Which devices trials run on.
#[derive(Clone, Debug, PartialEq)]
pub enum DeviceSpec {
    /// CUDA GPUs found by `nvidia-smi -L` (one trial each), else CPU slots.
    Auto,
    Cpu {
        slots: usize,
    },
    Gpu {
        indices: Vec<u32>,
        trials_per_device: usize,
        backend: GpuBackend,
    },
}

impl DeviceSpec {
    /// The command-line form (`--devices`): `auto`, `cpu[:N]`, `gpu:0,1` (CUDA) or `wgpu:0`, with
    /// `trials_per_device` (from `--trials-per-device`) for GPUs; `None` keeps one trial per GPU.
    pub fn from_flag(text: &str, trials_per_device: Option<usize>) -> std::result::Result<Self, String> {
        const VALID: &str = "valid: auto, cpu, cpu:N, gpu:0,1 (CUDA), wgpu:0";
        let (kind, rest) = text.split_once(':').map_or((text, None), |(k, r)| (k, Some(r)));
        let per = trials_per_device.unwrap_or(1);
        if per == 0 {
            return Err("--trials-per-device must be at least 1".into());
        }
        let positive = |r: &str| r.trim().parse::<usize>().ok().filter(|n| *n >= 1);
        match (kind.trim(), rest) {
            ("auto", None) if trials_per_device.is_none() => Ok(DeviceSpec::Auto),
            ("cpu", None) => Ok(DeviceSpec::Cpu { slots: per }),
            ("cpu", Some(n)) => positive(n)
                .map(|n| DeviceSpec::Cpu { slots: n * per })
                .ok_or_else(|| format!("'{text}': the number of CPU slots must be a positive integer ({VALID})")),
            (kind @ ("gpu" | "cuda" | "wgpu"), Some(list)) => {
                let indices: Vec<u32> =
                    list.split(',')
                        .map(|i| i.trim().parse::<u32>())
                        .collect::<std::result::Result<_, _>>()
                        .map_err(|_| format!("'{text}': expected a comma-separated list of GPU indices ({VALID})"))?;
                let mut sorted = indices.clone();
                sorted.sort_unstable();
                sorted.dedup();
                if sorted.len() != indices.len() {
                    return Err(format!("'{text}': a GPU index is listed twice"));
                }
                let backend = if kind == "wgpu" { GpuBackend::Wgpu } else { GpuBackend::Cuda };
                Ok(DeviceSpec::Gpu { indices, trials_per_device: per, backend })
            }
            _ => Err(format!("unknown device list '{text}' ({VALID}; --trials-per-device needs an explicit list)")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GpuBackend {
    Cuda,
    Wgpu,
}

/// What a trial runs: an argv whose elements may contain placeholders. Never run through a shell.
#[derive(Clone, Debug, PartialEq)]
pub enum Program {
    /// The built-in trainer: the `trial:` section as written, and the argv the [`BuiltinTrainer`] made of it.
    Builtin { trial: serde_json::Value, argv: Vec<ArgTemplate> },
    /// Any program (`command:`), with `{param}` placeholders.
    Command { argv: Vec<ArgTemplate> },
}

impl Program {
    /// The argv template of every trial.
    pub fn argv(&self) -> &[ArgTemplate] {
        match self {
            Program::Builtin { argv, .. } | Program::Command { argv } => argv,
        }
    }
}

/// The built-in trainer as a spec sees it. The binary implements it (it knows the trainer); the orchestrator
/// only runs the program it returns, so it knows neither the trainer's flags nor its hyperparameters.
pub trait BuiltinTrainer {
    /// Validates the `trial:` section (with `pretrain:`, when given) and the search space's parameters
    /// against what the trainer accepts; returns the argv of one trial, which may use the placeholders
    /// [`BUILTIN_PLACEHOLDERS`].
    fn trial_program(&self, sections: &BuiltinSections<'_>) -> std::result::Result<Vec<ArgTemplate>, FieldError>;

    /// Validates a `pretrain:` section.
    fn check_pretrain(&self, pretrain: &serde_json::Value, base_dir: &Path) -> std::result::Result<(), FieldError>;
}

/// What a [`BuiltinTrainer`] checks: the sections as written, the search space, and the spec's directory
/// (relative paths start there).
pub struct BuiltinSections<'a> {
    pub trial: &'a serde_json::Value,
    pub pretrain: Option<&'a serde_json::Value>,
    pub space: &'a SearchSpace,
    pub base_dir: &'a Path,
}

/// A refused field: its dotted path in the spec (`trial.arch`, `params.freeze_depth`), which locates it in
/// the file, and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// For programs without the built-in trainer: `trial:` and `pretrain:` are refused.
pub struct NoBuiltinTrainer;

impl NoBuiltinTrainer {
    fn refuse(field: &str) -> FieldError {
        FieldError { field: field.into(), message: "the built-in trainer is not available here; give `command:`".into() }
    }
}

impl BuiltinTrainer for NoBuiltinTrainer {
    fn trial_program(&self, _: &BuiltinSections<'_>) -> std::result::Result<Vec<ArgTemplate>, FieldError> {
        Err(Self::refuse("trial"))
    }

    fn check_pretrain(&self, _: &serde_json::Value, _: &Path) -> std::result::Result<(), FieldError> {
        Err(Self::refuse("pretrain"))
    }
}

/// One argv element with `{name}` placeholders (`{{` and `}}` are literal braces).
#[derive(Clone, Debug, PartialEq)]
pub struct ArgTemplate {
    pieces: Vec<Piece>,
}

#[derive(Clone, Debug, PartialEq)]
enum Piece {
    Lit(String),
    Var(String),
}

/// `compare: <param>`: every value of the parameter gets an equal share of the trials.
#[derive(Clone, Debug, PartialEq)]
pub struct Compare {
    pub param: String,
    pub values: Vec<ParamValue>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Heartbeat {
    pub interval: Duration,
    /// A RUNNING trial whose heartbeat is older than this is considered dead.
    pub stale_after: Duration,
}

// ---------------------------------------------------------------------------------------------
// Raw structs: what serde reads.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    study: String,
    #[serde(default)]
    storage: Option<String>,
    objective: RawObjective,
    #[serde(default)]
    sampler: Option<serde_yaml::Value>,
    #[serde(default)]
    pruner: Option<PrunerConfig>,
    budget: RawBudget,
    #[serde(default)]
    devices: Option<serde_yaml::Value>,
    #[serde(default)]
    trial: Option<serde_yaml::Value>,
    #[serde(default)]
    command: Option<serde_yaml::Value>,
    #[serde(default)]
    pretrain: Option<serde_yaml::Value>,
    params: serde_yaml::Value,
    #[serde(default)]
    compare: Option<String>,
    #[serde(default)]
    heartbeat: Option<RawHeartbeat>,
    #[serde(default)]
    reenqueue_stale: Option<bool>,
    #[serde(default)]
    kill_grace: Option<HumanDuration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawObjective {
    metric: String,
    direction: Direction,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    trials: u64,
    #[serde(default)]
    timeout: Option<HumanDuration>,
    #[serde(default)]
    stop_at: Option<String>,
    #[serde(default)]
    target: Option<f64>,
    #[serde(default)]
    max_consecutive_failures: Option<u32>,
    #[serde(default)]
    trial_timeout: Option<HumanDuration>,
    #[serde(default)]
    retries: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeartbeat {
    #[serde(default)]
    interval: Option<HumanDuration>,
    #[serde(default)]
    stale_after: Option<HumanDuration>,
}

/// `90s`, `30m`, `8h`, `1h30m`, `250ms`, or a bare number of seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let value = serde_yaml::Value::deserialize(d)?;
        let parsed = match &value {
            serde_yaml::Value::Number(n) => n.as_f64().and_then(seconds),
            serde_yaml::Value::String(s) => parse_duration(s),
            _ => None,
        };
        parsed.map(HumanDuration).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid duration {}: use a number with a unit, e.g. 90s, 30m, 8h, 1h30m or 500ms (at most 100 years)",
                yaml_short(&value)
            ))
        })
    }
}

/// The longest duration a spec may give: far beyond any sweep, yet small enough that what is computed from it
/// (`Instant + timeout`, `2 × heartbeat.interval`) cannot overflow and panic.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 86_400);

/// A non-negative number of seconds up to [`MAX_DURATION`] (`Duration::from_secs_f64` panics beyond `u64` seconds).
fn seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok().filter(|d| *d <= MAX_DURATION)
}

/// Parses `90s`, `30m`, `8h`, `2d`, `1h30m`, `250ms`, `1.5h` or a bare number of seconds, up to [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    if let Ok(secs) = text.parse::<f64>() {
        return seconds(secs);
    }
    let mut total = 0.0;
    let mut rest = text;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let number: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match rest[..unit_len].trim() {
            "ms" => 0.001,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            "d" => 86400.0,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    seconds(total)
}

/// Parses a local clock time `HH:MM` (24-hour).
pub fn parse_clock(text: &str) -> Option<(u32, u32)> {
    let (h, m) = text.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && text.trim().len() <= 5).then_some((h, m))
}

// ---------------------------------------------------------------------------------------------

/// Finds where fields live in the spec text, for error messages.
struct Locator<'a> {
    origin: &'a str,
    text: &'a str,
}

impl Locator<'_> {
    /// `file:line:column` of a dotted field path (`budget.timeout`), falling back to the nearest
    /// parent that is found, then to the file name.
    fn at(&self, path: &str) -> String {
        let mut from_line = 0usize;
        let mut found = None;
        for segment in path.split('.') {
            let rest: String = self.text.lines().skip(from_line).collect::<Vec<_>>().join("\n");
            match locate_key(&rest, segment) {
                Some((line, col)) => {
                    from_line += line - 1;
                    found = Some((from_line + 1, col));
                }
                None => break,
            }
        }
        match found {
            Some((line, col)) => format!("{}:{line}:{col}", self.origin),
            None => self.origin.to_string(),
        }
    }

    fn err(&self, field: &str, message: impl Into<String>) -> Error {
        Error::Spec { location: self.at(field), field: field.to_string(), message: message.into() }
    }

    fn field_err(&self, e: FieldError) -> Error {
        self.err(&e.field, e.message)
    }
}

impl Spec {
    /// Reads and validates a spec file; `trainer` checks a `trial:` section.
    pub fn from_file(path: &Path, trainer: &dyn BuiltinTrainer) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read spec", path, e))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
        let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
        Self::parse_with(&text, &path.display().to_string(), &base_dir, trainer)
    }

    /// Validates the text of a spec with `command:`; `origin` names it in errors and `base_dir` anchors
    /// relative paths.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Self> {
        Self::parse_with(text, origin, base_dir, &NoBuiltinTrainer)
    }

    /// Validates spec text; `trainer` checks a `trial:` section.
    pub fn parse_with(text: &str, origin: &str, base_dir: &Path, trainer: &dyn BuiltinTrainer) -> Result<Self> {
        let loc = Locator { origin, text };
        let syntax = |e: serde_yaml::Error| Error::Spec {
            location: yaml_location(origin, text, &e),
            field: String::new(),
            message: strip_yaml_location(&e),
        };
        let document: serde_yaml::Value = serde_yaml::from_str(text).map_err(syntax)?;
        if !document.is_mapping() {
            return Err(loc.err(
                "",
                format!(
                    "a spec is a mapping with study, objective, budget, params and trial or command; found {}",
                    yaml_short(&document)
                ),
            ));
        }
        let raw: RawSpec = serde_yaml::from_str(text).map_err(|e| {
            let mut err = syntax(e);
            if let Error::Spec { message, .. } = &mut err
                && message.contains("unknown field")
            {
                message.push_str(" (see docs/protocol.md for the spec format)");
            }
            err
        })?;

        let study = raw.study.trim().to_string();
        check_study_name(&study).map_err(|message| loc.err("study", message))?;
        let storage = raw.storage.clone().unwrap_or_else(|| default_storage(&study));
        if storage.trim().is_empty() {
            return Err(loc.err("storage", "empty storage URL (e.g. sqlite:///reports/<study>/study.db, or leave it out)"));
        }
        if raw.objective.metric.trim().is_empty() {
            return Err(loc.err("objective.metric", "empty metric name (e.g. val_accuracy)"));
        }
        let objective = Objective { metric: raw.objective.metric.trim().to_string(), direction: raw.objective.direction };

        let (sampler, seed) = parse_sampler(raw.sampler.as_ref(), &loc)?;
        let pruner = raw.pruner.clone().unwrap_or_default();
        let budget = parse_budget(&raw.budget, &loc)?;
        let devices = parse_devices(raw.devices.as_ref(), &loc)?;

        let locate_param = |name: &str| if name.is_empty() { loc.at("params") } else { loc.at(&format!("params.{name}")) };
        let space = SearchSpace::from_yaml_value(&raw.params, &locate_param).map_err(|e| match e {
            nightshift_search::Error::Space { location, param, message } => Error::Spec {
                location: if location.is_empty() { loc.at("params") } else { location },
                field: param.map(|p| format!("params.{p}")).unwrap_or_else(|| "params".into()),
                message,
            },
            other => loc.err("params", other.to_string()),
        })?;

        let pretrain = match &raw.pretrain {
            None => None,
            Some(value) => {
                let json = section_json(value, "pretrain", &loc)?;
                trainer.check_pretrain(&json, base_dir).map_err(|e| loc.field_err(e))?;
                Some(json)
            }
        };

        let program = match (&raw.trial, &raw.command) {
            (Some(_), Some(_)) => return Err(loc.err("command", "give either `trial:` (the built-in trainer) or `command:` (any program), not both")),
            (None, None) => return Err(loc.err("", "missing `trial:` (the built-in fine-tuning trainer) or `command:` (an argv list, e.g. [python, train.py, --lr, \"{learning_rate}\"])")),
            (Some(trial), None) => {
                let trial = section_json(trial, "trial", &loc)?;
                let sections = BuiltinSections { trial: &trial, pretrain: pretrain.as_ref(), space: &space, base_dir };
                let argv = trainer.trial_program(&sections).map_err(|e| loc.field_err(e))?;
                Program::Builtin { trial, argv }
            }
            (None, Some(command)) => parse_command(command, &space, &loc)?,
        };

        let compare = match &raw.compare {
            None => None,
            Some(name) => Some(parse_compare(name, &space, &loc)?),
        };

        let heartbeat = {
            let interval = raw.heartbeat.as_ref().and_then(|h| h.interval).map(|d| d.0).unwrap_or(Duration::from_secs(5));
            let stale_after = raw.heartbeat.as_ref().and_then(|h| h.stale_after).map(|d| d.0).unwrap_or(Duration::from_secs(30));
            if interval < Duration::from_millis(50) {
                return Err(loc.err("heartbeat.interval", "must be at least 50ms"));
            }
            if stale_after < interval * 2 {
                return Err(loc.err(
                    "heartbeat.stale_after",
                    format!("must be at least twice heartbeat.interval ({:?}), or live trials would be declared dead", interval),
                ));
            }
            Heartbeat { interval, stale_after }
        };
        let kill_grace = raw.kill_grace.map(|d| d.0).unwrap_or(Duration::from_secs(10));

        Ok(Spec {
            study,
            storage,
            objective,
            sampler,
            seed,
            pruner,
            budget,
            devices,
            program,
            pretrain,
            space,
            compare,
            heartbeat,
            reenqueue_stale: raw.reenqueue_stale.unwrap_or(false),
            kill_grace,
            base_dir: base_dir.to_path_buf(),
            origin: origin.to_string(),
            text: text.to_string(),
        })
    }

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
            }
        }
        problems
    }
}

/// A program name as `Command` resolves it: a path (relative to `base_dir`) or a name on PATH.
fn executable_exists(program: &str, base_dir: &Path) -> bool {
    if program.contains('/') {
        return base_dir.join(program).is_file();
    }
    std::env::var_os("PATH").is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Checks a study name that names a directory (`reports/<study>/`): ASCII letters, digits, `-`,
/// `_` and `.`, not starting with `.`; so never `..`, a `/` or an absolute path.
pub fn check_study_name(name: &str) -> std::result::Result<(), String> {
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(format!("'{name}' is not a valid study name: use letters, digits, '-', '_' and '.' (it names reports/<study>/)"))
    }
}

/// `sqlite:///reports/<study>/study.db`, relative to the working directory.
pub fn default_storage(study: &str) -> String {
    format!("sqlite:///reports/{study}/study.db")
}

fn parse_sampler(value: Option<&serde_yaml::Value>, loc: &Locator<'_>) -> Result<(SamplerConfig, Option<u64>)> {
    let Some(value) = value else { return Ok((SamplerConfig::default(), None)) };
    let serde_yaml::Value::Mapping(map) = value else {
        return Err(
            loc.err("sampler", format!("expected a mapping such as {{type: tpe, seed: 42}}, found {}", yaml_short(value)))
        );
    };
    let mut map = map.clone();
    // The seed belongs to the study, so every process (and every resume) agrees on it.
    let seed = match map.remove("seed") {
        None | Some(serde_yaml::Value::Null) => None,
        Some(serde_yaml::Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(other) => {
            return Err(loc.err("sampler.seed", format!("expected a non-negative integer, found {}", yaml_short(&other))));
        }
    };
    if !map.contains_key("type") {
        return Err(loc.err("sampler", "missing `type` (valid: auto, tpe, gp, random, grid, qmc)"));
    }
    let config: SamplerConfig = serde_yaml::from_value(serde_yaml::Value::Mapping(map)).map_err(|e| {
        loc.err(
            "sampler",
            format!("{} (valid types: auto, tpe, gp, random, grid, qmc, with their options)", strip_yaml_location(&e)),
        )
    })?;
    Ok((config, seed))
}

fn parse_budget(raw: &RawBudget, loc: &Locator<'_>) -> Result<Budget> {
    if raw.trials == 0 {
        return Err(loc.err("budget.trials", "must be at least 1"));
    }
    if let Some(t) = raw.timeout
        && t.0.is_zero()
    {
        return Err(loc.err("budget.timeout", "must be positive (e.g. 8h)"));
    }
    if let Some(t) = raw.trial_timeout
        && t.0.is_zero()
    {
        return Err(loc.err("budget.trial_timeout", "must be positive (e.g. 30m)"));
    }
    let stop_at = match &raw.stop_at {
        None => None,
        Some(s) => Some(
            parse_clock(s)
                .ok_or_else(|| loc.err("budget.stop_at", format!("'{s}' is not a local time: use HH:MM, e.g. \"07:00\"")))?,
        ),
    };
    if let Some(t) = raw.target
        && !t.is_finite()
    {
        return Err(loc.err("budget.target", "must be a finite number"));
    }
    let max_consecutive_failures = raw.max_consecutive_failures.unwrap_or(5);
    if max_consecutive_failures == 0 {
        return Err(loc.err("budget.max_consecutive_failures", "must be at least 1"));
    }
    Ok(Budget {
        trials: raw.trials,
        timeout: raw.timeout.map(|d| d.0),
        stop_at,
        target: raw.target,
        max_consecutive_failures,
        trial_timeout: raw.trial_timeout.map(|d| d.0),
        retries: raw.retries.unwrap_or(0),
    })
}

/// The most trial slots a spec may ask for (`cpu` or `gpu` × `trials_per_device`): far more than any machine
/// runs at once, and it keeps a slip such as `cpu: 1e12` from overflowing or allocating a pool that size.
pub const MAX_SLOTS: usize = 1024;

fn parse_devices(value: Option<&serde_yaml::Value>, loc: &Locator<'_>) -> Result<DeviceSpec> {
    const VALID: &str = "valid: auto, {cpu: N}, or {gpu: [0, 1], trials_per_device: K, backend: cuda|wgpu}";
    let Some(value) = value else { return Ok(DeviceSpec::Auto) };
    let map = match value {
        serde_yaml::Value::Null => return Ok(DeviceSpec::Auto),
        serde_yaml::Value::String(s) if s == "auto" => return Ok(DeviceSpec::Auto),
        serde_yaml::Value::String(s) if s == "cpu" => return Ok(DeviceSpec::Cpu { slots: 1 }),
        serde_yaml::Value::Mapping(m) => m,
        other => return Err(loc.err("devices", format!("unexpected {} ({VALID})", yaml_short(other)))),
    };
    let get_usize = |key: &str| -> Result<Option<usize>> {
        match map.get(key) {
            None => Ok(None),
            Some(serde_yaml::Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=MAX_SLOTS as u64).contains(&n)) => {
                Ok(n.as_u64().map(|n| n as usize))
            }
            Some(other) => Err(loc.err(
                &format!("devices.{key}"),
                format!("expected a positive integer up to {MAX_SLOTS}, found {}", yaml_short(other)),
            )),
        }
    };
    for key in map.keys() {
        let name = key.as_str().unwrap_or("");
        if !["cpu", "gpu", "trials_per_device", "backend"].contains(&name) {
            return Err(loc.err("devices", format!("unknown key {} ({VALID})", yaml_short(key))));
        }
    }
    match (map.get("cpu"), map.get("gpu")) {
        (Some(_), Some(_)) => Err(loc.err("devices", format!("give cpu or gpu, not both ({VALID})"))),
        (Some(_), None) => {
            if map.contains_key("backend") {
                return Err(loc.err("devices.backend", "only meaningful with gpu"));
            }
            let (cpu, per) = (get_usize("cpu")?.unwrap_or(1), get_usize("trials_per_device")?.unwrap_or(1));
            if cpu * per > MAX_SLOTS {
                return Err(loc.err("devices", format!("cpu × trials_per_device = {} slots, at most {MAX_SLOTS}", cpu * per)));
            }
            Ok(DeviceSpec::Cpu { slots: cpu * per })
        }
        (None, Some(gpu)) => {
            let indices: Vec<u32> = match gpu {
                serde_yaml::Value::Sequence(items) if !items.is_empty() => items
                    .iter()
                    .map(|i| i.as_u64().and_then(|i| u32::try_from(i).ok()))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| loc.err("devices.gpu", "expected a list of GPU indices, e.g. [0, 1]"))?,
                // An index beyond u32 is an error, not truncated onto another GPU.
                serde_yaml::Value::Number(n) if n.as_u64().is_some_and(|i| u32::try_from(i).is_ok()) => {
                    vec![n.as_u64().unwrap() as u32]
                }
                other => {
                    return Err(loc.err(
                        "devices.gpu",
                        format!("expected a list of GPU indices such as [0, 1], found {}", yaml_short(other)),
                    ));
                }
            };
            let mut sorted = indices.clone();
            sorted.sort_unstable();
            sorted.dedup();
            if sorted.len() != indices.len() {
                return Err(loc.err("devices.gpu", "a GPU index is listed twice"));
            }
            let backend = match map.get("backend").map(|b| b.as_str()) {
                None | Some(Some("cuda")) => GpuBackend::Cuda,
                Some(Some("wgpu")) => GpuBackend::Wgpu,
                Some(_) => return Err(loc.err("devices.backend", "valid: cuda, wgpu")),
            };
            let per = get_usize("trials_per_device")?.unwrap_or(1);
            if indices.len() * per > MAX_SLOTS {
                let slots = indices.len() * per;
                return Err(loc.err("devices", format!("gpu × trials_per_device = {slots} slots, at most {MAX_SLOTS}")));
            }
            Ok(DeviceSpec::Gpu { indices, trials_per_device: per, backend })
        }
        (None, None) => Err(loc.err("devices", format!("missing cpu or gpu ({VALID})"))),
    }
}

/// A `trial:` or `pretrain:` section as JSON, the form the [`BuiltinTrainer`] reads.
fn section_json(value: &serde_yaml::Value, field: &str, loc: &Locator<'_>) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| loc.err(field, format!("cannot be represented as JSON: {e}")))
}

fn parse_command(value: &serde_yaml::Value, space: &SearchSpace, loc: &Locator<'_>) -> Result<Program> {
    let serde_yaml::Value::Sequence(items) = value else {
        return Err(loc.err(
            "command",
            format!("expected an argv list such as [python, train.py, --lr, \"{{learning_rate}}\"], found {}", yaml_short(value)),
        ));
    };
    if items.is_empty() {
        return Err(loc.err("command", "empty argv: name at least the program"));
    }
    let mut argv = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = match item {
            serde_yaml::Value::String(s) => s.clone(),
            serde_yaml::Value::Number(n) => n.to_string(),
            serde_yaml::Value::Bool(b) => b.to_string(),
            // `{lr}` unquoted in a YAML flow list is a one-key mapping with a null value: take it as meant.
            serde_yaml::Value::Mapping(m)
                if m.len() == 1 && m.values().all(serde_yaml::Value::is_null) && m.keys().all(|k| k.is_string()) =>
            {
                format!("{{{}}}", m.keys().next().and_then(|k| k.as_str()).unwrap_or_default())
            }
            other => return Err(loc.err("command", format!("argument {i} must be a string, found {}", yaml_short(other)))),
        };
        let template = ArgTemplate::parse(&text).map_err(|m| loc.err("command", format!("argument {i} ({text:?}): {m}")))?;
        for var in template.vars() {
            if space.get(var).is_none() && !BUILTIN_PLACEHOLDERS.contains(&var) {
                let mut valid: Vec<&str> = space.names().collect();
                valid.extend(BUILTIN_PLACEHOLDERS);
                return Err(
                    loc.err("command", format!("unknown placeholder {{{var}}} in argument {i} (valid: {})", valid.join(", ")))
                );
            }
        }
        argv.push(template);
    }
    if argv[0].vars().next().is_some() {
        return Err(loc.err("command", "the program (argument 0) cannot be a placeholder"));
    }
    Ok(Program::Command { argv })
}

fn parse_compare(name: &str, space: &SearchSpace, loc: &Locator<'_>) -> Result<Compare> {
    let Some(dist) = space.get(name) else {
        return Err(
            loc.err("compare", format!("'{name}' is not a parameter (valid: {})", space.names().collect::<Vec<_>>().join(", ")))
        );
    };
    let values = match dist {
        Distribution::Categorical { choices } => choices.clone(),
        Distribution::Int { low, high, step, .. } if (high - low) / step < 64 => {
            (0..=(high - low) / step).map(|k| ParamValue::Int(low + k * step)).collect()
        }
        _ => {
            return Err(
                loc.err("compare", format!("'{name}' must be categorical or an int with at most 64 values to compare strata"))
            );
        }
    };
    Ok(Compare { param: name.to_string(), values })
}

impl ArgTemplate {
    /// Text taken as it is (braces included).
    pub fn literal(text: impl Into<String>) -> Self {
        Self { pieces: vec![Piece::Lit(text.into())] }
    }

    /// One placeholder, e.g. `{trial_dir}`.
    pub fn placeholder(name: impl Into<String>) -> Self {
        Self { pieces: vec![Piece::Var(name.into())] }
    }

    /// Parses `--lr={learning_rate}`; `{{`/`}}` are literal braces.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut pieces = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) => name.push(c),
                            None => return Err("unclosed '{' (write {{ for a literal brace)".into()),
                        }
                    }
                    if name.trim().is_empty() {
                        return Err("empty placeholder {}".into());
                    }
                    if !lit.is_empty() {
                        pieces.push(Piece::Lit(std::mem::take(&mut lit)));
                    }
                    pieces.push(Piece::Var(name.trim().to_string()));
                }
                '}' => return Err("unmatched '}' (write }} for a literal brace)".into()),
                c => lit.push(c),
            }
        }
        if !lit.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Lit(lit));
        }
        Ok(Self { pieces })
    }

    /// The placeholder names it uses.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.pieces.iter().filter_map(|p| match p {
            Piece::Var(v) => Some(v.as_str()),
            Piece::Lit(_) => None,
        })
    }

    /// Substitutes parameters first, then the built-in placeholders (`vars`).
    pub fn render(&self, params: &Params, vars: &BTreeMap<&str, String>) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Lit(s) => out.push_str(s),
                Piece::Var(v) => match params.get(v) {
                    Some(value) => out.push_str(&value.to_string()),
                    None => out.push_str(vars.get(v.as_str()).map(String::as_str).unwrap_or_default()),
                },
            }
        }
        out
    }
}

impl fmt::Display for ArgTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for piece in &self.pieces {
            match piece {
                Piece::Lit(s) => f.write_str(&s.replace('{', "{{").replace('}', "}}"))?,
                Piece::Var(v) => write!(f, "{{{v}}}")?,
            }
        }
        Ok(())
    }
}

fn yaml_short(value: &serde_yaml::Value) -> String {
    match value {
        serde_yaml::Value::Null => "nothing".into(),
        serde_yaml::Value::Bool(b) => format!("`{b}`"),
        serde_yaml::Value::Number(n) => format!("`{n}`"),
        serde_yaml::Value::String(s) => format!("\"{s}\""),
        serde_yaml::Value::Sequence(_) => "a list".into(),
        serde_yaml::Value::Mapping(_) => "a mapping".into(),
        serde_yaml::Value::Tagged(_) => "a tagged value".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
study: demo
objective: {metric: val_accuracy, direction: maximize}
sampler: {type: random, seed: 7}
budget: {trials: 12, timeout: 1h30m, stop_at: \"07:00\", trial_timeout: 90s}
devices: {cpu: 2}
command: [python3, train.py, --lr, \"{lr}\", \"--k={k}\", {opt}, \"{{literal}}\"]
params:
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  k: {type: int, low: 0, high: 3}
  opt: {type: categorical, choices: [adam, sgd]}
compare: k
";

    fn parse(text: &str) -> Result<Spec> {
        Spec::parse(text, "spec.yaml", Path::new("/base"))
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("spec should be rejected").to_string()
    }

    #[test]
    fn a_full_spec_validates() {
        let spec = parse(GOOD).unwrap();
        assert_eq!(spec.study, "demo");
        assert_eq!(spec.storage, "sqlite:///reports/demo/study.db");
        assert_eq!(spec.seed, Some(7));
        assert_eq!(spec.sampler, SamplerConfig::Random);
        assert_eq!(spec.budget.timeout, Some(Duration::from_secs(5400)));
        assert_eq!(spec.budget.stop_at, Some((7, 0)));
        assert_eq!(spec.budget.trial_timeout, Some(Duration::from_secs(90)));
        assert_eq!(spec.budget.max_consecutive_failures, 5);
        assert_eq!(spec.devices, DeviceSpec::Cpu { slots: 2 });
        assert_eq!(spec.compare.as_ref().unwrap().values.len(), 4);
        let Program::Command { argv } = &spec.program else { panic!("command expected") };
        let params: Params = [
            ("lr".to_string(), ParamValue::Float(0.01)),
            ("k".to_string(), ParamValue::Int(2)),
            ("opt".to_string(), ParamValue::Str("sgd".into())),
        ]
        .into();
        let rendered: Vec<String> = argv.iter().map(|a| a.render(&params, &BTreeMap::new())).collect();
        assert_eq!(rendered, ["python3", "train.py", "--lr", "0.01", "--k=2", "sgd", "{literal}"]);
        let again = Spec::from_stored(&spec.to_stored(), &NoBuiltinTrainer).unwrap();
        assert_eq!(again.space, spec.space);
    }

    #[test]
    fn durations_and_clock_times() {
        assert_eq!(parse_duration("8h"), Some(Duration::from_secs(8 * 3600)));
        assert_eq!(parse_duration("30m"), Some(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("12"), Some(Duration::from_secs(12)));
        assert_eq!(parse_duration("8x"), None);
        assert_eq!(parse_duration("h"), None);
        // Found with the `spec` fuzz target's harness: these panicked in `Duration::from_secs_f64`.
        assert_eq!(parse_duration("1e300"), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
        assert_eq!(parse_duration("-1"), None);
        assert_eq!(parse_duration("NaN"), None);
        assert_eq!(parse_duration("36500d"), Some(MAX_DURATION.min(Duration::from_secs(36_500 * 86_400))));
        assert_eq!(parse_duration("36600d"), None);
        assert_eq!(parse_clock("07:00"), Some((7, 0)));
        assert_eq!(parse_clock("23:59"), Some((23, 59)));
        assert_eq!(parse_clock("24:00"), None);
        assert_eq!(parse_clock("7am"), None);
    }

    #[test]
    fn durations_beyond_100_years_are_errors_not_panics() {
        // Inputs found with the `spec` fuzz target's harness; each panicked before (`Duration::from_secs_f64`
        // out of range, or `interval * 2` overflowing).
        for (text, line) in [
            (GOOD.replace("timeout: 1h30m", "timeout: 1e300"), 4),
            (GOOD.replace("timeout: 1h30m", "timeout: 99999999999999999999d"), 4),
            (format!("{GOOD}heartbeat: {{interval: 1.0e19}}\n"), 12),
        ] {
            let e = err(&text);
            assert!(e.contains(&format!("spec.yaml:{line}:")) && e.contains("at most 100 years"), "{e}");
        }
        let spec = parse(&GOOD.replace("timeout: 1h30m", "timeout: 36500d")).unwrap();
        assert_eq!(spec.budget.timeout, Some(MAX_DURATION));
    }

    #[test]
    fn errors_name_the_line_and_field() {
        let e = err(&GOOD.replace("timeout: 1h30m", "timeout: 8 hours"));
        assert!(e.starts_with("spec.yaml:4:"), "{e}");
        assert!(e.contains("invalid duration") && e.contains("8h"), "{e}");

        let e = err(&GOOD.replace("devices: {cpu: 2}", "devices: {cpu: 2}\nbudjet: 3"));
        assert!(e.starts_with("spec.yaml:6:") && e.contains("unknown field `budjet`"), "{e}");

        let e = err(&GOOD.replace("\"{lr}\"", "\"{learning_rate}\""));
        assert!(e.starts_with("spec.yaml:6:1: field `command`"), "{e}");
        assert!(e.contains("unknown placeholder {learning_rate}") && e.contains("valid: lr, k, opt"), "{e}");

        let e = err(&GOOD.replace("high: 3}", "high: -3}"));
        assert!(e.starts_with("spec.yaml:9:3: field `params.k`"), "{e}");

        let e = err(&GOOD.replace("trials: 12", "trials: 0"));
        assert!(e.starts_with("spec.yaml:4:") && e.contains("`budget.trials`: must be at least 1"), "{e}");

        let e = err(&GOOD.replace("stop_at: \"07:00\"", "stop_at: \"7 am\""));
        assert!(e.contains("`budget.stop_at`") && e.contains("HH:MM"), "{e}");

        let e = err(&GOOD.replace("compare: k", "compare: lr"));
        assert!(e.starts_with("spec.yaml:11:1: field `compare`") && e.contains("categorical"), "{e}");

        let e = err(&GOOD.replace("direction: maximize", "direction: up"));
        assert!(e.starts_with("spec.yaml:2:") && e.contains("maximize"), "{e}");

        let e = err(&GOOD.replace("devices: {cpu: 2}", "devices: {tpu: 2}"));
        assert!(e.contains("`devices`") && e.contains("valid: auto"), "{e}");

        let e = err(&GOOD.replace("type: random", "type: annealing"));
        assert!(e.contains("`sampler`") && e.contains("tpe"), "{e}");

        let e = err(&format!("{GOOD}trial: {{epochs: 3}}\n"));
        assert!(e.contains("not both"), "{e}");

        let e = err("study: x\nobjective: [1\n");
        assert!(e.starts_with("spec.yaml:3:1:"), "syntax errors carry their location: {e}");
    }

    /// Accepts `trial:` sections with `epochs`, refuses `arch: bad` and a parameter named `bad`.
    struct FakeTrainer;

    impl BuiltinTrainer for FakeTrainer {
        fn trial_program(&self, sections: &BuiltinSections<'_>) -> std::result::Result<Vec<ArgTemplate>, FieldError> {
            let refuse = |field: &str| Err(FieldError { field: field.into(), message: "refused".into() });
            if sections.trial.get("arch").and_then(|a| a.as_str()) == Some("bad") {
                return refuse("trial.arch");
            }
            if sections.space.get("bad").is_some() {
                return refuse("params.bad");
            }
            let dataset = sections.base_dir.join(sections.trial["dataset"].as_str().unwrap_or_default());
            Ok(vec![
                ArgTemplate::literal("trainer"),
                ArgTemplate::literal(dataset.display().to_string()),
                ArgTemplate::placeholder("trial_dir"),
            ])
        }

        fn check_pretrain(&self, pretrain: &serde_json::Value, _: &Path) -> std::result::Result<(), FieldError> {
            match pretrain.get("out") {
                Some(_) => Ok(()),
                None => Err(FieldError { field: "pretrain".into(), message: "missing out".into() }),
            }
        }
    }

    #[test]
    fn the_trial_section_is_the_trainers_to_check() {
        let text = GOOD.replace(
            "command: [python3, train.py, --lr, \"{lr}\", \"--k={k}\", {opt}, \"{{literal}}\"]",
            "trial: {dataset: data/fmnist, epochs: 3, arch: small-cnn}",
        );
        let with = |text: &str| Spec::parse_with(text, "spec.yaml", Path::new("/base"), &FakeTrainer);
        let spec = with(&text).unwrap();
        let Program::Builtin { trial, argv } = &spec.program else { panic!("builtin expected") };
        assert_eq!(trial["dataset"], "data/fmnist", "the section is kept as written");
        let rendered: Vec<String> =
            argv.iter().map(|a| a.render(&Params::new(), &[("trial_dir", "/t/4".to_string())].into())).collect();
        assert_eq!(rendered, ["trainer", "/base/data/fmnist", "/t/4"]);

        let e = with(&text.replace("arch: small-cnn", "arch: bad")).unwrap_err().to_string();
        assert!(e.starts_with("spec.yaml:6:") && e.contains("field `trial.arch`: refused"), "{e}");
        let e = with(&text.replace("  k: {", "  bad: {")).unwrap_err().to_string();
        assert!(e.starts_with("spec.yaml:9:3: field `params.bad`: refused"), "{e}");
        let e = with(&format!("{text}pretrain: {{dataset: d}}\n")).unwrap_err().to_string();
        assert!(e.starts_with("spec.yaml:12:1: field `pretrain`: missing out"), "{e}");
        assert!(with(&format!("{text}pretrain: {{out: b}}\n")).is_ok());

        let e = err(&text);
        assert!(e.contains("field `trial`") && e.contains("not available"), "without a trainer: {e}");
    }

    #[test]
    fn devices_variants() {
        let with = |d: &str| parse(&GOOD.replace("devices: {cpu: 2}", d)).map(|s| s.devices);
        assert_eq!(with("devices: auto").unwrap(), DeviceSpec::Auto);
        assert_eq!(
            with("devices: {gpu: [0, 1], trials_per_device: 2}").unwrap(),
            DeviceSpec::Gpu { indices: vec![0, 1], trials_per_device: 2, backend: GpuBackend::Cuda }
        );
        assert!(with("devices: {gpu: [0, 0]}").is_err());
        assert!(with("devices: {cpu: 0}").is_err());
        // Found with the `spec` fuzz target's harness: `cpu × trials_per_device` overflowed (a panic, or in
        // release builds a wrapped slot count) and a huge count would have allocated a pool that size.
        let e = with("devices: {cpu: 9223372036854775807, trials_per_device: 4}").unwrap_err().to_string();
        assert!(e.contains("devices.cpu") && e.contains("up to 1024"), "{e}");
        let e = with("devices: {cpu: 64, trials_per_device: 64}").unwrap_err().to_string();
        assert!(e.contains("4096 slots, at most 1024"), "{e}");
        assert_eq!(with("devices: {cpu: 32, trials_per_device: 32}").unwrap(), DeviceSpec::Cpu { slots: 1024 });
        // A GPU index beyond u32 was truncated onto GPU 0.
        assert!(with("devices: {gpu: 4294967296}").unwrap_err().to_string().contains("devices.gpu"));
    }

    #[test]
    fn device_flags() {
        assert_eq!(DeviceSpec::from_flag("auto", None), Ok(DeviceSpec::Auto));
        assert_eq!(DeviceSpec::from_flag("cpu:3", None), Ok(DeviceSpec::Cpu { slots: 3 }));
        assert_eq!(DeviceSpec::from_flag("cpu:2", Some(2)), Ok(DeviceSpec::Cpu { slots: 4 }));
        assert_eq!(
            DeviceSpec::from_flag("gpu:0,2", Some(2)),
            Ok(DeviceSpec::Gpu { indices: vec![0, 2], trials_per_device: 2, backend: GpuBackend::Cuda })
        );
        assert_eq!(
            DeviceSpec::from_flag("wgpu:1", None),
            Ok(DeviceSpec::Gpu { indices: vec![1], trials_per_device: 1, backend: GpuBackend::Wgpu })
        );
        for bad in ["gpu", "gpu:a", "gpu:0,0", "cpu:0", "tpu:1", "", "auto:1"] {
            let err = DeviceSpec::from_flag(bad, None).unwrap_err();
            assert!(err.contains("valid") || err.contains("twice"), "{bad}: {err}");
        }
        assert!(DeviceSpec::from_flag("gpu:0", Some(0)).is_err());
    }
}

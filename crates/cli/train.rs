//! `nightshift trial`, `nightshift pretrain` and `nightshift predict`: the binary's face of the trainer.
//!
//! `trial` speaks the orchestrator's protocol: one JSON line per epoch on stdout
//! (`{"report": {"step": epoch, "value": val_accuracy, "metrics": {…}}}`), then it reads one line from stdin
//! (`{"continue": true}` goes on, `{"prune": true}` stops; EOF or a terminal means go on), and at the end
//! `{"result": {"value": best_val_accuracy, "metrics": {…}}}`. Logs go to stderr.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nightshift_orchestrator::protocol::{FinalResult, Report, TrialError};
use nightshift_orchestrator::spec::{ArgTemplate, BuiltinSections, BuiltinTrainer, FieldError, GpuBackend, ReplicateEval};
use nightshift_orchestrator::{CACHE_DIR_ENV, Program, Spec};
use nightshift_search::{Direction, Distribution, SearchSpace};
use nightshift_trainer::{
    Arch, Augmentation, CacheConfig, CacheSettings, Control, DataConfig, Device, EpochMetrics, Hyperparams, LoadMode,
    ModelConfig, Network, Normalization, PretrainConfig, Resize, ResizeMode, TrialConfig, checkpoint_files, parse_device,
};
use serde_json::{Map, Value, json};

use crate::output::{self, Format};

/// The metric of every report and result the built-in trainer prints (`value`), which it maximises.
const OBJECTIVE_METRIC: &str = "val_accuracy";

/// Commands that train or run a model.
#[derive(Debug, clap::Subcommand)]
pub enum TrainCommand {
    /// Run one fine-tuning trial (hyperparameters from NIGHTSHIFT_PARAMS or --params-file), speaking the
    /// trial protocol on stdout/stdin. Exit codes: 0 done, 1 error, 75 the device ran out of memory
    /// (after the line {"error": {"kind": "oom", …}}).
    Trial(TrialArgs),
    /// Train a backbone on a source dataset (e.g. bundled MNIST) and save it as a checkpoint.
    Pretrain(PretrainArgs),
    /// Print the top classes of one image.
    Predict(PredictArgs),
}

/// Where the data comes from and how the network sees it.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// IDX directory (train-images-idx3-ubyte[.gz], …) or image folder (root/<class>/**/*.png|jpg|jpeg, any case).
    #[arg(long, default_value = "data/fashion_mnist_100")]
    pub dataset: PathBuf,
    /// Keep at most this many training images per class (few-shot).
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Fraction of the training images held out, per class, for validation.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Architecture: small-cnn, resnet18, resnet34, resnet50, efficientnet-lite0. Ignored with --init (the checkpoint's wins).
    #[arg(long, default_value = "small-cnn")]
    pub arch: String,
    /// small-cnn: channels of the stem.
    #[arg(long, default_value_t = 16)]
    pub width: usize,
    /// small-cnn: number of conv stages.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Input size (square); default: an IDX dataset's own (64 for an image folder) for small-cnn, 64 for ResNets, 224 for EfficientNet.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Input channels; default 1 for small-cnn on IDX data (grey), 3 otherwise (image folders too).
    #[arg(long)]
    pub channels: Option<usize>,
    /// How images reach the input size: squash, or center_crop (shorter side to size·256/224, then the
    /// centre); default: squash for IDX data, center_crop for image folders.
    #[arg(long)]
    pub resize: Option<ResizeMode>,
    /// Random-crop padding in pixels for training augmentation (0 = off).
    #[arg(long, default_value_t = 0)]
    pub crop_padding: usize,
    /// Random horizontal flips for training augmentation (not for digits).
    #[arg(long)]
    pub hflip: bool,
    /// torchvision's RandomResizedCrop for training augmentation (area 8–100 %, aspect 3/4–4/3).
    #[arg(long)]
    pub random_resized_crop: bool,
    /// Device: cpu, wgpu, wgpu:N, wgpu:cpu, cuda:N. Default: $NIGHTSHIFT_DEVICE, else cpu.
    #[arg(long)]
    pub device: Option<String>,
    /// Seed for initialisation, shuffling and augmentation (and the split, unless --split-seed is given).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Seed of the few-shot subset and the train/validation split; default: --seed.
    #[arg(long)]
    pub split_seed: Option<u64>,
}

#[derive(Debug, clap::Args)]
pub struct TrialArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// JSON object of hyperparameters; default: $NIGHTSHIFT_PARAMS.
    #[arg(long)]
    pub params_file: Option<PathBuf>,
    /// Pretrained weights to start from (a checkpoint directory, .safetensors or .pth); the head is replaced.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Epochs when the parameters do not set them.
    #[arg(long, default_value_t = 5)]
    pub epochs: usize,
    /// Trial directory for the best checkpoint; default: $NIGHTSHIFT_TRIAL_DIR, else no checkpoint.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also evaluate the best model on the dataset's test split (IDX t10k files) and report test_accuracy.
    #[arg(long)]
    pub test: bool,
    /// Do not wait for a continue/prune line after each report.
    #[arg(long)]
    pub no_wait: bool,
    /// Directory of the caches this trial shares with others (frozen-prefix outputs, decoded datasets);
    /// default: $NIGHTSHIFT_CACHE_DIR, which a sweep sets to reports/<study>/cache. Without one the
    /// frozen-prefix cache still serves this trial's later epochs, in memory.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Turn the frozen-prefix and dataset caches off (the spec's `cache: false`).
    #[arg(long, conflicts_with = "cache_max_size")]
    pub no_cache: bool,
    /// Size cap of the cache directory, least recently used entries evicted beyond it (e.g. 512MiB, 4GiB;
    /// default 4GiB).
    #[arg(long)]
    pub cache_max_size: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct PretrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Passes over the source dataset.
    #[arg(long, default_value_t = 3)]
    pub epochs: usize,
    /// Images per training step.
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub learning_rate: f64,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Checkpoint directory to write (model.safetensors + model.json).
    #[arg(long)]
    pub out: PathBuf,
}

impl DataArgs {
    fn config(&self) -> DataConfig {
        DataConfig {
            dataset: self.dataset.clone(),
            per_class: self.per_class,
            val_fraction: self.val_fraction,
            arch: self.arch.clone(),
            width: self.width,
            depth: self.depth,
            image_size: self.image_size,
            channels: self.channels,
            resize: self.resize,
            crop_padding: self.crop_padding,
            hflip: self.hflip,
            random_resized_crop: self.random_resized_crop,
            device: self.device.clone(),
            seed: self.seed,
            split_seed: self.split_seed,
        }
    }
}

impl TrialArgs {
    fn config(&self) -> anyhow::Result<TrialConfig> {
        let data = self.data.config();
        data.validate()?;
        let cache = match (&self.cache_max_size, self.no_cache) {
            (_, true) => CacheConfig { enabled: false, ..CacheConfig::default() },
            (Some(size), false) => CacheConfig::from_value(&json!({"max_size": size}))
                .map_err(|e| anyhow::anyhow!("--cache-max-size {size}: {e}"))?,
            (None, false) => CacheConfig::default(),
        };
        Ok(TrialConfig {
            data,
            init: self.init.clone(),
            init_hint: None,
            epochs: self.epochs,
            test: self.test,
            no_wait: self.no_wait,
            cache,
        })
    }

    /// The caches' settings: the spec's (or flags') choice and the shared directory.
    fn cache_settings(&self, trial: &TrialConfig) -> CacheSettings {
        let dir = self.cache_dir.clone().or_else(|| std::env::var_os(CACHE_DIR_ENV).map(PathBuf::from));
        CacheSettings::new(trial.cache, dir)
    }
}

impl PretrainArgs {
    fn config(&self) -> anyhow::Result<PretrainConfig> {
        let data = self.data.config();
        data.validate()?;
        let config = PretrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            ..PretrainConfig::new(data, self.out.clone())
        };
        config.train_config()?;
        Ok(config)
    }
}

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// Architecture (small-cnn, resnet18, …); optional when the weights sit next to a model.json.
    #[arg(long)]
    pub arch: Option<String>,
    /// Weights: a checkpoint directory, .safetensors or .pth.
    #[arg(long)]
    pub weights: PathBuf,
    /// The image to classify (PNG or JPEG).
    #[arg(long)]
    pub image: PathBuf,
    /// How many of the most likely classes to print.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub top: u32,
    /// Classes of a bare weight file (default 1000, ImageNet).
    #[arg(long, default_value_t = 1000)]
    pub num_classes: usize,
    /// Input size of a bare weight file (default 224).
    #[arg(long, default_value_t = 224)]
    pub image_size: usize,
    /// Output format: table (alias text), json, yaml or value.
    #[arg(long, short = 'f', value_enum, default_value_t)]
    pub format: Format,
    /// Device: cpu, wgpu, wgpu:N, wgpu:cpu, cuda:N. Default: $NIGHTSHIFT_DEVICE, else cpu.
    #[arg(long)]
    pub device: Option<String>,
}

/// Runs one of the commands.
pub fn run(cmd: TrainCommand) -> anyhow::Result<()> {
    match cmd {
        TrainCommand::Trial(args) => trial(args),
        TrainCommand::Pretrain(args) => pretrain(args),
        TrainCommand::Predict(args) => predict(args),
    }
}

// ---------------------------------------------------------------------------------------------------------
// The built-in trainer in a spec: `trial:` and `pretrain:` typed by nightshift-trainer, run as this binary

/// The built-in trainer as specs see it: every trial runs `<this binary> trial --out {trial_dir} <flags>`.
pub struct BuiltinTrial {
    exe: PathBuf,
}

impl BuiltinTrial {
    /// Trials run this executable.
    pub fn this_binary() -> Self {
        // Only a spec with `trial:` runs it; a missing path shows up in the trials' reasons.
        Self { exe: std::env::current_exe().unwrap_or_else(|_| PathBuf::from("nightshift")) }
    }
}

impl BuiltinTrainer for BuiltinTrial {
    fn trial_program(&self, sections: &BuiltinSections<'_>) -> Result<Vec<ArgTemplate>, FieldError> {
        let config = TrialConfig::from_section(sections.trial, sections.base_dir).map_err(|e| field_error("trial", e))?;
        if let Some(device) = &config.data.device {
            // It would become `--device` on every trial and override each slot's assignment.
            return Err(FieldError {
                field: "trial.device".into(),
                message: format!(
                    "`device: {device}` would put every trial on one device, whatever its slot; remove it and say \
                     where trials run with `devices:` (e.g. devices: {{gpu: [0, 1]}}) or --devices"
                ),
            });
        }
        let pretrain = sections.pretrain.map(|p| self.pretrain(p, sections.base_dir)).transpose()?;
        let stages = config.arch(pretrain.as_ref()).map_err(|e| field_error("trial", e))?.num_stages();
        check_hyperparameters(sections.space, stages, config.epochs)?;
        let mut argv: Vec<ArgTemplate> =
            [self.exe.display().to_string(), "trial".into(), "--out".into()].into_iter().map(ArgTemplate::literal).collect();
        argv.push(ArgTemplate::placeholder("trial_dir"));
        // Every trial gets its own seed from nightshift for initialisation, shuffling and augmentation (a
        // tournament's replicates need fresh ones); the data split keeps the section's seed, so that every
        // trial is scored on the same validation images.
        let mut section = config.to_section();
        let split_seed = section.remove("seed").unwrap_or(Value::from(config.data.seed));
        section.entry("split_seed").or_insert(split_seed);
        argv.extend(section_flags(&section).into_iter().map(ArgTemplate::literal));
        argv.extend([ArgTemplate::literal("--seed"), ArgTemplate::placeholder("seed")]);
        Ok(argv)
    }

    fn check_objective(&self, metric: &str, direction: Direction) -> Result<(), FieldError> {
        let field = match (metric, direction) {
            (OBJECTIVE_METRIC, Direction::Maximize) => return Ok(()),
            (OBJECTIVE_METRIC, Direction::Minimize) => "objective.direction",
            _ => "objective.metric",
        };
        Err(FieldError {
            field: field.into(),
            message: format!(
                "the built-in trainer optimises {OBJECTIVE_METRIC} (maximize): each report is an epoch's validation \
                 accuracy and the result is the best epoch's, whatever the objective says; write \
                 `objective: {{metric: {OBJECTIVE_METRIC}, direction: maximize}}` (val_loss, macro_f1 and train_loss are \
                 kept with every trial), or give a `command:` that reports the metric you want"
            ),
        })
    }

    fn replicate_eval(&self, sections: &BuiltinSections<'_>) -> Option<ReplicateEval> {
        let config = TrialConfig::from_section(sections.trial, sections.base_dir).ok()?;
        let has_test = config.data.has_test_split();
        let args = if config.test { Vec::new() } else { vec![ArgTemplate::literal("--test")] };
        has_test.then(|| ReplicateEval { args, metric: "test_accuracy".into() })
    }

    fn check_pretrain(&self, pretrain: &Value, base_dir: &Path) -> Result<(), FieldError> {
        self.pretrain(pretrain, base_dir).map(drop)
    }

    fn gpu_backends(&self) -> Vec<GpuBackend> {
        nightshift_trainer::gpu_backends()
            .into_iter()
            .filter_map(|name| match name {
                "wgpu" => Some(GpuBackend::Wgpu),
                "cuda" => Some(GpuBackend::Cuda),
                _ => None,
            })
            .collect()
    }
}

impl BuiltinTrial {
    fn pretrain(&self, section: &Value, base_dir: &Path) -> Result<PretrainConfig, FieldError> {
        PretrainConfig::from_section(section, base_dir).map_err(|e| field_error("pretrain", e))
    }
}

/// Every name of the search space must be a hyperparameter of the trainer, and the values it can take
/// (a range's ends, each choice) within what the trainer accepts, for a model of `stages` stages trained for
/// `epochs` epochs (or as few as the space's `epochs` allows).
fn check_hyperparameters(space: &SearchSpace, stages: usize, epochs: usize) -> Result<(), FieldError> {
    let values = |dist: &Distribution| -> Vec<Value> {
        match dist {
            Distribution::Float { low, high, .. } => vec![json!(low), json!(high)],
            Distribution::Int { low, high, .. } => vec![json!(low), json!(high)],
            Distribution::Categorical { choices } => choices.iter().filter_map(|c| serde_json::to_value(c).ok()).collect(),
        }
    };
    let names: Vec<&str> = space.iter().map(|(name, _)| name).collect();
    if names.contains(&"freeze_depth") && names.contains(&"freeze_strategy") {
        return Err(FieldError {
            field: "params.freeze_strategy".into(),
            message: "give freeze_strategy or freeze_depth, not both (freeze_depth: K is freeze_strategy: depth:K)".into(),
        });
    }
    // lp_ft needs two epochs in every trial, so it is checked against the fewest a trial can get.
    let fewest_epochs = space
        .iter()
        .find(|(name, _)| *name == "epochs")
        .and_then(|(_, dist)| values(dist).iter().filter_map(Value::as_f64).reduce(f64::min))
        .map_or(epochs, |e| e.max(0.0) as usize);
    for (name, dist) in space.iter() {
        for value in values(dist) {
            Hyperparams::check_value(name, &value, stages, fewest_epochs).map_err(|e| FieldError {
                field: format!("params.{name}"),
                message: match e {
                    nightshift_trainer::Error::InvalidConfig { reason, .. } if !reason.contains(name) => {
                        format!("the built-in trainer refuses {name} = {value}: {reason}")
                    }
                    nightshift_trainer::Error::InvalidConfig { reason, .. } => reason,
                    other => other.to_string(),
                },
            })?;
        }
    }
    Ok(())
}

/// A trainer configuration error as the spec's field (`trial.arch`).
fn field_error(section: &str, e: nightshift_trainer::Error) -> FieldError {
    match e {
        nightshift_trainer::Error::InvalidConfig { field, reason } if field.is_empty() => {
            FieldError { field: section.to_string(), message: reason }
        }
        nightshift_trainer::Error::InvalidConfig { field, reason } => {
            FieldError { field: format!("{section}.{field}"), message: reason }
        }
        other => FieldError { field: section.to_string(), message: other.to_string() },
    }
}

/// A configuration section as this binary's flags: `per_class: 100` → `--per-class 100`, `hflip: true` →
/// `--hflip`; `cache: false` → `--no-cache`, `cache: {max_size: 2GiB}` → `--cache-max-size 2GiB`.
pub fn section_flags(section: &Map<String, Value>) -> Vec<String> {
    let mut argv = Vec::new();
    for (key, value) in section {
        let flag = format!("--{}", key.replace('_', "-"));
        match (key.as_str(), value) {
            ("cache", Value::Bool(false)) => argv.push("--no-cache".into()),
            ("cache", Value::Object(map)) => {
                if let Some(size) = map.get("max_size") {
                    let size = size.as_str().map_or_else(|| size.to_string(), str::to_string);
                    argv.extend(["--cache-max-size".into(), size]);
                }
            }
            _ => {}
        }
        if key == "cache" {
            continue;
        }
        match value {
            Value::Null | Value::Bool(false) => {}
            Value::Bool(true) => argv.push(flag),
            Value::String(s) => argv.extend([flag, s.clone()]),
            other => argv.extend([flag, other.to_string()]),
        }
    }
    argv
}

/// The typed `trial:` and `pretrain:` sections of a built-in-trainer spec (already validated when it was read).
pub fn builtin_configs(spec: &Spec) -> anyhow::Result<(Option<TrialConfig>, Option<PretrainConfig>)> {
    let trial = match &spec.program {
        Program::Builtin { trial, .. } => Some(TrialConfig::from_section(trial, &spec.base_dir)?),
        Program::Command { .. } => None,
    };
    let pretrain = spec.pretrain.as_ref().map(|p| PretrainConfig::from_section(p, &spec.base_dir)).transpose()?;
    Ok((trial, pretrain))
}

/// Paths of the built-in trainer's sections that do not exist on this machine (the pretraining creates its
/// `out`, which may be the trials' `init`).
pub fn preflight(spec: &Spec) -> anyhow::Result<Vec<String>> {
    let (trial, pretrain) = builtin_configs(spec)?;
    let pretrained = pretrain.as_ref().map(|p| p.out.as_path());
    // (field, path, how to get it)
    let mut paths: Vec<(&str, &Path, Option<&str>)> = Vec::new();
    if let Some(t) = &trial {
        paths.push(("trial.dataset", t.data.dataset.as_path(), None));
        if let Some(init) = t.init.as_deref().filter(|p| Some(*p) != pretrained) {
            paths.push(("trial.init", init, t.init_hint.as_deref()));
        }
    }
    if let Some(p) = &pretrain {
        paths.push(("pretrain.dataset", p.data.dataset.as_path(), None));
    }
    let mut problems: Vec<String> = paths
        .iter()
        .filter(|(_, path, _)| !path.exists())
        .map(|(field, path, hint)| {
            let hint = hint.map(|h| format!("; {h}")).unwrap_or_default();
            format!("{}: field `{field}`: {} does not exist{hint}", spec.locate(field), path.display())
        })
        .collect();
    if let Some(out) = pretrained.filter(|out| out.exists() && !out.is_dir()) {
        problems.push(format!(
            "{}: field `pretrain.out`: {} is a file; the pretraining writes a checkpoint directory there",
            spec.locate("pretrain.out"),
            out.display()
        ));
    }
    if let Some(t) = trial.filter(|_| problems.is_empty()) {
        problems.extend(trial_start_problems(&t, pretrained).into_iter().map(|(field, e)| {
            format!("{}: field `{field}`: every trial would fail: {}", spec.locate(field), crate::error_message(&e))
        }));
    }
    Ok(problems)
}

/// What each trial finds out in its first seconds, found once before the sweep: the dataset loads and
/// splits (every image decoded, the test labels among the training classes), and `init` loads into the
/// network (not when the pretraining will write it).
fn trial_start_problems(trial: &TrialConfig, pretrained: Option<&Path>) -> Option<(&'static str, anyhow::Error)> {
    // Before the pretraining has written `init`, the data is checked as a fresh network would see it.
    let to_be_pretrained = trial.init.is_some() && trial.init.as_deref() == pretrained;
    let fresh = TrialConfig { init: None, ..trial.clone() };
    let trial = if to_be_pretrained { &fresh } else { trial };
    let (class_names, native) = match trial.data.dataset_shape() {
        Ok(shape) => shape,
        Err(e) => return Some(("trial.dataset", e.into())),
    };
    // With `init`, the checkpoint's model.json describes the network.
    let (weights, model) = match trial.model_config(class_names, native, 0.0) {
        Ok(config) => config,
        Err(e) => return Some((if trial.init.is_some() { "trial.init" } else { "trial" }, e.into())),
    };
    if let Err(e) = trial.data.load(&model, trial.test) {
        return Some(("trial.dataset", e.into()));
    }
    let weights = weights?;
    let load = || -> anyhow::Result<()> {
        let device = parse_device("cpu")?;
        Network::init(&model, &device)?.load_weights(&weights, LoadMode::Backbone)?;
        Ok(())
    };
    load().err().map(|e| ("trial.init", e))
}

/// `nightshift pretrain <flags>` for a spec's `pretrain:` section.
pub fn pretrain_args(config: &PretrainConfig) -> Vec<String> {
    let mut args = vec!["pretrain".to_string()];
    args.extend(section_flags(&config.to_section()));
    args
}

// ---------------------------------------------------------------------------------------------------------
// Data and models

fn device(spec: Option<&str>) -> anyhow::Result<Device> {
    let spec = match spec {
        Some(s) => s.to_string(),
        None => std::env::var("NIGHTSHIFT_DEVICE").unwrap_or_else(|_| "cpu".into()),
    };
    Ok(parse_device(&spec)?)
}

fn read_params(file: Option<&Path>) -> anyhow::Result<Hyperparams> {
    let (text, source) = match file {
        Some(path) => (
            std::fs::read_to_string(path).with_context(|| format!("reading params file {}", path.display()))?,
            path.display().to_string(),
        ),
        None => match std::env::var("NIGHTSHIFT_PARAMS") {
            Ok(text) => (text, "NIGHTSHIFT_PARAMS".to_string()),
            Err(_) => ("{}".to_string(), "defaults".to_string()),
        },
    };
    let value: Value = serde_json::from_str(&text).with_context(|| format!("{source}: not valid JSON"))?;
    Hyperparams::from_json(value).with_context(|| format!("{source}: bad hyperparameters"))
}

// ---------------------------------------------------------------------------------------------------------
// trial

fn emit(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn epoch_metrics_json(m: &EpochMetrics) -> BTreeMap<String, Value> {
    [
        ("val_accuracy", m.val_accuracy),
        ("val_loss", m.val_loss),
        ("train_loss", m.train_loss),
        ("macro_f1", m.macro_f1),
        ("learning_rate", m.learning_rate),
        ("images_per_second", m.images_per_second),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_string(), json!(value)))
    .collect()
}

/// After a report: one line from stdin decides. EOF, a terminal or --no-wait mean continue.
fn read_decision(wait: bool) -> Control {
    if !wait || std::io::stdin().is_terminal() {
        return Control::Continue;
    }
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => Control::Continue,
        Ok(_) => match serde_json::from_str::<Value>(line.trim()) {
            Ok(v) if v.get("prune").and_then(Value::as_bool) == Some(true) => Control::Stop,
            Ok(v) if v.get("continue").is_some() => Control::Continue,
            _ => {
                eprintln!("nightshift trial: ignoring unexpected control line {:?}", line.trim());
                Control::Continue
            }
        },
    }
}

/// `nightshift trial`'s exit code when the device ran out of memory (sysexits' EX_TEMPFAIL: the
/// same trial may fit later, alone on its GPU). Other failures exit with 1.
pub const EXIT_OUT_OF_MEMORY: i32 = 75;

/// An error that ends the process with its own exit code (`main` looks for it).
#[derive(Debug)]
pub struct ExitWith {
    pub code: i32,
    pub message: String,
}

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitWith {}

/// Runs a trial; a device out-of-memory error — returned by a fallible read, or a panic inside the
/// backend whose message says so — becomes the protocol line `{"error": {"kind": "oom", …}}` and
/// exit code [`EXIT_OUT_OF_MEMORY`], so the orchestrator records it as such (and the sampler learns
/// from it) rather than as a crash. Other panics go on unwinding (exit code 101).
fn trial(args: TrialArgs) -> anyhow::Result<()> {
    let error = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| trial_body(args))) {
        Ok(Ok(())) => return Ok(()),
        Ok(Err(e)) => e,
        Err(payload) => match panic_text(payload.as_ref()) {
            Some(text) if nightshift_trainer::is_out_of_memory(&text) => nightshift_trainer::Error::OutOfMemory(text).into(),
            _ => std::panic::resume_unwind(payload),
        },
    };
    match out_of_memory_line(&error) {
        Some(line) => {
            emit(&line.line())?;
            Err(ExitWith { code: EXIT_OUT_OF_MEMORY, message: format!("{error:#}") }.into())
        }
        None => Err(error),
    }
}

/// The protocol line of an out-of-memory failure, if `error` is one.
fn out_of_memory_line(error: &anyhow::Error) -> Option<TrialError> {
    match error.downcast_ref::<nightshift_trainer::Error>()? {
        nightshift_trainer::Error::OutOfMemory(message) => {
            Some(TrialError { kind: TrialError::OOM.into(), message: message.clone() })
        }
        _ => None,
    }
}

/// A panic's message, when it is text.
fn panic_text(payload: &(dyn std::any::Any + Send)) -> Option<String> {
    payload.downcast_ref::<String>().cloned().or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
}

fn trial_body(args: TrialArgs) -> anyhow::Result<()> {
    let params = read_params(args.params_file.as_deref())?;
    let trial = args.config()?;
    let mut config = params.train_config(trial.epochs, &trial.data)?;
    config.cache = args.cache_settings(&trial);
    let device = device(trial.data.device.as_deref())?;
    let out = args.out.clone().or_else(|| std::env::var_os("NIGHTSHIFT_TRIAL_DIR").map(PathBuf::from));
    if let Some(dir) = &out {
        // What this trial was asked to do, next to what it produced.
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let section = Value::Object(trial.to_section());
        std::fs::write(dir.join("trial_config.json"), serde_json::to_string_pretty(&section)?)?;
    }
    let (class_names, native) = trial.data.dataset_shape()?;
    let (init_weights, model_config) = trial.model_config(class_names, native, params.dropout())?;
    let (train, val, test, dataset_cache) =
        nightshift_trainer::cache::dataset::load(&trial.data, &model_config, trial.test, &config.cache)?;
    eprintln!("nightshift trial: {dataset_cache}");
    eprintln!(
        "nightshift trial: {} train / {} val images, {:?}, {} epochs, freeze strategy {}, device {:?}",
        train.len(),
        val.len(),
        model_config.arch,
        config.epochs,
        config.freeze_strategy,
        device
    );
    device.seed(trial.data.seed);
    let mut network = Network::init(&model_config, &device)?;
    if let Some(weights) = &init_weights {
        let report = network.load_weights(weights, LoadMode::Backbone)?;
        eprintln!("nightshift trial: loaded {} ({})", weights.display(), report.summary());
    }
    let wait = !trial.no_wait;
    let mut pruned = false;
    let mut callback = |m: &EpochMetrics| {
        let line = Report {
            step: m.epoch as u64,
            value: Some(m.val_accuracy),
            metrics: epoch_metrics_json(m),
            ignored_keys: Vec::new(),
        }
        .line();
        if let Err(e) = emit(&line) {
            eprintln!("nightshift trial: cannot write report: {e}");
            return Control::Stop;
        }
        let decision = read_decision(wait);
        pruned = decision == Control::Stop;
        decision
    };
    let outcome = match network.fine_tune(&train, &val, &model_config.normalization, &config, &device, &mut callback) {
        Ok(o) => o,
        Err(e @ nightshift_trainer::Error::Diverged { .. }) => {
            emit(&TrialError { kind: "diverged".into(), message: e.to_string() }.line())?;
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    eprintln!("nightshift trial: {}", outcome.prefix_cache);
    if let Some(dir) = &out {
        let path = outcome.best_model.save_checkpoint(&model_config, dir)?;
        std::fs::write(dir.join("history.json"), serde_json::to_string_pretty(&outcome.history)?)?;
        eprintln!("nightshift trial: best checkpoint (epoch {}) in {}", outcome.best_epoch, path.display());
    }
    let test_accuracy = match &test {
        Some(t) => {
            let batcher = nightshift_trainer::Batcher {
                normalization: model_config.normalization.clone(),
                augmentation: Augmentation::default(),
            };
            Some(outcome.best_model.evaluate(t, &batcher, 256, &device)?.accuracy)
        }
        None => None,
    };
    let best = outcome.best();
    let mut metrics = epoch_metrics_json(best);
    metrics.insert("best_epoch".into(), json!(outcome.best_epoch));
    if let Some(acc) = test_accuracy {
        metrics.insert("test_accuracy".into(), json!(acc));
    }
    emit(&FinalResult { value: Some(best.val_accuracy), metrics, pruned, ignored_keys: Vec::new() }.line())?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// pretrain

fn pretrain(args: PretrainArgs) -> anyhow::Result<()> {
    let pretrain = args.config()?;
    let device = device(pretrain.data.device.as_deref())?;
    let (class_names, native) = pretrain.data.dataset_shape()?;
    let mut model_config = pretrain.data.fresh_model_config(class_names.len(), native, 0.0)?;
    model_config.class_names = class_names;
    let (train, val, _) = pretrain.data.load(&model_config, false)?;
    let config = pretrain.train_config()?;
    eprintln!("nightshift pretrain: {} train / {} val images, {:?}", train.len(), val.len(), model_config.arch);
    device.seed(pretrain.data.seed);
    let mut log = |m: &EpochMetrics| {
        eprintln!(
            "epoch {}: train loss {:.4}, val loss {:.4}, val acc {:.4} ({:.0} img/s)",
            m.epoch, m.train_loss, m.val_loss, m.val_accuracy, m.images_per_second
        );
        Control::Continue
    };
    let network = Network::init(&model_config, &device)?;
    let outcome = network.fine_tune(&train, &val, &model_config.normalization, &config, &device, &mut log)?;
    outcome.best_model.save_checkpoint(&model_config, &pretrain.out)?;
    println!(
        "{}",
        json!({"checkpoint": pretrain.out.join(nightshift_trainer::checkpoint::WEIGHTS_FILE), "val_accuracy": outcome.best().val_accuracy})
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// predict

fn predict(args: PredictArgs) -> anyhow::Result<()> {
    let device = device(args.device.as_deref())?;
    let (weights, saved) = checkpoint_files(&args.weights)?;
    let model_config = match (saved, &args.arch) {
        (Some(c), _) => c,
        (None, Some(arch)) => {
            let config = ModelConfig {
                arch: Arch::from_name(arch)?,
                num_classes: args.num_classes,
                in_channels: 3,
                image_size: [args.image_size, args.image_size],
                dropout: 0.0,
                normalization: Normalization::imagenet(),
                // Bare ImageNet weights: torchvision's evaluation transform (shorter side 256, centre 224).
                resize: Resize::center_crop(),
                class_names: vec![],
            };
            config.validate()?;
            config
        }
        (None, None) => bail!("{} has no model.json next to it; pass --arch", weights.display()),
    };
    // The image first: a file that cannot be read or decoded is reported before the weights are loaded.
    let input = nightshift_trainer::predict::load_image_tensor(&args.image, &model_config.preprocessing(), &device)?;
    let mut network = Network::init(&model_config, &device)?;
    let report = network.load_weights(&weights, LoadMode::Strict)?;
    eprintln!("nightshift predict: loaded {} ({})", weights.display(), report.summary());
    let top = network.predict(input, args.top as usize, &model_config.class_names)?;
    match args.format {
        Format::Table => {
            for t in &top {
                let name = t.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
                println!("{:>5}{name}  prob {:.4}  logit {:.4}", t.class, t.prob, t.logit);
            }
        }
        Format::Value => {
            let records: Vec<Value> = top.iter().map(|t| json!(t)).collect();
            output::print_records(Format::Value, &records, false, String::new)?;
        }
        Format::Json | Format::Yaml => output::print_records(args.format, &[json!({"top": top})], true, String::new)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: TrainCommand,
    }

    fn parse(args: &[String]) -> TrainCommand {
        Cli::try_parse_from(std::iter::once("nightshift".to_string()).chain(args.iter().cloned())).unwrap().command
    }

    #[test]
    fn out_of_memory_becomes_a_protocol_line_and_other_errors_do_not() {
        let oom: anyhow::Error = nightshift_trainer::Error::OutOfMemory("out of device memory allocating 8 bytes".into()).into();
        let line = out_of_memory_line(&oom.context("epoch 2")).expect("an oom line");
        assert_eq!(line.line(), "{\"error\":{\"kind\":\"oom\",\"message\":\"out of device memory allocating 8 bytes\"}}\n");
        let other: anyhow::Error = nightshift_trainer::Error::Tensor("device lost".into()).into();
        assert_eq!(out_of_memory_line(&other), None);
        assert_eq!(out_of_memory_line(&anyhow::anyhow!("no such file")), None);
        let payload: Box<dyn std::any::Any + Send> = Box::new(String::from("CUDA_ERROR_OUT_OF_MEMORY"));
        assert_eq!(panic_text(payload.as_ref()).as_deref(), Some("CUDA_ERROR_OUT_OF_MEMORY"));
        let payload: Box<dyn std::any::Any + Send> = Box::new("static text");
        assert_eq!(panic_text(payload.as_ref()).as_deref(), Some("static text"));
    }

    #[test]
    fn params_accept_integral_floats_and_reject_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"learning_rate": 0.01, "batch_size": 32.0, "dropout": 0.2, "epochs": 2}"#).unwrap();
        let p = read_params(Some(&path)).unwrap();
        assert_eq!((p.batch_size, p.epochs, p.dropout), (Some(32), Some(2), Some(0.2)));
        std::fs::write(&path, r#"{"learning_rat": 0.01}"#).unwrap();
        let err = format!("{:#}", read_params(Some(&path)).unwrap_err());
        assert!(err.contains("learning_rat") && err.contains("did you mean `learning_rate`"), "{err}");
    }

    #[test]
    fn the_flags_default_as_the_trainer_does() {
        let TrainCommand::Trial(args) = parse(&["trial".into()]) else { panic!("trial") };
        assert_eq!(args.data.config(), DataConfig::default());
        let TrainCommand::Pretrain(args) = parse(&["pretrain".into(), "--out".into(), "b".into()]) else { panic!("pretrain") };
        assert_eq!(args.config().unwrap(), PretrainConfig::new(DataConfig::default(), "b".into()));
    }

    /// The argv a sweep gives each trial is read back by `nightshift trial` as the same configuration.
    #[test]
    fn a_trial_section_round_trips_through_the_trial_flags() {
        let section = json!({"dataset": "d", "init": "/abs/ckpt", "epochs": 3, "per_class": 10, "hflip": true,
                             "arch": "resnet18", "val_fraction": 0.25, "test": false, "resize": "center_crop",
                             "random_resized_crop": true});
        let config = TrialConfig::from_section(&section, Path::new("/spec")).unwrap();
        let program = BuiltinTrial { exe: "/bin/nightshift".into() }
            .trial_program(&BuiltinSections {
                trial: &section,
                pretrain: None,
                space: &SearchSpace::default(),
                base_dir: Path::new("/spec"),
            })
            .unwrap();
        let argv: Vec<String> = program.iter().map(|a| a.to_string()).collect();
        assert_eq!(argv[argv.len() - 2..], ["--seed", "{seed}"], "every trial is seeded by nightshift");
        assert!(argv.windows(2).any(|w| w == ["--split-seed", "0"]), "one split for every trial: {argv:?}");
        // The section's own seed (the default, 0) is what a trial rendered with seed 0 reads back.
        let argv: Vec<String> = argv.into_iter().map(|a| a.replace("{seed}", "0")).collect();
        assert_eq!(argv[..4], ["/bin/nightshift", "trial", "--out", "{trial_dir}"]);
        assert!(argv.contains(&"--hflip".to_string()) && !argv.contains(&"--test".to_string()), "{argv:?}");
        assert!(argv.windows(2).any(|w| w == ["--resize", "center_crop"]) && argv.contains(&"--random-resized-crop".into()));
        let TrainCommand::Trial(args) = parse(&argv[1..]) else { panic!("trial") };
        let mut expected = config.clone();
        expected.data.split_seed = Some(0);
        assert_eq!(args.config().unwrap(), expected);
        assert_eq!(args.out.as_deref(), Some(Path::new("{trial_dir}")));

        let pretrain =
            PretrainConfig::from_section(&json!({"dataset": "m", "out": "b", "width": 8, "epochs": 1}), Path::new("/s")).unwrap();
        let TrainCommand::Pretrain(args) = parse(&pretrain_args(&pretrain)) else { panic!("pretrain") };
        assert_eq!(args.config().unwrap(), pretrain);
    }

    #[test]
    fn tournament_replicates_run_on_the_test_split_when_the_data_has_one() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let eval = |section: Value| {
            BuiltinTrial { exe: "/bin/nightshift".into() }.replicate_eval(&BuiltinSections {
                trial: &section,
                pretrain: None,
                space: &SearchSpace::default(),
                base_dir: root,
            })
        };
        let e = eval(json!({"dataset": "data/fashion_mnist_tiny", "epochs": 1})).expect("IDX data with t10k files");
        let args: Vec<String> = e.args.iter().map(|a| a.to_string()).collect();
        assert_eq!((args, e.metric.as_str()), (vec!["--test".to_string()], "test_accuracy"));
        let e = eval(json!({"dataset": "data/fashion_mnist_tiny", "epochs": 1, "test": true})).unwrap();
        assert!(e.args.is_empty(), "every trial already evaluates on the test split");
        let no_test = tempfile::tempdir().unwrap();
        assert_eq!(eval(json!({"dataset": no_test.path(), "epochs": 1})), None, "nothing to evaluate on");
    }

    #[test]
    fn search_spaces_are_checked_against_the_trainers_hyperparameters() {
        let check = |yaml: &str| check_hyperparameters(&SearchSpace::parse(yaml, "space.yaml").unwrap(), 3, 4);
        assert_eq!(
            check("learning_rate: {type: float, low: 1.0e-4, high: 0.1, log: true}\nfreeze_depth: {type: int, low: 0, high: 3}"),
            Ok(())
        );
        let e = check("lr: {type: float, low: 1.0e-4, high: 0.1}").unwrap_err();
        assert_eq!(e.field, "params.lr");
        assert!(e.message.contains("no hyperparameter `lr`") && e.message.contains("learning_rate"), "{}", e.message);
        let e = check("freeze_depth: {type: int, low: 0, high: 4}").unwrap_err();
        assert!(e.message.contains("4 but the model has 3 stages"), "{}", e.message);
        let e = check("freeze_strategy: {type: categorical, choices: [lp_ft, \"depth:4\"]}").unwrap_err();
        assert_eq!(e.field, "params.freeze_strategy");
        assert!(e.message.contains("`depth:4` but the model has 3 stages"), "{}", e.message);
        // lp_ft needs two epochs: the trial's 4 will do, a searched range down to 1 will not.
        assert_eq!(check("freeze_strategy: {type: categorical, choices: [lp_ft]}"), Ok(()));
        let e =
            check("freeze_strategy: {type: categorical, choices: [lp_ft]}\nepochs: {type: int, low: 1, high: 5}").unwrap_err();
        assert!(e.message.contains("at least 2 epochs"), "{}", e.message);
        let e = check("freeze_strategy: {type: categorical, choices: [full]}\nfreeze_depth: {type: int, low: 0, high: 1}")
            .unwrap_err();
        assert!(e.field == "params.freeze_strategy" && e.message.contains("not both"), "{}", e.message);
        let e = check("batch_size: {type: categorical, choices: [0, 32]}").unwrap_err();
        assert!(e.message.contains("batch_size = 0") && e.message.contains("at least 1"), "{}", e.message);
    }
}

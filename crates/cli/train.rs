//! `nightshift trial`, `nightshift pretrain` and `nightshift predict`: the binary's face of the trainer.
//!
//! `trial` speaks the orchestrator's protocol: one JSON line per epoch on stdout
//! (`{"report": {"step": epoch, "value": val_accuracy, "metrics": {…}}}`), then it reads one line from stdin
//! (`{"continue": true}` goes on, `{"prune": true}` stops; EOF or a terminal means go on), and at the end
//! `{"result": {"value": best_val_accuracy, "metrics": {…}}}`. Logs go to stderr.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use nightshift_trainer::{
    Arch, Augmentation, Control, Device, EfficientNetLite, EpochMetrics, ImageClassifier, ImageDataset, LoadMode, ModelConfig,
    Normalization, OptimizerKind, ResNet, SmallCnn, Split, TrainConfig, fine_tune, image_folder_classes, load_idx_dir,
    load_image_folder, load_weights, parse_device, read_model_config, save_checkpoint,
};
use serde_json::{Value, json};

use crate::output::{self, Format};

/// Commands that train or run a model.
#[derive(Debug, clap::Subcommand)]
pub enum TrainCommand {
    /// Run one fine-tuning trial (hyperparameters from NIGHTSHIFT_PARAMS or --params-file), speaking the
    /// trial protocol on stdout/stdin.
    Trial(TrialArgs),
    /// Train a backbone on a source dataset (e.g. bundled MNIST) and save it as a checkpoint.
    Pretrain(PretrainArgs),
    /// Print the top classes of one image.
    Predict(PredictArgs),
}

/// Where the data comes from and how the network sees it.
#[derive(Debug, Clone, clap::Args)]
pub struct DataArgs {
    /// IDX directory (train-images-idx3-ubyte[.gz], …) or image folder (root/<class>/*.png|jpg).
    #[arg(long, default_value = "data/fashion_mnist_100")]
    pub dataset: PathBuf,
    /// Keep at most this many training images per class (few-shot).
    #[arg(long)]
    pub per_class: Option<usize>,
    /// Fraction of the training images held out, per class, for validation.
    #[arg(long, default_value_t = 0.2)]
    pub val_fraction: f64,
    /// Architecture: small-cnn, resnet18, resnet34, resnet50. Ignored with --init (the checkpoint's wins).
    #[arg(long, default_value = "small-cnn")]
    pub arch: String,
    /// small-cnn: channels of the stem.
    #[arg(long, default_value_t = 16)]
    pub width: usize,
    /// small-cnn: number of conv stages.
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Input size (square); default: the dataset's own for small-cnn, 64 for ResNets.
    #[arg(long)]
    pub image_size: Option<usize>,
    /// Input channels; default 1 for small-cnn on gray data, 3 otherwise.
    #[arg(long)]
    pub channels: Option<usize>,
    /// Random-crop padding in pixels for training augmentation (0 = off).
    #[arg(long, default_value_t = 0)]
    pub crop_padding: usize,
    /// Random horizontal flips for training augmentation (not for digits).
    #[arg(long)]
    pub hflip: bool,
    /// Device: cpu, wgpu, wgpu:N, wgpu:cpu, cuda:N. Default: $NIGHTSHIFT_DEVICE, else cpu.
    #[arg(long)]
    pub device: Option<String>,
    /// Seed for the split, initialisation, shuffling and augmentation.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
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
    #[arg(long, default_value_t = 5)]
    pub top: usize,
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
// Hyperparameters

/// The searched hyperparameters, exactly as named in search spaces.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TrialParams {
    learning_rate: Option<f64>,
    batch_size: Option<usize>,
    dropout: Option<f64>,
    epochs: Option<usize>,
    weight_decay: Option<f64>,
    freeze_depth: Option<usize>,
    /// "adamw" or "sgd".
    optimizer: Option<String>,
    momentum: Option<f64>,
    warmup_fraction: Option<f64>,
}

fn read_params(file: Option<&Path>) -> anyhow::Result<TrialParams> {
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
    // Integers may arrive as floats (2.0) from samplers that only know numbers.
    let mut value: Value = serde_json::from_str(&text).with_context(|| format!("{source}: not valid JSON"))?;
    if let Some(obj) = value.as_object_mut() {
        for key in ["batch_size", "epochs", "freeze_depth"] {
            if let Some(f) = obj.get(key).and_then(Value::as_f64)
                && f.fract() == 0.0
                && f >= 0.0
            {
                obj.insert(key.to_string(), json!(f as u64));
            }
        }
    }
    serde_json::from_value(value).with_context(|| format!("{source}: bad hyperparameters"))
}

fn train_config(params: &TrialParams, default_epochs: usize, data: &DataArgs) -> anyhow::Result<TrainConfig> {
    let mut config = TrainConfig::new(
        params.epochs.unwrap_or(default_epochs),
        params.batch_size.unwrap_or(64),
        params.learning_rate.unwrap_or(1e-3),
    );
    config.weight_decay = params.weight_decay.unwrap_or(0.0);
    config.freeze_depth = params.freeze_depth.unwrap_or(0);
    config.seed = data.seed;
    if let Some(w) = params.warmup_fraction {
        config.warmup_fraction = w;
    }
    config.optimizer = match params.optimizer.as_deref() {
        None | Some("adamw") => OptimizerKind::AdamW,
        Some("sgd") => OptimizerKind::Sgd { momentum: params.momentum.unwrap_or(0.9) },
        Some(other) => bail!("optimizer: unknown {other:?} (adamw, sgd)"),
    };
    config.augmentation = Augmentation { crop_padding: data.crop_padding, horizontal_flip: data.hflip };
    config.validate()?;
    Ok(config)
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

fn is_idx_dir(dir: &Path) -> bool {
    ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"].iter().any(|f| dir.join(f).is_file())
}

/// Loads the training data as the model wants it; returns (train, validation, optional test).
fn load_data(
    data: &DataArgs,
    model: &ModelConfig,
    with_test: bool,
) -> anyhow::Result<(ImageDataset, ImageDataset, Option<ImageDataset>)> {
    let [h, w] = model.image_size;
    let (full, test) = if is_idx_dir(&data.dataset) {
        let train = load_idx_dir(&data.dataset, Split::Train)?;
        let test = if with_test { Some(load_idx_dir(&data.dataset, Split::Test)?) } else { None };
        (train, test)
    } else {
        if with_test {
            bail!("--test needs an IDX dataset with t10k files; {} is an image folder", data.dataset.display());
        }
        (load_image_folder(&data.dataset, model.in_channels, h, w)?, None)
    };
    let full = match data.per_class {
        Some(k) => full.per_class(k, data.seed)?,
        None => full,
    };
    let (train, val) = full.stratified_split(data.val_fraction, data.seed)?;
    let convert = |d: ImageDataset| d.converted(model.in_channels, h, w);
    Ok((convert(train)?, convert(val)?, test.map(convert).transpose()?))
}

/// The model description for a fresh network on this data (before looking at the dataset's size).
fn fresh_model_config(data: &DataArgs, num_classes: usize, native: [usize; 2], dropout: f64) -> anyhow::Result<ModelConfig> {
    let arch = match Arch::from_name(&data.arch)? {
        Arch::SmallCnn { .. } => Arch::SmallCnn { width: data.width, depth: data.depth },
        other => other,
    };
    let is_cnn = matches!(arch, Arch::SmallCnn { .. });
    let channels = data.channels.unwrap_or(if is_cnn { 1 } else { 3 });
    let default_size = match arch {
        Arch::SmallCnn { .. } => native,
        Arch::ResNet { .. } => [64, 64],
        Arch::EfficientNetLite0 => [224, 224],
    };
    let size = data.image_size.map(|s| [s, s]).unwrap_or(default_size);
    let normalization = if is_cnn { Normalization::centered(channels) } else { Normalization::imagenet() };
    let config =
        ModelConfig { arch, num_classes, in_channels: channels, image_size: size, dropout, normalization, class_names: vec![] };
    config.validate()?;
    Ok(config)
}

/// Reads the dataset's class names and native size without keeping the images.
fn dataset_shape(dataset: &Path) -> anyhow::Result<(Vec<String>, [usize; 2])> {
    if is_idx_dir(dataset) {
        let d = load_idx_dir(dataset, Split::Train)?;
        Ok((d.class_names, [d.height, d.width]))
    } else {
        // Image folders are resized on load; their size is whatever the model asks for.
        Ok((image_folder_classes(dataset)?, [64, 64]))
    }
}

/// Finds weights and (when present) the model.json of a checkpoint path.
fn checkpoint_files(path: &Path) -> anyhow::Result<(PathBuf, Option<ModelConfig>)> {
    if path.is_dir() {
        let weights = path.join(nightshift_trainer::checkpoint::WEIGHTS_FILE);
        return Ok((weights, Some(read_model_config(path)?)));
    }
    let sibling = path.with_file_name(nightshift_trainer::checkpoint::CONFIG_FILE);
    let config = if sibling.is_file() { Some(read_model_config(&sibling)?) } else { None };
    Ok((path.to_path_buf(), config))
}

/// Runs `$body` with `$model` bound to a fresh network of the configured architecture.
macro_rules! with_model {
    ($config:expr, $device:expr, |$model:ident| $body:expr) => {
        match $config.arch {
            Arch::SmallCnn { .. } => {
                let $model = SmallCnn::init(&$config, $device)?;
                $body
            }
            Arch::ResNet { .. } => {
                let $model = ResNet::init(&$config, $device)?;
                $body
            }
            Arch::EfficientNetLite0 => {
                let $model = EfficientNetLite::init(&$config, $device)?;
                $body
            }
        }
    };
}

// ---------------------------------------------------------------------------------------------------------
// trial

fn emit(line: &Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

fn epoch_metrics_json(m: &EpochMetrics) -> Value {
    json!({
        "val_accuracy": m.val_accuracy,
        "val_loss": m.val_loss,
        "train_loss": m.train_loss,
        "macro_f1": m.macro_f1,
        "learning_rate": m.learning_rate,
        "images_per_second": m.images_per_second,
    })
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

fn trial(args: TrialArgs) -> anyhow::Result<()> {
    let params = read_params(args.params_file.as_deref())?;
    let config = train_config(&params, args.epochs, &args.data)?;
    let device = device(args.data.device.as_deref())?;
    let out = args.out.clone().or_else(|| std::env::var_os("NIGHTSHIFT_TRIAL_DIR").map(PathBuf::from));
    let (class_names, native) = dataset_shape(&args.data.dataset)?;
    let dropout = params.dropout.unwrap_or(0.0);

    // A pretrained checkpoint fixes the architecture and input; the head is rebuilt for our classes.
    let (init_weights, mut model_config) = match &args.init {
        Some(path) => {
            let (weights, saved) = checkpoint_files(path)?;
            let base = match saved {
                Some(c) => c,
                None => fresh_model_config(&args.data, class_names.len(), native, dropout)?,
            };
            (Some(weights), ModelConfig { num_classes: class_names.len(), dropout, class_names: vec![], ..base })
        }
        None => (None, fresh_model_config(&args.data, class_names.len(), native, dropout)?),
    };
    model_config.class_names = class_names;
    model_config.validate()?;
    let (train, val, test) = load_data(&args.data, &model_config, args.test)?;
    eprintln!(
        "nightshift trial: {} train / {} val images, {:?}, {} epochs, device {:?}",
        train.len(),
        val.len(),
        model_config.arch,
        config.epochs,
        device
    );
    device.seed(args.data.seed);
    let wait = !args.no_wait;
    let mut pruned = false;
    let (best, best_epoch, test_accuracy) = with_model!(model_config, &device, |model| {
        let mut model = model;
        if let Some(weights) = &init_weights {
            let report = load_weights(&mut model, weights, LoadMode::Backbone)?;
            eprintln!("nightshift trial: loaded {} ({})", weights.display(), report.summary());
        }
        let mut callback = |m: &EpochMetrics| {
            let line = json!({"report": {"step": m.epoch, "value": m.val_accuracy, "metrics": epoch_metrics_json(m)}});
            if let Err(e) = emit(&line) {
                eprintln!("nightshift trial: cannot write report: {e}");
                return Control::Stop;
            }
            let decision = read_decision(wait);
            pruned = decision == Control::Stop;
            decision
        };
        let outcome = fine_tune(model, &train, &val, &model_config.normalization, &config, &device, &mut callback);
        let outcome = match outcome {
            Ok(o) => o,
            Err(e @ nightshift_trainer::Error::Diverged { .. }) => {
                emit(&json!({"error": {"kind": "diverged", "message": e.to_string()}}))?;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(dir) = &out {
            let path = save_checkpoint(&outcome.best_model, &model_config, dir)?;
            std::fs::write(dir.join("history.json"), serde_json::to_string_pretty(&outcome.history)?)?;
            eprintln!("nightshift trial: best checkpoint (epoch {}) in {}", outcome.best_epoch, path.display());
        }
        let test_accuracy = match &test {
            Some(t) => {
                let batcher = nightshift_trainer::Batcher {
                    normalization: model_config.normalization.clone(),
                    augmentation: Augmentation::default(),
                };
                Some(nightshift_trainer::evaluate(&outcome.best_model, t, &batcher, 256, &device)?.accuracy)
            }
            None => None,
        };
        (outcome.best().clone(), outcome.best_epoch, test_accuracy)
    });
    let mut metrics = epoch_metrics_json(&best);
    metrics["best_epoch"] = json!(best_epoch);
    if let Some(acc) = test_accuracy {
        metrics["test_accuracy"] = json!(acc);
    }
    emit(&json!({"result": {"value": best.val_accuracy, "metrics": metrics, "pruned": pruned}}))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// pretrain

fn pretrain(args: PretrainArgs) -> anyhow::Result<()> {
    let device = device(args.data.device.as_deref())?;
    let (class_names, native) = dataset_shape(&args.data.dataset)?;
    let mut model_config = fresh_model_config(&args.data, class_names.len(), native, 0.0)?;
    model_config.class_names = class_names;
    let (train, val, _) = load_data(&args.data, &model_config, false)?;
    let mut config = TrainConfig::new(args.epochs, args.batch_size, args.learning_rate);
    config.weight_decay = args.weight_decay;
    config.seed = args.data.seed;
    config.augmentation = Augmentation { crop_padding: args.data.crop_padding, horizontal_flip: args.data.hflip };
    eprintln!("nightshift pretrain: {} train / {} val images, {:?}", train.len(), val.len(), model_config.arch);
    device.seed(args.data.seed);
    let best = with_model!(model_config, &device, |model| {
        let mut log = |m: &EpochMetrics| {
            eprintln!(
                "epoch {}: train loss {:.4}, val loss {:.4}, val acc {:.4} ({:.0} img/s)",
                m.epoch, m.train_loss, m.val_loss, m.val_accuracy, m.images_per_second
            );
            Control::Continue
        };
        let outcome = fine_tune(model, &train, &val, &model_config.normalization, &config, &device, &mut log)?;
        save_checkpoint(&outcome.best_model, &model_config, &args.out)?;
        outcome.best().clone()
    });
    println!(
        "{}",
        json!({"checkpoint": args.out.join(nightshift_trainer::checkpoint::WEIGHTS_FILE), "val_accuracy": best.val_accuracy})
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
                class_names: vec![],
            };
            config.validate()?;
            config
        }
        (None, None) => bail!("{} has no model.json next to it; pass --arch", weights.display()),
    };
    let top = with_model!(model_config, &device, |model| {
        let mut model = model;
        let report = load_weights(&mut model, &weights, LoadMode::Strict)?;
        eprintln!("nightshift predict: loaded {} ({})", weights.display(), report.summary());
        nightshift_trainer::predict::predict_image(&model, &args.image, &model_config, args.top, &device)?
    });
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

    #[test]
    fn params_accept_integral_floats_and_reject_unknown_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        std::fs::write(&path, r#"{"learning_rate": 0.01, "batch_size": 32.0, "dropout": 0.2, "epochs": 2}"#).unwrap();
        let p = read_params(Some(&path)).unwrap();
        assert_eq!((p.batch_size, p.epochs, p.dropout), (Some(32), Some(2), Some(0.2)));
        std::fs::write(&path, r#"{"learning_rat": 0.01}"#).unwrap();
        let err = format!("{:#}", read_params(Some(&path)).unwrap_err());
        assert!(err.contains("learning_rat"), "{err}");
    }
}

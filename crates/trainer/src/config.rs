//! The built-in trial's configuration, owned here so that a spec's `trial:` and `pretrain:` sections,
//! `nightshift trial`'s flags and `nightshift check` agree on one set of names and ranges.
//!
//! - [`DataConfig`]: where the images come from and how the network sees them (trials and pretraining).
//! - [`TrialConfig`]: a spec's `trial:` section; [`PretrainConfig`]: its `pretrain:` section.
//! - [`Hyperparams`]: the searched hyperparameters, by the names search spaces use ([`HYPERPARAMETERS`]).
//!
//! Parse, then validate: serde reads each key (`deny_unknown_fields`; a misspelt key is refused with the
//! nearest valid name), then the values are checked. Errors are [`Error::InvalidConfig`] naming the key.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::cache::CacheConfig;
use crate::checkpoint::{CONFIG_FILE, WEIGHTS_FILE, read_model_config};
use crate::data::{
    Augmentation, ImageDataset, Normalization, Split, image_folder_classes, list_image_folder, load_idx_dir, load_image_folder,
};
use crate::error::{Error, Result};
use crate::model::{Arch, ModelConfig};
use crate::preprocess::{RandomResizedCrop, Resize, ResizeMode};
use crate::strategy::{DEFAULT_LP_FRACTION, FreezeStrategy};
use crate::train::{OptimizerKind, TrainConfig};

/// The largest `image_size`: beyond the resolutions ImageNet backbones are used at (224–600).
pub const MAX_IMAGE_SIZE: usize = 4096;
/// The largest small-cnn `width` (channels of its first stage; they double per stage).
pub const MAX_WIDTH: usize = 512;

/// Where the data comes from and how the network sees it: the keys `trial:` and `pretrain:` share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// IDX directory (train-images-idx3-ubyte[.gz], …) or image folder (`root/<class>/**/*.png|jpg|jpeg`).
    pub dataset: PathBuf,
    /// Keep at most this many training images per class (few-shot).
    pub per_class: Option<usize>,
    /// Fraction of the training images held out, per class, for validation.
    pub val_fraction: f64,
    /// Architecture name ([`Arch::NAMES`]); a checkpoint given as `init` overrides it.
    pub arch: String,
    /// small-cnn: channels of the stem.
    pub width: usize,
    /// small-cnn: number of conv stages.
    pub depth: usize,
    /// Square input size; default: the dataset's own for small-cnn, 64 for ResNets, 224 for EfficientNet.
    pub image_size: Option<usize>,
    /// Input channels (1 or 3); default 1 for small-cnn on IDX data (grey), 3 otherwise (image folders too).
    pub channels: Option<usize>,
    /// How images reach `image_size` ([`ResizeMode`]): `squash` or `center_crop` (shorter side to
    /// size·256/224, then the centre); default: `squash` for IDX data, `center_crop` for image folders.
    pub resize: Option<ResizeMode>,
    /// Random-crop padding in pixels for training augmentation (0 = off).
    pub crop_padding: usize,
    /// Random horizontal flips for training augmentation (not for digits).
    pub hflip: bool,
    /// torchvision's `RandomResizedCrop` (scale 0.08–1, aspect 3/4–4/3) for training augmentation.
    pub random_resized_crop: bool,
    /// Device (cpu, wgpu, wgpu:N, cuda:N); default: `$NIGHTSHIFT_DEVICE`, which a sweep sets per slot.
    pub device: Option<String>,
    /// Seed for initialisation, shuffling and augmentation (and the split, unless `split_seed` is set).
    pub seed: u64,
    /// Seed of the few-shot subset and the train/validation split; default: `seed`. A sweep fixes it
    /// (to the `trial:` section's `seed`) while every trial gets its own `seed`, so that all trials
    /// are scored on the same validation images.
    pub split_seed: Option<u64>,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            dataset: PathBuf::from("data/fashion_mnist_100"),
            per_class: None,
            val_fraction: 0.2,
            arch: "small-cnn".into(),
            width: 16,
            depth: 3,
            image_size: None,
            channels: None,
            resize: None,
            crop_padding: 0,
            hflip: false,
            random_resized_crop: false,
            device: None,
            seed: 0,
            split_seed: None,
        }
    }
}

impl DataConfig {
    /// The keys of a section that belong to the data (a unit test keeps this list in step with the fields).
    pub const KEYS: [&'static str; 15] = [
        "dataset",
        "per_class",
        "val_fraction",
        "arch",
        "width",
        "depth",
        "image_size",
        "channels",
        "resize",
        "crop_padding",
        "hflip",
        "random_resized_crop",
        "device",
        "seed",
        "split_seed",
    ];

    /// Range checks of the values serde cannot express.
    pub fn validate(&self) -> Result<()> {
        if !(self.val_fraction > 0.0 && self.val_fraction < 1.0) {
            return Err(Error::config("val_fraction", format!("must be in (0, 1), got {}", self.val_fraction)));
        }
        if self.per_class == Some(0) {
            return Err(Error::config("per_class", "must be at least 1 (leave it out to keep every image)"));
        }
        if let Some(c) = self.channels
            && c != 1
            && c != 3
        {
            return Err(Error::config("channels", format!("must be 1 or 3, got {c}")));
        }
        if let Some(size) = self.image_size
            && !(1..=MAX_IMAGE_SIZE).contains(&size)
        {
            // 100,000 × 100,000 pixels per image would abort on allocation in every trial.
            return Err(Error::config("image_size", format!("must be in 1..={MAX_IMAGE_SIZE} pixels, got {size}")));
        }
        let arch = self.arch()?;
        if self.channels == Some(1) && !matches!(arch, Arch::SmallCnn { .. }) {
            // ImageNet backbones and their normalisation have three input planes.
            return Err(Error::config(
                "channels",
                format!(
                    "{} takes 3 channels (an ImageNet stem); grey images are replicated to RGB on load, so leave \
                     `channels` out or set it to 3",
                    self.arch
                ),
            ));
        }
        Ok(())
    }

    /// The architecture a fresh network gets (`width`/`depth` apply to small-cnn).
    pub fn arch(&self) -> Result<Arch> {
        match Arch::from_name(&self.arch)? {
            Arch::SmallCnn { .. } if !(1..=MAX_WIDTH).contains(&self.width) => {
                // The channels double per stage: a width of 100,000 asks for terabytes of weights.
                Err(Error::config("width", format!("must be in 1..={MAX_WIDTH}, got {}", self.width)))
            }
            Arch::SmallCnn { .. } if !(1..=6).contains(&self.depth) => {
                Err(Error::config("depth", format!("must be in 1..=6, got {}", self.depth)))
            }
            Arch::SmallCnn { .. } => Ok(Arch::SmallCnn { width: self.width, depth: self.depth }),
            other => Ok(other),
        }
    }

    /// The training augmentation these options ask for.
    pub fn augmentation(&self) -> Augmentation {
        Augmentation {
            crop_padding: self.crop_padding,
            horizontal_flip: self.hflip,
            random_resized_crop: self.random_resized_crop.then(RandomResizedCrop::default),
        }
    }

    /// How images reach the network's size: `resize`, else `squash` for IDX data (digits and clothes,
    /// already square and centred) and torchvision's resize-and-centre-crop for image folders (photos).
    pub fn resize(&self) -> Resize {
        let default = if self.is_idx_dir() { ResizeMode::Squash } else { ResizeMode::CenterCrop };
        self.resize.unwrap_or(default).into()
    }

    fn is_idx_dir(&self) -> bool {
        ["train-images-idx3-ubyte.gz", "train-images-idx3-ubyte"].iter().any(|f| self.dataset.join(f).is_file())
    }

    /// Whether the dataset has a test split (IDX `t10k` files; an image folder has none).
    pub fn has_test_split(&self) -> bool {
        ["t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte"].iter().any(|f| self.dataset.join(f).is_file())
    }

    /// The dataset's class names and native size, without keeping the images.
    pub fn dataset_shape(&self) -> Result<(Vec<String>, [usize; 2])> {
        if self.is_idx_dir() {
            let d = load_idx_dir(&self.dataset, Split::Train)?;
            Ok((d.class_names, [d.height, d.width]))
        } else {
            // Image folders are resized on load; their size is whatever the model asks for.
            Ok((image_folder_classes(&self.dataset)?, [64, 64]))
        }
    }

    /// What the dataset holds, in a phrase for `check`: "IDX files, 10 classes, 1000 training images, a
    /// t10k test split" or "an image folder, 3 classes, 120 images; left out …". Image folders are
    /// listed, not decoded.
    pub fn describe(&self) -> Result<String> {
        if self.is_idx_dir() {
            let train = load_idx_dir(&self.dataset, Split::Train)?;
            let test = if self.has_test_split() { "a t10k test split" } else { "no t10k test split" };
            Ok(format!("IDX files, {} classes, {} training images, {test}", train.num_classes(), train.labels.len()))
        } else {
            Ok(format!("an image folder, {}", list_image_folder(&self.dataset)?.describe()))
        }
    }

    /// The model description for a fresh network on this data, given the dataset's shape.
    pub fn fresh_model_config(&self, num_classes: usize, native: [usize; 2], dropout: f64) -> Result<ModelConfig> {
        let arch = self.arch()?;
        let is_cnn = matches!(arch, Arch::SmallCnn { .. });
        // Digits and clothes in IDX files are grey; photos in an image folder are in colour.
        let channels = self.channels.unwrap_or(if is_cnn && self.is_idx_dir() { 1 } else { 3 });
        let default_size = match arch {
            Arch::SmallCnn { .. } => native,
            Arch::ResNet { .. } => [64, 64],
            Arch::EfficientNetLite0 => [224, 224],
        };
        let size = self.image_size.map(|s| [s, s]).unwrap_or(default_size);
        let normalization = if is_cnn { Normalization::centered(channels) } else { Normalization::imagenet() };
        let config = ModelConfig {
            arch,
            num_classes,
            in_channels: channels,
            image_size: size,
            dropout,
            normalization,
            resize: self.resize(),
            class_names: vec![],
        };
        config.validate()?;
        Ok(config)
    }

    /// Loads the images as `model` wants them ([`ModelConfig::preprocessing`], as `predict` does): (train,
    /// validation, the test split when `with_test`). With `random_resized_crop` the training images also keep
    /// their originals, at a capped size ([`crate::Preprocessing::original`]).
    pub fn load(&self, model: &ModelConfig, with_test: bool) -> Result<(ImageDataset, ImageDataset, Option<ImageDataset>)> {
        let prep = model.preprocessing();
        let keep = self.random_resized_crop;
        let (full, test) = if self.is_idx_dir() {
            let train = load_idx_dir(&self.dataset, Split::Train)?;
            let test = if with_test { Some(load_idx_dir(&self.dataset, Split::Test)?) } else { None };
            // The model has a logit per training class: a test label beyond them has no logit to score.
            if let Some(test) = &test
                && test.num_classes() > train.num_classes()
            {
                return Err(Error::Dataset {
                    path: self.dataset.clone(),
                    reason: format!(
                        "the test split (t10k) has label {} but the training split only labels 0–{}: \
                         the test classes must be among the training classes",
                        test.num_classes() - 1,
                        train.num_classes() - 1
                    ),
                });
            }
            (train, test)
        } else {
            if with_test {
                return Err(Error::config(
                    "test",
                    format!("needs an IDX dataset with t10k files; {} is an image folder", self.dataset.display()),
                ));
            }
            (load_image_folder(&self.dataset, &prep, keep)?, None)
        };
        let split_seed = self.split_seed.unwrap_or(self.seed);
        let full = match self.per_class {
            Some(k) => full.per_class(k, split_seed)?,
            None => full,
        };
        let (train, val) = full.stratified_split(self.val_fraction, split_seed)?;
        let prepare = |d: ImageDataset, keep: bool| d.into_prepared(&prep, keep, &self.dataset);
        Ok((prepare(train, keep)?, prepare(val, false)?, test.map(|t| prepare(t, false)).transpose()?))
    }

    fn resolve_paths(&mut self, base: &Path) {
        self.dataset = base.join(&self.dataset);
    }
}

/// A spec's `trial:` section: one fine-tuning trial (the searched values come as [`Hyperparams`]).
#[derive(Debug, Clone, PartialEq)]
pub struct TrialConfig {
    /// The data keys, shared with `pretrain:`.
    pub data: DataConfig,
    /// Pretrained weights to start from (a checkpoint directory, .safetensors or .pth); the head is replaced.
    pub init: Option<PathBuf>,
    /// How to get `init` when it is missing (e.g. the command that downloads it): said by the error that
    /// reports it missing. Never passed to trials.
    pub init_hint: Option<String>,
    /// Epochs when the hyperparameters do not set them.
    pub epochs: usize,
    /// Also evaluate the best model on the dataset's test split and report `test_accuracy`.
    pub test: bool,
    /// Do not wait for a continue/prune line after each report.
    pub no_wait: bool,
    /// The frozen-prefix and dataset caches ([`crate::cache`]): `cache: false`, `true` or `{max_size: "4GiB"}`.
    pub cache: CacheConfig,
}

/// The keys of `trial:` beyond [`DataConfig`]'s.
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct TrialKeys {
    init: Option<PathBuf>,
    init_hint: Option<String>,
    epochs: Option<usize>,
    test: bool,
    no_wait: bool,
    /// Read by [`CacheConfig::from_value`], whose errors name `cache.max_size`.
    cache: Option<Value>,
}

impl TrialConfig {
    const KEYS: [&'static str; 6] = ["init", "init_hint", "epochs", "test", "no_wait", "cache"];

    /// Reads and validates a `trial:` section; relative paths are resolved against `base`.
    pub fn from_section(section: &Value, base: &Path) -> Result<Self> {
        let (mut data, own) = read_section::<TrialKeys>(section, &Self::KEYS, "dataset, epochs, init, …")?;
        data.validate()?;
        data.resolve_paths(base);
        let epochs = match own.epochs {
            Some(e) if e >= 1 => e,
            Some(_) => return Err(Error::config("epochs", "must be at least 1")),
            None => return Err(Error::config("epochs", "missing (the number of epochs each trial trains at most)")),
        };
        let init_hint = own.init_hint.map(|h| h.trim().to_string());
        match (&own.init, &init_hint) {
            (None, Some(_)) => return Err(Error::config("init_hint", "says how to get `init`, which is not set")),
            (Some(_), Some(h)) if h.is_empty() => {
                return Err(Error::config("init_hint", "is empty (say how to get the `init` weights, or leave it out)"));
            }
            _ => {}
        }
        let init = own.init.map(|p| base.join(p));
        let cache = own.cache.as_ref().map(CacheConfig::from_value).transpose()?.unwrap_or_default();
        Ok(Self { data, init, init_hint, epochs, test: own.test, no_wait: own.no_wait, cache })
    }

    /// The section again (paths as resolved), without the keys left at their defaults.
    pub fn to_section(&self) -> Map<String, Value> {
        // `init_hint` is not a flag of `nightshift trial`: left out (None) of what trials' command lines are made of.
        let own = TrialKeys {
            init: self.init.clone(),
            init_hint: None,
            epochs: Some(self.epochs),
            test: self.test,
            no_wait: self.no_wait,
            cache: self.cache.to_value(),
        };
        let mut section = non_default_entries(&self.data);
        section.extend(non_default_entries(&own));
        section
    }

    /// The architecture trials train: the `init` checkpoint's when a model.json describes it (or, when
    /// `init` is the output of `pretrain` and does not exist yet, the pretraining's), else the configured one.
    pub fn arch(&self, pretrain: Option<&PretrainConfig>) -> Result<Arch> {
        if let Some(init) = self.init.as_deref() {
            if init.exists()
                && let (_, Some(saved)) = checkpoint_files(init)?
            {
                return Ok(saved.arch);
            }
            if let Some(pretrain) = pretrain.filter(|p| p.out == init) {
                return pretrain.data.arch();
            }
        }
        self.data.arch()
    }

    /// Where to start from and the network's description: a pretrained checkpoint fixes the architecture
    /// and input, and its head is rebuilt for `class_names`.
    pub fn model_config(
        &self,
        class_names: Vec<String>,
        native: [usize; 2],
        dropout: f64,
    ) -> Result<(Option<PathBuf>, ModelConfig)> {
        let classes = class_names.len();
        let (weights, base) = match &self.init {
            Some(path) => {
                let (weights, saved) = checkpoint_files(path)?;
                let base = match saved {
                    Some(c) => c,
                    None => self.data.fresh_model_config(classes, native, dropout)?,
                };
                (Some(weights), base)
            }
            None => (None, self.data.fresh_model_config(classes, native, dropout)?),
        };
        // The resize belongs to the data, not to the backbone: the trial's own, whatever the checkpoint says.
        let config = ModelConfig { num_classes: classes, dropout, class_names, resize: self.data.resize(), ..base };
        config.validate()?;
        Ok((weights, config))
    }
}

/// A spec's `pretrain:` section: a backbone trained once before the sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct PretrainConfig {
    /// The data keys, as in `trial:`.
    pub data: DataConfig,
    /// Epochs to train (default 3).
    pub epochs: usize,
    /// Images per optimiser step (default 64).
    pub batch_size: usize,
    /// Peak learning rate of AdamW's warm-up + cosine schedule (default 2e-3).
    pub learning_rate: f64,
    /// AdamW's decoupled weight decay (default 1e-4).
    pub weight_decay: f64,
    /// Checkpoint directory to write (model.safetensors + model.json).
    pub out: PathBuf,
}

/// The keys of `pretrain:` beyond [`DataConfig`]'s, with their defaults.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct PretrainKeys {
    epochs: usize,
    batch_size: usize,
    learning_rate: f64,
    weight_decay: f64,
    out: Option<PathBuf>,
}

impl Default for PretrainKeys {
    fn default() -> Self {
        Self { epochs: 3, batch_size: 64, learning_rate: 2e-3, weight_decay: 1e-4, out: None }
    }
}

impl PretrainConfig {
    const KEYS: [&'static str; 5] = ["epochs", "batch_size", "learning_rate", "weight_decay", "out"];

    /// The defaults of the keys beyond the data's, for a command line that leaves them out.
    pub fn new(data: DataConfig, out: PathBuf) -> Self {
        let d = PretrainKeys::default();
        Self {
            data,
            epochs: d.epochs,
            batch_size: d.batch_size,
            learning_rate: d.learning_rate,
            weight_decay: d.weight_decay,
            out,
        }
    }

    /// Reads and validates a `pretrain:` section; relative paths are resolved against `base`.
    pub fn from_section(section: &Value, base: &Path) -> Result<Self> {
        let (mut data, own) = read_section::<PretrainKeys>(section, &Self::KEYS, "dataset, epochs, out, …")?;
        data.validate()?;
        data.resolve_paths(base);
        let Some(out) = own.out else {
            return Err(Error::config(
                "out",
                "missing (the checkpoint directory the backbone is saved to, e.g. ../reports/backbone)",
            ));
        };
        let config = Self {
            data,
            epochs: own.epochs,
            batch_size: own.batch_size,
            learning_rate: own.learning_rate,
            weight_decay: own.weight_decay,
            out: base.join(out),
        };
        config.train_config()?;
        Ok(config)
    }

    /// The section again (paths as resolved), without the keys left at their defaults.
    pub fn to_section(&self) -> Map<String, Value> {
        let own = PretrainKeys {
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            weight_decay: self.weight_decay,
            out: Some(self.out.clone()),
        };
        let mut section = non_default_entries(&self.data);
        section.extend(non_default_entries(&own));
        section
    }

    /// The validated training configuration of the pretraining.
    pub fn train_config(&self) -> Result<TrainConfig> {
        let mut config = TrainConfig::new(self.epochs, self.batch_size, self.learning_rate);
        config.weight_decay = self.weight_decay;
        config.seed = self.data.seed;
        config.augmentation = self.data.augmentation();
        config.validate()?;
        Ok(config)
    }
}

/// The searched hyperparameters, exactly as search spaces name them ([`HYPERPARAMETERS`]); each one not
/// given keeps its default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hyperparams {
    /// Peak learning rate (default 1e-3); positive.
    pub learning_rate: Option<f64>,
    /// Images per optimiser step (default 64); at least 1.
    pub batch_size: Option<usize>,
    /// Dropout before the head (default 0); in [0, 1).
    pub dropout: Option<f64>,
    /// Epochs to train (default: the `trial:` section's `epochs`).
    pub epochs: Option<usize>,
    /// Weight decay (default 0): decoupled for AdamW, an L2 penalty for SGD; at least 0.
    pub weight_decay: Option<f64>,
    /// `freeze_strategy: depth:K` by its older name.
    pub freeze_depth: Option<usize>,
    /// A [`FreezeStrategy`] by name: full, depth:K, linear_probe, lp_ft, gradual_unfreeze, layer_decay:G.
    pub freeze_strategy: Option<String>,
    /// lp_ft: the fraction of the epochs spent as a linear probe (default 0.5).
    pub lp_fraction: Option<f64>,
    /// gradual_unfreeze: epochs between unfreezing one more stage (default 1).
    pub unfreeze_every: Option<usize>,
    /// "adamw" or "sgd".
    pub optimizer: Option<String>,
    /// SGD's momentum (default 0.9); in [0, 1). Ignored by AdamW.
    pub momentum: Option<f64>,
    /// Share of each schedule phase's steps spent warming up (default 0.05); in [0, 1).
    pub warmup_fraction: Option<f64>,
}

/// The names of the hyperparameters the built-in trainer accepts.
pub const HYPERPARAMETERS: [&str; 12] = [
    "learning_rate",
    "batch_size",
    "dropout",
    "epochs",
    "weight_decay",
    "freeze_depth",
    "freeze_strategy",
    "lp_fraction",
    "unfreeze_every",
    "optimizer",
    "momentum",
    "warmup_fraction",
];

/// The optimizers `optimizer` may name.
pub const OPTIMIZERS: [&str; 2] = ["adamw", "sgd"];

impl Hyperparams {
    /// Reads a JSON object of hyperparameters. Integers may arrive as floats (2.0) from samplers that only
    /// know numbers.
    pub fn from_json(value: Value) -> Result<Self> {
        let Value::Object(mut map) = value else {
            return Err(Error::config("hyperparameters", format!("expected a JSON object, found {value}")));
        };
        for (key, value) in map.iter_mut() {
            if !HYPERPARAMETERS.contains(&key.as_str()) {
                return Err(unknown_key(key, &HYPERPARAMETERS, "the built-in trainer has no hyperparameter"));
            }
            if ["batch_size", "epochs", "freeze_depth", "unfreeze_every"].contains(&key.as_str())
                && let Some(f) = value.as_f64()
                && f.fract() == 0.0
                && f >= 0.0
            {
                *value = Value::from(f as u64);
            }
            typed_key::<Self>(key, value)?;
        }
        serde_json::from_value(Value::Object(map)).map_err(|e| Error::config("hyperparameters", e.to_string()))
    }

    /// Checks one value a search space can give `name`, for a model with `stages` freezable stages trained
    /// for `epochs` epochs unless `epochs` is given.
    pub fn check_value(name: &str, value: &Value, stages: usize, epochs: usize) -> Result<()> {
        Self::from_json(Value::Object(Map::from_iter([(name.to_string(), value.clone())])))?.validate(stages, epochs)
    }

    /// The ranges: learning_rate > 0, batch_size ≥ 1, 0 ≤ dropout < 1, weight_decay ≥ 0,
    /// freeze_depth ≤ `stages`, a known freeze strategy that fits `stages` (and, for lp_ft, the epochs:
    /// `epochs` unless given), 0 < lp_fraction < 1, unfreeze_every ≥ 1, a known optimizer,
    /// 0 ≤ momentum < 1, 0 ≤ warmup_fraction < 1.
    pub fn validate(&self, stages: usize, epochs: usize) -> Result<()> {
        let config = self.train_config(epochs, &DataConfig::default())?;
        if let Some(f) = self.lp_fraction
            && !(f > 0.0 && f < 1.0)
        {
            return Err(Error::config("lp_fraction", format!("must be in (0, 1), got {f}")));
        }
        if self.unfreeze_every == Some(0) {
            return Err(Error::config("unfreeze_every", "must be at least 1"));
        }
        if let Some(d) = self.dropout
            && !(0.0..1.0).contains(&d)
        {
            return Err(Error::config("dropout", format!("must be in [0, 1), got {d}")));
        }
        if let Some(m) = self.momentum
            && !(0.0..1.0).contains(&m)
        {
            return Err(Error::config("momentum", format!("must be in [0, 1), got {m}")));
        }
        match self.freeze_depth {
            Some(d) if d > stages => {
                Err(Error::config("freeze_depth", format!("is {d} but the model has {stages} stages (valid: 0 to {stages})")))
            }
            _ => config.freeze_strategy.validate(stages, config.epochs),
        }
    }

    /// The freeze strategy these values ask for: `freeze_strategy` with `lp_fraction`/`unfreeze_every`, or
    /// `freeze_depth: K` as `depth:K`, or `full`.
    pub fn freeze_strategy(&self) -> Result<FreezeStrategy> {
        let strategy = match (&self.freeze_strategy, self.freeze_depth) {
            (Some(_), Some(_)) => {
                return Err(Error::config(
                    "freeze_strategy",
                    "give freeze_strategy or freeze_depth, not both (freeze_depth: K is freeze_strategy: depth:K)",
                ));
            }
            (Some(name), None) => name.parse()?,
            (None, Some(depth)) => FreezeStrategy::Depth(depth),
            (None, None) => FreezeStrategy::Full,
        };
        Ok(match strategy {
            FreezeStrategy::LpFt { .. } => FreezeStrategy::LpFt { lp_fraction: self.lp_fraction.unwrap_or(DEFAULT_LP_FRACTION) },
            FreezeStrategy::GradualUnfreeze { .. } => FreezeStrategy::GradualUnfreeze { every: self.unfreeze_every.unwrap_or(1) },
            other => other,
        })
    }

    /// Dropout before the head (default 0).
    pub fn dropout(&self) -> f64 {
        self.dropout.unwrap_or(0.0)
    }

    /// The validated training configuration: these values over the defaults, with the data's seed and
    /// augmentation; `default_epochs` unless `epochs` is searched.
    pub fn train_config(&self, default_epochs: usize, data: &DataConfig) -> Result<TrainConfig> {
        let mut config = TrainConfig::new(
            self.epochs.unwrap_or(default_epochs),
            self.batch_size.unwrap_or(64),
            self.learning_rate.unwrap_or(1e-3),
        );
        config.weight_decay = self.weight_decay.unwrap_or(0.0);
        config.freeze_strategy = self.freeze_strategy()?;
        config.seed = data.seed;
        if let Some(w) = self.warmup_fraction {
            config.warmup_fraction = w;
        }
        config.optimizer = match self.optimizer.as_deref() {
            None | Some("adamw") => OptimizerKind::AdamW,
            Some("sgd") => OptimizerKind::Sgd { momentum: self.momentum.unwrap_or(0.9) },
            Some(other) => {
                return Err(unknown_key(other, &OPTIMIZERS, "unknown optimizer").renamed("optimizer"));
            }
        };
        config.augmentation = data.augmentation();
        config.validate()?;
        Ok(config)
    }
}

/// Finds weights and (when present) the model.json of a checkpoint path: a checkpoint directory, or a
/// weight file with or without a model.json beside it.
pub fn checkpoint_files(path: &Path) -> Result<(PathBuf, Option<ModelConfig>)> {
    if !path.exists() {
        return Err(Error::Checkpoint {
            path: path.to_path_buf(),
            reason: "does not exist (a checkpoint directory, a .safetensors or a .pth file)".into(),
        });
    }
    if path.is_dir() {
        return Ok((path.join(WEIGHTS_FILE), Some(read_model_config(path)?)));
    }
    let sibling = path.with_file_name(CONFIG_FILE);
    let config = if sibling.is_file() { Some(read_model_config(&sibling)?) } else { None };
    Ok((path.to_path_buf(), config))
}

/// The valid name nearest to a misspelt one, when one is near enough to be meant.
pub fn did_you_mean<'a>(word: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|v| (strsim::jaro_winkler(word, v), *v))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, v)| v)
}

/// "`what` `word`: did you mean `x`? (valid: a, b, c)".
fn unknown_key(word: &str, valid: &[&str], what: &str) -> Error {
    let hint = did_you_mean(word, valid).map(|v| format!(": did you mean `{v}`?")).unwrap_or_default();
    Error::config(word, format!("{what} `{word}`{hint} (valid: {})", valid.join(", ")))
}

impl Error {
    /// The same error about another field (an unknown value is reported at the key that holds it).
    fn renamed(self, field: &str) -> Self {
        match self {
            Error::InvalidConfig { reason, .. } => Error::InvalidConfig { field: field.to_string(), reason },
            other => other,
        }
    }
}

/// Reads a section whose keys belong either to [`DataConfig`] or to `Own` (both `deny_unknown_fields`, every
/// field defaulted), one key at a time so that an error names its key.
fn read_section<Own: DeserializeOwned>(section: &Value, own_keys: &[&str], example: &str) -> Result<(DataConfig, Own)> {
    let Value::Object(map) = section else {
        return Err(Error::config("", format!("expected a mapping ({example}), found {section}")));
    };
    let (mut data, mut own) = (Map::new(), Map::new());
    for (key, value) in map {
        let target = if DataConfig::KEYS.contains(&key.as_str()) {
            typed_key::<DataConfig>(key, value)?;
            &mut data
        } else if own_keys.contains(&key.as_str()) {
            typed_key::<Own>(key, value)?;
            &mut own
        } else {
            let valid: Vec<&str> = DataConfig::KEYS.iter().chain(own_keys).copied().collect();
            return Err(unknown_key(key, &valid, "unknown key"));
        };
        target.insert(key.clone(), value.clone());
    }
    let whole = |e: serde_json::Error, what: &str| Error::config("", format!("{what}: {e}"));
    let data = serde_json::from_value(Value::Object(data)).map_err(|e| whole(e, "data keys"))?;
    let own = serde_json::from_value(Value::Object(own)).map_err(|e| whole(e, "keys"))?;
    Ok((data, own))
}

/// Deserialises `{key: value}` alone into `T` (whose other fields default), so that a type error names `key`.
fn typed_key<T: DeserializeOwned>(key: &str, value: &Value) -> Result<()> {
    let single = Value::Object(Map::from_iter([(key.to_string(), value.clone())]));
    serde_json::from_value::<T>(single).map(drop).map_err(|e| Error::config(key, e.to_string()))
}

/// The fields of `value` that differ from `T::default()`'s, so that a section written back (or turned into
/// flags) says only what was chosen.
fn non_default_entries<T: Serialize + Default>(value: &T) -> Map<String, Value> {
    let as_map = |v: &T| match serde_json::to_value(v) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    let defaults = as_map(&T::default());
    as_map(value).into_iter().filter(|(k, v)| !v.is_null() && defaults.get(k) != Some(v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trial(section: Value) -> Result<TrialConfig> {
        TrialConfig::from_section(&section, Path::new("/spec"))
    }

    fn refused(result: Result<impl std::fmt::Debug>) -> (String, String) {
        match result.expect_err("should be refused") {
            Error::InvalidConfig { field, reason } => (field, reason),
            other => panic!("not a config error: {other}"),
        }
    }

    #[test]
    fn data_keys_match_the_fields() {
        let Value::Object(map) = serde_json::to_value(DataConfig::default()).unwrap() else { panic!() };
        assert_eq!(map.keys().map(String::as_str).collect::<Vec<_>>(), DataConfig::KEYS);
        let Value::Object(map) = serde_json::to_value(TrialKeys::default()).unwrap() else { panic!() };
        assert_eq!(map.keys().map(String::as_str).collect::<Vec<_>>(), TrialConfig::KEYS);
        let Value::Object(map) = serde_json::to_value(PretrainKeys::default()).unwrap() else { panic!() };
        assert_eq!(map.keys().map(String::as_str).collect::<Vec<_>>(), PretrainConfig::KEYS);
        let Value::Object(map) = serde_json::to_value(Hyperparams::default()).unwrap() else { panic!() };
        assert_eq!(map.keys().map(String::as_str).collect::<Vec<_>>(), HYPERPARAMETERS);
    }

    #[test]
    fn a_trial_section_reads_resolves_and_writes_back_what_was_chosen() {
        let config = trial(json!({"dataset": "data/x", "init": "/abs/ckpt", "epochs": 3, "hflip": true, "seed": 0})).unwrap();
        assert_eq!(config.data.dataset, Path::new("/spec/data/x"));
        assert_eq!(config.init.as_deref(), Some(Path::new("/abs/ckpt")));
        assert_eq!((config.epochs, config.data.hflip, config.test), (3, true, false));
        let section = config.to_section();
        assert_eq!(Value::Object(section), json!({"dataset": "/spec/data/x", "hflip": true, "init": "/abs/ckpt", "epochs": 3}));
    }

    #[test]
    fn trial_cache_reads_checks_and_writes_back() {
        assert_eq!(trial(json!({"epochs": 1})).unwrap().cache, CacheConfig::default());
        let off = trial(json!({"epochs": 1, "cache": false})).unwrap();
        assert!(!off.cache.enabled);
        assert_eq!(off.to_section().get("cache"), Some(&json!(false)));
        let capped = trial(json!({"epochs": 1, "cache": {"max_size": "512MiB"}})).unwrap();
        assert_eq!(capped.cache.max_bytes, 512 << 20);
        assert_eq!(trial(Value::Object(capped.to_section())).unwrap().cache, capped.cache);
        assert!(!trial(json!({"epochs": 1, "cache": true})).unwrap().to_section().contains_key("cache"));
        let (field, reason) = refused(trial(json!({"epochs": 1, "cache": {"max_size": "big"}})));
        assert_eq!(field, "cache.max_size");
        assert!(reason.contains("\"4GiB\""), "{reason}");
        assert_eq!(refused(trial(json!({"epochs": 1, "cache": "on"}))).0, "cache");
    }

    #[test]
    fn init_hint_is_read_but_never_passed_to_trials() {
        let hint = "get them with scripts/fetch.sh";
        let config = trial(json!({"init": "w.pth", "init_hint": format!(" {hint} "), "epochs": 1})).unwrap();
        assert_eq!(config.init_hint.as_deref(), Some(hint));
        let section = config.to_section();
        assert!(!section.contains_key("init_hint"), "{section:?}");
        assert_eq!((&section["init"], &section["epochs"]), (&json!("/spec/w.pth"), &json!(1)));
        let (field, reason) = refused(trial(json!({"init_hint": hint, "epochs": 1})));
        assert_eq!(field, "init_hint");
        assert!(reason.contains("`init`"), "{reason}");
        assert_eq!(refused(trial(json!({"init": "w.pth", "init_hint": " ", "epochs": 1}))).0, "init_hint");
    }

    #[test]
    fn trial_section_mistakes_name_the_key_and_the_valid_values() {
        let (field, reason) = refused(trial(json!({"datset": "d", "epochs": 3})));
        assert_eq!(field, "datset");
        assert!(reason.contains("did you mean `dataset`?") && reason.contains("valid: dataset, per_class"), "{reason}");
        let (field, reason) = refused(trial(json!({"arch": "resnet19", "epochs": 3})));
        assert_eq!(field, "arch");
        assert!(reason.contains("did you mean `resnet18`?") && reason.contains("efficientnet-lite0"), "{reason}");
        let (field, reason) = refused(trial(json!({"epochs": "three"})));
        assert_eq!(field, "epochs");
        assert!(reason.contains("expected usize"), "{reason}");
        let (field, reason) = refused(trial(json!({"dataset": "d"})));
        assert_eq!((field.as_str(), reason.contains("missing")), ("epochs", true), "{reason}");
        assert_eq!(refused(trial(json!({"epochs": 1, "val_fraction": 1.5}))).0, "val_fraction");
        assert_eq!(refused(trial(json!({"epochs": 1, "depth": 9}))).0, "depth");
        assert_eq!(refused(trial(json!(["dataset"]))).0, "");
        let (field, reason) = refused(trial(json!({"epochs": 1, "resize": "crop"})));
        assert_eq!(field, "resize");
        assert!(reason.contains("unknown variant `crop`") && reason.contains("`squash` or `center_crop`"), "{reason}");
        assert_eq!(refused(trial(json!({"epochs": 1, "random_resized_crop": "yes"}))).0, "random_resized_crop");
        let (field, reason) = refused(trial(json!({"epochs": 1, "arch": "resnet18", "channels": 1})));
        assert_eq!(field, "channels");
        assert!(reason.contains("resnet18 takes 3 channels") && reason.contains("replicated to RGB"), "{reason}");
        assert!(trial(json!({"epochs": 1, "arch": "small-cnn", "channels": 1})).is_ok());
    }

    #[test]
    fn the_resize_follows_the_data_unless_given_and_random_resized_crop_is_an_augmentation() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let idx = trial(json!({"dataset": root.join("data/fashion_mnist_tiny"), "epochs": 1})).unwrap();
        assert_eq!(idx.data.resize(), Resize::Squash);
        let folder = tempfile::tempdir().unwrap();
        let photos = trial(json!({"dataset": folder.path(), "epochs": 1})).unwrap();
        assert_eq!(photos.data.resize(), Resize::center_crop());
        let chosen = trial(json!({"dataset": folder.path(), "epochs": 1, "resize": "squash"})).unwrap();
        assert_eq!(chosen.data.resize(), Resize::Squash);
        assert_eq!(Value::Object(chosen.to_section())["resize"], json!("squash"));
        let config = trial(json!({"epochs": 1, "random_resized_crop": true, "hflip": true})).unwrap();
        let augmentation = config.data.augmentation();
        assert_eq!(augmentation.random_resized_crop, Some(RandomResizedCrop::default()));
        assert!(augmentation.prefix_cacheable().is_none());
        assert!(DataConfig { hflip: true, ..DataConfig::default() }.augmentation().prefix_cacheable().is_some());
        // The small CNN reads IDX digits in grey and an image folder's photos in colour, unless told.
        let photos = tempfile::tempdir().unwrap();
        let idx = DataConfig { dataset: "../../data/mnist_tiny".into(), ..DataConfig::default() };
        let folder = DataConfig { dataset: photos.path().into(), ..DataConfig::default() };
        let told = DataConfig { channels: Some(1), ..folder.clone() };
        let channels = |data: &DataConfig| data.fresh_model_config(2, [8, 8], 0.0).unwrap().in_channels;
        assert!(idx.is_idx_dir(), "the bundled digits");
        assert_eq!((channels(&idx), channels(&folder), channels(&told)), (1, 3, 1));
        assert!(DataConfig { crop_padding: 2, ..DataConfig::default() }.augmentation().prefix_cacheable().is_none());
    }

    #[test]
    fn hyperparameter_names_and_ranges() {
        let check = |name: &str, value: Value| Hyperparams::check_value(name, &value, 3, 4);
        for (name, value) in [
            ("learning_rate", json!(1e-3)),
            ("batch_size", json!(1)),
            ("batch_size", json!(32.0)),
            ("dropout", json!(0.0)),
            ("weight_decay", json!(0.0)),
            ("freeze_depth", json!(3)),
            ("freeze_strategy", json!("depth:3")),
            ("freeze_strategy", json!("lp_ft")),
            ("freeze_strategy", json!("layer_decay:0.7")),
            ("lp_fraction", json!(0.25)),
            ("unfreeze_every", json!(2.0)),
            ("optimizer", json!("sgd")),
        ] {
            assert!(check(name, value.clone()).is_ok(), "{name} = {value}");
        }
        for (name, value, expect) in [
            ("learning_rat", json!(0.1), "did you mean `learning_rate`?"),
            ("learning_rate", json!(-0.1), "must be positive"),
            ("learning_rate", json!(0.0), "must be positive"),
            ("batch_size", json!(0), "at least 1"),
            ("dropout", json!(1.0), "[0, 1)"),
            ("dropout", json!(-0.1), "[0, 1)"),
            ("weight_decay", json!(-1e-4), ">= 0"),
            ("freeze_depth", json!(4), "the model has 3 stages (valid: 0 to 3)"),
            ("freeze_strategy", json!("depth:99"), "the model has 3 stages (valid: depth:0 to depth:3)"),
            ("freeze_strategy", json!("layer_decay:1.5"), "(0, 1]"),
            ("freeze_strategy", json!("gradual"), "valid: full, depth:K, linear_probe"),
            ("freeze_strategy", json!(3), "expected a string"),
            ("lp_fraction", json!(1.0), "(0, 1)"),
            ("lp_fraction", json!(0.0), "(0, 1)"),
            ("unfreeze_every", json!(0), "at least 1"),
            ("optimizer", json!("adam"), "did you mean `adamw`?"),
            ("momentum", json!(1.0), "[0, 1)"),
        ] {
            let (field, reason) = refused(check(name, value.clone()));
            assert!(reason.contains(expect), "{name} = {value}: {field}: {reason}");
            assert_eq!(field, name, "{reason}");
        }
    }

    #[test]
    fn freeze_strategies_from_the_hyperparameters() {
        let strategy = |v: Value| Hyperparams::from_json(v).and_then(|h| h.train_config(4, &DataConfig::default()));
        // The older name means the same: freeze_depth: K is depth:K, 0 is full.
        for k in 0..=3 {
            let by_depth = strategy(json!({"freeze_depth": k})).unwrap();
            assert_eq!(by_depth, strategy(json!({"freeze_strategy": format!("depth:{k}")})).unwrap());
        }
        assert_eq!(strategy(json!({})).unwrap().freeze_strategy, FreezeStrategy::Full);
        assert_eq!(
            strategy(json!({"freeze_strategy": "lp_ft", "lp_fraction": 0.25})).unwrap().freeze_strategy,
            FreezeStrategy::LpFt { lp_fraction: 0.25 }
        );
        assert_eq!(
            strategy(json!({"freeze_strategy": "gradual_unfreeze", "unfreeze_every": 3})).unwrap().freeze_strategy,
            FreezeStrategy::GradualUnfreeze { every: 3 }
        );
        // lp_fraction and unfreeze_every only matter to their own strategies.
        assert_eq!(strategy(json!({"lp_fraction": 0.25})).unwrap().freeze_strategy, FreezeStrategy::Full);
        let (field, reason) = refused(strategy(json!({"freeze_strategy": "full", "freeze_depth": 1})));
        assert!(field == "freeze_strategy" && reason.contains("not both"), "{reason}");
        let (field, reason) = refused(strategy(json!({"freeze_strategy": "lp_ft", "epochs": 1})));
        assert!(field == "freeze_strategy" && reason.contains("at least 2 epochs"), "{reason}");
        let (field, _) = refused(strategy(json!({"freeze_strategy": "lp_ft", "lp_fraction": 1.5})));
        assert_eq!(field, "lp_fraction");
    }

    #[test]
    fn the_trained_architecture_follows_init_then_pretraining() {
        let data = DataConfig { depth: 2, ..DataConfig::default() };
        let config = TrialConfig {
            data,
            init: None,
            init_hint: None,
            epochs: 1,
            test: false,
            no_wait: false,
            cache: CacheConfig::default(),
        };
        assert_eq!(config.arch(None).unwrap(), Arch::SmallCnn { width: 16, depth: 2 });
        let init = PathBuf::from("/nonexistent/backbone");
        let pretrain = PretrainConfig::new(DataConfig { arch: "resnet18".into(), ..DataConfig::default() }, init.clone());
        let config = TrialConfig { init: Some(init), ..config };
        assert_eq!(config.arch(Some(&pretrain)).unwrap().num_stages(), 4);
        assert_eq!(config.arch(None).unwrap().num_stages(), 2);
    }

    #[test]
    fn a_pretrain_section_needs_out() {
        let config = PretrainConfig::from_section(&json!({"dataset": "m", "epochs": 2, "out": "b"}), Path::new("/s")).unwrap();
        assert_eq!((config.out.as_path(), config.epochs, config.batch_size), (Path::new("/s/b"), 2, 64));
        assert_eq!(Value::Object(config.to_section()), json!({"dataset": "/s/m", "epochs": 2, "out": "/s/b"}));
        assert_eq!(refused(PretrainConfig::from_section(&json!({"dataset": "m"}), Path::new("/s"))).0, "out");
        assert_eq!(refused(PretrainConfig::from_section(&json!({"out": "b", "batch_size": 0}), Path::new("/s"))).0, "batch_size");
    }
}

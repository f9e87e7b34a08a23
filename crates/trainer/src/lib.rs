//! Fine-tuning of pretrained image classifiers with burn: the workload every nightshift trial runs.
//!
//! # Overview
//!
//! - Data ([`data`]): [`ImageDataset`] from IDX files ([`load_idx_dir`]) or image folders
//!   ([`load_image_folder`]), [`ImageDataset::stratified_split`], [`ImageDataset::per_class`] few-shot
//!   subsets, channel/size conversion, [`Normalization`], [`Augmentation`] and the [`Batcher`].
//! - Models ([`model`], [`resnet`], [`efficientnet`]): the [`ImageClassifier`] seam, [`SmallCnn`],
//!   [`ResNet`] (torchvision names), [`EfficientNetLite`], and the [`ModelConfig`] saved next to every checkpoint.
//! - Checkpoints ([`checkpoint`]): [`save_checkpoint`] and [`load_weights`] for our safetensors and for
//!   PyTorch `.pth`/`.safetensors` state dicts, with an [`ImportReport`].
//! - Training ([`train`]): [`fine_tune`] runs the epoch loop on a burn [`Device`]
//!   chosen by the caller (AdamW or SGD, cosine schedule with warm-up, a [`FreezeStrategy`]) and calls an
//!   [`EpochCallback`] after every epoch, which may stop it ([`Control::Stop`]) — that is how pruning works.
//! - Freeze strategies ([`strategy`]): [`FreezeStrategy`] (`full`, `depth:K`, `linear_probe`, `lp_ft`,
//!   `gradual_unfreeze`, `layer_decay:G`) and its per-epoch [`EpochPlan`] over a network's [`Parts`].
//! - Preprocessing ([`preprocess`]): [`Preprocessing`], the one image pipeline (channels, [`Resize`],
//!   normalisation) that training, validation, test and `predict` share, recorded in [`ModelConfig`]; and
//!   the [`RandomResizedCrop`] augmentation.
//! - Inference ([`predict`]): [`predict::top_k`] for the `predict` command.
//! - The built-in trial's configuration ([`config`]): [`TrialConfig`] (a spec's `trial:` section),
//!   [`PretrainConfig`], [`DataConfig`] and the searched [`Hyperparams`] with their names
//!   ([`HYPERPARAMETERS`]) and ranges — the one owner that `nightshift check` validates against.
//! - [`Network`]: any of the architectures, chosen at run time from a [`ModelConfig`].
//!
//! # Example
//!
//! ```no_run
//! use burn::prelude::*;
//! use nightshift_trainer::{
//!     Arch, Control, EpochMetrics, ImageClassifier, ModelConfig, Normalization, SmallCnn, Split, TrainConfig,
//!     fine_tune, load_idx_dir,
//! };
//!
//! # fn main() -> nightshift_trainer::Result<()> {
//! let data = load_idx_dir("data/fashion_mnist_100".as_ref(), Split::Train)?;
//! let (train, val) = data.stratified_split(0.2, 0)?;
//! let config = ModelConfig {
//!     arch: Arch::SmallCnn { width: 16, depth: 3 },
//!     num_classes: 10,
//!     in_channels: 1,
//!     image_size: [28, 28],
//!     dropout: 0.1,
//!     normalization: Normalization::centered(1),
//!     resize: Default::default(),
//!     class_names: vec![],
//! };
//! let device = Device::flex();
//! let model = SmallCnn::init(&config, &device)?;
//! let outcome = fine_tune(model, &train, &val, &config.normalization, &TrainConfig::new(3, 64, 1e-3), &device,
//!     &mut |m: &EpochMetrics| { println!("epoch {} acc {:.3}", m.epoch, m.val_accuracy); Control::Continue })?;
//! println!("best epoch {}", outcome.best_epoch);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod data;
mod device;
pub mod efficientnet;
mod error;
pub mod model;
mod network;
pub mod norm;
pub mod predict;
pub mod preprocess;
pub mod resnet;
mod rng;
pub mod strategy;
pub mod train;

/// The burn device type, re-exported so that callers need no direct burn dependency.
pub use burn::tensor::Device;
pub use cache::{CacheConfig, CacheSettings, DatasetCacheReport, PrefixCacheReport};
pub use checkpoint::{ImportReport, LoadMode, load_weights, read_model_config, save_checkpoint, save_weights};
pub use config::{
    DataConfig, HYPERPARAMETERS, Hyperparams, OPTIMIZERS, PretrainConfig, TrialConfig, checkpoint_files, did_you_mean,
};
pub use data::{
    Augmentation, Batcher, FolderListing, HostBatch, IMAGE_EXTENSIONS, ImageDataset, Normalization, Split, Transform,
    decode_image, decode_image_bytes, image_folder_classes, list_image_folder, load_idx, load_idx_bytes, load_idx_dir,
    load_image_folder,
};
pub use device::{gpu_backends, parse_device};
pub use efficientnet::EfficientNetLite;
pub use error::{Error, Result, is_out_of_memory};
pub use model::{Arch, ImageClassifier, ModelConfig, ParamIds, Parts, SmallCnn};
pub use network::Network;
pub use preprocess::{CropBox, DecodedImage, Preprocessing, RandomResizedCrop, Resize, ResizeMode};
pub use resnet::ResNet;
pub use strategy::{EpochPlan, FREEZE_STRATEGIES, FreezeStrategy};
pub use train::{
    Control, EpochCallback, EpochMetrics, EvalMetrics, OptimizerKind, TrainConfig, TrainOutcome, evaluate, fine_tune,
};

/// burn's CPU backend draws all random numbers (initialisation, dropout) from one process-wide generator, so
/// tests that create or train models take this lock: otherwise parallel tests interleave their draws and a
/// seeded run is no longer reproducible. (Trials run one per process, where this does not arise.)
#[cfg(test)]
pub(crate) fn serial_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

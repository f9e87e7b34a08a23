//! [`Network`]: one of the architectures, chosen at run time from a [`ModelConfig`], so that callers
//! load, train, save and run any of them without naming the concrete type.

use std::path::{Path, PathBuf};

use crate::Device;
use crate::checkpoint::{ImportReport, LoadMode, load_weights, save_checkpoint};
use crate::data::{Batcher, ImageDataset, Normalization};
use crate::efficientnet::EfficientNetLite;
use crate::error::Result;
use crate::model::{Arch, ImageClassifier, ModelConfig, SmallCnn};
use crate::predict::{TopClass, predict_input};
use crate::resnet::ResNet;
use crate::train::{EpochCallback, EvalMetrics, TrainConfig, TrainOutcome, evaluate, fine_tune};

/// A network of any of the architectures of [`Arch`].
// One network per process, moved a handful of times: boxing the variants would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Network {
    /// `small-cnn` ([`Arch::SmallCnn`]).
    SmallCnn(SmallCnn),
    /// `resnet18`, `resnet34` or `resnet50` ([`Arch::ResNet`]).
    ResNet(ResNet),
    /// `efficientnet-lite0` ([`Arch::EfficientNetLite0`]).
    EfficientNetLite(EfficientNetLite),
}

/// Runs `$body` with `$model` bound to the concrete network inside `$network` (each arm has its own type).
macro_rules! dispatch {
    ($network:expr, |$model:ident| $body:expr) => {
        match $network {
            Network::SmallCnn($model) => $body,
            Network::ResNet($model) => $body,
            Network::EfficientNetLite($model) => $body,
        }
    };
}

impl Network {
    /// A freshly initialised network of `config`'s architecture.
    pub fn init(config: &ModelConfig, device: &Device) -> Result<Self> {
        Ok(match config.arch {
            Arch::SmallCnn { .. } => Network::SmallCnn(SmallCnn::init(config, device)?),
            Arch::ResNet { .. } => Network::ResNet(ResNet::init(config, device)?),
            Arch::EfficientNetLite0 => Network::EfficientNetLite(EfficientNetLite::init(config, device)?),
        })
    }

    /// [`load_weights`] into this network.
    pub fn load_weights(&mut self, path: &Path, mode: LoadMode) -> Result<ImportReport> {
        dispatch!(self, |model| load_weights(model, path, mode))
    }

    /// [`fine_tune`] this network; the outcome's best model is a [`Network`] again.
    pub fn fine_tune(
        self,
        train: &ImageDataset,
        val: &ImageDataset,
        normalization: &Normalization,
        config: &TrainConfig,
        device: &Device,
        callback: &mut dyn EpochCallback,
    ) -> Result<TrainOutcome<Network>> {
        Ok(match self {
            Network::SmallCnn(m) => fine_tune(m, train, val, normalization, config, device, callback)?.map(Network::SmallCnn),
            Network::ResNet(m) => fine_tune(m, train, val, normalization, config, device, callback)?.map(Network::ResNet),
            Network::EfficientNetLite(m) => {
                fine_tune(m, train, val, normalization, config, device, callback)?.map(Network::EfficientNetLite)
            }
        })
    }

    /// [`save_checkpoint`] of this network.
    pub fn save_checkpoint(&self, config: &ModelConfig, dir: &Path) -> Result<PathBuf> {
        dispatch!(self, |model| save_checkpoint(model, config, dir))
    }

    /// [`evaluate`] this network.
    pub fn evaluate(&self, data: &ImageDataset, batcher: &Batcher, batch_size: usize, device: &Device) -> Result<EvalMetrics> {
        dispatch!(self, |model| evaluate(model, data, batcher, batch_size, device))
    }

    /// [`predict_input`] with this network: the top `k` classes of one image prepared by
    /// [`crate::predict::load_image_tensor`].
    pub fn predict(&self, input: burn::tensor::Tensor<4>, k: usize, class_names: &[String]) -> Result<Vec<TopClass>> {
        dispatch!(self, |model| predict_input(model, input, k, class_names))
    }
}

//! Models: the [`ImageClassifier`] seam, the model description saved next to every checkpoint
//! ([`ModelConfig`]), and the small CNN. ResNet lives in [`crate::resnet`], EfficientNet-Lite0 in
//! [`crate::efficientnet`].
//!
//! Freezing: every network names its parts ([`ImageClassifier::parts`]: the stem, each stage, the head) and
//! a [`crate::FreezeStrategy`] decides per epoch which of them train. Frozen parts go through burn's
//! [`Module::freeze_group`], which turns off their gradients *and* their training flags, so a frozen
//! BatchNorm normalises with its running statistics and does not update them.

use burn::module::{Flag, Module, ModuleVisitor, Param, ParamId};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::norm::BatchNorm;
use crate::preprocess::{Preprocessing, Resize};

/// A network that maps `[n, c, h, w]` images to `[n, classes]` logits, with a stem, stages and a head.
pub trait ImageClassifier: Module + Sized + 'static {
    /// Builds a freshly initialised network for `config`.
    fn init(config: &ModelConfig, device: &Device) -> Result<Self>;
    /// The stem and the first `k` stages (`k` at most [`num_stages`](Self::num_stages)); at `k` =
    /// `num_stages` also the global pooling, so the linear probe's prefix ends in pooled features
    /// `[n, channels, 1, 1]`. What the frozen-prefix cache ([`crate::cache`]) stores.
    fn forward_prefix(&self, images: Tensor<4>, k: usize) -> Tensor<4>;
    /// The rest of the network after [`forward_prefix`](Self::forward_prefix)`(·, k)`: stages k + 1 …,
    /// pooling, dropout and the head. `forward_from(forward_prefix(x, k), k)` runs exactly the operations
    /// of [`forward`](Self::forward), for every `k`.
    fn forward_from(&self, activations: Tensor<4>, k: usize) -> Tensor<2>;
    /// Pooled features just before dropout and the classifier head.
    fn features(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_prefix(images, self.num_stages()).flatten(1, 3)
    }
    /// Class logits.
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_from(self.forward_prefix(images, 0), 0)
    }
    /// Number of freezable stages after the stem; the largest meaningful `freeze_depth`.
    fn num_stages(&self) -> usize;
    /// The parameters of the stem, of each of the [`num_stages`](Self::num_stages) stages and of the
    /// head: what freeze strategies freeze and give learning rates to.
    fn parts(&self) -> Parts;
    /// Parameter path prefix of the classifier head (e.g. `fc`), the part replaced for a new task.
    fn head_prefix() -> &'static str;
    /// Regex renames applied to checkpoint keys on load (checkpoint name -> burn path), for PyTorch names
    /// that cannot be Rust field names (`downsample.0`).
    fn load_key_remaps() -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
    /// The inverse renames, applied when saving, so our checkpoints carry the PyTorch names.
    fn save_key_remaps() -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }
}

/// Which network, and its shape parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "arch", rename_all = "kebab-case")]
pub enum Arch {
    /// `depth` conv stages (3×3 conv, BatchNorm, ReLU, 2×2 max-pool) after a 3×3 stem of `width` channels;
    /// stage i has `width * 2^(i+1)` channels.
    SmallCnn {
        /// Channels of the stem.
        width: usize,
        /// Number of conv stages, 1 to 6; each halves the resolution.
        depth: usize,
    },
    /// torchvision's ResNet-18/34/50 (same parameter names). `resnet` in model.json; `res-net`, serde's
    /// default spelling written before 2026-12-02, still reads.
    #[serde(rename = "resnet", alias = "res-net")]
    ResNet {
        /// The depth: 18, 34 or 50.
        layers: usize,
    },
    /// EfficientNet-Lite0 (names of `efficientnet_lite_pytorch`). `efficientnet-lite0` in model.json, as on
    /// the command line; `efficient-net-lite0`, written before 2026-12-02, still reads.
    #[serde(rename = "efficientnet-lite0", alias = "efficient-net-lite0")]
    EfficientNetLite0,
}

impl Arch {
    /// The names [`Arch::from_name`] accepts (besides a few aliases).
    pub const NAMES: [&'static str; 5] = ["small-cnn", "resnet18", "resnet34", "resnet50", "efficientnet-lite0"];

    /// Parses the names used on the command line: `small-cnn`, `resnet18`, `resnet34`, `resnet50`, `efficientnet-lite0`.
    pub fn from_name(name: &str) -> Result<Arch> {
        match name {
            "small-cnn" | "small_cnn" | "cnn" => Ok(Arch::SmallCnn { width: 16, depth: 3 }),
            "resnet18" => Ok(Arch::ResNet { layers: 18 }),
            "resnet34" => Ok(Arch::ResNet { layers: 34 }),
            "resnet50" => Ok(Arch::ResNet { layers: 50 }),
            "efficientnet-lite0" | "efficientnet_lite0" => Ok(Arch::EfficientNetLite0),
            other => {
                let hint = crate::config::did_you_mean(other, &Self::NAMES)
                    .map(|n| format!(": did you mean `{n}`?"))
                    .unwrap_or_default();
                Err(Error::config("arch", format!("unknown architecture {other:?}{hint} (valid: {})", Self::NAMES.join(", "))))
            }
        }
    }

    /// Freezable stages after the stem ([`ImageClassifier::num_stages`] without building the network): the
    /// largest meaningful `freeze_depth`.
    pub fn num_stages(&self) -> usize {
        match self {
            Arch::SmallCnn { depth, .. } => *depth,
            Arch::ResNet { .. } => crate::resnet::STAGES,
            Arch::EfficientNetLite0 => crate::efficientnet::STAGES,
        }
    }
}

/// A network's parameter ids by part, bottom to top: the stem, stage 1 … stage S, the head (index S + 1),
/// the layout of [`crate::strategy::EpochPlan`]. Each part holds its float parameters and module-owned
/// flags (BatchNorm's training flag), so freezing a part also puts its BatchNorm layers in eval mode.
#[derive(Debug, Clone, PartialEq)]
pub struct Parts(pub Vec<Vec<ParamId>>);

impl Parts {
    /// The parts in order: `stem`, `stages` bottom to top, `head`.
    pub fn new(stem: ParamIds, stages: Vec<ParamIds>, head: ParamIds) -> Self {
        Parts(std::iter::once(stem).chain(stages).chain(std::iter::once(head)).map(|ids| ids.0).collect())
    }
}

/// The parameter and flag ids of some modules, collected for [`Parts`].
#[derive(Debug, Default)]
pub struct ParamIds(pub Vec<ParamId>);

impl ParamIds {
    /// The ids of `module`.
    pub fn of<M: Module>(module: &M) -> Self {
        Self::default().and(module)
    }

    /// These ids and `module`'s.
    pub fn and<M: Module>(mut self, module: &M) -> Self {
        module.visit(&mut self);
        self
    }
}

impl ModuleVisitor for ParamIds {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.push(param.id);
    }

    fn visit_flag(&mut self, flag: &Param<Flag>) {
        self.0.push(flag.id);
    }
}

/// Everything needed to rebuild a network and feed it: saved as JSON next to each checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// The network, flattened into the JSON: `"arch"` holds `small-cnn`, `resnet` (with `"layers"`) or
    /// `efficientnet-lite0`, the [`Arch::NAMES`] spellings without the depth; its fields sit beside it.
    #[serde(flatten)]
    pub arch: Arch,
    /// Outputs of the head; at least 2.
    pub num_classes: usize,
    /// Input channels (1 for digits, 3 for photos).
    pub in_channels: usize,
    /// Input height and width the network was trained at.
    pub image_size: [usize; 2],
    /// Dropout probability before the head.
    #[serde(default)]
    pub dropout: f64,
    /// Per-channel normalisation of the input after scaling pixels to [0, 1] (ImageNet statistics for the
    /// pretrained backbones).
    pub normalization: Normalization,
    /// How images are resized to `image_size` (training, validation, test and `predict` alike); a
    /// model.json from before this field reads as `squash`, what those models were trained with.
    #[serde(default)]
    pub resize: Resize,
    /// Optional class names, index = class id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
}

impl ModelConfig {
    /// Checks the ranges: at least 2 classes, dropout in [0, 1), 1 or 3 input channels, a valid
    /// [`Preprocessing`], small-cnn width ≥ 1 and depth in 1..=6, ResNet layers 18, 34 or 50.
    pub fn validate(&self) -> Result<()> {
        if self.num_classes < 2 {
            return Err(Error::config("num_classes", format!("must be at least 2, got {}", self.num_classes)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config("dropout", format!("must be in [0, 1), got {}", self.dropout)));
        }
        if self.in_channels != 1 && self.in_channels != 3 {
            return Err(Error::config("in_channels", format!("must be 1 or 3, got {}", self.in_channels)));
        }
        self.preprocessing().validate()?;
        match self.arch {
            Arch::SmallCnn { width, depth } if width == 0 || depth == 0 || depth > 6 => {
                Err(Error::config("arch", "small-cnn needs width >= 1 and depth in 1..=6"))
            }
            Arch::ResNet { layers } if ![18, 34, 50].contains(&layers) => {
                Err(Error::config("arch", format!("resnet layers must be 18, 34 or 50, got {layers}")))
            }
            _ => Ok(()),
        }
    }

    /// The input pipeline this network was trained with, for every image it sees.
    pub fn preprocessing(&self) -> Preprocessing {
        Preprocessing {
            channels: self.in_channels,
            size: self.image_size,
            resize: self.resize,
            normalization: self.normalization.clone(),
        }
    }
}

/// Conv → BatchNorm → ReLU (→ optional 2×2 max-pool).
#[derive(Module, Debug)]
pub struct ConvBlock {
    /// 3×3 convolution, padding 1, no bias (the BatchNorm's shift stands in for it).
    pub conv: Conv2d,
    /// BatchNorm of the convolution's output.
    pub bn: BatchNorm,
    /// 2×2 max-pool, stride 2: in the stages, not in the stem.
    pub pool: Option<MaxPool2d>,
}

impl ConvBlock {
    fn new(channels_in: usize, channels_out: usize, pool: bool, device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([channels_in, channels_out], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            bn: BatchNorm::new(channels_out, device),
            pool: pool.then(|| MaxPool2dConfig::new([2, 2]).init()),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = relu(self.bn.forward(self.conv.forward(x)));
        match &self.pool {
            Some(pool) => pool.forward(x),
            None => x,
        }
    }
}

/// A small BatchNorm CNN for 28×28-ish inputs on the CPU.
#[derive(Module, Debug)]
pub struct SmallCnn {
    /// Conv block from the input channels to `width`, without pooling.
    pub stem: ConvBlock,
    /// `depth` conv blocks, each doubling the channels and halving the resolution.
    pub stages: Vec<ConvBlock>,
    /// Global average pooling to 1×1.
    pub avgpool: AdaptiveAvgPool2d,
    /// Dropout before the head ([`ModelConfig::dropout`]).
    pub dropout: Dropout,
    /// The classifier head: `width · 2^depth` features to the classes.
    pub fc: Linear,
}

impl ImageClassifier for SmallCnn {
    fn init(config: &ModelConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let Arch::SmallCnn { width, depth } = config.arch else {
            return Err(Error::config("arch", "SmallCnn::init needs a small-cnn config"));
        };
        let stem = ConvBlock::new(config.in_channels, width, false, device);
        let stages = (0..depth).map(|i| ConvBlock::new(width << i, width << (i + 1), true, device)).collect();
        Ok(Self {
            stem,
            stages,
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(config.dropout).init(),
            fc: LinearConfig::new(width << depth, config.num_classes).init(device),
        })
    }

    fn forward_prefix(&self, images: Tensor<4>, k: usize) -> Tensor<4> {
        let k = k.min(self.stages.len());
        let mut x = self.stem.forward(images);
        for stage in &self.stages[..k] {
            x = stage.forward(x);
        }
        if k == self.stages.len() { self.avgpool.forward(x) } else { x }
    }

    fn forward_from(&self, activations: Tensor<4>, k: usize) -> Tensor<2> {
        let k = k.min(self.stages.len());
        let mut x = activations;
        for stage in &self.stages[k..] {
            x = stage.forward(x);
        }
        if k < self.stages.len() {
            x = self.avgpool.forward(x);
        }
        self.fc.forward(self.dropout.forward(x.flatten(1, 3)))
    }

    fn num_stages(&self) -> usize {
        self.stages.len()
    }

    fn parts(&self) -> Parts {
        Parts::new(ParamIds::of(&self.stem), self.stages.iter().map(ParamIds::of).collect(), ParamIds::of(&self.fc))
    }

    fn head_prefix() -> &'static str {
        "fc"
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn small_config(classes: usize) -> ModelConfig {
        ModelConfig {
            arch: Arch::SmallCnn { width: 4, depth: 2 },
            num_classes: classes,
            in_channels: 1,
            image_size: [12, 12],
            dropout: 0.0,
            normalization: Normalization::centered(1),
            resize: Default::default(),
            class_names: vec![],
        }
    }

    #[test]
    fn small_cnn_shapes_and_config_round_trip() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let config = small_config(5);
        let model = SmallCnn::init(&config, &device).unwrap();
        let logits = model.forward(Tensor::zeros([3, 1, 12, 12], &device));
        assert_eq!(logits.dims(), [3, 5]);
        assert_eq!(model.features(Tensor::zeros([2, 1, 12, 12], &device)).dims(), [2, 16]);
        assert_eq!(model.num_stages(), 2);
        assert_eq!(config.arch.num_stages(), 2);
        let json = serde_json::to_string(&config).unwrap();
        assert!(json.contains(r#""arch":"small-cnn""#), "{json}");
        assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), config);
    }

    #[test]
    fn model_json_names_the_arch_as_the_cli_does_and_reads_the_old_spellings() {
        let resnet = ModelConfig { arch: Arch::ResNet { layers: 18 }, ..small_config(5) };
        let effnet = ModelConfig { arch: Arch::EfficientNetLite0, ..small_config(5) };
        for (config, new, old) in [(&resnet, "resnet", "res-net"), (&effnet, "efficientnet-lite0", "efficient-net-lite0")] {
            let json = serde_json::to_string(config).unwrap();
            assert!(json.contains(&format!(r#""arch":"{new}""#)), "{json}");
            let written_before = json.replace(&format!(r#""arch":"{new}""#), &format!(r#""arch":"{old}""#));
            assert_eq!(&serde_json::from_str::<ModelConfig>(&written_before).unwrap(), config);
        }
    }

    /// EfficientNet-Lite0 for 32×32 images and 3 classes.
    fn effnet_config() -> ModelConfig {
        ModelConfig {
            arch: Arch::EfficientNetLite0,
            in_channels: 3,
            image_size: [32, 32],
            normalization: Normalization::imagenet(),
            ..small_config(3)
        }
    }

    /// Every parameter and flag of a module with its dotted path.
    #[derive(Default)]
    struct Paths {
        stack: Vec<String>,
        found: Vec<(String, ParamId)>,
    }

    impl ModuleVisitor for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.stack.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.found.push((self.stack.join("."), param.id));
        }
        fn visit_flag(&mut self, flag: &Param<Flag>) {
            self.found.push((self.stack.join("."), flag.id));
        }
    }

    /// Checks that every parameter (and BatchNorm flag) of `model` is in exactly the part `expected` names
    /// from its path, dropout's flag in none.
    fn check_parts<M: ImageClassifier>(model: &M, expected: impl Fn(&[&str]) -> usize) {
        let parts = model.parts();
        assert_eq!(parts.0.len(), model.num_stages() + 2);
        let mut paths = Paths::default();
        model.visit(&mut paths);
        let mut seen = vec![0; parts.0.len()];
        for (path, id) in &paths.found {
            let holders: Vec<usize> = (0..parts.0.len()).filter(|p| parts.0[*p].contains(id)).collect();
            let segments: Vec<&str> = path.split('.').collect();
            if segments[0] == "dropout" {
                assert!(holders.is_empty(), "{path} is in parts {holders:?}");
                continue;
            }
            assert_eq!(holders, [expected(&segments)], "{path}");
            seen[holders[0]] += 1;
        }
        assert!(seen.iter().all(|&n| n > 0), "a part is empty: {seen:?}");
        assert_eq!(seen.iter().sum::<usize>(), parts.0.iter().map(Vec::len).sum::<usize>(), "ids outside the model");
    }

    #[test]
    fn every_parameter_is_in_the_part_its_name_says() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let stage = |s: &str| s.parse::<usize>().unwrap();
        check_parts(&SmallCnn::init(&small_config(3), &device).unwrap(), |p| match p {
            ["stem", ..] => 0,
            ["stages", i, ..] => stage(i) + 1,
            ["fc", ..] => 3,
            _ => panic!("{p:?}"),
        });
        let resnet = crate::ResNet::init(&crate::resnet::tests::resnet_config(18, 3), &device).unwrap();
        check_parts(&resnet, |p| match p {
            ["conv1" | "bn1", ..] => 0,
            [layer, ..] if layer.starts_with("layer") => stage(&layer[5..]),
            ["fc", ..] => 5,
            _ => panic!("{p:?}"),
        });
        let config = effnet_config();
        let effnet = crate::EfficientNetLite::init(&config, &device).unwrap();
        let groups = effnet.block_group.clone();
        // The 1×1 head convolution belongs to the last stage: freezing every stage is a linear probe.
        check_parts(&effnet, |p| match p {
            ["_conv_stem" | "_bn0", ..] => 0,
            ["_blocks", i, ..] => groups[stage(i)] + 1,
            ["_conv_head" | "_bn1", ..] => 7,
            ["_fc", ..] => 8,
            _ => panic!("{p:?}"),
        });
    }

    /// `forward_from(forward_prefix(x, k), k)` is `forward(x)`, bit for bit, at every depth of every
    /// architecture; the linear probe's prefix ends in pooled features.
    fn check_split<M: ImageClassifier>(model: &M, x: Tensor<4>) {
        let whole = model.forward(x.clone()).into_data();
        for k in 0..=model.num_stages() {
            let prefix = model.forward_prefix(x.clone(), k);
            if k == model.num_stages() {
                assert_eq!(prefix.dims()[2..], [1, 1], "k = {k}: pooled features");
                assert_eq!(prefix.clone().flatten::<2>(1, 3).into_data(), model.features(x.clone()).into_data());
            }
            assert_eq!(model.forward_from(prefix, k).into_data(), whole, "k = {k}");
        }
    }

    #[test]
    fn forward_from_the_prefix_is_forward_at_every_depth() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let image = |c: usize, size: usize| Tensor::<4>::random([2, c, size, size], burn::tensor::Distribution::Default, &device);
        check_split(&SmallCnn::init(&small_config(3), &device).unwrap(), image(1, 12));
        check_split(&crate::ResNet::init(&crate::resnet::tests::resnet_config(18, 3), &device).unwrap(), image(3, 64));
        let config = effnet_config();
        check_split(&crate::EfficientNetLite::init(&config, &device).unwrap(), image(3, 32));
    }

    #[test]
    fn invalid_model_configs_name_the_field() {
        let mut config = small_config(1);
        assert!(config.validate().unwrap_err().to_string().contains("num_classes"));
        config.num_classes = 3;
        config.dropout = 1.0;
        assert!(config.validate().unwrap_err().to_string().contains("dropout"));
        assert!(Arch::from_name("vgg").unwrap_err().to_string().contains("vgg"));
    }
}

//! ResNet-18/34/50 with torchvision's layout and parameter names (`conv1`, `bn1`, `layer1.0.conv1`, …,
//! `layer2.0.downsample.0`, `fc`), so torchvision state dicts load without renaming by hand.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig, MaxPool2d, MaxPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::error::{Error, Result};
use crate::model::{Arch, ImageClassifier, ModelConfig, ParamIds, Parts};
use crate::norm::BatchNorm;

/// Freezable stages after the stem: layer1 to layer4.
pub const STAGES: usize = 4;

fn conv(channels_in: usize, channels_out: usize, kernel: usize, stride: usize, device: &Device) -> Conv2d {
    let pad = kernel / 2;
    Conv2dConfig::new([channels_in, channels_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .init(device)
}

/// The 1×1 projection of the shortcut (torchvision `downsample.0` / `downsample.1`).
#[derive(Module, Debug)]
pub struct Downsample {
    /// 1×1 convolution with the block's stride (`downsample.0`).
    pub conv: Conv2d,
    /// Its BatchNorm (`downsample.1`).
    pub bn: BatchNorm,
}

/// A BasicBlock (two 3×3 convs; ResNet-18/34) or, with `conv3`, a Bottleneck (1×1, 3×3, 1×1; ResNet-50).
/// The stage's width is a BasicBlock's output channels and a Bottleneck's inner ones (its output is 4×).
#[derive(Module, Debug)]
pub struct Block {
    /// BasicBlock: the first 3×3 convolution, carrying the block's stride. Bottleneck: the 1×1 reduction to
    /// the width.
    pub conv1: Conv2d,
    /// BatchNorm after `conv1`.
    pub bn1: BatchNorm,
    /// BasicBlock: the second 3×3 convolution. Bottleneck: the 3×3 convolution, carrying the stride.
    pub conv2: Conv2d,
    /// BatchNorm after `conv2`.
    pub bn2: BatchNorm,
    /// Bottleneck only: the 1×1 expansion to 4 × the width.
    pub conv3: Option<Conv2d>,
    /// Bottleneck only: BatchNorm after `conv3`.
    pub bn3: Option<BatchNorm>,
    /// Projection of the shortcut where the stride or the channel count changes; `None`: the identity.
    pub downsample: Option<Downsample>,
}

impl Block {
    fn basic(channels_in: usize, channels_out: usize, stride: usize, device: &Device) -> Self {
        Self {
            conv1: conv(channels_in, channels_out, 3, stride, device),
            bn1: BatchNorm::new(channels_out, device),
            conv2: conv(channels_out, channels_out, 3, 1, device),
            bn2: BatchNorm::new(channels_out, device),
            conv3: None,
            bn3: None,
            downsample: (stride != 1 || channels_in != channels_out).then(|| Downsample {
                conv: conv(channels_in, channels_out, 1, stride, device),
                bn: BatchNorm::new(channels_out, device),
            }),
        }
    }

    /// torchvision's v1.5 bottleneck: the stride sits on the 3×3 conv.
    fn bottleneck(channels_in: usize, width: usize, stride: usize, device: &Device) -> Self {
        let channels_out = width * 4;
        Self {
            conv1: conv(channels_in, width, 1, 1, device),
            bn1: BatchNorm::new(width, device),
            conv2: conv(width, width, 3, stride, device),
            bn2: BatchNorm::new(width, device),
            conv3: Some(conv(width, channels_out, 1, 1, device)),
            bn3: Some(BatchNorm::new(channels_out, device)),
            downsample: (stride != 1 || channels_in != channels_out).then(|| Downsample {
                conv: conv(channels_in, channels_out, 1, stride, device),
                bn: BatchNorm::new(channels_out, device),
            }),
        }
    }

    fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(d.conv.forward(x.clone())),
            None => x.clone(),
        };
        let mut out = relu(self.bn1.forward(self.conv1.forward(x)));
        out = self.bn2.forward(self.conv2.forward(out));
        if let (Some(conv3), Some(bn3)) = (&self.conv3, &self.bn3) {
            out = bn3.forward(conv3.forward(relu(out)));
        }
        relu(out + identity)
    }
}

/// torchvision ResNet: stem (`conv1`, `bn1`, max-pool), `layer1`…`layer4`, global average pool, dropout, `fc`.
/// The field names are torchvision's state-dict keys, so its checkpoints load by name (`downsample.0`/`.1`
/// through [`ImageClassifier::load_key_remaps`]).
#[derive(Module, Debug)]
pub struct ResNet {
    /// Stem: 7×7 convolution to 64 channels, stride 2.
    pub conv1: Conv2d,
    /// BatchNorm of the stem.
    pub bn1: BatchNorm,
    /// 3×3 max-pool, stride 2, padding 1: the end of the stem.
    pub maxpool: MaxPool2d,
    /// Stage 1: blocks of width 64 at stride 1.
    pub layer1: Vec<Block>,
    /// Stage 2: blocks of width 128, the first at stride 2.
    pub layer2: Vec<Block>,
    /// Stage 3: blocks of width 256, the first at stride 2.
    pub layer3: Vec<Block>,
    /// Stage 4: blocks of width 512, the first at stride 2.
    pub layer4: Vec<Block>,
    /// Global average pooling to 1×1.
    pub avgpool: AdaptiveAvgPool2d,
    /// Dropout before `fc` ([`ModelConfig::dropout`]); not in torchvision, and without parameters.
    pub dropout: Dropout,
    /// The classifier head: 512 features (2048 for ResNet-50) to the classes.
    pub fc: Linear,
}

impl ResNet {
    /// The four stages, bottom to top.
    fn layers(&self) -> [&Vec<Block>; STAGES] {
        [&self.layer1, &self.layer2, &self.layer3, &self.layer4]
    }
}

impl ImageClassifier for ResNet {
    fn init(config: &ModelConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        let Arch::ResNet { layers } = config.arch else {
            return Err(Error::config("arch", "ResNet::init needs a resnet config"));
        };
        let (counts, bottleneck) = match layers {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            _ => ([3, 4, 6, 3], true),
        };
        let expansion = if bottleneck { 4 } else { 1 };
        let mut channels_in = 64;
        let mut make_layer = |width: usize, count: usize, stride: usize| -> Vec<Block> {
            (0..count)
                .map(|i| {
                    let s = if i == 0 { stride } else { 1 };
                    let block = if bottleneck {
                        Block::bottleneck(channels_in, width, s, device)
                    } else {
                        Block::basic(channels_in, width, s, device)
                    };
                    channels_in = width * expansion;
                    block
                })
                .collect()
        };
        let layer1 = make_layer(64, counts[0], 1);
        let layer2 = make_layer(128, counts[1], 2);
        let layer3 = make_layer(256, counts[2], 2);
        let layer4 = make_layer(512, counts[3], 2);
        Ok(Self {
            conv1: conv(config.in_channels, 64, 7, 2, device),
            bn1: BatchNorm::new(64, device),
            maxpool: MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1)).init(),
            layer1,
            layer2,
            layer3,
            layer4,
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(config.dropout).init(),
            fc: LinearConfig::new(512 * expansion, config.num_classes).init(device),
        })
    }

    fn forward_prefix(&self, images: Tensor<4>, k: usize) -> Tensor<4> {
        let k = k.min(STAGES);
        let mut x = self.maxpool.forward(relu(self.bn1.forward(self.conv1.forward(images))));
        for layer in &self.layers()[..k] {
            for block in *layer {
                x = block.forward(x);
            }
        }
        if k == STAGES { self.avgpool.forward(x) } else { x }
    }

    fn forward_from(&self, activations: Tensor<4>, k: usize) -> Tensor<2> {
        let k = k.min(STAGES);
        let mut x = activations;
        for layer in &self.layers()[k..] {
            for block in *layer {
                x = block.forward(x);
            }
        }
        if k < STAGES {
            x = self.avgpool.forward(x);
        }
        self.fc.forward(self.dropout.forward(x.flatten(1, 3)))
    }

    fn num_stages(&self) -> usize {
        STAGES
    }

    fn parts(&self) -> Parts {
        let stages = self.layers().map(ParamIds::of);
        Parts::new(ParamIds::of(&self.conv1).and(&self.bn1), stages.into(), ParamIds::of(&self.fc))
    }

    fn head_prefix() -> &'static str {
        "fc"
    }

    fn load_key_remaps() -> Vec<(&'static str, &'static str)> {
        vec![(r"\.downsample\.0\.", ".downsample.conv."), (r"\.downsample\.1\.", ".downsample.bn.")]
    }

    fn save_key_remaps() -> Vec<(&'static str, &'static str)> {
        vec![(r"\.downsample\.conv\.", ".downsample.0."), (r"\.downsample\.bn\.", ".downsample.1.")]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::data::Normalization;

    pub(crate) fn resnet_config(layers: usize, classes: usize) -> ModelConfig {
        ModelConfig {
            arch: Arch::ResNet { layers },
            num_classes: classes,
            in_channels: 3,
            image_size: [64, 64],
            dropout: 0.0,
            normalization: Normalization::imagenet(),
            resize: Default::default(),
            class_names: vec![],
        }
    }

    #[test]
    fn resnet_parameter_counts_match_torchvision() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        // torchvision parameters (resnet18 11,689,512; resnet34 21,797,672; resnet50 25,557,032; 1000 classes)
        // plus the BatchNorm running mean and variance, which burn counts too (2 x 4,800 / 8,512 / 26,560).
        for (layers, expected) in [(18, 11_689_512 + 9_600), (34, 21_797_672 + 17_024), (50, 25_557_032 + 53_120)] {
            let model = ResNet::init(&resnet_config(layers, 1000), &device).unwrap();
            assert_eq!(model.num_params(), expected, "resnet{layers}");
        }
    }
}

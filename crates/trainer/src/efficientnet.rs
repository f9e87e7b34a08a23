//! EfficientNet-Lite0 with the parameter names of `efficientnet_lite_pytorch` (lukemelas-style:
//! `_conv_stem`, `_bn0`, `_blocks.N._expand_conv`, …, `_conv_head`, `_bn1`, `_fc`).
//!
//! Lite variants drop squeeze-and-excitation and use ReLU6. Convolutions use TensorFlow "same" padding,
//! which is asymmetric for stride 2 on even sizes; the padding is fixed at construction from
//! [`ModelConfig::image_size`], as the PyTorch port's static-padding convolutions do.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{AdaptiveAvgPool2d, AdaptiveAvgPool2dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu6;

use crate::error::{Error, Result};
use crate::model::{Arch, ImageClassifier, ModelConfig, ParamIds, Parts};
use crate::norm::BatchNorm;

/// Freezable stages after the stem: the block groups.
pub const STAGES: usize = GROUPS.len();

/// (repeats, kernel, stride, expansion, channels out) of the seven block groups (EfficientNet-B0 = Lite0).
const GROUPS: [(usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
];

/// TF-style "same" convolution for an input of `size`; returns the conv and the output size.
fn same_conv(
    channels: [usize; 2],
    kernel: usize,
    stride: usize,
    groups: usize,
    size: [usize; 2],
    device: &Device,
) -> (Conv2d, [usize; 2]) {
    let pad = |n: usize| {
        let out = n.div_ceil(stride);
        let total = ((out - 1) * stride + kernel).saturating_sub(n);
        (total / 2, total - total / 2, out)
    };
    let (top, bottom, oh) = pad(size[0]);
    let (left, right, ow) = pad(size[1]);
    let conv = Conv2dConfig::new(channels, [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_padding(PaddingConfig2d::Explicit(top, left, bottom, right))
        .with_bias(false)
        .init(device);
    (conv, [oh, ow])
}

fn bn(channels: usize, device: &Device) -> BatchNorm {
    // The TF-trained weights use epsilon 1e-3.
    BatchNorm::with(channels, 1e-3, 0.01, device)
}

/// Mobile inverted bottleneck: (1×1 expand) → depthwise k×k → 1×1 project, with a residual when shapes allow.
#[derive(Module, Debug)]
pub struct MbConv {
    /// 1×1 expansion to 6 × the input channels, then ReLU6; `None` in the first group (expansion 1).
    pub _expand_conv: Option<Conv2d>,
    /// BatchNorm after `_expand_conv`.
    pub _bn0: Option<BatchNorm>,
    /// Depthwise 3×3 or 5×5 convolution carrying the block's stride, then ReLU6.
    pub _depthwise_conv: Conv2d,
    /// BatchNorm after the depthwise convolution.
    pub _bn1: BatchNorm,
    /// 1×1 projection to the block's output channels, without activation.
    pub _project_conv: Conv2d,
    /// BatchNorm after the projection.
    pub _bn2: BatchNorm,
    /// Whether the input is added to the output: stride 1 and as many channels out as in.
    pub residual: bool,
}

impl MbConv {
    fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let (Some(conv), Some(bn)) = (&self._expand_conv, &self._bn0) {
            x = relu6(bn.forward(conv.forward(x)));
        }
        x = relu6(self._bn1.forward(self._depthwise_conv.forward(x)));
        x = self._bn2.forward(self._project_conv.forward(x));
        if self.residual { x + input } else { x }
    }
}

/// EfficientNet-Lite0: a stem, 16 [`MbConv`] blocks in seven groups (the freezable stages), a 1×1 head
/// convolution to 1280 channels, global average pooling, dropout and the classifier `_fc`. The fields
/// with a leading `_` are the state-dict keys of `efficientnet_lite_pytorch`, so its checkpoints load by name.
#[derive(Module, Debug)]
pub struct EfficientNetLite {
    /// Stem: 3×3 convolution to 32 channels, stride 2, then ReLU6.
    pub _conv_stem: Conv2d,
    /// BatchNorm of the stem.
    pub _bn0: BatchNorm,
    /// The 16 blocks, bottom to top.
    pub _blocks: Vec<MbConv>,
    /// Block group of each block (0..7): its stage for freezing.
    pub block_group: Vec<usize>,
    /// 1×1 convolution from 320 to 1280 channels, then ReLU6; part of the last stage.
    pub _conv_head: Conv2d,
    /// BatchNorm of `_conv_head`.
    pub _bn1: BatchNorm,
    /// Global average pooling to 1×1.
    pub avgpool: AdaptiveAvgPool2d,
    /// Dropout before `_fc` ([`ModelConfig::dropout`]).
    pub dropout: Dropout,
    /// The classifier head: 1280 features to the classes.
    pub _fc: Linear,
}

impl EfficientNetLite {
    /// The blocks of the stages in `stages` (0-based block groups); the last stage ends with the 1×1 head
    /// convolution, as [`ImageClassifier::parts`] counts it.
    fn stages(&self, mut x: Tensor<4>, stages: std::ops::Range<usize>) -> Tensor<4> {
        for (block, group) in self._blocks.iter().zip(&self.block_group) {
            if stages.contains(group) {
                x = block.forward(x);
            }
        }
        if stages.contains(&(STAGES - 1)) {
            x = relu6(self._bn1.forward(self._conv_head.forward(x)));
        }
        x
    }
}

impl ImageClassifier for EfficientNetLite {
    fn init(config: &ModelConfig, device: &Device) -> Result<Self> {
        config.validate()?;
        if config.arch != Arch::EfficientNetLite0 {
            return Err(Error::config("arch", "EfficientNetLite::init needs efficientnet-lite0"));
        }
        let (stem, mut size) = same_conv([config.in_channels, 32], 3, 2, 1, config.image_size, device);
        let mut blocks = Vec::new();
        let mut block_group = Vec::new();
        let mut channels_in = 32;
        for (group, &(repeats, kernel, stride, expansion, channels_out)) in GROUPS.iter().enumerate() {
            for r in 0..repeats {
                let s = if r == 0 { stride } else { 1 };
                let hidden = channels_in * expansion;
                let (expand, expand_bn) = if expansion != 1 {
                    (Some(same_conv([channels_in, hidden], 1, 1, 1, size, device).0), Some(bn(hidden, device)))
                } else {
                    (None, None)
                };
                let (depthwise, out_size) = same_conv([hidden, hidden], kernel, s, hidden, size, device);
                blocks.push(MbConv {
                    _expand_conv: expand,
                    _bn0: expand_bn,
                    _depthwise_conv: depthwise,
                    _bn1: bn(hidden, device),
                    _project_conv: same_conv([hidden, channels_out], 1, 1, 1, out_size, device).0,
                    _bn2: bn(channels_out, device),
                    residual: s == 1 && channels_in == channels_out,
                });
                block_group.push(group);
                size = out_size;
                channels_in = channels_out;
            }
        }
        Ok(Self {
            _conv_stem: stem,
            _bn0: bn(32, device),
            _blocks: blocks,
            block_group,
            _conv_head: same_conv([320, 1280], 1, 1, 1, size, device).0,
            _bn1: bn(1280, device),
            avgpool: AdaptiveAvgPool2dConfig::new([1, 1]).init(),
            dropout: DropoutConfig::new(config.dropout).init(),
            _fc: LinearConfig::new(1280, config.num_classes).init(device),
        })
    }

    fn forward_prefix(&self, images: Tensor<4>, k: usize) -> Tensor<4> {
        let k = k.min(STAGES);
        let x = relu6(self._bn0.forward(self._conv_stem.forward(images)));
        let x = self.stages(x, 0..k);
        if k == STAGES { self.avgpool.forward(x) } else { x }
    }

    fn forward_from(&self, activations: Tensor<4>, k: usize) -> Tensor<2> {
        let k = k.min(STAGES);
        let mut x = self.stages(activations, k..STAGES);
        if k < STAGES {
            x = self.avgpool.forward(x);
        }
        self._fc.forward(self.dropout.forward(x.flatten(1, 3)))
    }

    fn num_stages(&self) -> usize {
        STAGES
    }

    /// The 1×1 `_conv_head` and its BatchNorm belong to the last stage, so that freezing every stage leaves
    /// only `_fc` training: a linear probe.
    fn parts(&self) -> Parts {
        let mut stages: Vec<ParamIds> = (0..STAGES).map(|_| ParamIds::default()).collect();
        for (block, &group) in self._blocks.iter().zip(&self.block_group) {
            block.visit(&mut stages[group]);
        }
        if let Some(top) = stages.last_mut() {
            self._conv_head.visit(top);
            self._bn1.visit(top);
        }
        Parts::new(ParamIds::of(&self._conv_stem).and(&self._bn0), stages, ParamIds::of(&self._fc))
    }

    fn head_prefix() -> &'static str {
        "_fc"
    }
}

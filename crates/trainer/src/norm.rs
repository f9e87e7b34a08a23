//! BatchNorm as PyTorch computes it. burn's `BatchNorm` feeds its running variance the *biased* batch
//! variance (divided by n); PyTorch, which trained every checkpoint we import, feeds it the *unbiased*
//! one (divided by n − 1). Where a layer sees few values per channel — ResNet's last stage at 32×32 input
//! sees one pixel per image, so n is the batch size — the running variance drifted from PyTorch's by
//! n/(n − 1) per update (found by `tests/training_parity.rs`). Same fields and name as burn's, so
//! PyTorch state dicts load into it unchanged and [`Module::freeze`] stops its statistics as before.

use burn::module::{Flag, Module, Param, RunningState};
use burn::prelude::*;

/// Batch normalisation over the channel dimension (dimension 1), with PyTorch's running statistics.
#[derive(Module, Debug)]
pub struct BatchNorm {
    /// Per-channel scale, initially 1: PyTorch's `weight`, renamed on load and save by burn-store's PyTorch
    /// adapters, which recognise the layer by this struct's name.
    pub gamma: Param<Tensor<1>>,
    /// Per-channel shift, initially 0: PyTorch's `bias`, renamed likewise.
    pub beta: Param<Tensor<1>>,
    /// Off in frozen blocks: they normalise with the running statistics and leave them alone.
    pub training: Param<Flag>,
    /// Per-channel mean for evaluation and frozen blocks, initially 0.
    pub running_mean: RunningState<Tensor<1>>,
    /// Per-channel variance for evaluation and frozen blocks, initially 1; updated with the unbiased batch
    /// variance, as PyTorch does.
    pub running_var: RunningState<Tensor<1>>,
    /// Weight of the current batch in each running-statistics update, PyTorch's convention:
    /// `running = (1 − momentum) · running + momentum · batch`.
    pub momentum: f64,
    /// Added to the variance before its square root.
    pub epsilon: f64,
}

impl BatchNorm {
    /// PyTorch's defaults: epsilon 1e-5, momentum 0.1.
    pub fn new(channels: usize, device: &Device) -> Self {
        Self::with(channels, 1e-5, 0.1, device)
    }

    /// With explicit `epsilon` and `momentum` (EfficientNet's TF-trained weights use 1e-3 and 0.01).
    pub fn with(channels: usize, epsilon: f64, momentum: f64, device: &Device) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::ones([channels], device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            training: Param::from_bool(true),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            momentum,
            epsilon,
        }
    }

    /// Normalises `input` (`[n, channels, …]`): on an autodiff device with the training flag on, by the
    /// batch's statistics, updating the running ones; otherwise by the running statistics.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        if input.device().is_autodiff() && self.training.is_enabled() {
            self.forward_train(input)
        } else {
            let device = input.device();
            let mean = self.running_mean.value().to_device(&device);
            let var = self.running_var.value().to_device(&device);
            burn::tensor::module::batch_norm(input, self.gamma.val(), self.beta.val(), mean, var, self.epsilon)
        }
    }

    fn forward_train<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let device = input.device();
        let shape = input.shape();
        let per_channel = shape.num_elements() / shape[1];
        let result = burn::tensor::module::batch_norm_train(input, self.gamma.val(), self.beta.val(), self.epsilon);
        let bessel = per_channel as f64 / per_channel.saturating_sub(1).max(1) as f64;
        let momentum = self.momentum;
        let running_mean = self.running_mean.value_sync().to_device(&device);
        let running_var = self.running_var.value_sync().to_device(&device);
        let running_mean = running_mean.mul_scalar(1.0 - momentum).add(result.mean.detach().mul_scalar(momentum));
        let running_var = running_var.mul_scalar(1.0 - momentum).add(result.variance.detach().mul_scalar(momentum * bessel));
        self.running_mean.update(running_mean.detach());
        self.running_var.update(running_var.detach());
        result.output
    }
}

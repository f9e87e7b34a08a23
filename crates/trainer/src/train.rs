//! The epoch loop: optimiser, learning-rate schedule, freezing, evaluation and the per-epoch callback.

use burn::module::ParamGroup;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cache::file::Payload;
use crate::cache::prefix::{EpochInputs, PrefixCache, frozen_prefix};
use crate::cache::{CacheSettings, PrefixCacheReport};
use crate::data::{Augmentation, Batcher, ImageDataset, Normalization, Transform};
use crate::error::{Error, Result};
use crate::model::{ImageClassifier, Parts};
use crate::rng::SplitMix64;
use crate::strategy::FreezeStrategy;

/// Which optimiser updates the unfrozen parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum OptimizerKind {
    /// AdamW with PyTorch's defaults made explicit (betas 0.9/0.999, eps 1e-8) and decoupled weight decay.
    AdamW,
    /// SGD with (undampened) momentum and L2 weight decay, as `torch.optim.SGD`.
    Sgd {
        /// Momentum factor in [0, 1); 0 is plain SGD.
        momentum: f64,
    },
}

/// Hyperparameters of one fine-tuning run. Dropout lives in [`crate::ModelConfig`], since it is part of
/// the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Epochs to train (at least 1), unless the callback stops earlier.
    pub epochs: usize,
    /// Images per optimiser step (at least 1); evaluation batches hold at least 64.
    pub batch_size: usize,
    /// Peak learning rate, reached after the warm-up and then decayed along a cosine to zero.
    pub learning_rate: f64,
    /// Decoupled weight decay for AdamW, an L2 penalty for SGD; at least 0.
    #[serde(default)]
    pub weight_decay: f64,
    /// AdamW unless set.
    #[serde(default = "default_optimizer")]
    pub optimizer: OptimizerKind,
    /// Fraction of the steps of each schedule phase ([`EpochPlan::phase`](crate::EpochPlan::phase): the
    /// whole run, but for `lp_ft`'s two phases) spent warming up linearly from ~0 to `learning_rate`.
    #[serde(default = "default_warmup")]
    pub warmup_fraction: f64,
    /// Which parts train in which epoch, and their learning rates ([`FreezeStrategy`]).
    #[serde(default)]
    pub freeze_strategy: FreezeStrategy,
    /// Seeds the device's generator (dropout) and this run's batch order and augmentation draws.
    #[serde(default)]
    pub seed: u64,
    /// Training-time augmentation; validation batches are never augmented.
    #[serde(default)]
    pub augmentation: Augmentation,
    /// The frozen-prefix cache: on by default, in memory unless a shared directory is given
    /// ([`crate::cache`]).
    #[serde(skip)]
    pub cache: CacheSettings,
}

fn default_optimizer() -> OptimizerKind {
    OptimizerKind::AdamW
}

fn default_warmup() -> f64 {
    0.05
}

impl TrainConfig {
    /// `epochs`, `batch_size` and `learning_rate`, the rest at their defaults: AdamW without weight decay,
    /// 5 % warm-up, `full` fine-tuning, seed 0, no augmentation, the prefix cache on (in memory).
    pub fn new(epochs: usize, batch_size: usize, learning_rate: f64) -> Self {
        Self {
            epochs,
            batch_size,
            learning_rate,
            weight_decay: 0.0,
            optimizer: OptimizerKind::AdamW,
            warmup_fraction: default_warmup(),
            freeze_strategy: FreezeStrategy::Full,
            seed: 0,
            augmentation: Augmentation::default(),
            cache: CacheSettings::default(),
        }
    }

    /// Checks the ranges: epochs and batch size at least 1, a positive finite learning rate, a finite weight
    /// decay ≥ 0, warm-up fraction and SGD momentum in [0, 1), and the freeze strategy against the epochs
    /// (against the model's stages in [`fine_tune`]).
    pub fn validate(&self) -> Result<()> {
        if self.epochs == 0 {
            return Err(Error::config("epochs", "must be at least 1"));
        }
        if self.batch_size == 0 {
            return Err(Error::config("batch_size", "must be at least 1"));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return Err(Error::config("learning_rate", format!("must be positive, got {}", self.learning_rate)));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(Error::config("weight_decay", format!("must be >= 0, got {}", self.weight_decay)));
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return Err(Error::config("warmup_fraction", "must be in [0, 1)"));
        }
        if let OptimizerKind::Sgd { momentum } = self.optimizer
            && !(0.0..1.0).contains(&momentum)
        {
            return Err(Error::config("optimizer.momentum", "must be in [0, 1)"));
        }
        // The stages are checked against the model in `fine_tune`.
        self.freeze_strategy.validate(usize::MAX, self.epochs)
    }

    fn optimizer(&self) -> ModuleOptimizer {
        match self.optimizer {
            // burn's AdamW defaults (eps 1e-5, decay 1e-4) differ from PyTorch's, so set everything.
            OptimizerKind::AdamW => AdamWConfig::new()
                .with_beta_1(0.9)
                .with_beta_2(0.999)
                .with_epsilon(1e-8)
                .with_weight_decay(self.weight_decay as f32)
                .init(),
            OptimizerKind::Sgd { momentum } => SgdConfig::new()
                .with_momentum(
                    (momentum > 0.0)
                        .then(|| MomentumConfig::new().with_momentum(momentum).with_dampening(0.0).with_nesterov(false)),
                )
                .with_weight_decay((self.weight_decay > 0.0).then(|| WeightDecayConfig::new(self.weight_decay as f32)))
                .init(),
        }
    }
}

/// Linear warm-up over `warmup_steps`, then cosine decay from `peak` to 0 at `total_steps`.
pub fn cosine_with_warmup(step: usize, total_steps: usize, warmup_steps: usize, peak: f64) -> f64 {
    if step < warmup_steps {
        return peak * (step + 1) as f64 / warmup_steps as f64;
    }
    let decay_steps = (total_steps - warmup_steps).max(1) as f64;
    let progress = ((step - warmup_steps) as f64 / decay_steps).min(1.0);
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Quality of a model on a labelled dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    /// Mean cross-entropy per image.
    pub loss: f64,
    /// Fraction of the images classified correctly, in [0, 1].
    pub accuracy: f64,
    /// Unweighted mean of per-class F1 over the classes that occur in labels or predictions.
    pub macro_f1: f64,
}

/// What one epoch produced; handed to the [`EpochCallback`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based.
    pub epoch: usize,
    /// Mean training cross-entropy per image over the epoch, as trained (dropout and augmentation on).
    pub train_loss: f64,
    /// Mean validation cross-entropy per image.
    pub val_loss: f64,
    /// Validation accuracy in [0, 1]; what picks the best epoch.
    pub val_accuracy: f64,
    /// Validation macro-F1 ([`EvalMetrics::macro_f1`]).
    pub macro_f1: f64,
    /// Learning rate at the last step of the epoch.
    pub learning_rate: f64,
    /// Wall-clock seconds of the epoch: training (with building any missing prefix-cache entries) and
    /// validation.
    pub seconds: f64,
    /// Training images per second (validation not counted).
    pub images_per_second: f64,
}

/// Whether training goes on after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Train the next epoch.
    Continue,
    /// End training now; the outcome keeps the best epoch so far.
    Stop,
}

/// Called after every epoch; returning [`Control::Stop`] ends training (pruning).
pub trait EpochCallback {
    /// Sees the metrics of the epoch just finished and says whether training goes on.
    fn on_epoch(&mut self, metrics: &EpochMetrics) -> Control;
}

impl<F: FnMut(&EpochMetrics) -> Control> EpochCallback for F {
    fn on_epoch(&mut self, metrics: &EpochMetrics) -> Control {
        self(metrics)
    }
}

/// The result of [`fine_tune`].
#[derive(Debug)]
pub struct TrainOutcome<M> {
    /// The model of the epoch with the best validation accuracy, in evaluation mode.
    pub best_model: M,
    /// The 1-based epoch of `best_model`; the earliest of equally good ones.
    pub best_epoch: usize,
    /// The model after the last step, in evaluation mode (the same as `best_model` when the last epoch was best).
    pub final_model: M,
    /// The metrics of every epoch that ran, in order.
    pub history: Vec<EpochMetrics>,
    /// True when the callback stopped training before the last epoch.
    pub stopped_early: bool,
    /// What the frozen-prefix cache did.
    pub prefix_cache: PrefixCacheReport,
}

impl<M> TrainOutcome<M> {
    /// The metrics of the best epoch.
    pub fn best(&self) -> &EpochMetrics {
        &self.history[self.best_epoch - 1]
    }

    /// The same outcome with the best and final models wrapped (e.g. into a [`crate::Network`]).
    pub fn map<N>(self, wrap: impl Fn(M) -> N) -> TrainOutcome<N> {
        TrainOutcome {
            best_model: wrap(self.best_model),
            best_epoch: self.best_epoch,
            final_model: wrap(self.final_model),
            history: self.history,
            stopped_early: self.stopped_early,
            prefix_cache: self.prefix_cache,
        }
    }
}

/// Trains `model` on `train` and validates on `val` after every epoch, on `device` (chosen by the caller,
/// e.g. `Device::flex()`; autodiff is enabled here). `normalization` must match the model's input.
pub fn fine_tune<M: ImageClassifier>(
    model: M,
    train: &ImageDataset,
    val: &ImageDataset,
    normalization: &Normalization,
    config: &TrainConfig,
    device: &Device,
    callback: &mut dyn EpochCallback,
) -> Result<TrainOutcome<M>> {
    config.validate()?;
    if train.is_empty() || val.is_empty() {
        return Err(Error::config("dataset", "training and validation sets must not be empty"));
    }
    let stages = model.num_stages();
    config.freeze_strategy.validate(stages, config.epochs)?;
    device.seed(config.seed);
    let train_device = device.clone().autodiff();
    let mut model = model.fork(&train_device).train();
    let parts = model.parts();
    if parts.0.len() != stages + 2 {
        return Err(Error::config("model", format!("{} parts for {stages} stages (want stem, stages, head)", parts.0.len())));
    }
    let mut frozen_as: Option<Vec<bool>> = None;
    let mut optimizer = config.optimizer();
    let loss_fn = CrossEntropyLossConfig::new().init(&train_device);
    let batcher = Batcher { normalization: normalization.clone(), augmentation: config.augmentation.clone() };
    let eval_batcher = Batcher { normalization: normalization.clone(), augmentation: Augmentation::default() };

    let steps_per_epoch = train.len().div_ceil(config.batch_size);
    let eval_batch_size = config.batch_size.max(64);
    let mut rng = SplitMix64::new(config.seed ^ 0x5EED);
    let mut history = Vec::new();
    let mut best: Option<(usize, f64, M)> = None;
    let mut stopped_early = false;
    let mut prefix_cache = PrefixCache::new(&config.cache);

    for epoch in 1..=config.epochs {
        let plan = config.freeze_strategy.plan(epoch - 1, config.epochs, stages);
        if frozen_as.as_ref() != Some(&plan.trainable) {
            model = apply_freezing(model, &parts, &plan.trainable);
            frozen_as = Some(plan.trainable.clone());
        }
        if plan.restarts_at(epoch - 1) {
            // A new phase (lp_ft's fine-tuning) starts like a fresh run from the probed model: fresh moment
            // estimates, which is what its re-warmed learning rate is for.
            optimizer = config.optimizer();
        }
        let lr_groups = lr_groups(&parts, &plan.lr_scale);
        let phase_steps = steps_per_epoch * plan.phase.len();
        let warmup_steps = (config.warmup_fraction * phase_steps as f64).ceil() as usize;
        let start = std::time::Instant::now();
        // The frozen prefix's outputs, when this epoch has one and the cache serves it (built within the
        // epoch's time when missing).
        let cached = match frozen_prefix(&plan.trainable, stages) {
            Some(k) => prefix_cache.epoch_inputs(
                &model,
                &parts,
                k,
                [train, val],
                &config.augmentation,
                normalization,
                eval_batch_size,
                device,
            )?,
            None => None,
        };
        let (train_feed, val_feed) = match &cached {
            Some(inputs) => (Feed::train_prefix(inputs, &config.augmentation), Feed::val_prefix(inputs)),
            None => (Feed::Pixels(&batcher), Feed::Pixels(&eval_batcher)),
        };
        let mut order: Vec<usize> = (0..train.len()).collect();
        rng.shuffle(&mut order);
        let augment_rng = SplitMix64::new(rng.next_u64());
        let (mut loss_sum, mut seen, mut lr) = (0.0f64, 0usize, 0.0);
        let mut pending_loss: Option<Tensor<1>> = None;
        train_feed.for_each_batch(train, &order, config.batch_size, Some(augment_rng), &train_device, |i, input, labels| {
            let batch_len = labels.dims()[0];
            let step = (epoch - 1 - plan.phase.start) * steps_per_epoch + i;
            lr = cosine_with_warmup(step, phase_steps, warmup_steps, config.learning_rate);
            let logits = train_feed.forward(&model, input);
            let loss = loss_fn.forward(logits, labels);
            let weighted = loss.clone().detach().mul_scalar(batch_len as f32);
            pending_loss = Some(match pending_loss.take() {
                Some(sum) => sum + weighted,
                None => weighted,
            });
            seen += batch_len;
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(learning_rates(lr, &lr_groups), model.clone(), grads);
            if (i + 1) % LOSS_READ_EVERY == 0 {
                loss_sum += read_loss_sum(pending_loss.take(), epoch, i)?;
            }
            Ok(())
        })?;
        let last_batch = steps_per_epoch.saturating_sub(1);
        loss_sum += read_loss_sum(pending_loss.take(), epoch, last_batch)?;
        let train_seconds = start.elapsed().as_secs_f64();
        let valid = model.valid();
        let eval = evaluate_feed(&valid, val, &val_feed, eval_batch_size, device)?;
        let metrics = EpochMetrics {
            epoch,
            train_loss: loss_sum / seen as f64,
            val_loss: eval.loss,
            val_accuracy: eval.accuracy,
            macro_f1: eval.macro_f1,
            learning_rate: lr,
            seconds: start.elapsed().as_secs_f64(),
            images_per_second: seen as f64 / train_seconds,
        };
        if best.as_ref().is_none_or(|(_, acc, _)| metrics.val_accuracy > *acc) {
            best = Some((epoch, metrics.val_accuracy, valid));
        }
        let control = callback.on_epoch(&metrics);
        history.push(metrics);
        if control == Control::Stop {
            stopped_early = epoch < config.epochs;
            break;
        }
    }
    let (best_epoch, _, best_model) = best.expect("at least one epoch ran");
    let prefix_cache = prefix_cache.report().clone();
    Ok(TrainOutcome { best_model, best_epoch, final_model: model.valid(), history, stopped_early, prefix_cache })
}

/// Where an epoch's network inputs come from: images through the whole network, or the frozen prefix's
/// cached outputs through the rest of it.
enum Feed<'a> {
    Pixels(&'a Batcher),
    Prefix {
        k: usize,
        /// One entry per variant, in the order of `variants`.
        entries: &'a [std::sync::Arc<Payload>],
        variants: Vec<Transform>,
        augmentation: Augmentation,
    },
}

impl<'a> Feed<'a> {
    fn train_prefix(inputs: &'a EpochInputs, augmentation: &Augmentation) -> Self {
        Feed::Prefix {
            k: inputs.k,
            entries: &inputs.train,
            variants: inputs.variants.clone(),
            augmentation: augmentation.clone(),
        }
    }

    fn val_prefix(inputs: &'a EpochInputs) -> Self {
        let entries = std::slice::from_ref(&inputs.val);
        Feed::Prefix { k: inputs.k, entries, variants: vec![Transform::default()], augmentation: Augmentation::default() }
    }

    /// The logits of a batch this feed produced.
    fn forward<M: ImageClassifier>(&self, model: &M, input: Tensor<4>) -> Tensor<2> {
        match self {
            Feed::Pixels(_) => model.forward(input),
            Feed::Prefix { k, .. } => model.forward_from(input, *k),
        }
    }

    /// Calls `consume(i, input, labels)` for the batches of `order`; `rng` drives augmentation. The prefix
    /// feed draws each image's transform exactly as the batcher would and takes that variant's row.
    fn for_each_batch(
        &self,
        data: &ImageDataset,
        order: &[usize],
        batch_size: usize,
        rng: Option<SplitMix64>,
        device: &Device,
        mut consume: impl FnMut(usize, Tensor<4>, Tensor<1, Int>) -> Result<()>,
    ) -> Result<()> {
        match self {
            Feed::Pixels(batcher) => batcher.for_each_batch(data, order, batch_size, rng, |i, batch| {
                let (images, labels) = batch.into_tensors(device);
                consume(i, images, labels)
            }),
            Feed::Prefix { entries, variants, augmentation, .. } => {
                let mut rng = rng.filter(|_| augmentation.is_active());
                let shape = &entries[0].header().shape;
                for (i, chunk) in order.chunks(batch_size).enumerate() {
                    let mut values = Vec::with_capacity(chunk.len() * entries[0].row_len());
                    let mut labels = Vec::with_capacity(chunk.len());
                    for &index in chunk {
                        let transform = rng.as_mut().map(|r| augmentation.draw(r, (data.height, data.width))).unwrap_or_default();
                        let variant = variants.iter().position(|v| *v == transform).ok_or_else(|| {
                            Error::Tensor(format!("augmentation drew {transform:?}, which the prefix cache does not hold"))
                        })?;
                        entries[variant].extend_f32_row(index, &mut values);
                        labels.push(data.labels[index] as i64);
                    }
                    let input =
                        Tensor::<4>::from_data(TensorData::new(values, [chunk.len(), shape[1], shape[2], shape[3]]), device);
                    let labels = Tensor::<1, Int>::from_data(TensorData::new(labels, [chunk.len()]), device);
                    consume(i, input, labels)?;
                }
                Ok(())
            }
        }
    }
}

/// Freezes the parts that `trainable` leaves out and unfreezes the others, BatchNorm training flags with
/// them. Frozen parameters get no gradient, so burn's `ModuleOptimizer` neither steps them nor keeps state
/// for them; a part unfrozen later starts with fresh optimiser state, as in PyTorch.
fn apply_freezing<M: Module>(model: M, parts: &Parts, trainable: &[bool]) -> M {
    let ids = |want: bool| {
        let ids = parts.0.iter().zip(trainable).filter(|(_, t)| **t == want).flat_map(|(ids, _)| ids.iter().copied());
        ParamGroup::from_ids(ids.collect())
    };
    model.freeze_group(ids(false)).unfreeze_group(ids(true))
}

/// The parts whose learning rate is not the base rate, with their multipliers.
///
/// Per-part learning rates use burn 0.22's parameter-group learning rates (`ModuleLearningRate`): one
/// optimiser, each parameter stepped with its group's rate, as PyTorch's param groups do. Scaling the
/// gradients instead would be wrong: Adam(W) normalises the gradient's scale away, and decoupled weight
/// decay would not scale with the rate. Separate optimisers per stage would work but buy nothing.
fn lr_groups(parts: &Parts, scales: &[f64]) -> Vec<(ParamGroup, f64)> {
    parts.0.iter().zip(scales).filter(|(_, s)| **s != 1.0).map(|(ids, s)| (ParamGroup::from_ids(ids.clone()), *s)).collect()
}

/// The learning rate of each parameter at a step whose base rate is `lr`.
fn learning_rates(lr: f64, groups: &[(ParamGroup, f64)]) -> ModuleLearningRate {
    if groups.is_empty() {
        return lr.into();
    }
    groups.iter().fold(ModuleLrScheduler::new(lr), |s, (group, scale)| s.with_group(group.clone(), lr * scale)).step()
}

/// Reading a value back waits for the device. On a GPU one read per step would drain its queue every
/// step, so the batch losses are summed on the device and read every this many steps (and at the end of
/// each epoch); a NaN or inf anywhere in the window makes the sum non-finite, so divergence is still caught.
const LOSS_READ_EVERY: usize = 16;

/// The summed (batch-size weighted) training loss of a window of steps; [`Error::Diverged`] if it is not
/// finite. `batch` is the last batch of the window.
fn read_loss_sum(sum: Option<Tensor<1>>, epoch: usize, batch: usize) -> Result<f64> {
    let Some(sum) = sum else { return Ok(0.0) };
    // Fallible reads: a device error (out of memory above all) surfaces here, not as a panic.
    let value: f32 = sum.try_into_scalar().map_err(Error::device)?;
    if !value.is_finite() {
        return Err(Error::Diverged { epoch, batch, loss: value });
    }
    Ok(value as f64)
}

/// Loss, accuracy and macro-F1 of `model` (in evaluation mode) on `data`.
pub fn evaluate<M: ImageClassifier>(
    model: &M,
    data: &ImageDataset,
    batcher: &Batcher,
    batch_size: usize,
    device: &Device,
) -> Result<EvalMetrics> {
    if data.is_empty() {
        // A mean over no images would be NaN, and 0 % accuracy would read as a result.
        return Err(Error::config("dataset", "cannot evaluate on an empty dataset"));
    }
    evaluate_feed(model, data, &Feed::Pixels(batcher), batch_size, device)
}

/// [`evaluate`] on the inputs of `feed`.
fn evaluate_feed<M: ImageClassifier>(
    model: &M,
    data: &ImageDataset,
    feed: &Feed<'_>,
    batch_size: usize,
    device: &Device,
) -> Result<EvalMetrics> {
    let classes = data.num_classes();
    let loss_fn = CrossEntropyLossConfig::new().init(device);
    let order: Vec<usize> = (0..data.len()).collect();
    // Each batch's mean loss and predictions stay on the device until the end: one read per evaluation,
    // not two per batch, so a GPU's queue is not drained batch after batch.
    let (mut losses, mut predictions, mut sizes) = (Vec::new(), Vec::new(), Vec::new());
    feed.for_each_batch(data, &order, batch_size, None, device, |_, input, labels| {
        let batch_len = labels.dims()[0];
        let logits = feed.forward(model, input);
        losses.push(loss_fn.forward(logits.clone(), labels));
        predictions.push(logits.argmax(1).reshape([batch_len]));
        sizes.push(batch_len);
        Ok(())
    })?;
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut loss_sum = 0.0f64;
    if !sizes.is_empty() {
        // Fallible reads: a device error (out of memory above all) surfaces here, not as a panic.
        let losses = Tensor::cat(losses, 0).try_into_data().map_err(Error::device)?.convert::<f32>();
        let losses = losses.as_slice::<f32>().map_err(|e| Error::Tensor(format!("{e:?}")))?;
        loss_sum = losses.iter().zip(&sizes).map(|(&loss, &n)| loss as f64 * n as f64).sum();
        let predicted = Tensor::cat(predictions, 0).try_into_data().map_err(Error::device)?.convert::<i64>();
        let predicted = predicted.as_slice::<i64>().map_err(|e| Error::Tensor(format!("{e:?}")))?;
        for (&truth, &pred) in data.labels.iter().zip(predicted) {
            confusion[truth][(pred as usize).min(classes - 1)] += 1;
        }
    }
    let (accuracy, macro_f1) = accuracy_and_macro_f1(&confusion);
    Ok(EvalMetrics { loss: loss_sum / data.len() as f64, accuracy, macro_f1 })
}

/// From a confusion matrix `[truth][predicted]`.
pub fn accuracy_and_macro_f1(confusion: &[Vec<usize>]) -> (f64, f64) {
    let total: usize = confusion.iter().flatten().sum();
    let correct: usize = (0..confusion.len()).map(|c| confusion[c][c]).sum();
    let mut f1_sum = 0.0;
    let mut counted = 0;
    for c in 0..confusion.len() {
        let tp = confusion[c][c] as f64;
        let actual: usize = confusion[c].iter().sum();
        let predicted: usize = confusion.iter().map(|row| row[c]).sum();
        if actual + predicted == 0 {
            continue;
        }
        counted += 1;
        f1_sum += 2.0 * tp / (actual + predicted) as f64;
    }
    let accuracy = if total == 0 { 0.0 } else { correct as f64 / total as f64 };
    (accuracy, if counted == 0 { 0.0 } else { f1_sum / counted as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::prefix::frozen_prefix;
    use crate::data::{Split, load_idx_dir};
    use crate::model::SmallCnn;
    use crate::model::tests::small_config;

    fn tiny_mnist() -> (ImageDataset, ImageDataset) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist_tiny");
        let train = load_idx_dir(&dir, Split::Train).unwrap().converted(1, 12, 12).unwrap();
        let test = load_idx_dir(&dir, Split::Test).unwrap().converted(1, 12, 12).unwrap();
        (train, test)
    }

    #[test]
    fn evaluating_an_empty_dataset_is_an_error_not_a_nan_loss() {
        let device = Device::flex();
        let model = SmallCnn::init(&small_config(10), &device).unwrap();
        let (_, test) = tiny_mnist();
        let empty = ImageDataset { pixels: crate::data::Pixels::Owned(Vec::new()), labels: Vec::new(), ..test };
        let batcher = Batcher { normalization: Normalization::centered(1), augmentation: Augmentation::default() };
        let e = evaluate(&model, &empty, &batcher, 8, &device).unwrap_err().to_string();
        assert!(e.contains("empty dataset"), "{e}");
    }

    /// Every tensor of the model (parameters and BatchNorm running statistics) as raw bytes.
    fn params(model: &SmallCnn) -> Vec<(String, Vec<u8>)> {
        use burn::store::ModuleSnapshot;
        model.collect(None, None, false).into_iter().map(|t| (t.name.clone(), t.to_bytes().unwrap().to_vec())).collect()
    }

    /// The values of an f32 tensor's bytes (from [`params`]).
    fn f32s(bytes: &[u8]) -> Vec<f64> {
        bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()
    }

    #[test]
    fn cosine_schedule_warms_up_then_decays_to_zero() {
        assert!((cosine_with_warmup(0, 100, 10, 1.0) - 0.1).abs() < 1e-12);
        assert!((cosine_with_warmup(9, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((cosine_with_warmup(10, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((cosine_with_warmup(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert!(cosine_with_warmup(99, 100, 10, 1.0) < 0.001);
        assert!((cosine_with_warmup(0, 10, 0, 2.0) - 2.0).abs() < 1e-12);
    }

    #[test]
    fn macro_f1_matches_hand_computation() {
        // class 0: tp 2, fn 1, fp 0 -> f1 0.8; class 1: tp 1, fn 0, fp 1 -> f1 2/3
        let (acc, f1) = accuracy_and_macro_f1(&[vec![2, 1], vec![0, 1]]);
        assert!((acc - 0.75).abs() < 1e-12);
        assert!((f1 - (0.8 + 2.0 / 3.0) / 2.0).abs() < 1e-12);
    }

    #[test]
    fn bad_train_configs_name_the_field() {
        let mut c = TrainConfig::new(1, 8, 1e-3);
        c.batch_size = 0;
        assert!(c.validate().unwrap_err().to_string().contains("batch_size"));
        c.batch_size = 8;
        c.learning_rate = f64::NAN;
        assert!(c.validate().unwrap_err().to_string().contains("learning_rate"));
    }

    #[test]
    fn training_learns_and_reports_every_epoch_and_stops_on_request() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let (train, val) = tiny_mnist();
        let config = TrainConfig::new(4, 16, 3e-3);
        let mut seen = Vec::new();
        let model = SmallCnn::init(&small_config(10), &device).unwrap();
        let outcome = fine_tune(model, &train, &val, &Normalization::centered(1), &config, &device, &mut |m: &EpochMetrics| {
            seen.push(m.epoch);
            Control::Continue
        })
        .unwrap();
        assert_eq!(seen, vec![1, 2, 3, 4]);
        let first = &outcome.history[0];
        let last = outcome.history.last().unwrap();
        assert!(last.train_loss < first.train_loss, "{:?}", outcome.history);
        // 200 train images, 100 val: chance is 0.1.
        assert!(outcome.best().val_accuracy > 0.4, "{:?}", outcome.history);
        assert!(last.macro_f1 > 0.0 && last.macro_f1 <= 1.0);

        let model = SmallCnn::init(&small_config(10), &device).unwrap();
        let outcome = fine_tune(model, &train, &val, &Normalization::centered(1), &config, &device, &mut |m: &EpochMetrics| {
            if m.epoch == 2 { Control::Stop } else { Control::Continue }
        })
        .unwrap();
        assert_eq!(outcome.history.len(), 2);
        assert!(outcome.stopped_early);
    }

    #[test]
    fn seeded_cpu_runs_are_reproducible() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let (train, val) = tiny_mnist();
        let train = train.take(64);
        let mut config = TrainConfig::new(2, 16, 1e-3);
        config.seed = 42;
        config.augmentation = Augmentation { crop_padding: 2, horizontal_flip: true, ..Augmentation::default() };
        let mut model_config = small_config(10);
        model_config.dropout = 0.3;
        let run = || {
            device.seed(7);
            let model = SmallCnn::init(&model_config, &device).unwrap();
            fine_tune(model, &train, &val, &Normalization::centered(1), &config, &device, &mut |_: &EpochMetrics| {
                Control::Continue
            })
            .unwrap()
        };
        let (a, b) = (run(), run());
        let losses = |o: &TrainOutcome<SmallCnn>| o.history.iter().map(|m| (m.train_loss, m.val_loss)).collect::<Vec<_>>();
        assert_eq!(losses(&a), losses(&b));
        assert_eq!(params(&a.best_model), params(&b.best_model));
    }

    #[test]
    fn frozen_parameters_stay_bit_identical_and_the_rest_change() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let (train, val) = tiny_mnist();
        let train = train.take(48);
        let model = SmallCnn::init(&small_config(10), &device).unwrap();
        let before = params(&model);
        let mut config = TrainConfig::new(1, 16, 1e-2);
        config.freeze_strategy = FreezeStrategy::Depth(1); // stem + stages.0 frozen; stages.1 and fc train
        let outcome = fine_tune(model, &train, &val, &Normalization::centered(1), &config, &device, &mut |_: &EpochMetrics| {
            Control::Continue
        })
        .unwrap();
        let after = params(&outcome.best_model);
        assert_eq!(before.len(), after.len());
        let mut frozen = 0;
        for ((name, b), (name2, a)) in before.iter().zip(&after) {
            assert_eq!(name, name2);
            if name.starts_with("stem.") || name.starts_with("stages.0.") {
                frozen += 1;
                // Includes BatchNorm running statistics: frozen BN uses them and does not update them.
                assert!(a == b, "frozen {name} changed");
            } else {
                assert!(a != b, "trainable {name} did not change");
            }
        }
        assert_eq!(frozen, 2 * 5, "conv weight + 4 BN tensors in each frozen block");
    }

    /// A fresh `small_config` CNN (initialised from `init_seed`) trained under `config` on 32 tiny-MNIST
    /// images, stopped after `stop_after` epochs; with its tensors before training.
    fn train_tiny(config: &TrainConfig, init_seed: u64, stop_after: usize) -> (Vec<(String, Vec<u8>)>, TrainOutcome<SmallCnn>) {
        let device = Device::flex();
        let (train, val) = tiny_mnist();
        device.seed(init_seed);
        let model = SmallCnn::init(&small_config(10), &device).unwrap();
        let before = params(&model);
        let mut stop = |m: &EpochMetrics| if m.epoch >= stop_after { Control::Stop } else { Control::Continue };
        let outcome = fine_tune(model, &train.take(32), &val.take(20), &Normalization::centered(1), config, &device, &mut stop);
        (before, outcome.unwrap())
    }

    /// Which parts (stem, stages…, head of `small_config`: width 4, depth 2) changed in each epoch of a run
    /// of `strategy`, as strings like "..TT" (T: every tensor of the part changed, `.`: none did). Each
    /// epoch's model comes from a run stopped after that epoch (seeded runs repeat exactly).
    fn parts_changed_per_epoch(strategy: FreezeStrategy, epochs: usize) -> Vec<String> {
        let mut config = TrainConfig::new(epochs, 16, 1e-2);
        config.freeze_strategy = strategy;
        let mut snapshots = vec![train_tiny(&config, 3, 1).0];
        snapshots.extend((1..=epochs).map(|stop| params(&train_tiny(&config, 3, stop).1.final_model)));
        let part = |name: &str| match name.split('.').collect::<Vec<_>>()[..] {
            ["stem", ..] => 0,
            ["stages", i, ..] => i.parse::<usize>().unwrap() + 1,
            ["fc", ..] => 3,
            _ => panic!("{name} is in no part"),
        };
        snapshots
            .windows(2)
            .enumerate()
            .map(|(e, pair)| {
                let mut changed: [Option<bool>; 4] = [None; 4];
                for ((name, before), (_, after)) in pair[0].iter().zip(&pair[1]) {
                    let c = before != after;
                    let slot = &mut changed[part(name)];
                    assert!(slot.is_none_or(|s| s == c), "{strategy} epoch {}: part of {name} changed only in part", e + 1);
                    *slot = Some(c);
                }
                changed.iter().map(|c| if c.unwrap() { 'T' } else { '.' }).collect()
            })
            .collect()
    }

    #[test]
    fn each_strategy_trains_the_parts_it_plans_in_each_epoch() {
        let _rng = crate::serial_rng();
        for (strategy, epochs, expected) in [
            (FreezeStrategy::Full, 2, vec!["TTTT"; 2]),
            (FreezeStrategy::Depth(1), 2, vec!["..TT"; 2]),
            (FreezeStrategy::LinearProbe, 2, vec!["...T"; 2]),
            (FreezeStrategy::LpFt { lp_fraction: 0.5 }, 4, vec!["...T", "...T", "TTTT", "TTTT"]),
            (FreezeStrategy::GradualUnfreeze { every: 1 }, 4, vec!["...T", "..TT", ".TTT", "TTTT"]),
            (FreezeStrategy::GradualUnfreeze { every: 2 }, 3, vec!["...T", "...T", "..TT"]),
            (FreezeStrategy::LayerDecay(0.5), 2, vec!["TTTT"; 2]),
        ] {
            assert_eq!(parts_changed_per_epoch(strategy, epochs), expected, "{strategy}");
        }
    }

    /// One full-batch step from the same weights: under `layer_decay:0.5` each part's update is the `full`
    /// update times its multiplier (stem 0.25, stage 1 0.5, stage 2 and head 1), for SGD and for AdamW —
    /// where scaling the gradient instead would change nothing.
    #[test]
    fn layer_decay_gives_each_stage_its_learning_rate() {
        let _rng = crate::serial_rng();
        for optimizer in [OptimizerKind::Sgd { momentum: 0.0 }, OptimizerKind::AdamW] {
            let step = |strategy: FreezeStrategy| {
                let mut config = TrainConfig::new(1, 32, 0.05);
                (config.optimizer, config.warmup_fraction, config.freeze_strategy) = (optimizer, 0.0, strategy);
                let (before, outcome) = train_tiny(&config, 5, 1);
                let after = params(&outcome.final_model);
                before
                    .iter()
                    .zip(&after)
                    .filter(|((name, _), _)| !name.contains("running"))
                    .map(|((name, b), (_, a))| {
                        let moved: f64 = f32s(a).iter().zip(f32s(b)).map(|(a, b)| (a - b).abs()).sum();
                        (name.clone(), moved)
                    })
                    .collect::<Vec<_>>()
            };
            let (full, decayed) = (step(FreezeStrategy::Full), step(FreezeStrategy::LayerDecay(0.5)));
            for ((name, f), (_, d)) in full.iter().zip(&decayed) {
                let scale = match name.split('.').next().unwrap() {
                    "stem" => 0.25,
                    "stages" if name.starts_with("stages.0.") => 0.5,
                    _ => 1.0,
                };
                assert!(*f > 0.0, "{name} did not move");
                assert!((d / f - scale).abs() < 1e-3 * scale, "{optimizer:?} {name}: moved {d} vs {f} under full, want ×{scale}");
            }
        }
    }

    #[test]
    fn lp_ft_restarts_the_warm_up_and_cosine_for_its_fine_tuning() {
        let _rng = crate::serial_rng();
        let lrs = |strategy: FreezeStrategy| {
            let mut config = TrainConfig::new(4, 16, 0.01);
            (config.warmup_fraction, config.freeze_strategy) = (0.25, strategy);
            train_tiny(&config, 0, 4).1.history.iter().map(|m| m.learning_rate).collect::<Vec<_>>()
        };
        // 2 steps an epoch. lp_ft: two phases of 4 steps, 1 of warm-up each; full: one of 8 steps, 2 of warm-up.
        let phase = |step| cosine_with_warmup(step, 4, 1, 0.01);
        assert_eq!(lrs(FreezeStrategy::LpFt { lp_fraction: 0.5 }), [phase(1), phase(3), phase(1), phase(3)]);
        let whole = |step| cosine_with_warmup(step, 8, 2, 0.01);
        assert_eq!(lrs(FreezeStrategy::Full), [whole(1), whole(3), whole(5), whole(7)]);
    }

    /// lp_ft's fine-tuning starts with a fresh AdamW: its first step moves every weight by the learning rate
    /// (m̂/√v̂ = ±1 for one gradient), which a continued optimiser, still remembering the probe's gradient in
    /// the head, would not.
    #[test]
    fn lp_ft_fine_tunes_with_a_fresh_optimiser() {
        let _rng = crate::serial_rng();
        let mut config = TrainConfig::new(2, 32, 0.01);
        (config.warmup_fraction, config.freeze_strategy) = (0.0, FreezeStrategy::LpFt { lp_fraction: 0.5 });
        let probed = params(&train_tiny(&config, 9, 1).1.final_model);
        let tuned = params(&train_tiny(&config, 9, 2).1.final_model);
        for ((name, before), (_, after)) in probed.iter().zip(&tuned).filter(|((name, _), _)| !name.contains("running")) {
            let moved: Vec<f64> = f32s(after).iter().zip(f32s(before)).map(|(a, b)| (a - b).abs()).collect();
            let by_lr = moved.iter().filter(|m| (*m - 0.01).abs() < 1e-5).count();
            assert!(by_lr as f64 >= 0.9 * moved.len() as f64, "{name}: {by_lr} of {} moved by the lr: {moved:?}", moved.len());
        }
    }

    /// A `small_config` CNN (dropout 0.3, initialised from seed 11) trained under `config` on tiny MNIST;
    /// returns the outcome and the final model's validation logits.
    fn cache_run(config: &TrainConfig) -> (TrainOutcome<SmallCnn>, Vec<f32>) {
        let device = Device::flex();
        let (train, val) = tiny_mnist();
        let (train, val) = (train.take(96), val.take(40));
        device.seed(11);
        let mut model_config = small_config(10);
        model_config.dropout = 0.3;
        let model = SmallCnn::init(&model_config, &device).unwrap();
        let outcome = fine_tune(model, &train, &val, &Normalization::centered(1), config, &device, &mut |_: &EpochMetrics| {
            Control::Continue
        })
        .unwrap();
        let batch = Batcher { normalization: Normalization::centered(1), augmentation: Augmentation::default() }.batch(
            &val,
            &(0..val.len()).collect::<Vec<_>>(),
            None,
        );
        let logits = outcome.final_model.forward(batch.into_tensors(&device).0);
        (outcome, logits.into_data().try_to_vec::<f32>().unwrap())
    }

    /// The same trial with the cache and without: the same validation accuracy every epoch and the same
    /// final logits (within 1e-5; bit-identical where the CPU arithmetic allows), for a partial freeze, a
    /// linear probe, lp_ft and gradual unfreezing, with and without horizontal flips.
    #[test]
    fn cache_gives_the_results_of_an_uncached_trial() {
        let _rng = crate::serial_rng();
        for (strategy, hflip) in [
            (FreezeStrategy::Depth(1), false),
            (FreezeStrategy::Depth(1), true),
            (FreezeStrategy::LinearProbe, false),
            (FreezeStrategy::LinearProbe, true),
            (FreezeStrategy::LpFt { lp_fraction: 0.5 }, true),
            (FreezeStrategy::GradualUnfreeze { every: 1 }, false),
        ] {
            let mut config = TrainConfig::new(3, 16, 3e-3);
            (config.freeze_strategy, config.seed) = (strategy, 5);
            config.augmentation.horizontal_flip = hflip;
            let (cached, cached_logits) = cache_run(&config);
            config.cache = CacheSettings::off();
            let (plain, plain_logits) = cache_run(&config);
            let what = format!("{strategy} hflip={hflip}");
            let frozen_epochs = (0..3).filter(|&e| frozen_prefix(&strategy.plan(e, 3, 2).trainable, 2).is_some()).count();
            assert_eq!(cached.prefix_cache.cached_epochs, frozen_epochs, "{what}: {}", cached.prefix_cache);
            assert_eq!(plain.prefix_cache.cached_epochs, 0, "{what}");
            let accuracies = |o: &TrainOutcome<SmallCnn>| o.history.iter().map(|m| m.val_accuracy).collect::<Vec<_>>();
            assert_eq!(accuracies(&cached), accuracies(&plain), "{what}");
            for (m, n) in cached.history.iter().zip(&plain.history) {
                assert!((m.train_loss - n.train_loss).abs() < 1e-5, "{what}: train loss {} vs {}", m.train_loss, n.train_loss);
            }
            let worst = cached_logits.iter().zip(&plain_logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst <= 1e-5, "{what}: logits differ by {worst}");
        }
    }

    #[test]
    fn cache_is_skipped_for_random_crops_and_when_turned_off() {
        let _rng = crate::serial_rng();
        let mut config = TrainConfig::new(2, 32, 3e-3);
        config.freeze_strategy = FreezeStrategy::LinearProbe;
        config.augmentation.crop_padding = 2;
        let report = cache_run(&config).0.prefix_cache;
        assert_eq!((report.cached_epochs, report.uncached_epochs, report.built), (0, 2, 0));
        assert!(report.to_string().contains("skipped (random-crop augmentation"), "{report}");
        config.augmentation.crop_padding = 0;
        config.cache = CacheSettings::off();
        let report = cache_run(&config).0.prefix_cache;
        assert!(report.to_string().contains("skipped (turned off"), "{report}");
        config.freeze_strategy = FreezeStrategy::Full;
        config.cache = CacheSettings::default();
        assert_eq!(cache_run(&config).0.prefix_cache.to_string(), "prefix cache: not used (no epoch freezes the stem)");
        // Under a cap too small for the outputs, the trial runs uncached and says why.
        config.freeze_strategy = FreezeStrategy::Depth(1);
        config.cache.max_bytes = 1000;
        let report = cache_run(&config).0.prefix_cache;
        assert!(report.cached_epochs == 0 && report.to_string().contains("over the cap"), "{report}");
    }

    /// A second trial with the same backbone and data reads the first one's entries from the directory
    /// and gets its results; another depth or another initialisation makes new entries.
    #[test]
    fn cache_entries_are_shared_by_later_trials() {
        let _rng = crate::serial_rng();
        let dir = tempfile::tempdir().unwrap();
        let mut config = TrainConfig::new(2, 16, 3e-3);
        config.freeze_strategy = FreezeStrategy::LinearProbe;
        config.augmentation.horizontal_flip = true;
        config.cache = CacheSettings::new(crate::CacheConfig::default(), Some(dir.path().to_path_buf()));
        let (first, first_logits) = cache_run(&config);
        let r = &first.prefix_cache;
        // Two variants of the training images and the validation images, each built once.
        assert_eq!((r.cached_epochs, r.hits, r.built, r.stored), (2, 0, 3, 3), "{r}");
        let (second, second_logits) = cache_run(&config);
        let r = &second.prefix_cache;
        assert_eq!((r.cached_epochs, r.hits, r.built), (2, 3, 0), "{r}");
        assert!(r.to_string().starts_with("prefix cache: hit:"), "{r}");
        assert_eq!(first_logits, second_logits);
        config.freeze_strategy = FreezeStrategy::Depth(1);
        let r = cache_run(&config).0.prefix_cache;
        assert_eq!((r.hits, r.built), (0, 3), "another depth, other entries: {r}");
        // Damage one entry: the next trial refuses it, rebuilds it, and still gets the same results.
        let entry = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "nsc"))
            .max_by_key(|p| std::fs::metadata(p).unwrap().modified().unwrap())
            .unwrap(); // one of the depth:1 entries, the most recently used
        let bytes = std::fs::read(&entry).unwrap();
        std::fs::write(&entry, &bytes[..bytes.len() / 2]).unwrap();
        let r = cache_run(&config).0.prefix_cache;
        assert_eq!((r.hits, r.built, r.rebuilt.len()), (2, 1, 1), "{r}");
        assert!(r.rebuilt[0].contains("truncated"), "{r}");
    }

    #[test]
    fn nan_loss_stops_with_diverged() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let (train, val) = tiny_mnist();
        let config = TrainConfig::new(3, 32, 1e30);
        let model = SmallCnn::init(&small_config(10), &device).unwrap();
        let err =
            fine_tune(model, &train.take(96), &val, &Normalization::centered(1), &config, &device, &mut |_: &EpochMetrics| {
                Control::Continue
            })
            .unwrap_err();
        assert!(matches!(err, Error::Diverged { .. }), "{err}");
        assert!(err.to_string().contains("diverged"));
    }
}

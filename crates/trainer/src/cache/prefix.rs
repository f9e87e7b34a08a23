//! The frozen-prefix cache: the output of a network's frozen stem and first k stages, per image and
//! augmentation variant, computed once and reused by every epoch (and every trial) with the same key.
//!
//! [`crate::fine_tune`] asks [`PrefixCache::epoch_inputs`] at the start of each epoch whose plan freezes
//! the stem ([`frozen_prefix`]); when it gets entries, the epoch's training batches are assembled from the
//! cached rows (with the same augmentation draws the image batcher would make) and run through
//! [`ImageClassifier::forward_from`], and validation does the same with the plain variant. The cached rows
//! enter the graph as constants, so no gradient reaches the prefix — which is frozen anyway.
//!
//! The key ([`super::prefix_key`]) holds a hash of the prefix's parameters *as they are* (so it covers the
//! checkpoint's content, a fresh initialisation and anything a loader did to either, BatchNorm running
//! statistics included), the architecture, k, a hash of the dataset's pixels (image size, channels, the
//! split and the subset included) and [`super::preprocessing`] (normalisation, augmentation variant).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::Xxh3Default;

use super::file::{Blob, CacheDir, Dtype, Outcome, Payload};
use super::{CacheSettings, human_size, prefix_key, preprocessing};
use crate::data::{Augmentation, Batcher, ImageDataset, Normalization, Transform};
use crate::error::{Error, Result};
use crate::model::{ImageClassifier, Parts};

/// The frozen prefix of an epoch whose parts train as `trainable` (stem, stages, head): `Some(k)` when the
/// stem and stages 1…k are frozen (k = `stages` for a linear probe), `None` when the stem trains.
pub fn frozen_prefix(trainable: &[bool], stages: usize) -> Option<usize> {
    let frozen = trainable.iter().take_while(|t| !**t).count();
    (frozen > 0).then(|| (frozen - 1).min(stages))
}

/// What the frozen-prefix cache did in one trial; the trial's log prints it as one line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PrefixCacheReport {
    /// Epochs whose frozen prefix came from the cache.
    pub cached_epochs: usize,
    /// Epochs with a frozen prefix that ran it anyway (see `skipped`).
    pub uncached_epochs: usize,
    /// Entries found stored: built by an earlier trial, or by one this trial waited for.
    pub hits: usize,
    /// Entries this trial computed.
    pub built: usize,
    /// Of those, the ones stored in the shared directory (none without one; an entry larger than the cap
    /// stays in memory).
    pub stored: usize,
    /// Why stored entries were refused and rebuilt.
    pub rebuilt: Vec<String>,
    /// Why the cache was not used (the first reason).
    pub skipped: Option<String>,
    /// The shared directory, when there is one.
    pub dir: Option<PathBuf>,
}

impl fmt::Display for PrefixCacheReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.cached_epochs == 0 {
            return match &self.skipped {
                Some(reason) => write!(f, "prefix cache: skipped ({reason})"),
                None => write!(f, "prefix cache: not used (no epoch freezes the stem)"),
            };
        }
        let verb = if self.built == 0 {
            "hit"
        } else if self.hits == 0 {
            "built"
        } else {
            "hit and built"
        };
        write!(
            f,
            "prefix cache: {verb}: {} epoch(s) from the cache; entries {} hit, {} built",
            self.cached_epochs, self.hits, self.built
        )?;
        match &self.dir {
            Some(dir) if self.built == 0 => write!(f, " (from {})", dir.display())?,
            Some(dir) => write!(f, " ({} stored in {})", self.stored, dir.display())?,
            None => write!(f, " (in memory: no cache directory)")?,
        }
        if !self.rebuilt.is_empty() {
            write!(f, "; rebuilt {} refused file(s): {}", self.rebuilt.len(), self.rebuilt.join("; "))?;
        }
        if let Some(reason) = self.skipped.as_ref().filter(|_| self.uncached_epochs > 0) {
            write!(f, "; {} epoch(s) uncached ({reason})", self.uncached_epochs)?;
        }
        Ok(())
    }
}

/// The cached prefix outputs one epoch runs on.
#[derive(Debug, Clone)]
pub struct EpochInputs {
    /// The prefix depth: the stem and stages 1…k ([`frozen_prefix`]).
    pub k: usize,
    /// The augmentation variants, in the order of `train`'s entries.
    pub variants: Vec<Transform>,
    /// One entry per variant: row i is training image i's prefix output.
    pub train: Vec<Arc<Payload>>,
    /// The plain variant of the validation images.
    pub val: Arc<Payload>,
}

/// One trial's frozen-prefix cache: entries of the current k in memory, the shared directory behind them.
#[derive(Debug)]
pub struct PrefixCache {
    settings: CacheSettings,
    store: Option<CacheDir>,
    current: Option<EpochInputs>,
    data_hashes: HashMap<&'static str, String>,
    report: PrefixCacheReport,
}

impl PrefixCache {
    /// An empty cache for one trial with `settings`.
    pub fn new(settings: &CacheSettings) -> Self {
        let store = settings.store();
        let report = PrefixCacheReport { dir: store.as_ref().map(|s| s.dir.clone()), ..PrefixCacheReport::default() };
        Self { settings: settings.clone(), store, current: None, data_hashes: HashMap::new(), report }
    }

    /// What the cache has done so far.
    pub fn report(&self) -> &PrefixCacheReport {
        &self.report
    }

    /// The cached inputs of an epoch whose stem and first `k` stages are frozen in `model`, or `None` —
    /// with the reason in the report — when the cache is off, the augmentation has no finite set of
    /// variants, or the entries would not fit under the cap. `batch_size` is used to compute missing entries.
    #[allow(clippy::too_many_arguments)]
    pub fn epoch_inputs<M: ImageClassifier>(
        &mut self,
        model: &M,
        parts: &Parts,
        k: usize,
        data: [&ImageDataset; 2],
        augmentation: &Augmentation,
        normalization: &Normalization,
        batch_size: usize,
        device: &Device,
    ) -> Result<Option<EpochInputs>> {
        let inputs = self.find_or_build(model, parts, k, data, augmentation, normalization, batch_size, device)?;
        match &inputs {
            Some(_) => self.report.cached_epochs += 1,
            None => self.report.uncached_epochs += 1,
        }
        Ok(inputs)
    }

    #[allow(clippy::too_many_arguments)]
    fn find_or_build<M: ImageClassifier>(
        &mut self,
        model: &M,
        parts: &Parts,
        k: usize,
        [train, val]: [&ImageDataset; 2],
        augmentation: &Augmentation,
        normalization: &Normalization,
        batch_size: usize,
        device: &Device,
    ) -> Result<Option<EpochInputs>> {
        if let Some(current) = self.current.as_ref().filter(|c| c.k == k) {
            return Ok(Some(current.clone()));
        }
        self.current = None; // another depth: free the old entries first
        if !self.settings.enabled {
            return Ok(self.skip("turned off: trial.cache is false or --no-cache".into()));
        }
        let Some(variants) = augmentation.prefix_cacheable() else {
            let crop = if augmentation.random_resized_crop.is_some() { "random_resized_crop" } else { "crop_padding > 0" };
            return Ok(self.skip(format!("random-crop augmentation ({crop}) gives every epoch different inputs")));
        };
        let model = model.valid();
        // One image tells the size of a row; everything this depth needs must fit under the cap.
        let probe =
            Batcher { normalization: normalization.clone(), augmentation: Augmentation::default() }.batch(val, &[0], None);
        let row: usize = model.forward_prefix(probe.into_tensors(device).0, k).dims()[1..].iter().product();
        let needed = ((train.len() * variants.len() + val.len()) * row * 4) as u64;
        if needed > self.settings.max_bytes {
            let cap = human_size(self.settings.max_bytes);
            return Ok(self.skip(format!("the prefix outputs at depth {k} need {}, over the cap of {cap}", human_size(needed))));
        }
        let params = prefix_params_hash(&model, parts, k)?;
        let arch = std::any::type_name::<M>();
        let mut entry = |data: &ImageDataset, role: &'static str, variant: Transform| -> Result<Arc<Payload>> {
            let data_hash = self.data_hashes.entry(role).or_insert_with(|| dataset_hash(data)).clone();
            let key = prefix_key(arch, k, &params, &data_hash, &preprocessing(normalization, Some(variant)));
            let build = || compute_prefix(&model, k, data, variant, normalization, batch_size, device);
            let payload = match &self.store {
                Some(store) => {
                    let (payload, outcome) = store.get_or_build(&key, build)?;
                    match outcome {
                        Outcome::Hit => self.report.hits += 1,
                        Outcome::Built { refused, stored } => {
                            self.report.built += 1;
                            self.report.stored += stored as usize;
                            self.report.rebuilt.extend(refused);
                        }
                    }
                    payload
                }
                None => {
                    self.report.built += 1;
                    Payload::in_memory(&key, build()?)
                }
            };
            Ok(Arc::new(payload))
        };
        let train_entries = variants.iter().map(|&v| entry(train, "train", v)).collect::<Result<Vec<_>>>()?;
        let val_entry = entry(val, "val", Transform::default())?;
        let inputs = EpochInputs { k, variants, train: train_entries, val: val_entry };
        self.current = Some(inputs.clone());
        Ok(Some(inputs))
    }

    fn skip(&mut self, reason: String) -> Option<EpochInputs> {
        self.report.skipped.get_or_insert(reason);
        None
    }
}

/// The prefix outputs of every image of `data` under `variant`, as rows of f32 `[n, c, h, w]`.
fn compute_prefix<M: ImageClassifier>(
    model: &M,
    k: usize,
    data: &ImageDataset,
    variant: Transform,
    normalization: &Normalization,
    batch_size: usize,
    device: &Device,
) -> Result<Blob> {
    let batcher = Batcher { normalization: normalization.clone(), augmentation: Augmentation::default() };
    let order: Vec<usize> = (0..data.len()).collect();
    let mut bytes = Vec::new();
    let mut row_shape = vec![0; 3];
    for chunk in order.chunks(batch_size.max(1)) {
        let images = batcher.batch_with(data, chunk, |_| variant).into_tensors(device).0;
        let out = model.forward_prefix(images, k);
        row_shape = out.dims()[1..].to_vec();
        let values = out.try_into_data().map_err(Error::device)?.convert::<f32>();
        let values = values.as_slice::<f32>().map_err(|e| Error::Tensor(format!("{e:?}")))?;
        if bytes.is_empty() {
            // Once, for the whole entry: reserving per chunk would grow the buffer to twice its size.
            bytes.reserve_exact(values.len() / chunk.len() * order.len() * 4);
        }
        bytes.extend(values.iter().flat_map(|v| v.to_le_bytes()));
    }
    let shape = std::iter::once(data.len()).chain(row_shape).collect();
    Ok(Blob { dtype: Dtype::F32, shape, extra: serde_json::Value::Null, bytes })
}

/// A hash of the images (shape and pixels, in order): the "dataset content" of a prefix key.
pub fn dataset_hash(data: &ImageDataset) -> String {
    let mut h = Xxh3Default::new();
    for n in [data.len(), data.channels, data.height, data.width] {
        h.update(&(n as u64).to_le_bytes());
    }
    h.update(&data.pixels);
    format!("{:032x}", h.digest128())
}

/// A hash of the shapes and values of every tensor (weights and BatchNorm statistics) of the stem and the
/// first `k` stages of `model`.
pub fn prefix_params_hash<M: Module>(model: &M, parts: &Parts, k: usize) -> Result<String> {
    struct Hasher {
        ids: HashSet<ParamId>,
        state: Xxh3Default,
        tensors: usize,
        error: Option<Error>,
    }
    impl ModuleVisitor for Hasher {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !self.ids.contains(&param.id) || self.error.is_some() {
                return;
            }
            let tensor = param.val();
            for d in tensor.dims() {
                self.state.update(&(d as u64).to_le_bytes());
            }
            match tensor.try_into_data() {
                Ok(data) => self.state.update(data.as_bytes()),
                Err(e) => self.error = Some(Error::device(e)),
            }
            self.tensors += 1;
        }
    }
    let ids = parts.0.iter().take(k + 1).flatten().copied().collect();
    let mut hasher = Hasher { ids, state: Xxh3Default::new(), tensors: 0, error: None };
    model.visit(&mut hasher);
    if let Some(e) = hasher.error {
        return Err(e);
    }
    Ok(format!("{:032x}/{}", hasher.state.digest128(), hasher.tensors))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frozen_prefix_of_a_plan() {
        assert_eq!(frozen_prefix(&[true, true, true, true], 2), None);
        assert_eq!(frozen_prefix(&[false, true, true, true], 2), Some(0));
        assert_eq!(frozen_prefix(&[false, false, true, true], 2), Some(1));
        assert_eq!(frozen_prefix(&[false, false, false, true], 2), Some(2), "linear probe");
        assert_eq!(frozen_prefix(&[true, false, false, true], 2), None, "a frozen stage above a training stem");
    }
}

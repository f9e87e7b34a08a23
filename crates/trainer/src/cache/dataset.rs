//! The dataset cache: a trial's training, validation (and test) images, decoded, converted to the model's
//! channels and resized, stored once per sweep as cache entries that every trial memory-maps
//! ([`Pixels::Shared`]), so N concurrent trials share one copy in the page cache and none decodes again.
//!
//! Entries hold `u8` pixels, not normalised `f32`: a quarter of the size, and normalisation (with
//! augmentation) happens per batch anyway, in one place ([`crate::Batcher`]). The labels and class names
//! travel in the entry's header.
//!
//! The key ([`super::dataset_key`]) is a hash of the dataset's files — every file under the dataset path,
//! names and contents (reading is cheap next to decoding) — the channels, the size, the pipeline version
//! and the split (`per_class`, `val_fraction`, `split_seed`, which part). A trial whose entries are all
//! present reads no image file at all.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::json;
use xxhash_rust::xxh3::Xxh3Default;

use super::file::{Blob, CacheDir, Dtype, Outcome, Payload};
use super::{CacheSettings, dataset_key};
use crate::config::DataConfig;
use crate::data::{ImageDataset, Pixels};
use crate::error::{Error, Result};
use crate::model::ModelConfig;

/// What the dataset cache did for one trial; the trial's log prints it as one line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetCacheReport {
    /// Parts (train, validation, test) found stored.
    pub hits: usize,
    /// Parts this trial decoded and stored (kept in memory instead when larger than the cap).
    pub built: usize,
    /// Why stored entries were refused and rebuilt.
    pub rebuilt: Vec<String>,
    /// Why the cache was not used; every part was then loaded directly.
    pub skipped: Option<String>,
    /// The shared directory, when the cache was used.
    pub dir: Option<PathBuf>,
}

impl fmt::Display for DatasetCacheReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(reason) = &self.skipped {
            return write!(f, "dataset cache: skipped ({reason})");
        }
        let dir = self.dir.as_deref().unwrap_or(Path::new("?")).display();
        let verb = if self.built == 0 { "hit" } else { "built" };
        write!(f, "dataset cache: {verb}: {} part(s) mapped from {dir}, {} built", self.hits + self.built, self.built)?;
        if !self.rebuilt.is_empty() {
            write!(f, "; rebuilt {} refused file(s): {}", self.rebuilt.len(), self.rebuilt.join("; "))?;
        }
        Ok(())
    }
}

/// [`DataConfig::load`] through the dataset cache of `settings`' directory: (train, validation, test when
/// `with_test`) and what the cache did. Without a directory, or with the caches off, it is `load` itself.
pub fn load(
    data: &DataConfig,
    model: &ModelConfig,
    with_test: bool,
    settings: &CacheSettings,
) -> Result<(ImageDataset, ImageDataset, Option<ImageDataset>, DatasetCacheReport)> {
    let skipped = match settings.store() {
        // Random resized crops sample from the decoded originals, which entries do not hold.
        Some(_) if data.random_resized_crop => Some("random_resized_crop needs the decoded originals"),
        Some(_) => None,
        None if settings.enabled => Some("no cache directory"),
        None => Some("turned off: trial.cache is false or --no-cache"),
    };
    let (Some(store), None) = (settings.store(), skipped) else {
        let (train, val, test) = data.load(model, with_test)?;
        let report = DatasetCacheReport { skipped: skipped.map(String::from), ..DatasetCacheReport::default() };
        return Ok((train, val, test, report));
    };
    let content = source_hash(&data.dataset)?;
    let split = format!(
        "per_class={:?} val_fraction={} split_seed={}",
        data.per_class,
        data.val_fraction,
        data.split_seed.unwrap_or(data.seed)
    );
    let mut report = DatasetCacheReport { dir: Some(store.dir.clone()), ..DatasetCacheReport::default() };
    // Decoded at most once, by the first part that is missing.
    let mut loaded: Option<(ImageDataset, ImageDataset, Option<ImageDataset>)> = None;
    let mut part = |role: &str, index: usize| -> Result<ImageDataset> {
        let key = dataset_key(&content, model.in_channels, model.image_size, model.resize, &format!("{role} {split}"));
        let build = || -> Result<Blob> {
            if loaded.is_none() {
                loaded = Some(data.load(model, with_test)?);
            }
            let (train, val, test) = loaded.as_ref().expect("just loaded");
            let part = [Some(train), Some(val), test.as_ref()][index]
                .ok_or_else(|| Error::config("test", "the dataset has no test split"))?;
            Ok(to_blob(part))
        };
        let (payload, outcome) = store.get_or_build(&key, build)?;
        match outcome {
            Outcome::Hit => report.hits += 1,
            Outcome::Built { refused, .. } => {
                report.built += 1;
                report.rebuilt.extend(refused);
            }
        }
        from_payload(Arc::new(payload), &store)
    };
    let train = part("train", 0)?;
    let val = part("val", 1)?;
    let test = if with_test { Some(part("test", 2)?) } else { None };
    Ok((train, val, test, report))
}

fn to_blob(data: &ImageDataset) -> Blob {
    Blob {
        dtype: Dtype::U8,
        shape: vec![data.len(), data.channels, data.height, data.width],
        extra: json!({"labels": data.labels, "class_names": data.class_names}),
        bytes: data.pixels.to_vec(),
    }
}

/// The dataset an entry holds, its pixels a view of the entry.
fn from_payload(payload: Arc<Payload>, store: &CacheDir) -> Result<ImageDataset> {
    let header = payload.header();
    let bad =
        |reason: String| Error::Dataset { path: store.dir.clone(), reason: format!("cache entry for {}: {reason}", header.key) };
    let (labels, class_names): (Vec<usize>, Vec<String>) = serde_json::from_value(header.extra["labels"].clone())
        .and_then(|l| Ok((l, serde_json::from_value(header.extra["class_names"].clone())?)))
        .map_err(|e| bad(format!("labels: {e}")))?;
    let [n, channels, height, width] = header.shape[..] else { return Err(bad(format!("shape {:?}", header.shape))) };
    if header.dtype != Dtype::U8 || labels.len() != n || labels.iter().any(|&l| l >= class_names.len()) {
        return Err(bad("labels or element type do not match the images".into()));
    }
    Ok(ImageDataset { channels, height, width, pixels: Pixels::Shared(payload), labels, class_names, originals: None })
}

/// A hash of every file under `path` (relative names and contents, in name order): the dataset's content.
pub fn source_hash(path: &Path) -> Result<String> {
    let mut files = Vec::new();
    collect_files(path, 0, &mut files)?;
    files.sort();
    let mut h = Xxh3Default::new();
    for file in &files {
        let name = file.strip_prefix(path).unwrap_or(file).to_string_lossy().into_owned();
        let bytes = std::fs::read(file).map_err(|e| Error::io(file, e))?;
        for part in [name.as_bytes(), &(bytes.len() as u64).to_le_bytes(), &bytes] {
            h.update(part);
        }
    }
    Ok(format!("{:032x}", h.digest128()))
}

/// Directories nested deeper than this under a dataset are refused: most likely a symlink loop.
pub(crate) const MAX_DATASET_DEPTH: usize = 16;

/// Every file under `path` (itself, when it is a file), `depth` directories below the dataset's root.
fn collect_files(path: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    if path.is_file() {
        out.push(path.to_path_buf());
        return Ok(());
    }
    if depth > MAX_DATASET_DEPTH {
        return Err(Error::config(
            "dataset",
            format!(
                "{} is nested more than {MAX_DATASET_DEPTH} directories deep in the dataset (a symlink loop?)",
                path.display()
            ),
        ));
    }
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?.path();
        if entry.is_dir() {
            collect_files(&entry, depth + 1, out)?;
        } else if entry.is_file() {
            out.push(entry);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::CacheConfig;

    fn mnist_tiny() -> DataConfig {
        let dataset = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/mnist_tiny");
        DataConfig { dataset, val_fraction: 0.25, ..DataConfig::default() }
    }

    #[test]
    fn a_second_trial_maps_the_datasets_the_first_decoded() {
        let dir = tempfile::tempdir().unwrap();
        let data = mnist_tiny();
        let (names, native) = data.dataset_shape().unwrap();
        let mut model = data.fresh_model_config(names.len(), native, 0.0).unwrap();
        (model.in_channels, model.image_size) = (3, [20, 20]);
        let settings = CacheSettings::new(CacheConfig::default(), Some(dir.path().to_path_buf()));
        let (train, val, test) = data.load(&model, true).unwrap();
        let (train1, val1, test1, first) = load(&data, &model, true, &settings).unwrap();
        assert_eq!((first.hits, first.built), (0, 3), "{first}");
        let (train2, val2, test2, second) = load(&data, &model, true, &settings).unwrap();
        assert_eq!((second.hits, second.built), (3, 0), "{second}");
        assert!(second.to_string().starts_with("dataset cache: hit: 3 part(s) mapped from"), "{second}");
        for (plain, a, b) in
            [(&train, &train1, &train2), (&val, &val1, &val2), (test.as_ref().unwrap(), &test1.unwrap(), &test2.unwrap())]
        {
            assert_eq!(plain, a);
            assert_eq!(plain, b);
            assert!(matches!(b.pixels, Pixels::Shared(_)));
        }
        // Another split is another entry; no directory or the cache off means a plain load.
        let other = DataConfig { split_seed: Some(9), ..data.clone() };
        let (_, _, _, report) = load(&other, &model, false, &settings).unwrap();
        assert_eq!((report.hits, report.built), (0, 2));
        let (_, _, _, report) = load(&data, &model, false, &CacheSettings::default()).unwrap();
        assert_eq!(report.to_string(), "dataset cache: skipped (no cache directory)");
        // A damaged entry is refused and rebuilt.
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let path = entry.unwrap().path();
            let mut bytes = std::fs::read(&path).unwrap();
            *bytes.last_mut().unwrap() ^= 0xff;
            std::fs::write(&path, bytes).unwrap();
        }
        let (train3, _, _, report) = load(&data, &model, false, &settings).unwrap();
        assert_eq!((report.hits, report.built, report.rebuilt.len()), (0, 2, 2), "{report}");
        assert_eq!(train3, train);
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_loop_in_a_dataset_is_refused_not_followed_forever() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("cat")).unwrap();
        std::fs::write(dir.path().join("cat/a.png"), b"not read").unwrap();
        std::os::unix::fs::symlink(dir.path(), dir.path().join("cat/loop")).unwrap();
        let err = source_hash(dir.path()).unwrap_err().to_string();
        assert!(err.contains("symlink loop"), "{err}");
    }
}

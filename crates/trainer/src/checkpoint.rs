//! Checkpoints: saving a trained model (safetensors with PyTorch-style names + a JSON [`ModelConfig`]) and
//! loading weights from our own checkpoints or from PyTorch `.pth/.pt` and `.safetensors` files through
//! burn-store, with a report of applied, missing, unexpected and mis-shaped keys.

use std::path::{Path, PathBuf};

use burn::store::{
    ApplyError, ApplyResult, BurnToPyTorchAdapter, ModuleSnapshot, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::model::{ImageClassifier, ModelConfig};

/// The weights' file name inside a checkpoint directory (safetensors, PyTorch-style names).
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The [`ModelConfig`]'s file name inside a checkpoint directory (JSON).
pub const CONFIG_FILE: &str = "model.json";

/// How strictly checkpoint keys must match the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// Every model tensor must be in the file and every file tensor must be used (PyTorch's
    /// `num_batches_tracked` counters excepted).
    Strict,
    /// Load everything but the classifier head, which keeps its fresh initialisation (fine-tuning on a
    /// task with other classes). The file's head is reported as unused; it must still be there.
    Backbone,
}

/// What a weight import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    /// Model tensors loaded from the file, by their path in the model.
    pub applied: Vec<String>,
    /// Model tensors the file did not provide.
    pub missing: Vec<String>,
    /// File tensors the model has no place for.
    pub unused: Vec<String>,
    /// `path: expected [..], found [..]` for tensors whose shape or type did not fit.
    pub mismatched: Vec<String>,
}

impl ImportReport {
    fn from_apply(result: &ApplyResult) -> Self {
        let mismatched = result
            .errors
            .iter()
            .map(|e| match e {
                ApplyError::ShapeMismatch { path, expected, found } => {
                    format!("{path}: expected shape {:?}, found {:?}", expected.as_slice(), found.as_slice())
                }
                other => other.to_string(),
            })
            .collect();
        Self {
            applied: result.applied.clone(),
            missing: result.missing.iter().map(|(path, _)| path.clone()).collect(),
            unused: result.unused.clone(),
            mismatched,
        }
    }

    /// One line, e.g. for logs: `applied 62, missing 0, unused 1, mis-shaped 0`.
    pub fn summary(&self) -> String {
        format!(
            "applied {}, missing {}, unused {}, mis-shaped {}",
            self.applied.len(),
            self.missing.len(),
            self.unused.len(),
            self.mismatched.len()
        )
    }
}

/// The source names of the classifier head are renamed to this prefix on load in [`LoadMode::Backbone`],
/// so that they can neither be applied nor mistaken for other tensors.
const DISCARDED_HEAD: &str = "__discarded_head__";

/// Loads weights from `path` (`.safetensors`, `.pth` or `.pt`; `.bin` is read as PyTorch too) into `model`.
/// Keys that do not fit as `mode` requires are an [`Error::Checkpoint`] listing them.
pub fn load_weights<M: ImageClassifier>(model: &mut M, path: &Path, mode: LoadMode) -> Result<ImportReport> {
    let err = |reason: String| Error::Checkpoint { path: path.to_path_buf(), reason };
    if !path.is_file() {
        return Err(err("file not found".into()));
    }
    let head = format!("^{}\\.", M::head_prefix());
    let mut remaps: Vec<(String, String)> = M::load_key_remaps().iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    if mode == LoadMode::Backbone {
        remaps.insert(0, (head.clone(), format!("{DISCARDED_HEAD}.")));
    }
    let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let result = match extension.as_str() {
        "safetensors" => {
            let mut store =
                SafetensorsStore::from_file(path).with_from_adapter(PyTorchToBurnAdapter).allow_partial(true).validate(false);
            for (from, to) in &remaps {
                store = store.with_key_remapping(from, to.as_str());
            }
            model.load_from(&mut store).map_err(|e| err(e.to_string()))?
        }
        "pth" | "pt" | "bin" => {
            let mut store = PytorchStore::from_file(path).allow_partial(true).validate(false);
            for (from, to) in &remaps {
                store = store.with_key_remapping(from, to.as_str());
            }
            model.load_from(&mut store).map_err(|e| err(e.to_string()))?
        }
        other => return Err(err(format!("unknown weight format {other:?} (expected .safetensors, .pth or .pt)"))),
    };
    let mut report = ImportReport::from_apply(&result);
    let in_head = under_prefix(M::head_prefix());
    // PyTorch BatchNorm counters have no counterpart in burn and are never needed.
    report.unused.retain(|k| !k.ends_with("num_batches_tracked"));
    let (mut missing, mut unused) = (report.missing.clone(), report.unused.clone());
    if mode == LoadMode::Backbone {
        missing.retain(|k| !in_head(k));
        unused.retain(|k| !k.starts_with(DISCARDED_HEAD));
    }
    if !missing.is_empty() || !unused.is_empty() || !report.mismatched.is_empty() {
        let list = |v: &[String]| if v.is_empty() { "none".to_string() } else { v.join(", ") };
        return Err(err(format!(
            "weights do not fit the model ({}).\n  missing in file: {}\n  unexpected in file: {}\n  mis-shaped: {}",
            report.summary(),
            list(&missing),
            list(&unused),
            list(&report.mismatched)
        )));
    }
    Ok(report)
}

/// Whether a tensor path lies under the module `prefix` (`fc.weight` is under `fc`, `fc2.weight` is not).
fn under_prefix(prefix: &'static str) -> impl Fn(&str) -> bool {
    move |key: &str| key.starts_with(prefix) && key[prefix.len()..].starts_with('.')
}

/// Saves `model` as `dir/model.safetensors` (PyTorch-style names: `weight`/`bias` for BatchNorm, `[out, in]`
/// linear weights) and `config` as `dir/model.json`. Returns the weights path.
pub fn save_checkpoint<M: ImageClassifier>(model: &M, config: &ModelConfig, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let weights = dir.join(WEIGHTS_FILE);
    save_weights(model, &weights)?;
    let json = serde_json::to_string_pretty(config).expect("model config serialises");
    let config_path = dir.join(CONFIG_FILE);
    std::fs::write(&config_path, json).map_err(|e| Error::io(&config_path, e))?;
    Ok(weights)
}

/// Saves only the weights, as safetensors with PyTorch-style names.
pub fn save_weights<M: ImageClassifier>(model: &M, path: &Path) -> Result<()> {
    let mut store = SafetensorsStore::from_file(path).with_to_adapter(BurnToPyTorchAdapter).overwrite(true);
    for (from, to) in M::save_key_remaps() {
        store = store.with_key_remapping(from, to);
    }
    model.save_into(&mut store).map_err(|e| Error::Checkpoint { path: path.to_path_buf(), reason: e.to_string() })
}

/// Reads `model.json` from a checkpoint directory, or the JSON file itself.
pub fn read_model_config(path: &Path) -> Result<ModelConfig> {
    let file = if path.is_dir() { path.join(CONFIG_FILE) } else { path.to_path_buf() };
    let text = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
    let config: ModelConfig = serde_json::from_str(&text)
        .map_err(|e| Error::Checkpoint { path: file.clone(), reason: format!("bad model config: {e}") })?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SmallCnn;
    use crate::model::tests::small_config;
    use burn::prelude::*;

    #[test]
    fn checkpoint_round_trip_reproduces_logits() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let config = small_config(3);
        let model = SmallCnn::init(&config, &device).unwrap();
        save_checkpoint(&model, &config, dir.path()).unwrap();
        assert_eq!(read_model_config(dir.path()).unwrap(), config);

        let mut fresh = SmallCnn::init(&config, &device).unwrap();
        let report = load_weights(&mut fresh, &dir.path().join(WEIGHTS_FILE), LoadMode::Strict).unwrap();
        assert!(report.missing.is_empty() && report.unused.is_empty(), "{report:?}");
        assert_eq!(report.applied.len(), 3 * 5 + 2, "{report:?}"); // stem + 2 stages, 5 tensors each; fc
        let x = Tensor::<4>::random([2, 1, 12, 12], burn::tensor::Distribution::Default, &device);
        let a = model.forward(x.clone()).into_data().try_to_vec::<f32>().unwrap();
        let b = fresh.forward(x).into_data().try_to_vec::<f32>().unwrap();
        assert_eq!(a, b);
    }

    /// The checkpoint fuzz targets' seeds (fuzz/make_seeds.py, written without PyTorch) are real checkpoints of
    /// their small CNN, so fuzzing starts from inputs that reach the weight-applying code.
    #[test]
    fn fuzz_seed_checkpoints_load_into_their_model() {
        let _rng = crate::serial_rng();
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds");
        let dir = tempfile::tempdir().unwrap();
        let config = ModelConfig { arch: crate::model::Arch::SmallCnn { width: 2, depth: 1 }, ..small_config(2) };
        for (seed, ext, applied) in [
            ("checkpoint_safetensors/strict", "safetensors", 12),
            ("checkpoint_safetensors/strict-f64", "safetensors", 12),
            ("checkpoint_safetensors/backbone-3-classes", "safetensors", 10),
            ("checkpoint_pth/strict", "pth", 12),
            ("checkpoint_pth/backbone-3-classes", "pth", 10),
        ] {
            let bytes = std::fs::read(seeds.join(seed)).unwrap();
            let mode = if bytes[0] & 1 == 0 { LoadMode::Strict } else { LoadMode::Backbone };
            let path = dir.path().join(format!("seed.{ext}"));
            std::fs::write(&path, &bytes[1..]).unwrap();
            let mut model = SmallCnn::init(&config, &Device::flex()).unwrap();
            let report = load_weights(&mut model, &path, mode).unwrap_or_else(|e| panic!("{seed}: {e}"));
            assert_eq!(report.applied.len(), applied, "{seed}: {report:?}");
        }
    }

    #[test]
    fn mismatched_checkpoints_list_missing_unexpected_and_misshaped_keys() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let model = SmallCnn::init(&small_config(3), &device).unwrap();
        save_weights(&model, &path).unwrap();

        // Other class count: strict load names the head as mis-shaped, backbone load accepts it.
        let mut other = SmallCnn::init(&small_config(5), &device).unwrap();
        let err = load_weights(&mut other, &path, LoadMode::Strict).unwrap_err().to_string();
        assert!(err.contains("mis-shaped: fc.weight") || err.contains("fc.bias"), "{err}");
        let report = load_weights(&mut other, &path, LoadMode::Backbone).unwrap();
        assert_eq!(report.applied.len(), 15, "{report:?}");

        // Deeper model: the extra stage is missing from the file.
        let mut deeper_config = small_config(3);
        deeper_config.arch = crate::model::Arch::SmallCnn { width: 4, depth: 3 };
        let mut deeper = SmallCnn::init(&deeper_config, &device).unwrap();
        let err = load_weights(&mut deeper, &path, LoadMode::Backbone).unwrap_err().to_string();
        assert!(err.contains("missing in file: ") && err.contains("stages.2.conv.weight"), "{err}");

        let err = load_weights(&mut deeper, &dir.path().join("nope.pth"), LoadMode::Strict).unwrap_err();
        assert!(err.to_string().contains("nope.pth"), "{err}");
    }
}

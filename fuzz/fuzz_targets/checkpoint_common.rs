//! Shared by the checkpoint targets: the bytes are written to a file in /dev/shm (burn-store's PyTorch
//! reader takes only a path, and `load_weights` reads safetensors through a path too, so the real code path is
//! fuzzed) and loaded into a small CNN.

use std::path::PathBuf;
use std::sync::OnceLock;

use nightshift_trainer::{Arch, Device, ImageClassifier, LoadMode, ModelConfig, Normalization, SmallCnn, load_weights};

/// The model the seeds were made for (`fuzz/make_seeds.py`): width 2, depth 1, 1 channel, 2 classes.
fn model() -> SmallCnn {
    static MODEL: OnceLock<SmallCnn> = OnceLock::new();
    MODEL
        .get_or_init(|| {
            let config = ModelConfig {
                arch: Arch::SmallCnn { width: 2, depth: 1 },
                num_classes: 2,
                in_channels: 1,
                image_size: [8, 8],
                dropout: 0.0,
                normalization: Normalization::centered(1),
                resize: Default::default(),
                class_names: vec![],
            };
            SmallCnn::init(&config, &Device::flex()).expect("valid config")
        })
        .clone()
}

pub fn load(bytes: &[u8], extension: &str) {
    let Some((&mode, bytes)) = bytes.split_first() else { return };
    let mode = if mode & 1 == 0 { LoadMode::Strict } else { LoadMode::Backbone };
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    let path = PATH.get_or_init(|| PathBuf::from(format!("/dev/shm/nightshift-fuzz-{}.{extension}", std::process::id())));
    std::fs::write(path, bytes).expect("write the input to /dev/shm");
    let mut model = model();
    let result = load_weights(&mut model, path, mode);
    // To check that seeds load (reach the weight-applying code): run the target on them with this set.
    if std::env::var_os("NIGHTSHIFT_FUZZ_VERBOSE").is_some() {
        eprintln!("{mode:?}: {:?}", result.map(|r| r.summary()));
    }
}

//! The frozen-prefix cache on the real ImageNet EfficientNet-Lite0 (`../shared/fixtures`, skipped loudly
//! without it): a linear probe and a partial freeze give the same validation accuracy and the same logits
//! with the cache as without, and a second trial reads the first one's entries.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use nightshift_trainer::{
    Arch, Augmentation, Batcher, CacheConfig, CacheSettings, Control, EfficientNetLite, EpochMetrics, FreezeStrategy,
    ImageClassifier, LoadMode, ModelConfig, Normalization, Split, TrainConfig, TrainOutcome, fine_tune, load_idx_dir,
    load_weights,
};

fn weights() -> Option<PathBuf> {
    let root = std::env::var_os("NIGHTSHIFT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let file = root.join("fixtures/efficientnet_lite0.safetensors");
    if !file.is_file() {
        let test = std::thread::current().name().unwrap_or("prefix_cache").to_string();
        let what = format!("the ImageNet EfficientNet-Lite0 weights at {}", file.display());
        nightshift_testkit::skip(&test, &what, "they ship beside the repository as ../shared; or set NIGHTSHIFT_SHARED");
        return None;
    }
    Some(file)
}

/// Two epochs of `strategy` (with horizontal flips) on 40 Fashion-MNIST images at 32×32; the outcome and
/// the final model's validation logits.
fn run(weights: &Path, strategy: FreezeStrategy, cache: CacheSettings) -> (TrainOutcome<EfficientNetLite>, Vec<f32>) {
    let device = Device::flex();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion_mnist_100");
    let data = load_idx_dir(&dir, Split::Train).unwrap().per_class(6, 0).unwrap().converted(3, 32, 32).unwrap();
    let (train, val) = data.stratified_split(0.34, 0).unwrap();
    let config = ModelConfig {
        arch: Arch::EfficientNetLite0,
        num_classes: 10,
        in_channels: 3,
        image_size: [32, 32],
        dropout: 0.2,
        normalization: Normalization::imagenet(),
        resize: Default::default(),
        class_names: vec![],
    };
    device.seed(3);
    let mut model = EfficientNetLite::init(&config, &device).unwrap();
    load_weights(&mut model, weights, LoadMode::Backbone).unwrap();
    let mut train_config = TrainConfig::new(2, 8, 1e-3);
    (train_config.freeze_strategy, train_config.seed, train_config.cache) = (strategy, 1, cache);
    train_config.augmentation.horizontal_flip = true;
    let outcome =
        fine_tune(model, &train, &val, &config.normalization, &train_config, &device, &mut |_: &EpochMetrics| Control::Continue)
            .unwrap();
    let batch = Batcher { normalization: config.normalization.clone(), augmentation: Augmentation::default() }.batch(
        &val,
        &(0..val.len()).collect::<Vec<_>>(),
        None,
    );
    let logits = outcome.final_model.forward(batch.into_tensors(&device).0).into_data().try_to_vec::<f32>().unwrap();
    (outcome, logits)
}

#[test]
fn efficientnet_lite0_gives_the_same_results_with_the_prefix_cache() {
    let Some(weights) = weights() else { return };
    let dir = tempfile::tempdir().unwrap();
    let shared = CacheSettings::new(CacheConfig::default(), Some(dir.path().to_path_buf()));
    for strategy in [FreezeStrategy::LinearProbe, FreezeStrategy::Depth(5)] {
        let (plain, plain_logits) = run(&weights, strategy, CacheSettings::off());
        let (cached, cached_logits) = run(&weights, strategy, shared.clone());
        let (again, again_logits) = run(&weights, strategy, shared.clone());
        let accuracies = |o: &TrainOutcome<EfficientNetLite>| o.history.iter().map(|m| m.val_accuracy).collect::<Vec<_>>();
        assert_eq!(accuracies(&cached), accuracies(&plain), "{strategy}");
        assert_eq!(accuracies(&again), accuracies(&plain), "{strategy}");
        let worst = cached_logits.iter().zip(&plain_logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst <= 1e-5, "{strategy}: logits differ by {worst}");
        assert_eq!(cached_logits, again_logits, "{strategy}: the second trial reads the first one's entries");
        let (first, second) = (&cached.prefix_cache, &again.prefix_cache);
        assert_eq!((first.cached_epochs, first.built, second.hits, second.built), (2, 3, 3, 0), "{first} / {second}");
    }
}

//! Training throughput (images/s) of the small CNN (28×28, batch 64, AdamW) and optionally ResNet-18
//! (64×64) on the CPU backend, over the bundled Fashion-MNIST images. Plain timing loop (harness = false):
//! a warm-up epoch, then the mean of timed epochs.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-trainer cargo bench -p nightshift-trainer --bench trainer_throughput
//! NIGHTSHIFT_BENCH_RESNET=1 NIGHTSHIFT_DEVICE=wgpu cargo bench -p nightshift-trainer --features wgpu --bench trainer_throughput
//! ```

use std::path::Path;
use std::time::Instant;

use nightshift_trainer::{
    Arch, Control, Device, EpochMetrics, ImageClassifier, ImageDataset, ModelConfig, Normalization, ResNet, SmallCnn, Split,
    TrainConfig, fine_tune, load_idx_dir, parse_device,
};

fn measure<M: ImageClassifier>(
    name: &str,
    config: &ModelConfig,
    train: &ImageDataset,
    val: &ImageDataset,
    device: &Device,
    epochs: usize,
) {
    let model = M::init(config, device).unwrap();
    let train_config = TrainConfig::new(epochs + 1, 64, 1e-3);
    let start = Instant::now();
    let outcome =
        fine_tune(model, train, val, &config.normalization, &train_config, device, &mut |_: &EpochMetrics| Control::Continue)
            .unwrap();
    let timed = &outcome.history[1..];
    let ips: f64 = timed.iter().map(|m| m.images_per_second).sum::<f64>() / timed.len() as f64;
    println!(
        "{name}: {ips:.0} images/s training ({} images/epoch, {} timed epochs, {:.1}s total incl. warm-up and validation)",
        train.len(),
        timed.len(),
        start.elapsed().as_secs_f64()
    );
}

fn main() {
    let device = parse_device(&std::env::var("NIGHTSHIFT_DEVICE").unwrap_or_else(|_| "cpu".into())).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion_mnist_100");
    let train = load_idx_dir(&data, Split::Train).unwrap();
    let val = load_idx_dir(&data, Split::Test).unwrap().take(256);
    let epochs: usize = std::env::var("NIGHTSHIFT_BENCH_EPOCHS").ok().and_then(|e| e.parse().ok()).unwrap_or(3);
    let cnn = ModelConfig {
        arch: Arch::SmallCnn { width: 16, depth: 3 },
        num_classes: 10,
        in_channels: 1,
        image_size: [28, 28],
        dropout: 0.0,
        normalization: Normalization::centered(1),
        resize: Default::default(),
        class_names: vec![],
    };
    if std::env::var_os("NIGHTSHIFT_BENCH_SKIP_CNN").is_none() {
        measure::<SmallCnn>("small-cnn 28x28 batch 64", &cnn, &train, &val, &device, epochs);
    }
    if std::env::var_os("NIGHTSHIFT_BENCH_RESNET").is_some() {
        let config = ModelConfig {
            arch: Arch::ResNet { layers: 18 },
            in_channels: 3,
            image_size: [64, 64],
            normalization: Normalization::imagenet(),
            ..cnn
        };
        let (train, val) = (train.converted(3, 64, 64).unwrap(), val.converted(3, 64, 64).unwrap());
        measure::<ResNet>("resnet18 64x64 batch 64", &config, &train, &val, &device, epochs);
    }
}

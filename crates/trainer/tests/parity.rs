//! Parity with PyTorch: our models loaded from the reference checkpoints in `../shared/fixtures` must
//! reproduce the logits PyTorch computed. The fixtures are not part of the repository; when the folder is
//! absent (a user's machine) each test prints that it is skipped and passes. Set `NIGHTSHIFT_SHARED` to
//! point elsewhere.

use std::path::PathBuf;

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use nightshift_trainer::{
    Arch, EfficientNetLite, ImageClassifier, LoadMode, ModelConfig, Normalization, ParamIds, Parts, ResNet, Result, load_weights,
};
use serde_json::Value;

/// libtest runs each test on a thread named after it.
fn current_test() -> String {
    std::thread::current().name().unwrap_or("a parity test").to_string()
}

fn fixtures() -> Option<PathBuf> {
    let root = std::env::var_os("NIGHTSHIFT_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"));
    let dir = root.join("fixtures");
    if dir.is_dir() {
        Some(dir)
    } else {
        nightshift_testkit::skip(
            &current_test(),
            &format!("the shared fixtures at {}", dir.display()),
            "they ship beside the repository as ../shared; or set NIGHTSHIFT_SHARED",
        );
        None
    }
}

fn reference(path: &PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn tensor4(v: &Value, device: &Device) -> Tensor<4> {
    let shape: Vec<usize> = v["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    Tensor::from_data(TensorData::new(floats(&v["data"]), [shape[0], shape[1], shape[2], shape[3]]), device)
}

/// How far our outputs are from PyTorch's: the largest absolute difference, and the same relative to the
/// largest reference value (elementwise relative differences blow up on values near zero).
#[derive(Debug, Clone, Copy)]
struct Diff {
    abs: f32,
    rel: f32,
}

impl Diff {
    fn of(ours: &[f32], reference: &[f32]) -> Self {
        assert_eq!(ours.len(), reference.len());
        let abs = ours.iter().zip(reference).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
        let scale = reference.iter().fold(0.0f32, |m, y| m.max(y.abs()));
        Self { abs, rel: abs / scale }
    }

    fn within(&self, bound: Diff) -> bool {
        self.abs <= bound.abs && self.rel <= bound.rel
    }
}

impl std::fmt::Display for Diff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "max |diff| {:.1e}, relative {:.1e}", self.abs, self.rel)
    }
}

/// Bounds are about 10× the differences measured on the 2-core development machine (flex CPU backend,
/// 2026-11-30), which the comment after each states; a faithful model stays well inside them, while a
/// mapping or layer mistake lands far outside (see the `perturbed_*` tests).
/// Tiny CNN: measured abs 3.0e-8, relative 1.7e-7, from the .pth and the .safetensors file alike.
const TINY_CNN_BOUND: Diff = Diff { abs: 3e-7, rel: 2e-6 };

/// The fixture's 6,242-parameter network: conv1 (3×3) → bn1 → ReLU → 2×2 max-pool → conv2 (3×3, stride 2)
/// → bn2 → ReLU → conv3 (3×3, stride 2, bias) → ReLU → global average → fc.
#[derive(Module, Debug)]
struct TinyCnn {
    conv1: Conv2d,
    bn1: BatchNorm,
    pool: MaxPool2d,
    conv2: Conv2d,
    bn2: BatchNorm,
    conv3: Conv2d,
    fc: Linear,
}

impl ImageClassifier for TinyCnn {
    fn init(_config: &ModelConfig, device: &Device) -> Result<Self> {
        let conv = |i, o, stride, bias| {
            Conv2dConfig::new([i, o], [3, 3])
                .with_stride([stride, stride])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(bias)
                .init(device)
        };
        Ok(Self {
            conv1: conv(1, 8, 1, false),
            bn1: BatchNormConfig::new(8).init(device),
            pool: MaxPool2dConfig::new([2, 2]).init(),
            conv2: conv(8, 16, 2, false),
            bn2: BatchNormConfig::new(16).init(device),
            conv3: conv(16, 32, 2, true),
            fc: LinearConfig::new(32, 10).init(device),
        })
    }
    /// No stages: the prefix is the whole feature extractor, pooled to `[n, 32, 1, 1]`.
    fn forward_prefix(&self, x: Tensor<4>, _k: usize) -> Tensor<4> {
        let x = self.pool.forward(relu(self.bn1.forward(self.conv1.forward(x))));
        let x = relu(self.bn2.forward(self.conv2.forward(x)));
        let x = relu(self.conv3.forward(x));
        x.mean_dim(2).mean_dim(3)
    }
    fn forward_from(&self, x: Tensor<4>, _k: usize) -> Tensor<2> {
        self.fc.forward(x.flatten(1, 3))
    }
    fn num_stages(&self) -> usize {
        0
    }
    fn parts(&self) -> Parts {
        let stem = ParamIds::of(&self.conv1).and(&self.bn1).and(&self.conv2).and(&self.bn2).and(&self.conv3);
        Parts::new(stem, vec![], ParamIds::of(&self.fc))
    }
    fn head_prefix() -> &'static str {
        "fc"
    }
}

fn dummy_config() -> ModelConfig {
    ModelConfig {
        arch: Arch::SmallCnn { width: 1, depth: 1 },
        num_classes: 10,
        in_channels: 1,
        image_size: [28, 28],
        dropout: 0.0,
        normalization: Normalization::centered(1),
        resize: Default::default(),
        class_names: vec![],
    }
}

fn tiny_cnn(dir: &std::path::Path, file: &str, device: &Device) -> TinyCnn {
    let mut model = TinyCnn::init(&dummy_config(), device).unwrap();
    let report = load_weights(&mut model, &dir.join(file), LoadMode::Strict).unwrap();
    assert_eq!(report.applied.len(), 14, "{file}: {report:?}");
    model
}

/// The tiny CNN's logits on the fixture's input against PyTorch's.
fn tiny_cnn_diff(model: &TinyCnn, reference: &Value, device: &Device) -> Diff {
    let logits = model.clone().valid().forward(tensor4(&reference["input"], device)).into_data().try_to_vec::<f32>().unwrap();
    Diff::of(&logits, &floats(&reference["logits"]["data"]))
}

#[test]
fn tiny_cnn_with_randomised_batchnorm_matches_pytorch_from_pth_and_safetensors() {
    let Some(dir) = fixtures() else { return };
    let reference = reference(&dir.join("tiny_cnn_reference.json"));
    let device = Device::flex();
    for file in ["tiny_cnn.pth", "tiny_cnn.safetensors"] {
        let diff = tiny_cnn_diff(&tiny_cnn(&dir, file, &device), &reference, &device);
        eprintln!("tiny_cnn {file}: {diff}");
        assert!(diff.within(TINY_CNN_BOUND), "{file}: {diff:?} exceeds {TINY_CNN_BOUND:?}");
    }
}

/// The bounds are tight enough to catch the mistakes an import can make and a loose bound lets through:
/// a BatchNorm epsilon 100× too large (1e-3, Keras's default, instead of PyTorch's 1e-5) moves these
/// logits by only 2.8e-5 (relative 1.6e-4), which the former 1e-4 bound accepted; a Linear weight read
/// without its transposition scrambles the head (1.4e-1).
#[test]
fn perturbed_tiny_cnns_fail_the_parity_bound() {
    let Some(dir) = fixtures() else { return };
    let reference = reference(&dir.join("tiny_cnn_reference.json"));
    let device = Device::flex();

    let mut wrong_epsilon = tiny_cnn(&dir, "tiny_cnn.safetensors", &device);
    wrong_epsilon.bn2.epsilon = 1e-3;
    let diff = tiny_cnn_diff(&wrong_epsilon, &reference, &device);
    eprintln!("tiny_cnn with BatchNorm epsilon 1e-3: {diff}");
    assert!(!diff.within(TINY_CNN_BOUND), "a 100× BatchNorm epsilon passed: {diff:?}");

    let mut untransposed = tiny_cnn(&dir, "tiny_cnn.safetensors", &device);
    let [rows, cols] = untransposed.fc.weight.dims();
    let scrambled = untransposed.fc.weight.val().transpose().reshape([rows, cols]);
    untransposed.fc.weight = burn::module::Param::from_tensor(scrambled);
    let diff = tiny_cnn_diff(&untransposed, &reference, &device);
    eprintln!("tiny_cnn with an untransposed Linear weight: {diff}");
    assert!(!diff.within(TINY_CNN_BOUND), "an untransposed Linear passed: {diff:?}");
}

/// ResNet-18 (random torchvision init, 64×64 input): measured pooled features abs 4.3e-6, relative 9.1e-7;
/// logits abs 2.4e-6, relative 8.3e-7.
const RESNET18_FEATURES_BOUND: Diff = Diff { abs: 4e-5, rel: 1e-5 };
const RESNET18_LOGITS_BOUND: Diff = Diff { abs: 2.5e-5, rel: 1e-5 };

fn resnet18(dir: &std::path::Path, device: &Device) -> ResNet {
    let config = ModelConfig {
        arch: Arch::ResNet { layers: 18 },
        num_classes: 1000,
        in_channels: 3,
        image_size: [64, 64],
        dropout: 0.0,
        normalization: Normalization::imagenet(),
        resize: Default::default(),
        class_names: vec![],
    };
    let mut model = ResNet::init(&config, device).unwrap();
    let report = load_weights(&mut model, &dir.join("resnet18_random.pth"), LoadMode::Strict).unwrap();
    assert!(report.missing.is_empty(), "{report:?}");
    model
}

/// Pooled features and logits against torchvision's.
fn resnet18_diffs(model: &ResNet, reference: &Value, device: &Device) -> (Diff, Diff) {
    let model = model.clone().valid();
    let input = tensor4(&reference["input"], device);
    let features = model.features(input.clone()).into_data().try_to_vec::<f32>().unwrap();
    let logits = model.forward(input).into_data().try_to_vec::<f32>().unwrap();
    (
        Diff::of(&features, &floats(&reference["pooled_features"]["data"])),
        Diff::of(&logits, &floats(&reference["logits"]["data"])),
    )
}

#[test]
fn resnet18_logits_and_pooled_features_match_torchvision() {
    let Some(dir) = fixtures() else { return };
    let reference = reference(&dir.join("resnet18_reference.json"));
    let device = Device::flex();
    let (features, logits) = resnet18_diffs(&resnet18(&dir, &device), &reference, &device);
    eprintln!("resnet18: pooled features {features}, logits {logits}");
    assert!(features.within(RESNET18_FEATURES_BOUND), "pooled features {features:?} exceed {RESNET18_FEATURES_BOUND:?}");
    assert!(logits.within(RESNET18_LOGITS_BOUND), "logits {logits:?} exceed {RESNET18_LOGITS_BOUND:?}");
}

#[test]
fn perturbed_resnet18_fails_the_parity_bound() {
    let Some(dir) = fixtures() else { return };
    let reference = reference(&dir.join("resnet18_reference.json"));
    let device = Device::flex();
    let mut model = resnet18(&dir, &device);
    // Measured: pooled features move by 1.1e-3 and logits by 4.5e-4, about 20× beyond the bounds.
    model.layer4[1].bn2.epsilon = 1e-3;
    let (features, logits) = resnet18_diffs(&model, &reference, &device);
    eprintln!("resnet18 with one BatchNorm epsilon 1e-3: pooled features {features}, logits {logits}");
    assert!(
        !features.within(RESNET18_FEATURES_BOUND) && !logits.within(RESNET18_LOGITS_BOUND),
        "a 100× BatchNorm epsilon passed: {features:?}, {logits:?}"
    );
}

#[test]
fn wrong_architecture_lists_missing_unexpected_and_misshaped_keys() {
    let Some(dir) = fixtures() else { return };
    let device = Device::flex();
    // The tiny CNN's weights are no ResNet: the error must name keys of all three kinds.
    let mut model =
        ResNet::init(&ModelConfig { arch: Arch::ResNet { layers: 18 }, in_channels: 3, ..dummy_config() }, &device).unwrap();
    let err = load_weights(&mut model, &dir.join("tiny_cnn.pth"), LoadMode::Strict).unwrap_err().to_string();
    assert!(err.contains("missing in file:") && err.contains("layer1.0.conv1.weight"), "{err}");
    assert!(err.contains("unexpected in file:") && err.contains("conv3.weight"), "{err}");
    assert!(err.contains("mis-shaped:") && err.contains("conv1.weight"), "{err}");
}

fn lite0_config() -> ModelConfig {
    ModelConfig {
        arch: Arch::EfficientNetLite0,
        num_classes: 1000,
        in_channels: 3,
        image_size: [224, 224],
        dropout: 0.0,
        normalization: Normalization::imagenet(),
        resize: nightshift_trainer::preprocess::Resize::center_crop(),
        class_names: vec![],
    }
}

fn reference_top5(reference: &Value) -> Vec<Vec<usize>> {
    reference["top5"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_array().unwrap().iter().map(|c| c["class"].as_u64().unwrap() as usize).collect())
        .collect()
}

/// EfficientNet-Lite0 (real ImageNet weights, two 224×224 photos): measured abs 8.3e-6, relative 8.0e-7.
const LITE0_BOUND: Diff = Diff { abs: 8e-5, rel: 8e-6 };

#[test]
fn efficientnet_lite0_imagenet_weights_reproduce_reference_logits_and_top5() {
    let Some(dir) = fixtures() else { return };
    let reference = reference(&dir.join("efficientnet_lite0_reference.json"));
    let device = Device::flex();
    let input = tensor4(&reference["input"], &device);
    let expected = floats(&reference["logits"]["data"]);
    for file in ["efficientnet_lite0.pth", "efficientnet_lite0.safetensors"] {
        let mut model = EfficientNetLite::init(&lite0_config(), &device).unwrap();
        load_weights(&mut model, &dir.join(file), LoadMode::Strict).unwrap();
        let logits = model.valid().forward(input.clone());
        let top = nightshift_trainer::predict::top_k(logits.clone(), 5, &[]).unwrap();
        let classes: Vec<Vec<usize>> = top.iter().map(|r| r.iter().map(|t| t.class).collect()).collect();
        assert_eq!(classes, reference_top5(&reference), "{file}");
        let diff = Diff::of(&logits.into_data().try_to_vec::<f32>().unwrap(), &expected);
        eprintln!("efficientnet_lite0 {file}: {diff}");
        assert!(diff.within(LITE0_BOUND), "{file}: {diff:?} exceeds {LITE0_BOUND:?}");
    }
}

#[test]
fn predict_on_the_reference_photos_gives_the_reference_top5() {
    let Some(dir) = fixtures() else { return };
    let reference = reference(&dir.join("efficientnet_lite0_reference.json"));
    let device = Device::flex();
    let mut model = EfficientNetLite::init(&lite0_config(), &device).unwrap();
    load_weights(&mut model, &dir.join("efficientnet_lite0.safetensors"), LoadMode::Strict).unwrap();
    let model = model.valid();
    // The fixture stores the preprocessed 224x224 crops; undo the normalisation to get the photos back as PNGs.
    let data = floats(&reference["input"]["data"]);
    let norm = Normalization::imagenet();
    let tmp = tempfile::tempdir().unwrap();
    for (i, expected) in reference_top5(&reference).into_iter().enumerate() {
        let plane = 224 * 224;
        let img = image::RgbImage::from_fn(224, 224, |x, y| {
            let p = y as usize * 224 + x as usize;
            image::Rgb(std::array::from_fn(|c| {
                let v = data[i * 3 * plane + c * plane + p] * norm.std[c] + norm.mean[c];
                (v * 255.0).round().clamp(0.0, 255.0) as u8
            }))
        });
        let path = tmp.path().join(format!("photo{i}.png"));
        img.save(&path).unwrap();
        let top = nightshift_trainer::predict::predict_image(&model, &path, &lite0_config(), 5, &device).unwrap();
        let classes: Vec<usize> = top.iter().map(|t| t.class).collect();
        assert_eq!(classes[0], expected[0], "photo {i}: {top:?}");
        assert_eq!(classes.iter().filter(|c| expected.contains(c)).count(), 5, "photo {i}: {classes:?} vs {expected:?}");
    }
}

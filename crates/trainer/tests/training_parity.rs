//! Training-step parity with PyTorch: `fine_tune` runs the optimiser steps that
//! `benches/make_training_fixture.py` ran in PyTorch (same initial weights, batch, schedule and optimiser)
//! and must land on the same losses and weights. The fixture lives in the repository
//! (`tests/fixtures/training/`), so these tests never skip.
//!
//! The reference is PyTorch in float64, the trajectory that float32 arithmetic — PyTorch's and ours —
//! approximates; the fixture also says how far PyTorch's own float32 run lands from it. For the small CNN
//! that is < 1e-5 and both are held to fixed bounds; ResNet-18 grows float32 rounding ~4e4-fold in four
//! steps (PyTorch float32 ends 1e-3 from float64), so its trajectories are held to that noise floor and its
//! first-step gradients, which no amplification has touched yet, to 1e-4.
//!
//! Initial weights are not stored: both sides compute them with [`init_value`] (see the script's docstring),
//! and this test loads them through `load_weights` from a PyTorch-named safetensors file, so the import
//! path (BatchNorm `weight` → `gamma`, transposed `Linear`, `downsample.0`) is exercised too.
//!
//! Found on the way: burn's BatchNorm fed its running variance the biased batch variance where PyTorch
//! uses the unbiased one; the trainer's models now use `nightshift_trainer::norm::BatchNorm`, which
//! matches PyTorch (the running variances here agree to < 1e-5).

use std::collections::BTreeMap;
use std::path::Path;

use nightshift_trainer::{
    Arch, Control, EpochMetrics, FreezeStrategy, ImageClassifier, ImageDataset, LoadMode, ModelConfig, Normalization,
    OptimizerKind, ResNet, SmallCnn, TrainConfig, fine_tune, load_weights, save_weights,
};
use serde_json::Value;

fn fixture(file: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/training").join(file);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01B3))
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The fixture's initial weights, bit for bit what `init_value` in the script computes.
fn init_value(name: &str, shape: &[usize]) -> Vec<f32> {
    let n: usize = shape.iter().product();
    let seed = fnv1a64(name);
    (0..n as u64)
        .map(|i| {
            let u = (splitmix64(seed.wrapping_add(i)) >> 40) as f64 / (1u64 << 24) as f64;
            let v = 2.0 * u - 1.0;
            let x = if name.ends_with("running_var") {
                0.5 + u
            } else if name.ends_with("running_mean") {
                0.1 * v
            } else if shape.len() == 1 && name.ends_with("weight") {
                1.0 + 0.2 * v
            } else if shape.len() == 1 {
                0.1 * v
            } else {
                v / ((n / shape[0]) as f64).sqrt()
            };
            x as f32
        })
        .collect()
}

fn sample_indices(n: usize, samples: usize) -> Vec<usize> {
    let m = n.min(samples);
    if m == 1 { vec![0] } else { (0..m).map(|k| k * (n - 1) / (m - 1)).collect() }
}

/// A minimal safetensors writer (F32 only): 8-byte header length, JSON header, raw little-endian data.
fn write_safetensors(path: &Path, tensors: &[(String, Vec<usize>, Vec<f32>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0;
    for (name, shape, data) in tensors {
        let end = offset + 4 * data.len();
        header.insert(name.clone(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}));
        offset = end;
    }
    let mut header = serde_json::to_string(&header).unwrap().into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    for (_, _, data) in tensors {
        bytes.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    }
    std::fs::write(path, bytes).unwrap();
}

/// Tensors by name.
type Weights = BTreeMap<String, Vec<f32>>;

/// Every F32 tensor of a safetensors file written by `save_weights`, by name.
fn read_safetensors(path: &Path) -> Weights {
    let bytes = std::fs::read(path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Map<String, Value> = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let data = &bytes[8 + header_len..];
    header
        .into_iter()
        .filter(|(name, info)| name != "__metadata__" && info["dtype"] == "F32")
        .map(|(name, info)| {
            let [start, end] = [0, 1].map(|i| info["data_offsets"][i].as_u64().unwrap() as usize);
            let values = data[start..end].chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
            (name, values)
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Differences are relative to the larger of the value and `floor`: weights near zero are compared on the
/// scale of their tensor, not on their own (a 1e-9 weight is not expected to agree to 1e-14).
fn relative_diff(ours: f64, theirs: f64, floor: f64) -> f64 {
    (ours - theirs).abs() / theirs.abs().max(floor)
}

/// Bound on the relative differences of losses and weights (issue 14). Measured on the small CNN against
/// the float64 reference: losses 1.5e-8 (SGD) to 3.0e-7 (AdamW), weights 4.0e-7 (SGD) to 1.8e-6 (AdamW);
/// PyTorch float32: 5e-8 to 9.6e-8, 4.7e-7 to 6.5e-6.
const RELATIVE: f64 = 1e-5;

/// Bound on the relative difference of each tensor's update norm ‖final − initial‖. AdamW divides by √v,
/// which magnifies float noise where gradients are near zero: measured 1.2e-5 (SGD: 2.3e-6; PyTorch float32
/// 9.9e-6 and 2.8e-6).
const UPDATE_NORM: f64 = 1e-4;

/// Bound on the first step's gradients (sampled values relative to the tensor's largest, and L2 norms).
/// Measured: ResNet-18 1.8e-5, small CNN 7.0e-6 (PyTorch float32: 2.0e-5 and 3.0e-6). A BatchNorm epsilon
/// of 1e-4 instead of 1e-5 moves ResNet-18's by 2e-3 to 0.12 (L2, per tensor; PyTorch float64).
const GRADIENT: f64 = 1e-4;

/// Where float32 cannot resolve a trajectory (ResNet-18's), how many times PyTorch float32's own distance
/// from the float64 reference a run may be away from it.
const NOISE_FLOOR_FACTOR: f64 = 2.0;

/// How far one run of a scenario is from PyTorch.
#[derive(Debug, Default)]
struct Parity {
    loss: f64,
    weights: f64,
    update_norm: f64,
    worst: String,
}

/// The fixture's batch and initial weights, loaded into a fresh model as `fine_tune` will see them.
struct Start<M> {
    fixture: Value,
    data: ImageDataset,
    tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
    model: M,
    dir: tempfile::TempDir,
}

fn start<M: ImageClassifier>(file: &str, model_config: &ModelConfig) -> Start<M> {
    let fixture = fixture(file);
    let shape: Vec<usize> = fixture["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let labels: Vec<usize> = fixture["labels"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap() as usize).collect();
    let data = ImageDataset {
        channels: shape[1],
        height: shape[2],
        width: shape[3],
        pixels: fixture["pixels"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u8).collect(),
        labels,
        class_names: (0..model_config.num_classes).map(|c| c.to_string()).collect(),
        originals: None,
    };
    let dir = tempfile::tempdir().unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = fixture["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let name = t["name"].as_str().unwrap().to_string();
            let dims: Vec<usize> = t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
            let values = init_value(&name, &dims);
            (name, dims, values)
        })
        .collect();
    let initial_path = dir.path().join("initial.safetensors");
    write_safetensors(&initial_path, &tensors);
    let mut model = M::init(model_config, &nightshift_trainer::Device::flex()).unwrap();
    load_weights(&mut model, &initial_path, LoadMode::Strict).unwrap();
    Start { fixture, data, tensors, model, dir }
}

/// Trains `start.model` with `config` (one batch per epoch: batch size = dataset size, so each epoch is one
/// step of the script); returns each epoch's (learning rate, training loss) and every final tensor by name.
fn train<M: ImageClassifier>(start: Start<M>, config: &TrainConfig, model_config: &ModelConfig) -> (Vec<(f64, f64)>, Weights) {
    let device = nightshift_trainer::Device::flex();
    let mut history = Vec::new();
    let outcome = fine_tune(
        start.model,
        &start.data,
        &start.data,
        &model_config.normalization,
        config,
        &device,
        &mut |m: &EpochMetrics| {
            history.push((m.learning_rate, m.train_loss));
            Control::Continue
        },
    )
    .unwrap();
    let final_path = start.dir.path().join("final.safetensors");
    save_weights(&outcome.final_model, &final_path).unwrap();
    (history, read_safetensors(&final_path))
}

fn run_scenario<M: ImageClassifier>(file: &str, scenario: &str, model_config: ModelConfig) -> (Parity, Parity) {
    let start = start::<M>(file, &model_config);
    let sc = start.fixture["scenarios"][scenario].clone();
    let tensors = start.tensors.clone();
    let samples = start.fixture["samples_per_tensor"].as_u64().unwrap() as usize;
    let mut config =
        TrainConfig::new(sc["epochs"].as_u64().unwrap() as usize, start.data.len(), sc["learning_rate"].as_f64().unwrap());
    config.weight_decay = sc["weight_decay"].as_f64().unwrap();
    config.warmup_fraction = sc["warmup_fraction"].as_f64().unwrap();
    config.freeze_strategy = FreezeStrategy::Depth(sc["freeze_depth"].as_u64().unwrap() as usize);
    config.optimizer = match sc["optimizer"]["kind"].as_str().unwrap() {
        "adamw" => OptimizerKind::AdamW,
        _ => OptimizerKind::Sgd { momentum: sc["optimizer"]["momentum"].as_f64().unwrap() },
    };
    let (history, ours) = train(start, &config, &model_config);

    let mut parity = Parity::default();
    let expected_lrs = floats(&sc["learning_rates"]);
    let expected_losses = floats(&sc["losses"]);
    assert_eq!(history.len(), expected_losses.len());
    for (step, ((lr, loss), (expected_lr, expected_loss))) in
        history.iter().zip(expected_lrs.iter().zip(&expected_losses)).enumerate()
    {
        assert!(relative_diff(*lr, *expected_lr, 0.0) < 1e-12, "step {step}: learning rate {lr} vs PyTorch {expected_lr}");
        parity.loss = parity.loss.max(relative_diff(*loss, *expected_loss, 0.0));
    }

    for (name, _, initial) in &tensors {
        let expected = &sc["final"][name];
        let values = ours.get(name).unwrap_or_else(|| panic!("{name} missing from the trained model"));
        if expected["frozen"].as_bool().unwrap() {
            assert!(values == initial, "{scenario}: frozen {name} changed");
        }
        let scale = initial.iter().fold(0f64, |m, v| m.max(v.abs() as f64));
        for (i, theirs) in sample_indices(values.len(), samples).into_iter().zip(floats(&expected["samples"])) {
            let diff = relative_diff(values[i] as f64, theirs, scale);
            if diff > parity.weights {
                parity.weights = diff;
                parity.worst = format!("{name}[{i}]: ours {} vs PyTorch {theirs}", values[i]);
            }
        }
        let update: f64 = values.iter().zip(initial).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>().sqrt();
        let expected_update = expected["update_l2"].as_f64().unwrap();
        parity.update_norm = parity.update_norm.max(relative_diff(update, expected_update, 1e-12));
    }
    let floor = &sc["pytorch_float32_distance"];
    let pytorch_float32 = Parity {
        loss: floor["loss"].as_f64().unwrap(),
        weights: floor["weights"].as_f64().unwrap(),
        update_norm: floor["update_norm"].as_f64().unwrap(),
        worst: String::new(),
    };
    eprintln!("{file} {scenario}: {parity:?}; PyTorch float32: {pytorch_float32:?}");
    (parity, pytorch_float32)
}

/// The first step's gradients, to the float64 reference: one SGD step at learning rate 1 without momentum
/// or weight decay leaves `initial − gradient` in every parameter. Returns the largest relative difference
/// over the sampled values (relative to the tensor's largest sampled gradient) and the L2 norms.
fn first_step_gradients<M: ImageClassifier>(file: &str, model_config: ModelConfig, alter: impl FnOnce(&mut M)) -> f64 {
    let mut start = start::<M>(file, &model_config);
    alter(&mut start.model);
    let expected = start.fixture["gradients"].clone();
    let pytorch_float32 = start.fixture["pytorch_float32_gradient_distance"].as_f64().unwrap();
    let samples = start.fixture["samples_per_tensor"].as_u64().unwrap() as usize;
    let initial: Weights = start.tensors.iter().map(|(n, _, v)| (n.clone(), v.clone())).collect();
    let mut config = TrainConfig::new(1, start.data.len(), 1.0);
    config.weight_decay = 0.0;
    config.warmup_fraction = 0.0;
    config.optimizer = OptimizerKind::Sgd { momentum: 0.0 };
    let (history, ours) = train(start, &config, &model_config);
    assert_eq!(history[0].0, 1.0, "one step at learning rate 1");
    let (mut worst, mut at) = (0f64, String::new());
    for (name, reference) in expected.as_object().unwrap() {
        let gradient: Vec<f64> = initial[name].iter().zip(&ours[name]).map(|(a, b)| *a as f64 - *b as f64).collect();
        let theirs = floats(&reference["samples"]);
        let scale = theirs.iter().fold(0f64, |m, v| m.max(v.abs()));
        let l2 = gradient.iter().map(|g| g * g).sum::<f64>().sqrt();
        let diffs = sample_indices(gradient.len(), samples)
            .into_iter()
            .zip(&theirs)
            .map(|(i, t)| relative_diff(gradient[i], *t, scale))
            .chain([relative_diff(l2, reference["l2"].as_f64().unwrap(), 1e-12)]);
        for diff in diffs {
            if diff > worst {
                (worst, at) = (diff, name.clone());
            }
        }
    }
    eprintln!("{file} first-step gradients: {worst:e} ({at}); PyTorch float32: {pytorch_float32:e}");
    worst
}

fn small_cnn_config() -> ModelConfig {
    ModelConfig {
        arch: Arch::SmallCnn { width: 4, depth: 2 },
        num_classes: 10,
        in_channels: 3,
        image_size: [32, 32],
        dropout: 0.0,
        normalization: Normalization::imagenet(),
        resize: Default::default(),
        class_names: vec![],
    }
}

fn resnet18_config() -> ModelConfig {
    ModelConfig { arch: Arch::ResNet { layers: 18 }, ..small_cnn_config() }
}

/// The small CNN's trajectory is well conditioned (PyTorch float32 lands within 1e-5 of float64), so it is
/// held to the fixed bounds.
fn assert_matches_pytorch((parity, _): &(Parity, Parity)) {
    assert!(parity.loss <= RELATIVE, "loss differs by {:e} relative: {parity:?}", parity.loss);
    assert!(parity.weights <= RELATIVE, "weights differ by {:e} relative: {parity:?}", parity.weights);
    assert!(parity.update_norm <= UPDATE_NORM, "update norms differ by {:e} relative: {parity:?}", parity.update_norm);
}

/// ResNet-18 memorising 8 images grows float32 rounding about 4e4-fold in four steps: PyTorch's own float32
/// run ends 1.2e-3 to 4.1e-3 (losses) and 5.8e-3 to 9.5e-3 (weights) from its float64 run. No float32
/// implementation can be held closer than that noise floor, so the bound is the floor times
/// [`NOISE_FLOOR_FACTOR`] (measured: ours 1.0–1.2× PyTorch float32's distance with all parameters
/// training, 0.01–0.05× with the stem and layer 1 frozen). What the trajectory cannot resolve, the
/// first-step gradients do (`resnet18_first_step_gradients_match_pytorch`).
fn assert_within_float32_noise_of_pytorch((parity, floor): &(Parity, Parity)) {
    let within = |ours: f64, floor: f64, fixed: f64| ours <= fixed.max(NOISE_FLOOR_FACTOR * floor);
    assert!(within(parity.loss, floor.loss, RELATIVE), "loss differs by {:e}: {parity:?}; {floor:?}", parity.loss);
    assert!(within(parity.weights, floor.weights, RELATIVE), "weights differ by {:e}: {parity:?}; {floor:?}", parity.weights);
    assert!(
        within(parity.update_norm, floor.update_norm, UPDATE_NORM),
        "update norms differ by {:e}: {parity:?}; {floor:?}",
        parity.update_norm
    );
}

#[test]
fn small_cnn_adamw_steps_match_pytorch() {
    assert_matches_pytorch(&run_scenario::<SmallCnn>("small_cnn.json", "adamw", small_cnn_config()));
}

#[test]
fn small_cnn_sgd_momentum_steps_match_pytorch() {
    assert_matches_pytorch(&run_scenario::<SmallCnn>("small_cnn.json", "sgd_momentum", small_cnn_config()));
}

#[test]
fn small_cnn_frozen_stem_and_stage_stay_put_and_the_rest_matches_pytorch() {
    assert_matches_pytorch(&run_scenario::<SmallCnn>("small_cnn.json", "adamw_freeze1", small_cnn_config()));
}

#[test]
fn small_cnn_first_step_gradients_match_pytorch() {
    let worst = first_step_gradients::<SmallCnn>("small_cnn.json", small_cnn_config(), |_| ());
    assert!(worst <= GRADIENT, "gradients differ by {worst:e} relative");
}

#[test]
fn resnet18_adamw_steps_match_pytorch_within_float32_noise() {
    assert_within_float32_noise_of_pytorch(&run_scenario::<ResNet>("resnet18.json", "adamw", resnet18_config()));
}

#[test]
fn resnet18_sgd_momentum_steps_match_pytorch_within_float32_noise() {
    assert_within_float32_noise_of_pytorch(&run_scenario::<ResNet>("resnet18.json", "sgd_momentum", resnet18_config()));
}

#[test]
fn resnet18_frozen_stem_and_layer1_stay_put_and_the_rest_matches_pytorch_within_float32_noise() {
    assert_within_float32_noise_of_pytorch(&run_scenario::<ResNet>("resnet18.json", "adamw_freeze1", resnet18_config()));
}

/// Every ResNet-only path — the 7×7 stride-2 stem, the padded stride-2 max-pool, the 1×1 downsample, BatchNorm
/// over 1×1 maps in training mode — in one backward pass, before any amplification.
#[test]
fn resnet18_first_step_gradients_match_pytorch() {
    let worst = first_step_gradients::<ResNet>("resnet18.json", resnet18_config(), |_| ());
    assert!(worst <= GRADIENT, "gradients differ by {worst:e} relative");
}

/// The bound can fail: the same network with every BatchNorm's epsilon at 1e-4 instead of PyTorch's 1e-5.
#[test]
fn resnet18_gradients_with_a_wrong_batchnorm_epsilon_fail_the_bound() {
    let worst = first_step_gradients::<ResNet>("resnet18.json", resnet18_config(), |model| {
        let mut norms = vec![&mut model.bn1];
        for block in model.layer1.iter_mut().chain(&mut model.layer2).chain(&mut model.layer3).chain(&mut model.layer4) {
            norms.extend([&mut block.bn1, &mut block.bn2]);
            norms.extend(block.downsample.as_mut().map(|d| &mut d.bn));
        }
        for norm in norms {
            norm.epsilon = 1e-4;
        }
    });
    assert!(worst > 10.0 * GRADIENT, "a tenfold BatchNorm epsilon moved the gradients by only {worst:e}");
}

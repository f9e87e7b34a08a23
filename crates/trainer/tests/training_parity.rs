//! Training-step parity with PyTorch: `fine_tune` runs the optimiser steps that
//! `benches/make_training_fixture.py` ran in PyTorch (same initial weights, batch, schedule and optimiser)
//! and must land on the same losses and weights. The fixture lives in the repository
//! (`tests/fixtures/training/`), so these tests never skip.
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

/// Every F32 tensor of a safetensors file written by `save_weights`, by name.
fn read_safetensors(path: &Path) -> BTreeMap<String, Vec<f32>> {
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

/// Bound on the relative differences of losses and weights (issue 14). Measured on the small CNN: losses
/// 4e-8 (SGD) to 2e-7 (AdamW), weights 3e-7 (SGD) to 7e-6 (AdamW, frozen stem).
const RELATIVE: f64 = 1e-5;

/// Bound on the relative difference of each tensor's update norm ‖final − initial‖. AdamW divides by √v,
/// which magnifies float noise where gradients are near zero: measured 1.6e-5 (SGD: 7e-7).
const UPDATE_NORM: f64 = 1e-4;

/// How far one run of a scenario is from PyTorch.
#[derive(Debug, Default)]
struct Parity {
    loss: f64,
    weights: f64,
    update_norm: f64,
    worst: String,
}

fn run_scenario<M: ImageClassifier>(file: &str, scenario: &str, model_config: ModelConfig) -> Parity {
    let fx = fixture(file);
    let sc = &fx["scenarios"][scenario];
    let device = nightshift_trainer::Device::flex();
    let shape: Vec<usize> = fx["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect();
    let labels: Vec<usize> = fx["labels"].as_array().unwrap().iter().map(|l| l.as_u64().unwrap() as usize).collect();
    let data = ImageDataset {
        channels: shape[1],
        height: shape[2],
        width: shape[3],
        pixels: fx["pixels"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as u8).collect(),
        labels,
        class_names: (0..model_config.num_classes).map(|c| c.to_string()).collect(),
        originals: None,
    };

    let tmp = tempfile::tempdir().unwrap();
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = fx["tensors"]
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
    let initial_path = tmp.path().join("initial.safetensors");
    write_safetensors(&initial_path, &tensors);
    let mut model = M::init(&model_config, &device).unwrap();
    load_weights(&mut model, &initial_path, LoadMode::Strict).unwrap();

    // One batch per epoch (batch size = dataset size), so that each epoch is one step of the script.
    let mut config = TrainConfig::new(sc["epochs"].as_u64().unwrap() as usize, data.len(), sc["learning_rate"].as_f64().unwrap());
    config.weight_decay = sc["weight_decay"].as_f64().unwrap();
    config.warmup_fraction = sc["warmup_fraction"].as_f64().unwrap();
    config.freeze_strategy = FreezeStrategy::Depth(sc["freeze_depth"].as_u64().unwrap() as usize);
    config.optimizer = match sc["optimizer"]["kind"].as_str().unwrap() {
        "adamw" => OptimizerKind::AdamW,
        _ => OptimizerKind::Sgd { momentum: sc["optimizer"]["momentum"].as_f64().unwrap() },
    };
    let mut history = Vec::new();
    let outcome = fine_tune(model, &data, &data, &model_config.normalization, &config, &device, &mut |m: &EpochMetrics| {
        history.push((m.learning_rate, m.train_loss));
        Control::Continue
    })
    .unwrap();

    let mut parity = Parity::default();
    let expected_lrs = floats(&sc["learning_rates"]);
    let expected_losses = floats(&sc["losses"]);
    assert_eq!(history.len(), expected_losses.len());
    for (step, ((lr, loss), (expected_lr, expected_loss))) in
        history.iter().zip(expected_lrs.iter().zip(&expected_losses)).enumerate()
    {
        assert!(relative_diff(*lr, *expected_lr, 0.0) < 1e-12, "step {step}: learning rate {lr} vs PyTorch {expected_lr}");
        let diff = relative_diff(*loss, *expected_loss, 0.0);
        if diff > parity.loss {
            parity.loss = diff;
        }
    }

    let final_path = tmp.path().join("final.safetensors");
    save_weights(&outcome.final_model, &final_path).unwrap();
    let ours = read_safetensors(&final_path);
    let samples = fx["samples_per_tensor"].as_u64().unwrap() as usize;
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
        let diff = relative_diff(update, expected_update, 1e-12);
        if diff > parity.update_norm {
            parity.update_norm = diff;
        }
    }
    eprintln!("{file} {scenario}: {parity:?}");
    parity
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

/// Known mismatch (issue 14), so the ResNet-18 tests are ignored: after 4 SGD steps its losses differ from
/// PyTorch's by 4e-3 and its weights by 9e-3 relative (AdamW: 5e-4 and 3e-4), where PyTorch against itself
/// with the batch reordered differs by 7e-6 (AdamW 2e-6). Forward parity holds (parity.rs) and the small
/// CNN trains like PyTorch, so the cause is in a path only ResNet takes (7×7 stride-2 conv, padded
/// stride-2 max-pool, 1×1 downsample, BatchNorm over 1×1 maps); not found yet.
/// `cargo test -p nightshift-trainer --test training_parity -- --ignored --nocapture` prints the figures.
fn resnet18_config() -> ModelConfig {
    ModelConfig { arch: Arch::ResNet { layers: 18 }, ..small_cnn_config() }
}

fn assert_matches_pytorch(parity: &Parity) {
    assert!(parity.loss <= RELATIVE, "loss differs by {:e} relative: {parity:?}", parity.loss);
    assert!(parity.weights <= RELATIVE, "weights differ by {:e} relative: {parity:?}", parity.weights);
    assert!(parity.update_norm <= UPDATE_NORM, "update norms differ by {:e} relative: {parity:?}", parity.update_norm);
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
#[ignore = "ResNet-18 training does not match PyTorch yet: see the note above resnet18_config"]
fn resnet18_adamw_steps_match_pytorch() {
    assert_matches_pytorch(&run_scenario::<ResNet>("resnet18.json", "adamw", resnet18_config()));
}

#[test]
#[ignore = "ResNet-18 training does not match PyTorch yet: see the note above resnet18_config"]
fn resnet18_sgd_momentum_steps_match_pytorch() {
    assert_matches_pytorch(&run_scenario::<ResNet>("resnet18.json", "sgd_momentum", resnet18_config()));
}

#[test]
#[ignore = "ResNet-18 training does not match PyTorch yet: see the note above resnet18_config"]
fn resnet18_frozen_stem_and_layer1_stay_put_and_the_rest_matches_pytorch() {
    assert_matches_pytorch(&run_scenario::<ResNet>("resnet18.json", "adamw_freeze1", resnet18_config()));
}

//! Training, validation and `predict` prepare an image the same way: an image folder of non-square photos
//! (colour and grey) is loaded as a trial loads it, and every image's validation/training batch row must be
//! bit for bit the tensor `predict` makes from its file.

use std::path::Path;

use nightshift_trainer::predict::load_image_tensor;
use nightshift_trainer::{Augmentation, Batcher, DataConfig, Device, ImageDataset, ModelConfig, Resize, ResizeMode};

/// Two classes of photos of different sizes and aspect ratios, colour and grey, with texture fine enough
/// that a resize without antialiasing or a different crop would show.
fn photo_folder(root: &Path) {
    for (class, shift) in [("cat", 0u32), ("dog", 90)] {
        std::fs::create_dir(root.join(class)).unwrap();
        for (i, (w, h)) in [(97u32, 61u32), (40, 75), (64, 64), (33, 20)].into_iter().enumerate() {
            let colour = image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([((x * 7 + shift) % 256) as u8, ((y * 13 + x * x) % 256) as u8, ((x ^ y) * 5 % 256) as u8])
            });
            colour.save(root.join(class).join(format!("c{i}.png"))).unwrap();
            let grey = image::GrayImage::from_fn(h, w, |x, y| image::Luma([((x * 11 + y * 3 + shift) % 256) as u8]));
            grey.save(root.join(class).join(format!("g{i}.png"))).unwrap();
        }
    }
}

fn rows(data: &ImageDataset, config: &ModelConfig) -> Vec<Vec<f32>> {
    let batcher = Batcher { normalization: config.normalization.clone(), augmentation: Augmentation::default() };
    let all: Vec<usize> = (0..data.len()).collect();
    batcher.batch(data, &all, None).images.chunks(data.image_len()).map(<[f32]>::to_vec).collect()
}

fn files(root: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> =
        ["cat", "dog"].iter().flat_map(|c| std::fs::read_dir(root.join(c)).unwrap().map(|e| e.unwrap().path())).collect();
    files.sort();
    files
}

#[test]
fn training_validation_and_predict_give_identical_tensors() {
    let dir = tempfile::tempdir().unwrap();
    photo_folder(dir.path());
    let device = Device::flex();
    for (arch, channels, resize) in
        [("resnet18", 3, None), ("small-cnn", 1, None), ("small-cnn", 1, Some(ResizeMode::Squash)), ("small-cnn", 3, None)]
    {
        let data = DataConfig {
            dataset: dir.path().to_path_buf(),
            arch: arch.into(),
            image_size: Some(24),
            channels: Some(channels),
            resize,
            val_fraction: 0.25,
            ..DataConfig::default()
        };
        let config = data.fresh_model_config(2, [64, 64], 0.0).unwrap();
        let expected_resize = if resize.is_some() { Resize::Squash } else { Resize::center_crop() };
        assert_eq!(config.resize, expected_resize, "photos default to the centre crop");
        let (train, val, _) = data.load(&config, false).unwrap();
        assert_eq!((train.len(), val.len()), (12, 4));
        let mut loaded: Vec<Vec<f32>> = rows(&train, &config);
        loaded.extend(rows(&val, &config));
        let prep = config.preprocessing();
        for file in files(dir.path()) {
            let predicted = load_image_tensor(&file, &prep, &device).unwrap();
            assert_eq!(predicted.dims(), [1, channels, 24, 24]);
            let predicted = predicted.into_data().try_to_vec::<f32>().unwrap();
            let found = loaded.iter().position(|row| *row == predicted);
            let index =
                found.unwrap_or_else(|| panic!("{arch}/{channels}/{resize:?}: {} not among the loaded images", file.display()));
            loaded.remove(index);
        }
        assert!(loaded.is_empty());
    }
}

#[test]
fn rgb_becomes_grey_by_bt601_in_training_and_in_predict() {
    let dir = tempfile::tempdir().unwrap();
    for class in ["red", "green"] {
        std::fs::create_dir(dir.path().join(class)).unwrap();
        let colour = if class == "red" { [255, 0, 0] } else { [0, 255, 0] };
        image::RgbImage::from_pixel(30, 20, image::Rgb(colour)).save(dir.path().join(class).join("a.png")).unwrap();
        image::RgbImage::from_pixel(30, 20, image::Rgb(colour)).save(dir.path().join(class).join("b.png")).unwrap();
    }
    let data = DataConfig {
        dataset: dir.path().to_path_buf(),
        image_size: Some(8),
        channels: Some(1),
        val_fraction: 0.5,
        ..DataConfig::default()
    };
    let config = data.fresh_model_config(2, [64, 64], 0.0).unwrap();
    let (train, val, _) = data.load(&config, false).unwrap();
    // BT.601: red 0.299 · 255 → 76, green 0.587 · 255 → 150; BT.709 would give 54 and 182.
    for set in [&train, &val] {
        assert_eq!(set.labels, vec![0, 1], "green, red");
        assert!(set.image(0).iter().all(|&v| v == 150) && set.image(1).iter().all(|&v| v == 76), "{:?}", set.pixels);
    }
    let prep = config.preprocessing();
    let red = load_image_tensor(&dir.path().join("red/a.png"), &prep, &Device::flex()).unwrap();
    let red = red.into_data().try_to_vec::<f32>().unwrap();
    let expected = (76.0 / 255.0 - prep.normalization.mean[0]) / prep.normalization.std[0];
    assert!(red.iter().all(|&v| v == expected), "{red:?}");
}

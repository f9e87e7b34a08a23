//! Single-image inference for `nightshift predict`: the model's own preprocessing and top-k classes.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{Augmentation, Batcher, ImageDataset, decode_image};
use crate::error::{Error, Result};
use crate::model::{ImageClassifier, ModelConfig};
use crate::preprocess::Preprocessing;

/// One of the top classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopClass {
    /// Class index: the head's output position.
    pub class: usize,
    /// Its name from [`ModelConfig::class_names`], when the model has one for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Softmax probability over all classes.
    pub prob: f32,
    /// The raw logit.
    pub logit: f32,
}

/// Loads `path` as a `[1, channels, H, W]` tensor exactly as training and validation saw their images:
/// decoded, through [`Preprocessing::prepare`] (channels, resize or resize-and-centre-crop), then scaled and
/// normalised by the same [`Batcher`] that builds validation batches.
pub fn load_image_tensor(path: &Path, prep: &Preprocessing, device: &Device) -> Result<Tensor<4>> {
    let image = decode_image(path)?;
    let pixels = prep.prepare(&image, path)?;
    let [height, width] = prep.size;
    let one = ImageDataset {
        channels: prep.channels,
        height,
        width,
        pixels: pixels.into(),
        labels: vec![0],
        class_names: vec![],
        originals: None,
    };
    let batcher = Batcher { normalization: prep.normalization.clone(), augmentation: Augmentation::default() };
    Ok(batcher.batch(&one, &[0], None).into_tensors(device).0)
}

/// The `k` most likely classes for each row of `logits` (`[n, classes]`), best first.
pub fn top_k(logits: Tensor<2>, k: usize, class_names: &[String]) -> Result<Vec<Vec<TopClass>>> {
    let [n, classes] = logits.dims();
    let values = logits
        .try_into_data()
        .map_err(Error::device)?
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Tensor(format!("{e:?}")))?;
    Ok((0..n)
        .map(|row| {
            let row = &values[row * classes..(row + 1) * classes];
            let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let denom: f32 = row.iter().map(|l| (l - max).exp()).sum();
            let mut order: Vec<usize> = (0..classes).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            order
                .into_iter()
                .take(k)
                .map(|c| TopClass {
                    class: c,
                    name: class_names.get(c).cloned(),
                    prob: (row[c] - max).exp() / denom,
                    logit: row[c],
                })
                .collect()
        })
        .collect())
}

/// Runs `model` (in evaluation mode) on one image file, preprocessed as `config` says
/// ([`ModelConfig::preprocessing`]), and returns its top `k` classes.
pub fn predict_image<M: ImageClassifier>(
    model: &M,
    path: &Path,
    config: &ModelConfig,
    k: usize,
    device: &Device,
) -> Result<Vec<TopClass>> {
    let input = load_image_tensor(path, &config.preprocessing(), device)?;
    predict_input(model, input, k, &config.class_names)
}

/// The top `k` classes of one prepared image (`[1, c, h, w]`, from [`load_image_tensor`]).
pub fn predict_input<M: ImageClassifier>(model: &M, input: Tensor<4>, k: usize, class_names: &[String]) -> Result<Vec<TopClass>> {
    Ok(top_k(model.forward(input), k, class_names)?.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Normalization;
    use crate::preprocess::Resize;

    fn prep(channels: usize, size: [usize; 2]) -> Preprocessing {
        let normalization = Normalization { mean: vec![0.0], std: vec![1.0] };
        Preprocessing { channels, size, resize: Resize::center_crop(), normalization }
    }

    #[test]
    fn a_very_elongated_image_is_refused_before_resizing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strip.png");
        image::GrayImage::new(1, 65_535).save(&path).unwrap();
        let err = load_image_tensor(&path, &prep(3, [224, 224]), &Device::flex()).unwrap_err();
        assert!(err.to_string().contains("1×65535 pixels is too elongated"), "{err}");
    }

    #[test]
    fn top_k_orders_by_logit_with_softmax_probabilities() {
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(TensorData::new(vec![0.0f32, 2.0, 1.0], [1, 3]), &device);
        let top = top_k(logits, 2, &["a".into(), "b".into(), "c".into()]).unwrap().remove(0);
        assert_eq!(top.iter().map(|t| t.class).collect::<Vec<_>>(), vec![1, 2]);
        let denom = 1.0 + 2f32.exp() + 1f32.exp();
        assert!((top[0].prob - 2f32.exp() / denom).abs() < 1e-6);
        assert_eq!(top[0].name.as_deref(), Some("b"));
        assert_eq!(top[1].logit, 1.0);
    }

    #[test]
    fn images_are_centre_cropped_and_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.png");
        // 8 wide, 4 high: left half black, right half white.
        image::GrayImage::from_fn(8, 4, |x, _| image::Luma([if x < 4 { 0 } else { 255 }])).save(&path).unwrap();
        let _rng = crate::serial_rng();
        let device = Device::flex();
        let exact = load_image_tensor(&path, &prep(1, [4, 8]), &device).unwrap();
        assert_eq!(exact.dims(), [1, 1, 4, 8]);
        let v = exact.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!((v[0], v[7]), (0.0, 1.0));
        let cropped = load_image_tensor(&path, &prep(3, [2, 2]), &device).unwrap();
        assert_eq!(cropped.dims(), [1, 3, 2, 2]);
        let v = cropped.into_data().try_to_vec::<f32>().unwrap();
        assert!(v[0] < v[1], "dark left, bright right: {v:?}");
        assert!(load_image_tensor(&dir.path().join("missing.png"), &prep(1, [2, 2]), &device).is_err());
    }
}

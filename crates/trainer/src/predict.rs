//! Single-image inference for `nightshift predict`: ImageNet-style preprocessing and top-k classes.

use std::path::Path;

use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::model::{ImageClassifier, ModelConfig};

/// One of the top classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TopClass {
    pub class: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub prob: f32,
    pub logit: f32,
}

/// The largest intermediate image [`load_image_tensor`] resizes to before its centre crop (64 Mpx).
const MAX_RESIZED_PIXELS: u64 = 1 << 26;

/// Loads `path` as a `[1, channels, size, size]` tensor the way torchvision's ImageNet evaluation does:
/// an image already `size`×`size` is only scaled to [0, 1] and normalised; any other image is resized so its
/// shorter side is `size * 256 / 224` (bilinear, antialiased like PIL) and centre-cropped to `size`.
pub fn load_image_tensor(
    path: &Path,
    channels: usize,
    size: [usize; 2],
    normalization: &Normalization,
    device: &Device,
) -> Result<Tensor<4>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let img = crate::data::decode_dynamic_image(path, &bytes)?;
    let [th, tw] = size;
    let img = if img.height() as usize == th && img.width() as usize == tw {
        img
    } else {
        let short = (th.min(tw) * 256).div_ceil(224) as f64;
        let scale = short / img.width().min(img.height()) as f64;
        let (w, h) = ((img.width() as f64 * scale).round() as u32, (img.height() as f64 * scale).round() as u32);
        // A thin strip (1×65535 is a few hundred bytes of PNG) would scale to gigapixels before the crop.
        if w as u64 * h as u64 > MAX_RESIZED_PIXELS {
            let reason = format!(
                "{}×{} pixels is too elongated: scaling its shorter side to {short} would make {w}×{h} pixels \
                 (at most {MAX_RESIZED_PIXELS}); crop it first",
                img.width(),
                img.height()
            );
            return Err(Error::Image { path: path.to_path_buf(), reason });
        }
        let resized = img.resize_exact(w.max(tw as u32), h.max(th as u32), image::imageops::FilterType::Triangle);
        let (x, y) = ((resized.width() - tw as u32) / 2, (resized.height() - th as u32) / 2);
        resized.crop_imm(x, y, tw as u32, th as u32)
    };
    let plane = th * tw;
    let mut data = vec![0f32; channels * plane];
    let raw = if channels == 1 { img.to_luma8().into_raw() } else { img.to_rgb8().into_raw() };
    for p in 0..plane {
        for c in 0..channels {
            let mean = if normalization.mean.len() == 1 { normalization.mean[0] } else { normalization.mean[c] };
            let std = if normalization.std.len() == 1 { normalization.std[0] } else { normalization.std[c] };
            data[c * plane + p] = (raw[p * channels + c] as f32 / 255.0 - mean) / std;
        }
    }
    Ok(Tensor::from_data(TensorData::new(data, [1, channels, th, tw]), device))
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

/// Runs `model` (in evaluation mode) on one image file, preprocessed as `config` says (channels,
/// input size, normalisation), and returns its top `k` classes.
pub fn predict_image<M: ImageClassifier>(
    model: &M,
    path: &Path,
    config: &ModelConfig,
    k: usize,
    device: &Device,
) -> Result<Vec<TopClass>> {
    let input = load_image_tensor(path, config.in_channels, config.image_size, &config.normalization, device)?;
    Ok(top_k(model.forward(input), k, &config.class_names)?.remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_very_elongated_image_is_refused_before_resizing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strip.png");
        image::GrayImage::new(1, 65_535).save(&path).unwrap();
        let err = load_image_tensor(&path, 3, [224, 224], &Normalization::imagenet(), &Device::flex()).unwrap_err();
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
        let norm = Normalization { mean: vec![0.0], std: vec![1.0] };
        let exact = load_image_tensor(&path, 1, [4, 8], &norm, &device).unwrap();
        assert_eq!(exact.dims(), [1, 1, 4, 8]);
        let v = exact.into_data().try_to_vec::<f32>().unwrap();
        assert_eq!((v[0], v[7]), (0.0, 1.0));
        let cropped = load_image_tensor(&path, 3, [2, 2], &norm, &device).unwrap();
        assert_eq!(cropped.dims(), [1, 3, 2, 2]);
        let v = cropped.into_data().try_to_vec::<f32>().unwrap();
        assert!(v[0] < v[1], "dark left, bright right: {v:?}");
        assert!(load_image_tensor(&dir.path().join("missing.png"), 1, [2, 2], &norm, &device).is_err());
    }
}

//! The one image pipeline: how a decoded picture becomes the `u8` CHW image a network is fed. Training,
//! validation, test and `predict` all go through [`Preprocessing::prepare`]; the batcher then scales to
//! [0, 1] and normalises ([`crate::Batcher`]), the same arithmetic for all four.
//!
//! Steps, in order (docs/trainer.md, "Preprocessing"):
//! 1. channels: grey → RGB replicates the plane; RGB → grey is BT.601 luma, `round(0.299 R + 0.587 G +
//!    0.114 B)` (PIL's `convert("L")`, torchvision's `Grayscale`);
//! 2. size: an image already at the network's H×W is used as it is; otherwise [`Resize::Squash`] stretches it
//!    to H×W, and [`Resize::CenterCrop`] resizes its shorter side to `min(H, W) · ratio` (torchvision's
//!    `Resize(256)` for 224, ratio 256/224) and crops the centre (`CenterCrop`);
//! 3. interpolation: one antialiased bilinear filter everywhere ([`resize_antialiased`], PIL's triangle
//!    filter whose support widens with the downscale factor, as torchvision's `antialias=True`).
//!
//! [`RandomResizedCrop`] is the training augmentation with torchvision's semantics; it works on the
//! decoded image kept at a capped size ([`Preprocessing::original`]).

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::data::Normalization;
use crate::error::{Error, Result};
use crate::rng::SplitMix64;

/// torchvision's ImageNet evaluation resizes the shorter side to 256 for a 224 crop.
pub const IMAGENET_RESIZE_RATIO: f64 = 256.0 / 224.0;

/// The largest intermediate image the centre-crop resize may make (64 Mpx): a thin strip (1×65535 is a few
/// hundred bytes of PNG) would otherwise scale to gigapixels before the crop.
const MAX_RESIZED_PIXELS: u64 = 1 << 26;

/// A decoded image at its own size: `channels` planes of `height`×`width` bytes (CHW).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    /// Planes: 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `channels × height × width` bytes, plane after plane.
    pub pixels: Vec<u8>,
}

impl DecodedImage {
    /// The image with `channels` (1 or 3): grey → RGB replicates the plane, RGB → grey is BT.601 luma.
    pub fn with_channels(self, channels: usize) -> DecodedImage {
        let plane = self.height * self.width;
        let pixels = match (self.channels, channels) {
            (a, b) if a == b => return self,
            (1, 3) => self.pixels.repeat(3),
            (3, 1) => {
                let (r, rest) = self.pixels.split_at(plane);
                let (g, b) = rest.split_at(plane);
                r.iter().zip(g).zip(b).map(|((&r, &g), &b)| bt601(r, g, b)).collect()
            }
            (from, to) => unreachable!("channel counts are validated to be 1 or 3, got {from} → {to}"),
        };
        DecodedImage { channels, pixels, ..self }
    }

    /// The `height`×`width` window at (`top`, `left`), which must lie inside the image.
    fn crop(&self, top: usize, left: usize, height: usize, width: usize) -> DecodedImage {
        let mut pixels = Vec::with_capacity(self.channels * height * width);
        for c in 0..self.channels {
            let plane = &self.pixels[c * self.height * self.width..(c + 1) * self.height * self.width];
            for y in top..top + height {
                pixels.extend_from_slice(&plane[y * self.width + left..y * self.width + left + width]);
            }
        }
        DecodedImage { channels: self.channels, height, width, pixels }
    }

    fn resized(&self, height: usize, width: usize) -> DecodedImage {
        let pixels = resize_antialiased(&self.pixels, self.channels, self.height, self.width, height, width);
        DecodedImage { channels: self.channels, height, width, pixels }
    }
}

/// ITU-R BT.601 luma, rounded: the weights of PIL's `convert("L")` and torchvision's `Grayscale`.
fn bt601(r: u8, g: u8, b: u8) -> u8 {
    (0.299 * r as f32 + 0.587 * g as f32 + 0.114 * b as f32).round().clamp(0.0, 255.0) as u8
}

/// How images reach the network's size, as a `trial:` section names it (`resize: squash|center_crop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResizeMode {
    /// [`Resize::Squash`].
    Squash,
    /// [`Resize::CenterCrop`] at the ImageNet ratio, 256/224.
    CenterCrop,
}

impl ResizeMode {
    /// The spellings `from_str` accepts, as its error lists them.
    pub const NAMES: [&'static str; 2] = ["squash", "center_crop"];
}

impl std::str::FromStr for ResizeMode {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "squash" => Ok(ResizeMode::Squash),
            "center_crop" => Ok(ResizeMode::CenterCrop),
            other => Err(format!("unknown resize `{other}` (valid: {})", Self::NAMES.join(", "))),
        }
    }
}

/// How an image is brought to the network's H×W; saved in `model.json` (`"resize": {"mode": …}`).
///
/// A `model.json` written before this field existed reads as [`Resize::Squash`]: every model was trained on
/// squashed images then, so that is how `predict` must prepare its input.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Resize {
    /// Stretch to H×W, ignoring the aspect ratio (digits, clothes: images already square).
    #[default]
    Squash,
    /// torchvision's evaluation transform: the shorter side to `round(min(H, W) · ratio)` (the longer side
    /// in proportion, rounded down), then the centre H×W (offsets rounded half to even, as Python's `round`).
    CenterCrop {
        /// The resized shorter side over the crop's shorter side, in [1, 8]; 256/224 for ImageNet.
        ratio: f64,
    },
}

impl Resize {
    /// The ImageNet convention: shorter side to 256 for a 224 crop.
    pub fn center_crop() -> Self {
        Resize::CenterCrop { ratio: IMAGENET_RESIZE_RATIO }
    }

    /// Checks that a centre crop's ratio is finite and in [1, 8].
    pub fn validate(&self) -> Result<()> {
        match *self {
            Resize::CenterCrop { ratio } if !(ratio.is_finite() && (1.0..=8.0).contains(&ratio)) => {
                Err(Error::config("resize.ratio", format!("must be in [1, 8], got {ratio}")))
            }
            _ => Ok(()),
        }
    }
}

impl From<ResizeMode> for Resize {
    fn from(mode: ResizeMode) -> Self {
        match mode {
            ResizeMode::Squash => Resize::Squash,
            ResizeMode::CenterCrop => Resize::center_crop(),
        }
    }
}

/// The whole input pipeline of one network: what [`crate::ModelConfig::preprocessing`] gives training,
/// validation, test and `predict` alike.
#[derive(Debug, Clone, PartialEq)]
pub struct Preprocessing {
    /// 1 or 3.
    pub channels: usize,
    /// The network's input height and width.
    pub size: [usize; 2],
    /// How images are brought to `size`.
    pub resize: Resize,
    /// Applied by the batcher after scaling to [0, 1].
    pub normalization: Normalization,
}

impl Preprocessing {
    /// Checks the channels (1 or 3), a size without zeros, the resize and the normalisation.
    pub fn validate(&self) -> Result<()> {
        if self.channels != 1 && self.channels != 3 {
            return Err(Error::config("channels", format!("must be 1 or 3, got {}", self.channels)));
        }
        if self.size.contains(&0) {
            return Err(Error::config("image_size", "must be positive"));
        }
        self.resize.validate()?;
        self.normalization.validate(self.channels)
    }

    /// The one preparation step: `image` (any channels, any size) as `channels` × H × W bytes. `source`
    /// names the image in errors (a picture too elongated to resize).
    pub fn prepare(&self, image: &DecodedImage, source: &Path) -> Result<Vec<u8>> {
        let image = image.clone().with_channels(self.channels);
        let [th, tw] = self.size;
        let (h, w) = (image.height, image.width);
        if (h, w) == (th, tw) {
            return Ok(image.pixels);
        }
        match self.resize {
            Resize::Squash => Ok(image.resized(th, tw).pixels),
            Resize::CenterCrop { ratio } => {
                let short = ((th.min(tw) as f64 * ratio).round() as usize).max(1);
                // torchvision: the shorter side to `short`, the longer one to int(short * long / short_side).
                let (nh, nw) = if w <= h { (short * h / w, short) } else { (short, short * w / h) };
                let (nh, nw) = (nh.max(th), nw.max(tw));
                if nh as u64 * nw as u64 > MAX_RESIZED_PIXELS {
                    let reason = format!(
                        "{w}×{h} pixels is too elongated: scaling its shorter side to {short} would make {nw}×{nh} \
                         pixels (at most {MAX_RESIZED_PIXELS}); crop it first"
                    );
                    return Err(Error::Image { path: source.to_path_buf(), reason });
                }
                let resized = image.resized(nh, nw);
                Ok(resized.crop(center_offset(nh, th), center_offset(nw, tw), th, tw).pixels)
            }
        }
    }

    /// The shorter side at which [`original`](Self::original) keeps decoded images: the size the centre
    /// crop resizes to (`round(min(H, W) · 256/224)`, 256 for 224).
    pub fn original_cap(&self) -> usize {
        ((self.size[0].min(self.size[1]) as f64 * IMAGENET_RESIZE_RATIO).round() as usize).max(1)
    }

    /// `image` as [`RandomResizedCrop`] samples from it: with `channels`, and shrunk (antialiased, aspect
    /// kept) so that its shorter side is at most [`original_cap`](Self::original_cap) and its longer side at
    /// most four times that. This bounds memory: a 4:3 photo kept for a 224 input is 256×341×3 bytes (262 kB).
    pub fn original(&self, image: DecodedImage) -> DecodedImage {
        let image = image.with_channels(self.channels);
        let cap = self.original_cap() as f64;
        let (h, w) = (image.height as f64, image.width as f64);
        let scale = (cap / h.min(w)).min(4.0 * cap / h.max(w));
        if scale >= 1.0 {
            return image;
        }
        let (nh, nw) = (((h * scale).round() as usize).max(1), ((w * scale).round() as usize).max(1));
        image.resized(nh, nw)
    }
}

/// torchvision's `CenterCrop` offset: `int(round((size - crop) / 2))`, Python rounding half to even.
fn center_offset(size: usize, crop: usize) -> usize {
    ((size - crop) as f64 / 2.0).round_ties_even() as usize
}

/// Training augmentation with the semantics of torchvision's `RandomResizedCrop`: a window of a random
/// fraction of the area (`scale`) and a random aspect ratio (`ratio`, drawn uniformly in log space), at a
/// random place, resized to the network's size. After 10 draws that do not fit, the centre crop with the
/// aspect ratio clamped to `ratio` (the whole image when its own ratio is within bounds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RandomResizedCrop {
    /// Bounds of the window's area as a fraction of the image's; torchvision's default (0.08, 1.0).
    pub scale: [f64; 2],
    /// Bounds of the window's width / height; torchvision's default (3/4, 4/3).
    pub ratio: [f64; 2],
}

impl Default for RandomResizedCrop {
    fn default() -> Self {
        Self { scale: [0.08, 1.0], ratio: [3.0 / 4.0, 4.0 / 3.0] }
    }
}

/// A window of an image: `height`×`width` pixels from (`top`, `left`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct CropBox {
    /// First row of the window.
    pub top: usize,
    /// First column of the window.
    pub left: usize,
    /// Rows in the window.
    pub height: usize,
    /// Columns in the window.
    pub width: usize,
}

impl RandomResizedCrop {
    /// Checks 0 < `scale` low ≤ high ≤ 1 and 0 < `ratio` low ≤ high, finite.
    pub fn validate(&self) -> Result<()> {
        let [s0, s1] = self.scale;
        if !(s0 > 0.0 && s0 <= s1 && s1 <= 1.0) {
            return Err(Error::config("random_resized_crop.scale", format!("needs 0 < low <= high <= 1, got [{s0}, {s1}]")));
        }
        let [r0, r1] = self.ratio;
        if !(r0 > 0.0 && r0 <= r1 && r1.is_finite()) {
            return Err(Error::config("random_resized_crop.ratio", format!("needs 0 < low <= high, got [{r0}, {r1}]")));
        }
        Ok(())
    }

    /// The window for an image of `height`×`width`, drawn from `rng`.
    pub fn crop_box(&self, height: usize, width: usize, rng: &mut SplitMix64) -> CropBox {
        let area = (height * width) as f64;
        let (log_lo, log_hi) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let target_area = area * uniform(rng, self.scale[0], self.scale[1]);
            let aspect = uniform(rng, log_lo, log_hi).exp();
            let w = (target_area * aspect).sqrt().round_ties_even() as usize;
            let h = (target_area / aspect).sqrt().round_ties_even() as usize;
            if 0 < w && w <= width && 0 < h && h <= height {
                let top = rng.below(height - h + 1);
                let left = rng.below(width - w + 1);
                return CropBox { top, left, height: h, width: w };
            }
        }
        let own = width as f64 / height as f64;
        let (h, w) = if own < self.ratio[0] {
            (((width as f64 / self.ratio[0]).round_ties_even() as usize).clamp(1, height), width)
        } else if own > self.ratio[1] {
            (height, ((height as f64 * self.ratio[1]).round_ties_even() as usize).clamp(1, width))
        } else {
            (height, width)
        };
        CropBox { top: (height - h) / 2, left: (width - w) / 2, height: h, width: w }
    }

    /// A random window of `image`, resized to `height`×`width`.
    pub fn apply(&self, image: &DecodedImage, height: usize, width: usize, rng: &mut SplitMix64) -> Vec<u8> {
        self.crop_box(image.height, image.width, rng).apply(image, height, width)
    }
}

impl CropBox {
    /// This window of `image`, resized to `height`×`width`.
    pub fn apply(&self, image: &DecodedImage, height: usize, width: usize) -> Vec<u8> {
        image.crop(self.top, self.left, self.height, self.width).resized(height, width).pixels
    }
}

/// Uniform in [lo, hi) from 53 random bits.
fn uniform(rng: &mut SplitMix64, lo: f64, hi: f64) -> f64 {
    let unit = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    lo + (hi - lo) * unit
}

/// Antialiased bilinear resize of CHW bytes: PIL's `Image.resize(BILINEAR)` (and torchvision's
/// `antialias=True`): a triangle filter whose support widens by the downscale factor, so that shrinking
/// averages every source pixel instead of sampling a few. Upscaling is plain bilinear with half-pixel
/// centres. Computed in f32, separably (rows, then columns), rounded once at the end (PIL rounds to bytes
/// between the two passes, so a pixel may differ from PIL's by one level). The same size is the identity.
pub fn resize_antialiased(image: &[u8], channels: usize, h: usize, w: usize, out_h: usize, out_w: usize) -> Vec<u8> {
    if h == out_h && w == out_w {
        return image.to_vec();
    }
    let (taps_x, taps_y) = (filter_taps(w, out_w), filter_taps(h, out_h));
    let mut out = vec![0u8; channels * out_h * out_w];
    let mut rows = vec![0f32; h * out_w];
    for c in 0..channels {
        let src = &image[c * h * w..(c + 1) * h * w];
        for y in 0..h {
            let line = &src[y * w..(y + 1) * w];
            for (x, (start, weights)) in taps_x.iter().enumerate() {
                rows[y * out_w + x] = weights.iter().zip(&line[*start..]).map(|(k, &p)| k * p as f32).sum();
            }
        }
        let dst = &mut out[c * out_h * out_w..(c + 1) * out_h * out_w];
        for (y, (start, weights)) in taps_y.iter().enumerate() {
            for x in 0..out_w {
                let v: f32 = weights.iter().enumerate().map(|(k, weight)| weight * rows[(start + k) * out_w + x]).sum();
                dst[y * out_w + x] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    out
}

/// For each output index: the first source index and the normalised weights of the source pixels from there.
fn filter_taps(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f32>)> {
    let scale = in_size as f64 / out_size as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1, widened when downscaling
    (0..out_size)
        .map(|o| {
            let center = (o as f64 + 0.5) * scale;
            let lo = (center - support + 0.5).max(0.0) as usize;
            let hi = ((center + support + 0.5) as usize).min(in_size).max(lo + 1);
            let raw: Vec<f64> = (lo..hi).map(|i| (1.0 - ((i as f64 - center + 0.5) / filter_scale).abs()).max(0.0)).collect();
            let total: f64 = raw.iter().sum();
            let weights = if total > 0.0 {
                raw.iter().map(|&k| (k / total) as f32).collect()
            } else {
                // Cannot happen for in_size ≥ 1 (the nearest pixel has weight > 0); kept total for safety.
                let mut one = vec![0.0; raw.len()];
                one[0] = 1.0;
                one
            };
            (lo, weights)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(height: usize, width: usize, pixels: Vec<u8>) -> DecodedImage {
        DecodedImage { channels: 1, height, width, pixels }
    }

    fn prep(size: [usize; 2], resize: Resize) -> Preprocessing {
        Preprocessing { channels: 1, size, resize, normalization: Normalization::centered(1) }
    }

    #[test]
    fn a_model_json_from_before_the_resize_field_loads_as_squash() {
        let old = r#"{"arch": "small-cnn", "width": 16, "depth": 3, "num_classes": 10, "in_channels": 1,
                      "image_size": [28, 28], "dropout": 0.1, "normalization": {"mean": [0.5], "std": [0.5]}}"#;
        let config: crate::ModelConfig = serde_json::from_str(old).unwrap();
        assert_eq!(config.resize, Resize::Squash);
        assert_eq!(config.preprocessing().resize, Resize::Squash);
        let new = crate::ModelConfig { resize: Resize::center_crop(), ..config };
        let text = serde_json::to_string(&new).unwrap();
        assert!(text.contains(r#""resize":{"mode":"center_crop","ratio":1.1428571428571428}"#), "{text}");
        assert_eq!(serde_json::from_str::<crate::ModelConfig>(&text).unwrap(), new);
        let bad = crate::ModelConfig { resize: Resize::CenterCrop { ratio: 0.5 }, ..new };
        assert!(bad.validate().unwrap_err().to_string().contains("resize.ratio"));
    }

    #[test]
    fn rgb_to_gray_is_bt601_not_bt709() {
        // Two pixels, CHW: pure red, pure green.
        let image = DecodedImage { channels: 3, height: 1, width: 2, pixels: vec![255, 0, 0, 255, 0, 0] };
        // BT.601: 0.299 · 255 = 76.2 and 0.587 · 255 = 149.7; BT.709 (the image crate's to_luma8) would give
        // 0.2126 · 255 = 54 and 0.7152 · 255 = 182.
        assert_eq!(image.with_channels(1).pixels, vec![76, 150]);
        let gray = gray(1, 2, vec![7, 200]);
        assert_eq!(gray.clone().with_channels(3).pixels, vec![7, 200, 7, 200, 7, 200]);
        assert_eq!(gray.clone().with_channels(3).with_channels(1), gray);
    }

    #[test]
    fn resizing_to_the_same_size_is_the_identity_and_constants_stay_constant() {
        let pixels: Vec<u8> = (0..28 * 28).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize_antialiased(&pixels, 1, 28, 28, 28, 28), pixels);
        for (oh, ow) in [(64, 64), (5, 7), (1, 1), (28, 3)] {
            assert_eq!(resize_antialiased(&[9; 28 * 28], 1, 28, 28, oh, ow), vec![9; oh * ow]);
        }
        // Upscaling 2×2 → 4×4 is bilinear with half-pixel centres: 0.75 · 0 + 0.25 · 100 = 25.
        let big = resize_antialiased(&[0, 100, 100, 200], 1, 2, 2, 4, 4);
        assert_eq!((big[0], big[1], big[15]), (0, 25, 200));
    }

    #[test]
    fn downscaling_averages_instead_of_sampling() {
        // Alternating black and white columns: halving them must give grey, not one of the two colours
        // (plain bilinear at scale 2 samples between pixels 2k and 2k+1 and happens to give 128 too, but at
        // scale 4 it samples between two white pixels and two black pixels; the antialiased filter averages).
        let stripes: Vec<u8> = (0..16).map(|x| if x % 2 == 0 { 0 } else { 255 }).collect();
        // At the borders the filter is cut off and renormalised (as PIL's), which tilts the first and last
        // pixel a little.
        for out in [8, 4, 2] {
            let small = resize_antialiased(&stripes, 1, 1, 16, 1, out);
            assert!(small[1..out - 1].iter().all(|&v| (126..=129).contains(&v)), "{out}: {small:?}");
            assert!(small.iter().all(|&v| (100..=155).contains(&v)), "{out}: {small:?}");
        }
    }

    #[test]
    fn center_crop_follows_torchvision_eval() {
        // 8 wide, 4 high at [2, 2] with ratio 256/224: shorter side to round(2.29) = 2, longer to 2·8/4 = 4;
        // crop offset round((4 - 2) / 2) = 1.
        let p = prep([2, 2], Resize::center_crop());
        let image = gray(4, 8, (0..32).map(|i| if i % 8 < 4 { 0 } else { 255 }).collect());
        let out = p.prepare(&image, Path::new("x")).unwrap();
        assert_eq!(out.len(), 4);
        assert!(out[0] < 64 && out[1] > 191, "dark left, bright right: {out:?}");
        // Half-even offsets, as Python's round: 1 → 0, 3 → 2 (1.5 → 2), 5 → 2 (2.5 → 2).
        assert_eq!((center_offset(3, 2), center_offset(5, 2), center_offset(7, 2)), (0, 2, 2));
        // Squash keeps the whole width instead, each output pixel a triangle-weighted average over ±4 columns:
        // the left one has weights 5/8, 7/8, 7/8, 5/8 on black and 3/8, 1/8 on white: 255 · 0.5 / 3.5 = 36.
        let squashed = prep([2, 2], Resize::Squash).prepare(&image, Path::new("x")).unwrap();
        assert_eq!(squashed, vec![36, 219, 36, 219]);
        // The same size passes through whatever the mode.
        let same = prep([4, 8], Resize::center_crop()).prepare(&image, Path::new("x")).unwrap();
        assert_eq!(same, image.pixels);
    }

    #[test]
    fn a_very_elongated_image_is_refused_before_resizing() {
        let strip = gray(65_535, 1, vec![0; 65_535]);
        let err = prep([224, 224], Resize::center_crop()).prepare(&strip, Path::new("strip.png")).unwrap_err();
        assert!(err.to_string().contains("strip.png") && err.to_string().contains("1×65535 pixels is too elongated"), "{err}");
    }

    #[test]
    fn originals_are_kept_at_a_capped_size() {
        let p = prep([224, 224], Resize::center_crop());
        assert_eq!(p.original_cap(), 256);
        let photo = gray(3000, 4000, vec![50; 3000 * 4000]);
        let kept = p.original(photo);
        assert_eq!((kept.height, kept.width), (256, 341));
        assert!(kept.pixels.iter().all(|&v| v == 50));
        let small = gray(100, 120, vec![1; 12_000]);
        assert_eq!(p.original(small.clone()), small, "smaller images are kept as they are");
        let strip = p.original(gray(300, 30_000, vec![0; 9_000_000]));
        assert_eq!((strip.height, strip.width), (10, 1024), "the longer side is capped at 4 × 256");
    }

    #[test]
    fn random_resized_crop_stays_within_its_bounds_and_repeats_with_its_seed() {
        let rrc = RandomResizedCrop::default();
        let (h, w) = (300, 400);
        let mut rng = SplitMix64::new(11);
        let boxes: Vec<CropBox> = (0..20_000).map(|_| rrc.crop_box(h, w, &mut rng)).collect();
        let mut fractions = Vec::new();
        for b in &boxes {
            assert!(b.top + b.height <= h && b.left + b.width <= w, "{b:?}");
            let fraction = (b.height * b.width) as f64 / (h * w) as f64;
            // Rounding the sides to pixels moves the area by a little.
            assert!((0.08 * 0.97..=1.0).contains(&fraction), "{b:?}: area fraction {fraction}");
            let aspect = b.width as f64 / b.height as f64;
            assert!((0.75 * 0.97..=4.0 / 3.0 * 1.03).contains(&aspect), "{b:?}: aspect {aspect}");
            fractions.push(fraction);
        }
        // Areas spread over the range: uniform in [0.08, 1] among the draws that fit in 300×400, whose mean
        // is 0.433 (by simulating torchvision's procedure, 400k draws); 20k draws put ours within ±0.005.
        let mean = fractions.iter().sum::<f64>() / fractions.len() as f64;
        assert!((mean - 0.433).abs() < 0.01, "mean area fraction {mean}");
        assert!(fractions.iter().any(|&f| f < 0.15) && fractions.iter().any(|&f| f > 0.9));
        // Aspect ratios are uniform in log space: on a square image, about as many below 1 as above.
        let square: Vec<CropBox> = (0..20_000).map(|_| rrc.crop_box(300, 300, &mut rng)).collect();
        let wide = square.iter().filter(|b| b.width > b.height).count();
        let tall = square.iter().filter(|b| b.width < b.height).count();
        assert!((wide as f64 / tall as f64 - 1.0).abs() < 0.05, "wide {wide}, tall {tall}");
        let mut again = SplitMix64::new(11);
        assert_eq!(boxes, (0..20_000).map(|_| rrc.crop_box(h, w, &mut again)).collect::<Vec<_>>());
        let mut other = SplitMix64::new(12);
        assert_ne!(boxes[..20], (0..20).map(|_| rrc.crop_box(h, w, &mut other)).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn random_resized_crop_falls_back_to_the_centre_crop() {
        let rrc = RandomResizedCrop::default();
        let mut rng = SplitMix64::new(3);
        // 10 high, 1000 wide: a window of 8 % of the area with aspect ≤ 4/3 is ≥ 24 high, never fits. The
        // fallback keeps the height and clamps the aspect to 4/3: 13 wide, centred (and the other way round).
        for _ in 0..5 {
            assert_eq!(rrc.crop_box(10, 1000, &mut rng), CropBox { top: 0, left: 493, height: 10, width: 13 });
            assert_eq!(rrc.crop_box(1000, 10, &mut rng), CropBox { top: 493, left: 0, height: 13, width: 10 });
        }
        // Scale fixed at 1 with a ratio window that excludes the image's own: nothing fits, so the fallback;
        // an image whose ratio is inside the bounds falls back to the whole image.
        let full = RandomResizedCrop { scale: [1.0, 1.0], ratio: [2.0, 2.0] };
        assert_eq!(full.crop_box(50, 50, &mut rng), CropBox { top: 12, left: 0, height: 25, width: 50 });
        let loose = RandomResizedCrop { scale: [1.0, 1.0], ratio: [0.5, 2.0] };
        let b = loose.crop_box(40, 40, &mut rng);
        assert!(b.height <= 40 && b.width <= 40);
        let out = loose.apply(&gray(40, 40, vec![77; 1600]), 8, 8, &mut rng);
        assert_eq!(out, vec![77; 64]);
        assert!(RandomResizedCrop { scale: [0.0, 1.0], ..rrc }.validate().is_err());
        assert!(RandomResizedCrop { ratio: [2.0, 1.0], ..rrc }.validate().is_err());
    }
}

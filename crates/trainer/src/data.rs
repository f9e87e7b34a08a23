//! Datasets: IDX files (MNIST style) and image folders, stratified splits, few-shot subsets, channel and
//! size conversion, normalisation, augmentation and batching.
//!
//! Images are kept as `u8` in CHW order, all the same shape within one [`ImageDataset`]; conversion to
//! normalised `f32` happens per batch, which keeps a 10k-image dataset at a few MB. How images are brought to
//! that shape is [`Preprocessing`]'s business (one function for training, validation, test and `predict`).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::prelude::*;

use crate::error::{Error, Result};
use crate::preprocess::{CropBox, DecodedImage, Preprocessing, RandomResizedCrop, Resize};
use crate::rng::SplitMix64;

/// Images (u8, CHW) with integer labels in `0..class_names.len()`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDataset {
    /// Planes per image: 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Height of every image, in pixels.
    pub height: usize,
    /// Width of every image, in pixels.
    pub width: usize,
    /// `len() * channels * height * width` bytes, image after image.
    pub pixels: Pixels,
    /// Class of each image, an index into `class_names`.
    pub labels: Vec<usize>,
    /// Name of each class, index = label: the folder names of an image folder (sorted), `"0"`, `"1"`, … for
    /// IDX data. Subsets keep them all, so a class may have no image.
    pub class_names: Vec<String>,
    /// For [`RandomResizedCrop`]: each image as decoded, before resizing, at a capped size
    /// ([`Preprocessing::original`]), in dataset order; shared between subsets. `None` when no augmentation
    /// needs them (then a random resized crop samples from the prepared image).
    pub originals: Option<Vec<Arc<DecodedImage>>>,
}

/// An [`ImageDataset`]'s pixels: its own, or a read-only view of a memory-mapped entry of the dataset
/// cache ([`crate::cache::dataset`]) that every trial of a sweep shares.
#[derive(Clone)]
pub enum Pixels {
    /// Bytes of this dataset's own.
    Owned(Vec<u8>),
    /// The payload of a dataset-cache entry, mapped read-only and shared with every trial that maps it.
    Shared(std::sync::Arc<crate::cache::file::Payload>),
}

impl std::ops::Deref for Pixels {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Pixels::Owned(bytes) => bytes,
            Pixels::Shared(payload) => payload.bytes(),
        }
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(bytes: Vec<u8>) -> Self {
        Pixels::Owned(bytes)
    }
}

impl FromIterator<u8> for Pixels {
    fn from_iter<I: IntoIterator<Item = u8>>(iter: I) -> Self {
        Pixels::Owned(iter.into_iter().collect())
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if matches!(self, Pixels::Shared(_)) { "shared" } else { "owned" };
        write!(f, "Pixels({} bytes, {kind})", self.len())
    }
}

impl ImageDataset {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes (`class_names.len()`), those without an image here included.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Bytes per image: channels × height × width.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// The pixels of image `index` (CHW); panics when `index` is out of range.
    pub fn image(&self, index: usize) -> &[u8] {
        let n = self.image_len();
        &self.pixels[index * n..(index + 1) * n]
    }

    /// Image `index` as a [`DecodedImage`] (a copy).
    fn decoded(&self, index: usize) -> DecodedImage {
        DecodedImage { channels: self.channels, height: self.height, width: self.width, pixels: self.image(index).to_vec() }
    }

    /// (height, width) of the image a random resized crop samples from: the kept original, else the image.
    fn original_size(&self, index: usize) -> (usize, usize) {
        match &self.originals {
            Some(originals) => (originals[index].height, originals[index].width),
            None => (self.height, self.width),
        }
    }

    /// `window` of image `index`'s original (see [`Self::original_size`]), resized to the dataset's size.
    fn cropped(&self, index: usize, window: CropBox) -> Vec<u8> {
        match &self.originals {
            Some(originals) => window.apply(&originals[index], self.height, self.width),
            None => window.apply(&self.decoded(index), self.height, self.width),
        }
    }

    /// Number of images of each class.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &label in &self.labels {
            counts[label] += 1;
        }
        counts
    }

    /// The images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageDataset {
        let mut pixels = Vec::with_capacity(indices.len() * self.image_len());
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageDataset {
            channels: self.channels,
            height: self.height,
            width: self.width,
            pixels: pixels.into(),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            class_names: self.class_names.clone(),
            originals: self.originals.as_ref().map(|o| indices.iter().map(|&i| o[i].clone()).collect()),
        }
    }

    /// Indices of each class, in dataset order.
    fn indices_by_class(&self) -> Vec<Vec<usize>> {
        let mut by_class = vec![Vec::new(); self.num_classes()];
        for (i, &label) in self.labels.iter().enumerate() {
            by_class[label].push(i);
        }
        by_class
    }

    /// Deterministic stratified split: each class contributes `round(count * val_fraction)` images
    /// (at least one when it has two or more) to validation, chosen by `seed`. Returns (train, validation).
    pub fn stratified_split(&self, val_fraction: f64, seed: u64) -> Result<(ImageDataset, ImageDataset)> {
        if !(0.0..1.0).contains(&val_fraction) || val_fraction == 0.0 {
            return Err(Error::config("val_fraction", format!("must be in (0, 1), got {val_fraction}")));
        }
        let mut rng = SplitMix64::new(seed);
        let (mut train, mut val) = (Vec::new(), Vec::new());
        for mut members in self.indices_by_class() {
            rng.shuffle(&mut members);
            let mut n_val = (members.len() as f64 * val_fraction).round() as usize;
            if n_val == 0 && members.len() >= 2 {
                n_val = 1;
            }
            val.extend_from_slice(&members[..n_val]);
            train.extend_from_slice(&members[n_val..]);
        }
        if train.is_empty() || val.is_empty() {
            let empty = if val.is_empty() { "validation" } else { "training" };
            return Err(Error::config(
                "val_fraction",
                format!(
                    "splitting {} images at val_fraction {val_fraction} leaves no {empty} image (a class needs at least \
                     2 images to give one to each side): use more images per class or another val_fraction",
                    self.len()
                ),
            ));
        }
        // Keep dataset order inside each part so the split does not depend on class iteration order.
        train.sort_unstable();
        val.sort_unstable();
        Ok((self.subset(&train), self.subset(&val)))
    }

    /// At most `per_class` images of each class, chosen by `seed` (few-shot fine-tuning).
    pub fn per_class(&self, per_class: usize, seed: u64) -> Result<ImageDataset> {
        if per_class == 0 {
            return Err(Error::config("per_class", "must be at least 1"));
        }
        let mut rng = SplitMix64::new(seed);
        let mut keep = Vec::new();
        for mut members in self.indices_by_class() {
            rng.shuffle(&mut members);
            members.truncate(per_class);
            keep.extend(members);
        }
        keep.sort_unstable();
        Ok(self.subset(&keep))
    }

    /// The first `n` images (test subsets for quick evaluations).
    pub fn take(&self, n: usize) -> ImageDataset {
        let indices: Vec<usize> = (0..n.min(self.len())).collect();
        self.subset(&indices)
    }

    /// Converts every image to `channels` (1 or 3) and `height`×`width` (squashed), once, so that batching
    /// only normalises and augments: [`into_prepared`](Self::into_prepared) with [`Resize::Squash`].
    pub fn converted(&self, channels: usize, height: usize, width: usize) -> Result<ImageDataset> {
        let prep = Preprocessing {
            channels,
            size: [height, width],
            resize: Resize::Squash,
            normalization: crate::data::Normalization::centered(channels),
        };
        self.clone().into_prepared(&prep, false, Path::new("dataset"))
    }

    /// Every image through [`Preprocessing::prepare`] (the same step `predict` takes), once, so that
    /// batching only normalises and augments. With `keep_originals` each image is also kept as it was (capped,
    /// [`Preprocessing::original`]) for [`RandomResizedCrop`]; otherwise originals are dropped. `origin` names
    /// the data in errors.
    pub fn into_prepared(mut self, prep: &Preprocessing, keep_originals: bool, origin: &Path) -> Result<ImageDataset> {
        prep.validate()?;
        if !keep_originals {
            self.originals = None;
        } else if self.originals.is_none() {
            self.originals = Some((0..self.len()).map(|i| Arc::new(prep.original(self.decoded(i)))).collect());
        }
        let [height, width] = prep.size;
        if (self.channels, self.height, self.width) == (prep.channels, height, width) {
            return Ok(self);
        }
        let mut pixels = Vec::with_capacity(self.len() * prep.channels * height * width);
        for i in 0..self.len() {
            pixels.extend(prep.prepare(&self.decoded(i), origin)?);
        }
        Ok(ImageDataset { channels: prep.channels, height, width, pixels: pixels.into(), ..self })
    }
}

// ---------------------------------------------------------------------------------------------------------
// IDX

/// Gunzips `raw` when it starts with the gzip magic, else returns it as is; `path` only names it in errors.
fn maybe_gunzip<'a>(path: &Path, raw: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>> {
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw)
            .read_to_end(&mut out)
            .map_err(|e| Error::Idx { path: path.into(), reason: format!("corrupt or truncated gzip stream: {e}") })?;
        Ok(out.into())
    } else {
        Ok(raw.into())
    }
}

/// Parses an IDX u8 file; returns its dimensions and payload.
fn parse_idx(path: &Path, bytes: &[u8], expected_rank: u8) -> Result<(Vec<usize>, Vec<u8>)> {
    let bad = |reason: String| Error::Idx { path: path.into(), reason };
    if bytes.len() < 4 {
        return Err(bad(format!("file is {} bytes, too short for the magic number", bytes.len())));
    }
    if bytes[0] != 0 || bytes[1] != 0 || bytes[2] != 0x08 {
        return Err(bad(format!(
            "bad magic {:02x}{:02x}{:02x}{:02x}: expected 000008{:02x} (unsigned bytes)",
            bytes[0], bytes[1], bytes[2], bytes[3], expected_rank
        )));
    }
    let rank = bytes[3];
    if rank != expected_rank {
        return Err(bad(format!("has {rank} dimensions, expected {expected_rank}")));
    }
    let header = 4 + 4 * rank as usize;
    if bytes.len() < header {
        return Err(bad("truncated header".into()));
    }
    let dims: Vec<usize> =
        (0..rank as usize).map(|d| u32::from_be_bytes(bytes[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize).collect();
    // A corrupt header can claim 2^96 bytes: overflow is an error, not a wrap or a panic.
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} multiply to more bytes than a usize can count (corrupt header?)")))?;
    let payload = &bytes[header..];
    if payload.len() < expected {
        return Err(bad(format!("truncated: dimensions {dims:?} need {expected} bytes of data, found {}", payload.len())));
    }
    Ok((dims, payload[..expected].to_vec()))
}

/// Loads an IDX image file (`[n, h, w]` u8) and its label file (`[n]` u8), gzip'd or raw.
pub fn load_idx(images: &Path, labels: &Path) -> Result<ImageDataset> {
    let image_bytes = std::fs::read(images).map_err(|e| Error::io(images, e))?;
    let label_bytes = std::fs::read(labels).map_err(|e| Error::io(labels, e))?;
    load_idx_bytes(images, &image_bytes, labels, &label_bytes)
}

/// [`load_idx`] on file contents already in memory (gzip'd or raw); the paths only name the files in errors.
pub fn load_idx_bytes(images: &Path, image_bytes: &[u8], labels: &Path, label_bytes: &[u8]) -> Result<ImageDataset> {
    let (dims, pixels) = parse_idx(images, &maybe_gunzip(images, image_bytes)?, 3)?;
    if dims[1] == 0 || dims[2] == 0 {
        let reason = format!("images of {}×{} pixels: height and width must be at least 1", dims[1], dims[2]);
        return Err(Error::Idx { path: images.into(), reason });
    }
    let (label_dims, label_bytes) = parse_idx(labels, &maybe_gunzip(labels, label_bytes)?, 1)?;
    if dims[0] != label_dims[0] {
        return Err(Error::LabelCountMismatch {
            images: images.into(),
            image_count: dims[0],
            labels: labels.into(),
            label_count: label_dims[0],
        });
    }
    let dataset_err = |reason: String| Error::Dataset { path: images.parent().unwrap_or(images).into(), reason };
    if dims[0] == 0 {
        return Err(dataset_err(format!("{} has no images", images.display())));
    }
    let labels_vec: Vec<usize> = label_bytes.iter().map(|&l| l as usize).collect();
    let num_classes = labels_vec.iter().max().map_or(0, |m| m + 1);
    if let [only] = labels_vec.iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect::<Vec<_>>()[..] {
        return Err(dataset_err(format!("only one class ({only}) in {}; a classifier needs at least two", labels.display())));
    }
    Ok(ImageDataset {
        channels: 1,
        height: dims[1],
        width: dims[2],
        pixels: pixels.into(),
        labels: labels_vec,
        class_names: (0..num_classes).map(|c| c.to_string()).collect(),
        originals: None,
    })
}

/// Which half of an MNIST-style directory to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// `train-images-idx3-ubyte[.gz]`
    Train,
    /// `t10k-images-idx3-ubyte[.gz]`
    Test,
}

/// Loads `dir/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`.
pub fn load_idx_dir(dir: &Path, split: Split) -> Result<ImageDataset> {
    let prefix = match split {
        Split::Train => "train",
        Split::Test => "t10k",
    };
    let find = |stem: String| -> Result<PathBuf> {
        for name in [format!("{stem}.gz"), stem.clone()] {
            let p = dir.join(&name);
            if p.is_file() {
                return Ok(p);
            }
        }
        Err(Error::Dataset { path: dir.into(), reason: format!("missing {stem}[.gz]") })
    };
    let images = find(format!("{prefix}-images-idx3-ubyte"))?;
    let labels = find(format!("{prefix}-labels-idx1-ubyte"))?;
    load_idx(&images, &labels)
}

// ---------------------------------------------------------------------------------------------------------
// Image folders

/// Loads `root/<class>/**/*.{png,jpg,…}` ([`IMAGE_EXTENSIONS`], torchvision's ImageFolder layout; classes sorted by name), each image
/// decoded and put through [`Preprocessing::prepare`] (as `predict` does); with `keep_originals`, also kept
/// at a capped size for [`RandomResizedCrop`] ([`Preprocessing::original`]). Only one full-size image is
/// decoded at a time.
pub fn load_image_folder(root: &Path, prep: &Preprocessing, keep_originals: bool) -> Result<ImageDataset> {
    prep.validate()?;
    let classes = image_folder_files(root)?;
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    let mut originals = Vec::new();
    for (label, files) in classes.values().enumerate() {
        for path in files {
            let image = decode_image(path)?;
            pixels.extend(prep.prepare(&image, path)?);
            if keep_originals {
                originals.push(Arc::new(prep.original(image)));
            }
            labels.push(label);
        }
    }
    let [height, width] = prep.size;
    Ok(ImageDataset {
        channels: prep.channels,
        height,
        width,
        pixels: pixels.into(),
        labels,
        class_names: classes.into_keys().collect(),
        originals: keep_originals.then_some(originals),
    })
}

/// The class names of an image folder (sorted), after checking its layout as
/// [`load_image_folder`] does, without decoding any image.
pub fn image_folder_classes(root: &Path) -> Result<Vec<String>> {
    Ok(image_folder_files(root)?.into_keys().collect())
}

/// What an image folder holds, listed without decoding anything: the image files of each class (sorted
/// by class name, then path) and how many other files were left out, by extension (`""` for none).
#[derive(Debug, Default)]
pub struct FolderListing {
    /// Each class's image files.
    pub classes: BTreeMap<String, Vec<PathBuf>>,
    /// How many other files, by lower-case extension.
    pub left_out: BTreeMap<String, usize>,
}

impl FolderListing {
    /// "3 classes, 120 images" and, when files were passed over, "; left out 4 files that are not
    /// images (.gif 3, .txt 1)", so that a folder of GIFs does not shrink the dataset unnoticed.
    pub fn describe(&self) -> String {
        let images: usize = self.classes.values().map(Vec::len).sum();
        let mut text = format!("{} classes, {images} images", self.classes.len());
        let skipped: usize = self.left_out.values().sum();
        if skipped > 0 {
            let kinds: Vec<String> = self
                .left_out
                .iter()
                .map(|(ext, n)| if ext.is_empty() { format!("no extension {n}") } else { format!(".{ext} {n}") })
                .collect();
            text.push_str(&format!(
                "; left out {skipped} file(s) without an image extension ({}; read: .{})",
                kinds.join(", "),
                IMAGE_EXTENSIONS.join(" .")
            ));
        }
        text
    }
}

/// The image files of each class of `root/<class>/**/*.{png,jpg,…}` ([`list_image_folder`]).
fn image_folder_files(root: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    Ok(list_image_folder(root)?.classes)
}

/// Lists an image folder: `root/<class>/**/*` with one of [`IMAGE_EXTENSIONS`] (sub-folders included, as
/// torchvision's ImageFolder): at least two classes, none empty. Hidden entries (names starting with
/// `.`: `.ipynb_checkpoints`, macOS's `._photo.jpg`) are left out and not counted.
pub fn list_image_folder(root: &Path) -> Result<FolderListing> {
    let dataset_err = |reason: String| Error::Dataset { path: root.into(), reason };
    let mut listing = FolderListing::default();
    for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
        let entry = entry.map_err(|e| Error::io(root, e))?;
        if !entry.path().is_dir() || is_hidden(&entry.file_name()) {
            continue;
        }
        let class = entry.file_name().to_string_lossy().into_owned();
        if listing.classes.contains_key(&class) {
            return Err(dataset_err(format!(
                "two class folders read as {class}: their names are not UTF-8 and differ only in the bytes that are not; rename them"
            )));
        }
        let mut files = Vec::new();
        class_images(&entry.path(), 1, &mut files, &mut listing.left_out)?;
        files.sort();
        listing.classes.insert(class, files);
    }
    let classes = &listing.classes;
    if classes.is_empty() {
        return Err(dataset_err(format!("no class folders (expected root/<class>/*.{{{}}})", IMAGE_EXTENSIONS.join(","))));
    }
    if classes.len() == 1 {
        let name = classes.keys().next().unwrap();
        return Err(dataset_err(format!("only one class ({name}); a classifier needs at least two")));
    }
    if let Some((name, _)) = classes.iter().find(|(_, files)| files.is_empty()) {
        return Err(dataset_err(format!("class folder {name} has no images (.{})", IMAGE_EXTENSIONS.join(" ."))));
    }
    Ok(listing)
}

/// The file extensions an image folder reads: torchvision's `IMG_EXTENSIONS`, so that a folder its
/// ImageFolder reads is read the same here. Other files (notes, `.gif`, `.csv`) are left out, as there.
pub const IMAGE_EXTENSIONS: [&str; 9] = ["jpg", "jpeg", "png", "ppm", "bmp", "pgm", "tif", "tiff", "webp"];

/// A hidden entry (`.ipynb_checkpoints`, macOS's `._photo.jpg`): not part of an image folder.
fn is_hidden(name: &std::ffi::OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b".")
}

/// The image files under a class folder `dir` (`depth` below the dataset's root), hidden entries left
/// out, other files counted by extension in `left_out`. A link to nothing is listed too (by its name), so
/// that reading it says what is wrong.
fn class_images(dir: &Path, depth: usize, out: &mut Vec<PathBuf>, left_out: &mut BTreeMap<String, usize>) -> Result<()> {
    if depth > crate::cache::dataset::MAX_DATASET_DEPTH {
        return Err(Error::Dataset { path: dir.into(), reason: "nested too deep in the dataset (a symlink loop?)".into() });
    }
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = entry.map_err(|e| Error::io(dir, e))?.path();
        if path.file_name().is_some_and(is_hidden) {
            continue;
        }
        if path.is_dir() {
            class_images(&path, depth + 1, out, left_out)?;
            continue;
        }
        let extension = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        if IMAGE_EXTENSIONS.contains(&extension.as_str()) {
            out.push(path);
        } else {
            *left_out.entry(extension).or_default() += 1;
        }
    }
    Ok(())
}

/// Decodes one image file at its own size and in its own colours: one channel for a grey image, three for a
/// colour one (alpha dropped, as PIL's `convert("RGB")`). [`Preprocessing::prepare`] converts the channels.
pub fn decode_image(path: &Path) -> Result<DecodedImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_image_native(path, &bytes)
}

/// [`decode_image`] on file contents already in memory, converted to `channels` (RGB → grey: BT.601).
/// Returns (pixels CHW, height, width). `path` gives the format (by its extension) and names the image in
/// errors.
pub fn decode_image_bytes(path: &Path, bytes: &[u8], channels: usize) -> Result<(Vec<u8>, usize, usize)> {
    if channels != 1 && channels != 3 {
        return Err(Error::config("channels", format!("must be 1 or 3, got {channels}")));
    }
    let image = decode_image_native(path, bytes)?.with_channels(channels);
    Ok((image.pixels, image.height, image.width))
}

/// The one place images are decoded (dataset loading and `predict`).
fn decode_image_native(path: &Path, bytes: &[u8]) -> Result<DecodedImage> {
    let img = decode_dynamic_image(path, bytes)?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    if !img.color().has_color() {
        return Ok(DecodedImage { channels: 1, height: h, width: w, pixels: img.to_luma8().into_raw() });
    }
    let hwc = img.to_rgb8().into_raw();
    let mut chw = vec![0u8; 3 * h * w];
    for p in 0..h * w {
        for c in 0..3 {
            chw[c * h * w + p] = hwc[p * 3 + c];
        }
    }
    Ok(DecodedImage { channels: 3, height: h, width: w, pixels: chw })
}

/// The format comes from `path`'s extension, as for `image::open`, or from the contents when the extension
/// names none.
fn decode_dynamic_image(path: &Path, bytes: &[u8]) -> Result<image::DynamicImage> {
    let bad = |e: image::ImageError| Error::Image { path: path.into(), reason: e.to_string() };
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes));
    match image::ImageFormat::from_path(path) {
        Ok(format) => reader.set_format(format),
        Err(_) => reader = reader.with_guessed_format().map_err(|e| bad(e.into()))?,
    }
    let image = reader.decode().map_err(bad)?;
    // The decoder fills a cut-off JPEG with grey and says nothing; PIL refuses it ("image file is truncated").
    if !jpeg_reaches_its_end(bytes) {
        return Err(Error::Image {
            path: path.into(),
            reason: "truncated: the JPEG data stops before its end-of-image marker (an interrupted download or copy?)".into(),
        });
    }
    Ok(image)
}

/// Whether a JPEG stream (`bytes` starting with its SOI marker) goes on to its EOI marker: every
/// segment whole, every scan's entropy-coded data followed by a marker. Bytes that are not a JPEG,
/// or that break its layout in other ways, pass: the decoder has judged those already.
fn jpeg_reaches_its_end(bytes: &[u8]) -> bool {
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return true;
    }
    let mut i = 2;
    loop {
        // A marker: 0xFF (fill bytes allowed), then its code.
        match bytes.get(i) {
            None => return false,
            Some(0xFF) => {}
            Some(_) => return true,
        }
        while bytes.get(i) == Some(&0xFF) {
            i += 1;
        }
        let Some(&code) = bytes.get(i) else { return false };
        i += 1;
        match code {
            0xD9 => return true,
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let Some(length) = bytes.get(i..i + 2).map(|b| usize::from(u16::from_be_bytes([b[0], b[1]]))) else { return false };
        i += length;
        if i > bytes.len() {
            return false;
        }
        if code == 0xDA {
            // Entropy-coded data runs to the next marker that is not a stuffed 0xFF00 or a restart.
            loop {
                match bytes.get(i..i + 2) {
                    None => return false,
                    Some([0xFF, next]) if *next != 0x00 && !(0xD0..=0xD7).contains(next) => break,
                    _ => i += 1,
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Normalisation, augmentation, batching

/// Per-channel normalisation applied after scaling pixels to [0, 1].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Subtracted from each channel's [0, 1] value: one value per channel, or a single one for all.
    pub mean: Vec<f32>,
    /// What the difference is then divided by: one value per channel, or a single one for all; positive.
    pub std: Vec<f32>,
}

impl Normalization {
    /// ImageNet statistics, for backbones pretrained on ImageNet.
    pub fn imagenet() -> Self {
        Self { mean: vec![0.485, 0.456, 0.406], std: vec![0.229, 0.224, 0.225] }
    }

    /// (x - 0.5) / 0.5 on every channel: a neutral choice for digits and clothes.
    pub fn centered(channels: usize) -> Self {
        Self { mean: vec![0.5; channels], std: vec![0.5; channels] }
    }

    fn channel(&self, c: usize) -> (f32, f32) {
        // A single value broadcasts over all channels.
        let pick = |v: &Vec<f32>| if v.len() == 1 { v[0] } else { v[c] };
        (pick(&self.mean), pick(&self.std))
    }

    /// Checks that `mean` and `std` each hold one value or `channels` values, that every `mean` is finite
    /// and every `std` positive and finite.
    pub fn validate(&self, channels: usize) -> Result<()> {
        for (name, v) in [("normalization.mean", &self.mean), ("normalization.std", &self.std)] {
            if v.len() != 1 && v.len() != channels {
                return Err(Error::config(name, format!("has {} values for {channels} channels", v.len())));
            }
        }
        if self.std.iter().any(|&s| s <= 0.0 || !s.is_finite()) {
            return Err(Error::config("normalization.std", "values must be positive and finite"));
        }
        if self.mean.iter().any(|m| !m.is_finite()) {
            return Err(Error::config("normalization.mean", "values must be finite"));
        }
        Ok(())
    }
}

/// Training-time augmentation. Off by default (digits must not be flipped). Applied per image in this
/// order: random resized crop, padded random crop, horizontal flip.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Augmentation {
    /// Zero-pad by this many pixels, then crop back to the original size at a random offset.
    #[serde(default)]
    pub crop_padding: usize,
    /// Flip left-right with probability 1/2.
    #[serde(default)]
    pub horizontal_flip: bool,
    /// torchvision's `RandomResizedCrop` from the dataset's [originals](ImageDataset::originals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub random_resized_crop: Option<RandomResizedCrop>,
}

impl Augmentation {
    /// Whether any augmentation is on. When none is, batching draws nothing from the generator.
    pub fn is_active(&self) -> bool {
        self.crop_padding > 0 || self.horizontal_flip || self.random_resized_crop.is_some()
    }

    /// The deterministic variants an image can take, when there are finitely many: the frozen-prefix cache
    /// ([`crate::cache`]) stores the prefix's output of each. `[plain]` without augmentation, `[plain,
    /// flipped]` with horizontal flips alone; `None` (not cacheable) with any random crop, padded or resized.
    pub fn prefix_cacheable(&self) -> Option<Vec<Transform>> {
        if self.crop_padding > 0 || self.random_resized_crop.is_some() {
            return None;
        }
        let flipped = Transform { flip: true, ..Transform::default() };
        Some(if self.horizontal_flip { vec![Transform::default(), flipped] } else { vec![Transform::default()] })
    }

    /// One image's random transform. [`Batcher::batch`] and the prefix cache draw through this, so both
    /// see the same transforms for the same generator.
    /// `original` is the (height, width) a random resized crop samples its window from.
    pub(crate) fn draw(&self, rng: &mut SplitMix64, original: (usize, usize)) -> Transform {
        let mut t = Transform::default();
        if let Some(rrc) = &self.random_resized_crop {
            t.crop = Some(rrc.crop_box(original.0, original.1, rng));
        }
        let p = self.crop_padding;
        if p > 0 {
            t.dy = rng.below(2 * p + 1) as isize - p as isize;
            t.dx = rng.below(2 * p + 1) as isize - p as isize;
        }
        t.flip = self.horizontal_flip && rng.coin();
        t
    }
}

/// What augmentation does to one image: a random resized crop's window (of the original, resized back to
/// the network's size), then a shift by (dy, dx) — pixels shifted in from outside are zero before
/// normalisation, as torchvision's RandomCrop(padding=p) with fill 0 — then a left-right flip.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Transform {
    /// The random resized crop's window of the original, if any.
    pub crop: Option<CropBox>,
    /// Vertical shift: output row y reads source row y + dy (within ±p for `crop_padding` p).
    pub dy: isize,
    /// Horizontal shift: output column x reads source column x + dx (before the flip).
    pub dx: isize,
    /// Mirror left-right, after the shift.
    pub flip: bool,
}

/// A batch on the host, ready to become tensors.
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// `[n, c, h, w]`, normalised.
    pub images: Vec<f32>,
    /// Class of each image.
    pub labels: Vec<i64>,
    /// `[n, c, h, w]` of `images`.
    pub shape: [usize; 4],
}

impl HostBatch {
    /// Images in the batch.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The batch as tensors on `device`; the host buffers move into them, not copied.
    pub fn into_tensors(self, device: &Device) -> (Tensor<4>, Tensor<1, Int>) {
        let len = self.len();
        let images = Tensor::<4>::from_data(TensorData::new(self.images, self.shape), device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(self.labels, [len]), device);
        (images, labels)
    }
}

/// Builds normalised (and, for training, augmented) batches from an [`ImageDataset`].
#[derive(Debug, Clone)]
pub struct Batcher {
    /// Applied to every image after scaling to [0, 1].
    pub normalization: Normalization,
    /// Applied only to batches given a random generator (training ones).
    pub augmentation: Augmentation,
}

impl Batcher {
    /// The images at `indices` as one batch. `rng` drives augmentation; `None` means no augmentation.
    pub fn batch(&self, data: &ImageDataset, indices: &[usize], rng: Option<&mut SplitMix64>) -> HostBatch {
        let mut rng = rng.filter(|_| self.augmentation.is_active());
        self.batch_with(data, indices, |slot| match rng.as_deref_mut() {
            Some(r) => self.augmentation.draw(r, data.original_size(indices[slot])),
            None => Transform::default(),
        })
    }

    /// The images at `indices` as one batch, image `slot` transformed by `transform(slot)`.
    pub fn batch_with(&self, data: &ImageDataset, indices: &[usize], mut transform: impl FnMut(usize) -> Transform) -> HostBatch {
        let (c, h, w) = (data.channels, data.height, data.width);
        let plane = h * w;
        let mut images = vec![0f32; indices.len() * c * plane];
        let mut labels = Vec::with_capacity(indices.len());
        for (slot, &i) in indices.iter().enumerate() {
            labels.push(data.labels[i] as i64);
            let transform = transform(slot);
            let cropped;
            let src: &[u8] = match transform.crop {
                Some(window) => {
                    cropped = data.cropped(i, window);
                    &cropped
                }
                None => data.image(i),
            };
            let Transform { dy, dx, flip, .. } = transform;
            let out = &mut images[slot * c * plane..(slot + 1) * c * plane];
            for ch in 0..c {
                let (mean, std) = self.normalization.channel(ch);
                let zero = (0.0 - mean) / std;
                for y in 0..h {
                    let sy = y as isize + dy;
                    for x in 0..w {
                        let xx = if flip { w - 1 - x } else { x };
                        let sx = xx as isize + dx;
                        out[ch * plane + y * w + x] = if sy < 0 || sx < 0 || sy >= h as isize || sx >= w as isize {
                            zero
                        } else {
                            (src[ch * plane + sy as usize * w + sx as usize] as f32 / 255.0 - mean) / std
                        };
                    }
                }
            }
        }
        HostBatch { images, labels, shape: [indices.len(), c, h, w] }
    }

    /// Batches of `batch_size` over `order` (the last one may be smaller), built on a helper thread while the
    /// caller consumes them, so that batch preparation overlaps with training.
    pub fn for_each_batch<F>(
        &self,
        data: &ImageDataset,
        order: &[usize],
        batch_size: usize,
        mut rng: Option<SplitMix64>,
        mut consume: F,
    ) -> Result<()>
    where
        F: FnMut(usize, HostBatch) -> Result<()>,
    {
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<HostBatch>(2);
            scope.spawn(move || {
                for chunk in order.chunks(batch_size) {
                    if tx.send(self.batch(data, chunk, rng.as_mut())).is_err() {
                        break; // the consumer stopped early
                    }
                }
            });
            for (i, batch) in rx.into_iter().enumerate() {
                consume(i, batch)?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_idx(path: &Path, dims: &[u32], data: &[u8], gzip: bool) {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            bytes.extend(d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        if gzip {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            enc.write_all(&bytes).unwrap();
            bytes = enc.finish().unwrap();
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn normalization_refuses_non_finite_means_and_bad_stds() {
        let ok = Normalization { mean: vec![0.5], std: vec![0.25] };
        assert!(ok.validate(3).is_ok());
        for (bad, field) in [
            (Normalization { mean: vec![f32::NAN], std: vec![1.0] }, "normalization.mean"),
            (Normalization { mean: vec![0.0, f32::INFINITY, 0.0], std: vec![1.0] }, "normalization.mean"),
            (Normalization { mean: vec![0.0], std: vec![0.0] }, "normalization.std"),
            (Normalization { mean: vec![0.0], std: vec![f32::INFINITY] }, "normalization.std"),
            (Normalization { mean: vec![0.0, 0.0], std: vec![1.0] }, "normalization.mean"),
        ] {
            let e = bad.validate(3).unwrap_err().to_string();
            assert!(e.contains(field), "{bad:?}: {e}");
        }
    }

    fn toy(n_per_class: &[usize]) -> ImageDataset {
        let mut labels = Vec::new();
        for (c, &n) in n_per_class.iter().enumerate() {
            labels.extend(std::iter::repeat_n(c, n));
        }
        let pixels = (0..labels.len() * 4).map(|i| (i % 251) as u8).collect();
        ImageDataset {
            channels: 1,
            height: 2,
            width: 2,
            pixels,
            labels,
            class_names: (0..n_per_class.len()).map(|c| c.to_string()).collect(),
            originals: None,
        }
    }

    #[test]
    fn idx_gzip_and_raw_load_the_same_images() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3 * 2 * 2).collect();
        for gzip in [true, false] {
            let (img, lab) = (dir.path().join(format!("i{gzip}")), dir.path().join(format!("l{gzip}")));
            write_idx(&img, &[3, 2, 2], &data, gzip);
            write_idx(&lab, &[3], &[2, 0, 1], gzip);
            let ds = load_idx(&img, &lab).unwrap();
            assert_eq!((ds.len(), ds.height, ds.width, ds.num_classes()), (3, 2, 2, 3));
            assert_eq!(ds.image(1), &[4, 5, 6, 7]);
            assert_eq!(ds.labels, vec![2, 0, 1]);
        }
    }

    #[test]
    fn idx_errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let (img, lab) = (dir.path().join("img"), dir.path().join("lab"));
        write_idx(&img, &[3, 2, 2], &[0; 11], false); // one byte short
        write_idx(&lab, &[3], &[0, 1, 2], false);
        let err = load_idx(&img, &lab).unwrap_err().to_string();
        assert!(err.contains("truncated") && err.contains("img"), "{err}");

        std::fs::write(&img, [0x12, 0x34, 0x56, 0x78, 0, 0]).unwrap();
        let err = load_idx(&img, &lab).unwrap_err().to_string();
        assert!(err.contains("bad magic 12345678"), "{err}");

        write_idx(&img, &[3, 2, 2], &[0; 12], true);
        write_idx(&lab, &[2], &[0, 1], false);
        let err = load_idx(&img, &lab).unwrap_err().to_string();
        assert!(err.contains("3 images") && err.contains("2 labels"), "{err}");

        // A gzip stream cut in half.
        write_idx(&img, &[3, 2, 2], &[7; 12], true);
        let bytes = std::fs::read(&img).unwrap();
        std::fs::write(&img, &bytes[..bytes.len() / 2]).unwrap();
        assert!(load_idx(&img, &lab).unwrap_err().to_string().contains("truncated"));
    }

    /// Crashing inputs of the `idx` fuzz target, in its layout: a 2-byte big-endian length, the image file,
    /// the label file.
    fn fuzz_case(input: &[u8]) -> Result<ImageDataset> {
        let len = u16::from_be_bytes([input[0], input[1]]) as usize;
        let (images, labels) = input[2..].split_at(len);
        load_idx_bytes(Path::new("imgs"), images, Path::new("labs"), labels)
    }

    #[test]
    fn idx_dimensions_that_overflow_or_leave_images_empty_are_errors() {
        // Dimensions [26882, 4849667, 1543532305]: their product overflowed usize (a panic with overflow checks;
        // in release builds a wrapped size that passed the length check).
        let overflow = [
            0x00, 0x1c, 0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x69, 0x02, 0x00, 0x4a, 0x00, 0x03, 0x5c, 0x00, 0x6f, 0x11, 0x60,
            0x18, 0xfe, 0x4f, 0x07, 0xac, 0x12, 0x7a, 0x4d, 0xdb, 0xff, 0xfe, 0x3d, 0x2b, 0x8f, 0xcd, 0x27, 0xea, 0x53, 0x9e,
            0x02, 0xc3, 0xed, 0xd7, 0x36, 0x4c, 0x19, 0x89, 0xa2, 0xbb, 0xa0, 0x00, 0x01, 0x02,
        ];
        let err = fuzz_case(&overflow).unwrap_err().to_string();
        assert!(err.contains("imgs") && err.contains("multiply to more bytes"), "{err}");
        // Three 2×0 images: loaded, then resizing them panicked on `w - 1`.
        let zero_width = [
            0x00, 0x1c, 0x00, 0x00, 0x08, 0x03, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02,
            0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x03,
            0x0b, 0x00, 0x00, 0x08, 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x01, 0x23, 0x00, 0x01, 0x23, 0x02,
        ];
        let err = fuzz_case(&zero_width).unwrap_err().to_string();
        assert!(err.contains("imgs") && err.contains("2×0 pixels"), "{err}");
    }

    #[test]
    fn bundled_fashion_mnist_loads_with_100_per_class() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/fashion_mnist_100");
        let train = load_idx_dir(&dir, Split::Train).unwrap();
        assert_eq!((train.len(), train.height, train.width), (1000, 28, 28));
        assert_eq!(train.class_counts(), vec![100; 10]);
        let test = load_idx_dir(&dir, Split::Test).unwrap();
        assert_eq!(test.len(), 2000);
    }

    #[test]
    fn stratified_split_is_deterministic_and_keeps_class_ratios() {
        let ds = toy(&[10, 20, 30]);
        let (train, val) = ds.stratified_split(0.2, 7).unwrap();
        assert_eq!(val.class_counts(), vec![2, 4, 6]);
        assert_eq!(train.class_counts(), vec![8, 16, 24]);
        let (train2, val2) = ds.stratified_split(0.2, 7).unwrap();
        assert_eq!((train, val.clone()), (train2, val2));
        let (_, val3) = ds.stratified_split(0.2, 8).unwrap();
        assert_ne!(val.pixels, val3.pixels, "another seed picks other images");
        assert!(ds.stratified_split(1.5, 0).is_err());
        // One image per class gives every image to training: refused here, not at the first epoch.
        let e = toy(&[1, 1]).stratified_split(0.2, 0).unwrap_err().to_string();
        assert!(e.contains("val_fraction") && e.contains("leaves no validation image"), "{e}");
    }

    #[test]
    fn per_class_caps_every_class() {
        let ds = toy(&[10, 3, 30]);
        let few = ds.per_class(5, 1).unwrap();
        assert_eq!(few.class_counts(), vec![5, 3, 5]);
        assert_eq!(few, ds.per_class(5, 1).unwrap());
    }

    #[test]
    fn gray_rgb_conversion_and_resize() {
        let ds = toy(&[1, 1]);
        let rgb = ds.converted(3, 2, 2).unwrap();
        assert_eq!(rgb.image(0), &[0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]);
        let gray = rgb.converted(1, 2, 2).unwrap();
        assert_eq!(gray.image(0), ds.image(0));
        // The native size is the identity (IDX data at its own size is used bit for bit).
        assert_eq!(ds.converted(1, 2, 2).unwrap(), ds);
        let big = ds.converted(1, 4, 4).unwrap();
        assert_eq!((big.height, big.width, big.image(0)[0], big.image(0)[15]), (4, 4, 0, 3));
    }

    #[test]
    fn batches_are_normalised_and_augmentation_shifts_and_flips() {
        let ds = ImageDataset {
            channels: 1,
            height: 1,
            width: 3,
            pixels: vec![0, 51, 255].into(),
            labels: vec![1],
            class_names: vec!["a".into(), "b".into()],
            originals: None,
        };
        let plain = Batcher { normalization: Normalization::centered(1), augmentation: Augmentation::default() };
        let b = plain.batch(&ds, &[0], None);
        assert_eq!(b.shape, [1, 1, 1, 3]);
        assert_eq!(b.labels, vec![1]);
        let expect = [-1.0, (0.2 - 0.5) / 0.5, 1.0];
        for (a, e) in b.images.iter().zip(expect) {
            assert!((a - e).abs() < 1e-6);
        }
        let flip = Batcher {
            normalization: Normalization { mean: vec![0.0], std: vec![1.0] },
            augmentation: Augmentation { horizontal_flip: true, ..Augmentation::default() },
        };
        let mut rng = SplitMix64::new(3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            let b = flip.batch(&ds, &[0], Some(&mut rng));
            seen.insert(b.images.iter().map(|v| (v * 255.0).round() as i32).collect::<Vec<_>>());
        }
        assert_eq!(seen.len(), 2, "both orientations appear: {seen:?}");
        assert!(seen.contains(&vec![255, 51, 0]));
        let crop = Batcher {
            normalization: Normalization { mean: vec![0.0], std: vec![1.0] },
            augmentation: Augmentation { crop_padding: 1, ..Augmentation::default() },
        };
        let mut shifted = std::collections::HashSet::new();
        for _ in 0..50 {
            let b = crop.batch(&ds, &[0], Some(&mut rng));
            shifted.insert(b.images.iter().map(|v| (v * 255.0).round() as i32).collect::<Vec<_>>());
        }
        // Height 1: any vertical shift blanks the row; horizontal shifts move it by one pixel.
        assert!(shifted.contains(&vec![51, 255, 0]) && shifted.contains(&vec![0, 0, 51]) && shifted.contains(&vec![0, 0, 0]));
    }

    #[test]
    fn random_resized_crops_come_from_the_originals_and_repeat_with_the_seed() {
        // The prepared image is black; the original (what the crop samples from) is a left-to-right ramp.
        let original =
            DecodedImage { channels: 1, height: 30, width: 40, pixels: (0..1200).map(|p| (p % 40 * 6) as u8).collect() };
        let ds = ImageDataset {
            channels: 1,
            height: 4,
            width: 4,
            pixels: vec![0; 16].into(),
            labels: vec![0],
            class_names: vec!["a".into(), "b".into()],
            originals: Some(vec![Arc::new(original)]),
        };
        let batcher = Batcher {
            normalization: Normalization { mean: vec![0.0], std: vec![1.0] },
            augmentation: Augmentation { random_resized_crop: Some(RandomResizedCrop::default()), ..Augmentation::default() },
        };
        let draw = |seed| {
            let mut rng = SplitMix64::new(seed);
            (0..8).map(|_| batcher.batch(&ds, &[0], Some(&mut rng)).images).collect::<Vec<_>>()
        };
        let crops = draw(5);
        assert_eq!(crops, draw(5), "the same seed gives the same crops");
        assert_ne!(crops, draw(6));
        for crop in &crops {
            assert_eq!(crop.len(), 16);
            assert!(crop.iter().any(|&v| v > 0.0), "sampled from the ramp, not the black prepared image");
            assert!(crop[0] <= crop[3] && crop[12] <= crop[15], "the ramp still rises to the right: {crop:?}");
        }
        // Without an rng (validation), the prepared image as it is.
        assert!(batcher.batch(&ds, &[0], None).images.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn image_folder_loads_sorted_classes_and_reports_bad_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (class, shade) in [("cat", 10u8), ("dog", 200u8)] {
            std::fs::create_dir(root.join(class)).unwrap();
            for i in 0..2 {
                image::RgbImage::from_pixel(5, 4, image::Rgb([shade, shade, shade]))
                    .save(root.join(class).join(format!("{i}.png")))
                    .unwrap();
            }
        }
        let prep = |channels| Preprocessing {
            channels,
            size: [8, 8],
            resize: Resize::center_crop(),
            normalization: Normalization::centered(channels),
        };
        let ds = load_image_folder(root, &prep(3), false).unwrap();
        assert_eq!(ds.class_names, vec!["cat", "dog"]);
        assert_eq!(ds.labels, vec![0, 0, 1, 1]);
        assert_eq!((ds.channels, ds.height, ds.width), (3, 8, 8));
        assert!(ds.image(0).iter().all(|&p| p == 10) && ds.image(3).iter().all(|&p| p == 200));

        std::fs::write(root.join("dog").join("broken.jpg"), b"not a jpeg").unwrap();
        let err = load_image_folder(root, &prep(3), false).unwrap_err().to_string();
        assert!(err.contains("broken.jpg"), "{err}");
        std::fs::remove_file(root.join("dog").join("broken.jpg")).unwrap();

        std::fs::create_dir(root.join("empty")).unwrap();
        let err = load_image_folder(root, &prep(3), false).unwrap_err().to_string();
        assert!(err.contains("empty") && err.contains("no images (.jpg .jpeg .png"), "{err}");

        let single = tempfile::tempdir().unwrap();
        std::fs::create_dir(single.path().join("only")).unwrap();
        let err = load_image_folder(single.path(), &prep(1), false).unwrap_err().to_string();
        assert!(err.contains("only one class"), "{err}");
    }

    #[test]
    fn image_folders_read_sub_folders_leave_hidden_entries_out_and_refuse_cut_off_jpegs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let save = |path: &Path, shade: u8| {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let pattern = |x: u32, y: u32| image::Rgb([shade, (x * 7 + y * 3) as u8, (x * y) as u8]);
            image::RgbImage::from_fn(96, 64, pattern).save(path).unwrap();
        };
        save(&root.join("cat/a.png"), 10);
        save(&root.join("cat/outdoor/b.jpg"), 20); // in a sub-folder: read, as torchvision's ImageFolder
        save(&root.join("dog/c.png"), 200);
        std::fs::write(root.join("cat/._a.jpg"), b"AppleDouble metadata, not an image").unwrap();
        std::fs::create_dir_all(root.join(".ipynb_checkpoints")).unwrap();
        save(&root.join(".thumbs/d.png"), 50);
        save(&root.join("dog/.cache/e.png"), 60);
        let files = image_folder_files(root).unwrap();
        let names = |class: &str| -> Vec<String> {
            files[class].iter().map(|p| p.strip_prefix(root.join(class)).unwrap().display().to_string()).collect()
        };
        assert_eq!(files.keys().collect::<Vec<_>>(), ["cat", "dog"]);
        assert_eq!((names("cat"), names("dog")), (vec!["a.png".to_string(), "outdoor/b.jpg".into()], vec!["c.png".to_string()]));

        // A JPEG cut short decodes (the decoder fills the rest with grey) but is refused.
        let whole = std::fs::read(root.join("cat/outdoor/b.jpg")).unwrap();
        assert!(decode_image(&root.join("cat/outdoor/b.jpg")).is_ok());
        for keep in [whole.len() - 2, whole.len() * 3 / 4] {
            let cut = root.join("cut.jpg");
            std::fs::write(&cut, &whole[..keep]).unwrap();
            let err = decode_image(&cut).unwrap_err().to_string();
            assert!(err.contains("cut.jpg") && err.contains("truncated"), "{keep} bytes: {err}");
        }
        // Bytes after the end-of-image marker (a phone's appended metadata) are fine.
        let trailing = root.join("trailing.jpg");
        std::fs::write(&trailing, [&whole[..], b"appended by a phone"].concat()).unwrap();
        assert!(decode_image(&trailing).is_ok());
    }

    #[test]
    fn image_folders_read_every_format_torchvision_reads_and_count_the_files_they_leave_out() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let pattern = |x: u32, y: u32| image::Rgb([(x * 9) as u8, (y * 5) as u8, (x * y) as u8]);
        let photo = image::RgbImage::from_fn(24, 16, pattern);
        for name in ["a.bmp", "b.TIF", "c.tiff", "d.webp", "e.ppm"] {
            std::fs::create_dir_all(root.join("cat")).unwrap();
            photo.save(root.join("cat").join(name)).unwrap();
        }
        std::fs::create_dir_all(root.join("dog")).unwrap();
        image::GrayImage::from_fn(24, 16, |x, _| image::Luma([x as u8 * 10])).save(root.join("dog/f.pgm")).unwrap();
        photo.save(root.join("dog/g.png")).unwrap();
        for other in ["dog/h.gif", "dog/i.gif", "cat/notes.txt", "cat/README"] {
            std::fs::write(root.join(other), b"not read").unwrap();
        }
        let listing = list_image_folder(root).unwrap();
        assert_eq!(listing.classes.values().map(Vec::len).collect::<Vec<_>>(), [5, 2]);
        assert_eq!(listing.left_out, BTreeMap::from([("".to_string(), 1), ("gif".into(), 2), ("txt".into(), 1)]));
        let text = listing.describe();
        assert!(text.starts_with("2 classes, 7 images; left out 4 file(s)") && text.contains(".gif 2"), "{text}");
        // Every one of them decodes to the pixels written (lossless formats).
        for path in &listing.classes["cat"] {
            let image = decode_image(path).unwrap();
            assert_eq!((image.channels, image.height, image.width), (3, 16, 24), "{}", path.display());
            assert_eq!(image.pixels[..24], (0..24).map(|x| (x * 9) as u8).collect::<Vec<_>>()[..], "{}", path.display());
        }
        let prep =
            Preprocessing { channels: 3, size: [8, 8], resize: Resize::center_crop(), normalization: Normalization::centered(3) };
        assert_eq!(load_image_folder(root, &prep, false).unwrap().labels, [0, 0, 0, 0, 0, 1, 1]);
        // A class of GIFs only is empty, and the error says which files would be read.
        std::fs::create_dir_all(root.join("bird")).unwrap();
        std::fs::write(root.join("bird/j.gif"), b"GIF89a").unwrap();
        let err = list_image_folder(root).unwrap_err().to_string();
        assert!(err.contains("bird has no images (.jpg .jpeg .png .ppm .bmp .pgm .tif .tiff .webp)"), "{err}");
    }
}

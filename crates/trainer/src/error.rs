//! The trainer's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading data, building a model, importing weights or training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file or directory could not be read, listed or written.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// An IDX file is malformed: bad magic, wrong rank, truncated, a corrupt gzip stream, or dimensions that
    /// overflow or leave images empty.
    #[error("{path}: bad IDX file: {reason}")]
    Idx {
        /// The IDX file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// An IDX image file and its label file disagree on the number of items.
    #[error("{images} has {image_count} images but {labels} has {label_count} labels")]
    LabelCountMismatch {
        /// The image file.
        images: PathBuf,
        /// Images in it.
        image_count: usize,
        /// The label file.
        labels: PathBuf,
        /// Labels in it.
        label_count: usize,
    },
    /// An image could not be decoded, or is too elongated to resize.
    #[error("cannot decode image {path}: {reason}")]
    Image {
        /// The image file.
        path: PathBuf,
        /// The decoder's error, or why the image was refused.
        reason: String,
    },
    /// A dataset is unusable as a whole: missing IDX files, no images, fewer than two classes, an empty class
    /// folder, or a dataset-cache entry whose labels or shape do not fit its images.
    #[error("dataset {path}: {reason}")]
    Dataset {
        /// The dataset directory (the cache directory, for a cache entry).
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A configuration value is missing, unknown, of the wrong type or out of range.
    #[error("invalid {field}: {reason}")]
    InvalidConfig {
        /// The key at fault as the user wrote it (`epochs`, `cache.max_size`, or a misspelt key itself);
        /// empty when the whole section is wrong.
        field: String,
        /// What is wrong and, where it helps, the valid values.
        reason: String,
    },
    /// Weights or a model.json could not be read, written or applied: a missing file, an unknown format,
    /// keys or shapes that do not fit the model.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The weight file or model.json.
        path: PathBuf,
        /// What went wrong; for a misfit, the missing, unexpected and mis-shaped keys.
        reason: String,
    },
    /// The training loss became NaN or infinite.
    #[error("training diverged at epoch {epoch} (by batch {batch}): loss is {loss}")]
    Diverged {
        /// The epoch, 1-based.
        epoch: usize,
        /// The 0-based batch by which the loss had diverged: the last of the window of steps whose summed
        /// loss was read back (losses are read every few steps, not every step).
        batch: usize,
        /// The non-finite value read: the window's batch-size-weighted loss sum.
        loss: f32,
    },
    /// Tensor data could not be read back from the device or converted.
    #[error("tensor data: {0}")]
    Tensor(String),
    /// The device (GPU, or host for the CPU backend) could not allocate memory: the batch, the
    /// image size or the model is too big for it. `nightshift trial` reports it as
    /// `{"error": {"kind": "oom", …}}` and exits with its own code.
    #[error("out of memory on the device: {0}")]
    OutOfMemory(String),
}

/// Whether an error text from a backend (burn, cubecl, CUDA, wgpu/Vulkan, PyTorch) says the
/// device ran out of memory: "out of memory", "out-of-memory", `OutOfMemory`,
/// `CUDA_ERROR_OUT_OF_MEMORY`, `ERROR_OUT_OF_DEVICE_MEMORY`, "out of device memory".
pub fn is_out_of_memory(text: &str) -> bool {
    let squeezed: String = text.chars().filter(|c| c.is_ascii_alphanumeric()).map(|c| c.to_ascii_lowercase()).collect();
    squeezed.contains("outofmemory") || squeezed.contains("outofdevicememory")
}

/// Result alias used across the crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn config(field: &str, reason: impl Into<String>) -> Self {
        Error::InvalidConfig { field: field.to_string(), reason: reason.into() }
    }

    /// A failed read back from the device: [`Error::OutOfMemory`] when it says so.
    pub(crate) fn device(e: impl std::fmt::Display) -> Self {
        let text = e.to_string();
        if is_out_of_memory(&text) { Error::OutOfMemory(first_line(&text)) } else { Error::Tensor(text) }
    }
}

/// The first non-empty line (backend errors append backtraces).
fn first_line(text: &str) -> String {
    let lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    // "An error happened during execution / Caused by: / <reason>": the reason says more.
    let mut useful = lines.filter(|l| !l.ends_with(':') && !l.starts_with("An error happened"));
    useful.next().unwrap_or(text.trim()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_recognised_in_every_backends_words() {
        for text in [
            "An out-of-memory error happened during launch\nCaused by:\n  no room",
            "out of device memory allocating 2147483648 bytes",
            "DriverError(CUDA_ERROR_OUT_OF_MEMORY, \"out of memory\")",
            "Vulkan: ERROR_OUT_OF_DEVICE_MEMORY",
            "OutOfMemory { reason: \"x\" }",
            "CUDA out of memory. Tried to allocate 2.00 GiB",
        ] {
            assert!(is_out_of_memory(text), "{text}");
            assert!(matches!(Error::device(text), Error::OutOfMemory(_)), "{text}");
        }
        for text in ["device lost", "illegal memory access", "memory layout mismatch", "out of range"] {
            assert!(!is_out_of_memory(text), "{text}");
            assert!(matches!(Error::device(text), Error::Tensor(_)), "{text}");
        }
        let e = Error::device(
            "An error happened during execution\nCaused by:\n  out of device memory allocating 8 bytes\nbacktrace…",
        );
        assert_eq!(e.to_string(), "out of memory on the device: out of device memory allocating 8 bytes");
    }
}

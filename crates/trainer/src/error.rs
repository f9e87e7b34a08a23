//! The trainer's error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading data, building a model, importing weights or training.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: bad IDX file: {reason}")]
    Idx { path: PathBuf, reason: String },
    #[error("{images} has {image_count} images but {labels} has {label_count} labels")]
    LabelCountMismatch { images: PathBuf, image_count: usize, labels: PathBuf, label_count: usize },
    #[error("cannot decode image {path}: {reason}")]
    Image { path: PathBuf, reason: String },
    #[error("dataset {path}: {reason}")]
    Dataset { path: PathBuf, reason: String },
    #[error("invalid {field}: {reason}")]
    InvalidConfig { field: String, reason: String },
    #[error("checkpoint {path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },
    #[error("training diverged at epoch {epoch} (by batch {batch}): loss is {loss}")]
    Diverged { epoch: usize, batch: usize, loss: f32 },
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

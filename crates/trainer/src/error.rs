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
}

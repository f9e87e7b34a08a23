//! The report crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while rendering or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// plotters failed to draw a chart (for example a backend error); names the chart file.
    #[error("drawing chart {chart}: {message}")]
    Chart {
        /// The chart's file name.
        chart: String,
        /// plotters' error, in words.
        message: String,
    },
    /// The PNG encoder failed.
    #[error("encoding {chart} as PNG: {source}")]
    Png {
        /// The chart's file name.
        chart: String,
        /// The encoder's error.
        #[source]
        source: png::EncodingError,
    },
    /// trials.json could not be serialised.
    #[error("serialising trials.json: {0}")]
    Json(#[from] serde_json::Error),
    /// Creating the output directory or writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The directory or file concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// A result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

use std::path::PathBuf;

/// Everything that can go wrong while rendering or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// plotters failed to draw a chart (for example a backend error); names the chart file.
    #[error("drawing chart {chart}: {message}")]
    Chart { chart: String, message: String },
    /// The PNG encoder failed.
    #[error("encoding {chart} as PNG: {source}")]
    Png {
        chart: String,
        #[source]
        source: png::EncodingError,
    },
    /// trials.json could not be serialised.
    #[error("serialising trials.json: {0}")]
    Json(#[from] serde_json::Error),
    /// Creating the output directory or writing a file failed.
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

//! Caches that let trials share work: the frozen-prefix cache and the dataset cache.
//!
//! # Layout
//!
//! - [`file`](mod@file): the one on-disk format both caches use (a header with the full key and checksums, then a
//!   payload that readers memory-map), atomic writes (temporary file in the same directory + rename), a
//!   lock file per entry being built, and least-recently-used eviction under a size cap ([`CacheDir`]).
//! - [`prefix`]: the frozen-prefix cache. When an epoch freezes the stem and the first k stages (frozen
//!   BatchNorm normalises with its running statistics, so the prefix is a pure function of the image) and
//!   augmentation has finitely many variants ([`crate::Augmentation::prefix_cacheable`]), the prefix's
//!   output is computed once per image and variant and reused by every such epoch and by later trials with
//!   the same key. The linear probe caches pooled features; only the head then runs.
//! - [`dataset`]: the dataset cache: images decoded, converted and resized once per sweep, shared by all
//!   trials through one memory-mapped file.
//!
//! Keys are text ([`prefix_key`], [`dataset_key`]) built in one place each from the things the cached
//! values depend on; [`preprocessing`] describes the image pipeline, so a change to it is one edit there.
//! A file's name is a hash of its key and its header holds the key itself: a file whose header, key,
//! length or checksum does not match is refused and rebuilt, never trusted.
//!
//! # Example
//!
//! ```no_run
//! use nightshift_trainer::cache::{CacheConfig, CacheSettings};
//!
//! // What `nightshift trial` does with `trial.cache` and `NIGHTSHIFT_CACHE_DIR`.
//! let config = CacheConfig::from_value(&serde_json::json!({"max_size": "2GiB"})).unwrap();
//! assert_eq!(config.max_bytes, 2 << 30);
//! let settings = CacheSettings::new(config, Some("reports/study/cache".into()));
//! assert!(settings.enabled);
//! ```

pub mod dataset;
pub mod file;
pub mod prefix;

use std::path::PathBuf;

use serde_json::Value;

use crate::data::{Normalization, Transform};
use crate::error::{Error, Result};
use crate::preprocess::Resize;

pub use dataset::DatasetCacheReport;
pub use file::CacheDir;
pub use prefix::PrefixCacheReport;

/// The default size cap of a cache directory: 4 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// A spec's `trial.cache`: `false` turns both caches off; `true` (the default) or `{max_size: "4GiB"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// Whether the caches are used at all (`cache: false` turns them off).
    pub enabled: bool,
    /// Cap on the cache directory's size; least recently used entries are evicted beyond it.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { enabled: true, max_bytes: DEFAULT_MAX_BYTES }
    }
}

impl CacheConfig {
    /// Reads `cache:`'s value: a boolean, or a mapping with `max_size` (e.g. `"512MiB"`, `"2GiB"`, or bytes).
    pub fn from_value(value: &Value) -> Result<Self> {
        match value {
            Value::Bool(enabled) => Ok(Self { enabled: *enabled, ..Self::default() }),
            Value::Object(map) => {
                if let Some(other) = map.keys().find(|k| *k != "max_size") {
                    return Err(Error::config(
                        &format!("cache.{other}"),
                        format!("unknown key `{other}` (valid: max_size, e.g. cache: {{max_size: \"4GiB\"}})"),
                    ));
                }
                let max_bytes = match map.get("max_size") {
                    Some(size) => parse_size(size).map_err(|reason| Error::config("cache.max_size", reason))?,
                    None => DEFAULT_MAX_BYTES,
                };
                Ok(Self { enabled: true, max_bytes })
            }
            other => Err(Error::config("cache", format!("expected true, false or {{max_size: \"4GiB\"}}, found {other}"))),
        }
    }

    /// The value [`from_value`](Self::from_value) reads back; `None` for the default.
    pub fn to_value(&self) -> Option<Value> {
        if !self.enabled {
            Some(Value::Bool(false))
        } else if self.max_bytes != DEFAULT_MAX_BYTES {
            Some(serde_json::json!({"max_size": format_size(self.max_bytes)}))
        } else {
            None
        }
    }
}

/// Parses a size: bytes as a whole number, or a number and a unit — `B`, `KiB`, `MiB`, `GiB`, `TiB` (powers of
/// 1024) or `KB`, `MB`, `GB`, `TB` (powers of 1000) — such as `"512MiB"`, `"1.5 GiB"`. Must be positive.
pub fn parse_size(value: &Value) -> std::result::Result<u64, String> {
    const VALID: &str =
        "a positive size such as \"512MiB\", \"4GiB\" or a number of bytes (units: B, KiB, MiB, GiB, TiB, KB, MB, GB, TB)";
    let bytes = match value {
        Value::Number(n) => n.as_f64().ok_or_else(|| format!("{n} is not {VALID}"))?,
        Value::String(text) => {
            let text = text.trim();
            let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(text.len());
            let (number, unit) = text.split_at(split);
            let number: f64 = number.parse().map_err(|_| format!("`{text}` is not {VALID}"))?;
            let scale: f64 = match unit.trim() {
                "" | "B" => 1.0,
                "KiB" => 1024.0,
                "MiB" => 1024f64.powi(2),
                "GiB" => 1024f64.powi(3),
                "TiB" => 1024f64.powi(4),
                "KB" | "kB" => 1e3,
                "MB" => 1e6,
                "GB" => 1e9,
                "TB" => 1e12,
                other => return Err(format!("unknown unit `{other}` in `{text}`: expected {VALID}")),
            };
            number * scale
        }
        other => return Err(format!("found {other}, expected {VALID}")),
    };
    if !(bytes >= 1.0 && bytes.is_finite() && bytes < u64::MAX as f64) {
        return Err(format!("{value} is not {VALID} (to turn the caches off, write cache: false)"));
    }
    Ok(bytes as u64)
}

/// A size as [`parse_size`] reads it, in the largest binary unit that divides it (`4GiB`, `1536MiB`).
pub fn format_size(bytes: u64) -> String {
    for (unit, scale) in [("TiB", 1u64 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    format!("{bytes}B")
}

/// A size for people: `512 B`, `320.0 MiB`, `1.50 GiB`.
pub fn human_size(bytes: u64) -> String {
    let b = bytes as f64;
    match bytes {
        0..1024 => format!("{bytes} B"),
        1024..1_048_576 => format!("{:.1} KiB", b / 1024.0),
        1_048_576..1_073_741_824 => format!("{:.1} MiB", b / 1_048_576.0),
        _ => format!("{:.2} GiB", b / 1_073_741_824.0),
    }
}

/// What one trial does with the caches: [`CacheConfig`] plus the shared directory, if any.
///
/// Without a directory the frozen-prefix cache still serves epochs 2…N of the trial (in memory) and the
/// dataset cache does nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheSettings {
    /// Whether the caches are used at all.
    pub enabled: bool,
    /// Cap on the shared directory's size, in bytes; the prefix cache also skips a depth whose entries
    /// would not fit under it, even in memory.
    pub max_bytes: u64,
    /// `reports/<study>/cache` in a sweep (`NIGHTSHIFT_CACHE_DIR`, or `nightshift trial --cache-dir`).
    pub dir: Option<PathBuf>,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self::new(CacheConfig::default(), None)
    }
}

impl CacheSettings {
    /// `config` with the shared directory `dir`, which is dropped when the caches are off.
    pub fn new(config: CacheConfig, dir: Option<PathBuf>) -> Self {
        Self { enabled: config.enabled, max_bytes: config.max_bytes, dir: dir.filter(|_| config.enabled) }
    }

    /// Both caches off.
    pub fn off() -> Self {
        Self::new(CacheConfig { enabled: false, ..CacheConfig::default() }, None)
    }

    /// The shared directory, when there is one and the caches are on.
    pub fn store(&self) -> Option<CacheDir> {
        self.dir.as_ref().filter(|_| self.enabled).map(|dir| CacheDir::new(dir.clone(), self.max_bytes))
    }
}

/// Bump when the way pixels become network inputs changes (resizing, grey conversion, cropping), so that
/// entries made by the old pipeline are never read as the new one's.
pub const PIPELINE_VERSION: u32 = 2;

/// How an image becomes the network's input, as text for cache keys: the pipeline version, the
/// normalisation, and the augmentation variant. The one function to extend when preprocessing gains a field.
pub fn preprocessing(normalization: &Normalization, variant: Option<Transform>) -> String {
    let variant = match variant {
        None => String::new(),
        Some(t) => format!(" variant=dy{}dx{}{}", t.dy, t.dx, if t.flip { "flip" } else { "" }),
    };
    format!("pipeline=v{PIPELINE_VERSION} mean={:?} std={:?}{variant}", normalization.mean, normalization.std)
}

/// The key of one frozen-prefix entry: what the prefix's output on one dataset depends on.
pub fn prefix_key(arch: &str, k: usize, params: &str, data: &str, preprocessing: &str) -> String {
    format!("prefix v1 | arch={arch} | k={k} | params={params} | data={data} | {preprocessing}")
}

/// The key of one dataset entry: the files' contents and how they were decoded and resized.
pub fn dataset_key(content: &str, channels: usize, size: [usize; 2], resize: Resize, role: &str) -> String {
    format!(
        "dataset v1 | content={content} | {role} | channels={channels} | size={}x{} | resize={resize:?} | \
         pipeline=v{PIPELINE_VERSION}",
        size[0], size[1]
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_parse_in_binary_and_decimal_units() {
        assert_eq!(parse_size(&json!("512MiB")), Ok(512 << 20));
        assert_eq!(parse_size(&json!("2GiB")), Ok(2 << 30));
        assert_eq!(parse_size(&json!("1.5 GiB")), Ok(3 << 29));
        assert_eq!(parse_size(&json!("10MB")), Ok(10_000_000));
        assert_eq!(parse_size(&json!(4096)), Ok(4096));
        for bad in [json!("0"), json!("-1GiB"), json!("4 gigs"), json!("GiB"), json!(true), json!(0)] {
            let reason = parse_size(&bad).unwrap_err();
            assert!(reason.contains("512MiB") || reason.contains("unknown unit"), "{bad}: {reason}");
        }
        for bytes in [4 << 30, 1536 << 20, 1000] {
            assert_eq!(parse_size(&json!(format_size(bytes))), Ok(bytes));
        }
    }

    #[test]
    fn cache_values_read_and_write_back() {
        assert_eq!(CacheConfig::from_value(&json!(true)).unwrap(), CacheConfig::default());
        assert!(!CacheConfig::from_value(&json!(false)).unwrap().enabled);
        let two = CacheConfig::from_value(&json!({"max_size": "2GiB"})).unwrap();
        assert_eq!((two.enabled, two.max_bytes), (true, 2 << 30));
        for config in [CacheConfig::default(), two, CacheConfig { enabled: false, ..two }] {
            let value = config.to_value().unwrap_or(json!(true));
            let back = CacheConfig::from_value(&value).unwrap();
            assert_eq!(back.enabled, config.enabled);
            if config.enabled {
                assert_eq!(back, config);
            }
        }
        let err = CacheConfig::from_value(&json!({"max_size": "lots"})).unwrap_err().to_string();
        assert!(err.contains("cache.max_size") && err.contains("512MiB"), "{err}");
        let err = CacheConfig::from_value(&json!({"maxsize": "1GiB"})).unwrap_err().to_string();
        assert!(err.contains("cache.maxsize") && err.contains("valid: max_size"), "{err}");
        assert!(CacheConfig::from_value(&json!("yes")).unwrap_err().to_string().contains("expected true, false"));
    }
}

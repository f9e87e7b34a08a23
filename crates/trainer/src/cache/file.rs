//! The cache file format, shared by the frozen-prefix and the dataset caches, and the directory that holds
//! the files ([`CacheDir`]): atomic writes, one builder per missing entry, least-recently-used eviction.
//!
//! A file is laid out as
//!
//! ```text
//! "NSCACHE1" | header length (u32 LE) | header (JSON) | xxh3-64 of the header (u64 LE) | zeros to a multiple of 64 | payload
//! ```
//!
//! The header ([`Header`]) holds the entry's full key, the payload's element type, shape, length and
//! xxh3-64 checksum. A reader checks all of them before it uses a byte; any mismatch (a truncated file, a
//! flipped bit, another key whose name hash collided) makes the entry *invalid*: it is removed and built
//! again. Payloads are memory-mapped, so trials that read the same entry share one copy in the page cache.
//!
//! Writers never touch a file in place: they write a temporary file in the same directory and rename it
//! over the entry's name, so a reader sees the old file or the complete new one, never a half-written one.
//! (Without an fsync a machine crash can leave a zero-filled entry behind; its checksum refuses it.)
//! While an entry is built its lock file (`<name>.lock`, created exclusively, holding the builder's pid and
//! host name) tells other trials to wait for it rather than compute the same thing; a lock whose process is
//! gone (checked through `/proc`, and only for a lock of this host: on a cache directory shared between
//! machines another host's pid means nothing here) or older than [`STALE_LOCK`] is taken over, and a waiter
//! that has waited
//! [`MAX_WAIT`] builds its own copy — duplicated work at worst, never a corrupt read.
//!
//! Least recently used: every use of an entry sets its modification time to now (access times are
//! unreliable under `relatime`/`noatime`); after each write the directory's oldest entries are removed
//! until the total is under the cap. Removing a file another trial has mapped is safe on Unix: its mapping
//! stays valid until it is dropped.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use xxhash_rust::xxh3::{xxh3_64, xxh3_128};

use crate::error::{Error, Result};

/// The first bytes of every cache file.
pub const MAGIC: &[u8; 8] = b"NSCACHE1";
/// File extension of cache entries.
pub const EXTENSION: &str = "nsc";
/// Payloads start at a multiple of this (f32 rows are aligned in the mapping).
const ALIGN: usize = 64;
/// A lock older than this is abandoned, whatever its pid says.
pub const STALE_LOCK: Duration = Duration::from_secs(2 * 3600);
/// How long a trial waits for another to build an entry before it builds its own copy.
pub const MAX_WAIT: Duration = Duration::from_secs(30 * 60);
const POLL: Duration = Duration::from_millis(100);

/// Element type of a payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    /// Little-endian `f32`.
    F32,
    /// Bytes (the dataset cache's pixels).
    U8,
}

impl Dtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F32 => 4,
            Dtype::U8 => 1,
        }
    }
}

/// What a cache file says about its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// The entry's full key (the file name is only its hash).
    pub key: String,
    /// Element type of the payload.
    pub dtype: Dtype,
    /// Shape of the payload, in elements.
    pub shape: Vec<usize>,
    /// Payload length in bytes: the shape's product times the element size.
    pub payload_len: u64,
    /// xxh3-64 of the payload.
    pub checksum: u64,
    /// Anything else the cache needs back (the dataset cache's labels and class names).
    #[serde(default)]
    pub extra: Value,
}

/// What a builder produces: a payload and its description.
#[derive(Debug, Clone, PartialEq)]
pub struct Blob {
    /// Element type of `bytes`.
    pub dtype: Dtype,
    /// Shape in elements; its product times the element size must be `bytes.len()`.
    pub shape: Vec<usize>,
    /// Stored as the header's [`extra`](Header::extra).
    pub extra: Value,
    /// The payload.
    pub bytes: Vec<u8>,
}

impl Blob {
    /// Rows of `f32` values, stored little-endian.
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self { dtype: Dtype::F32, shape, extra: Value::Null, bytes }
    }

    fn header(&self, key: &str) -> Header {
        Header {
            key: key.to_string(),
            dtype: self.dtype,
            shape: self.shape.clone(),
            payload_len: self.bytes.len() as u64,
            checksum: xxh3_64(&self.bytes),
            extra: self.extra.clone(),
        }
    }
}

/// A checked entry: its header and payload, memory-mapped from its file or held in memory.
#[derive(Debug)]
pub struct Payload {
    header: Header,
    bytes: Bytes,
}

#[derive(Debug)]
enum Bytes {
    Mapped { map: Mmap, start: usize },
    Owned(Vec<u8>),
}

impl Payload {
    /// A payload that lives only in this process (no cache directory, or larger than the cap).
    pub fn in_memory(key: &str, blob: Blob) -> Self {
        Self { header: blob.header(key), bytes: Bytes::Owned(blob.bytes) }
    }

    /// The header, as checked against the key and the payload.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The payload, `header().payload_len` bytes.
    pub fn bytes(&self) -> &[u8] {
        match &self.bytes {
            Bytes::Mapped { map, start } => &map[*start..*start + self.header.payload_len as usize],
            Bytes::Owned(bytes) => bytes,
        }
    }

    /// Whether the payload is a shared memory mapping (rather than this process's own copy).
    pub fn is_mapped(&self) -> bool {
        matches!(self.bytes, Bytes::Mapped { .. })
    }

    /// Elements per row (the product of the shape after the first dimension).
    pub fn row_len(&self) -> usize {
        self.header.shape.iter().skip(1).product()
    }

    /// Appends row `index` of an `f32` payload to `out`.
    pub fn extend_f32_row(&self, index: usize, out: &mut Vec<f32>) {
        let n = self.row_len() * 4;
        let row = &self.bytes()[index * n..(index + 1) * n];
        out.extend(row.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])));
    }
}

/// The result of looking for an entry on disk.
#[derive(Debug)]
pub enum Opened {
    /// Every check passed.
    Valid(Payload),
    /// No file at that path.
    Missing,
    /// The file exists but must not be trusted; the reason says why.
    Invalid(String),
}

/// Opens and checks the entry at `path` for `key`.
pub fn open(path: &Path, key: &str) -> Opened {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Opened::Missing,
        Err(e) => return Opened::Invalid(format!("cannot open: {e}")),
    };
    match file.metadata() {
        Ok(m) if m.len() >= 12 => {}
        Ok(m) => return Opened::Invalid(format!("truncated: {} bytes", m.len())),
        Err(e) => return Opened::Invalid(format!("cannot stat: {e}")),
    }
    // SAFETY: entries are replaced by rename and removed by unlink, never modified in place, so the mapped
    // file does not change while mapped (unless someone edits the cache by hand).
    let map = match unsafe { Mmap::map(&file) } {
        Ok(map) => map,
        Err(e) => return Opened::Invalid(format!("cannot map: {e}")),
    };
    match check(&map, key) {
        Ok((header, start)) => Opened::Valid(Payload { header, bytes: Bytes::Mapped { map, start } }),
        Err(reason) => Opened::Invalid(reason),
    }
}

/// Checks a whole file's bytes against `key`: the header and where the payload starts, or why not.
fn check(bytes: &[u8], key: &str) -> std::result::Result<(Header, usize), String> {
    if bytes.len() < 12 || &bytes[..8] != MAGIC {
        return Err("not a nightshift cache file (bad magic)".into());
    }
    let header_len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    let header_end = 12 + header_len;
    if bytes.len() < header_end + 8 {
        return Err(format!("truncated header: {} bytes", bytes.len()));
    }
    let header_bytes = &bytes[12..header_end];
    let stored = u64::from_le_bytes(bytes[header_end..header_end + 8].try_into().unwrap_or_default());
    if xxh3_64(header_bytes) != stored {
        return Err("header checksum mismatch".into());
    }
    let header: Header = serde_json::from_slice(header_bytes).map_err(|e| format!("unreadable header: {e}"))?;
    if header.key != key {
        return Err(format!("key mismatch: the file holds {:?}", header.key));
    }
    let start = (header_end + 8).next_multiple_of(ALIGN);
    // Checked: a hand-edited header with a fresh checksum must be refused, not overflow.
    let bytes_of_shape = header.shape.iter().try_fold(header.dtype.size() as u64, |n, &d| n.checked_mul(d as u64));
    if bytes_of_shape != Some(header.payload_len) {
        return Err(format!("shape {:?} does not match a payload of {} bytes", header.shape, header.payload_len));
    }
    let expected = start as u64 + header.payload_len;
    if bytes.len() as u64 != expected {
        return Err(format!("truncated or padded: {} bytes, expected {expected}", bytes.len()));
    }
    if xxh3_64(&bytes[start..]) != header.checksum {
        return Err("payload checksum mismatch".into());
    }
    Ok((header, start))
}

/// Writes an entry atomically: a temporary file in `path`'s directory, renamed over `path`.
pub fn write_atomic(path: &Path, key: &str, blob: &Blob) -> std::io::Result<()> {
    let header = serde_json::to_vec(&blob.header(key)).map_err(std::io::Error::other)?;
    let mut prelude = Vec::with_capacity(header.len() + 20 + ALIGN);
    prelude.extend_from_slice(MAGIC);
    prelude.extend_from_slice(&(header.len() as u32).to_le_bytes());
    prelude.extend_from_slice(&header);
    prelude.extend_from_slice(&xxh3_64(&header).to_le_bytes());
    prelude.resize(prelude.len().next_multiple_of(ALIGN), 0);
    let tmp = temp_path(path);
    let written = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(&prelude)?;
        file.write_all(&blob.bytes)?;
        file.flush()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// `.<name>.<pid>.<nanos>.tmp` next to `path`: unique per writer, and never taken for an entry.
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
    let thread = format!("{:?}", std::thread::current().id()).replace(|c: char| !c.is_ascii_alphanumeric(), "");
    path.with_file_name(format!(".{name}.{}.{thread}.{nanos}.tmp", std::process::id()))
}

/// Marks an entry as just used, for least-recently-used eviction.
fn touch(path: &Path) {
    if let Ok(file) = OpenOptions::new().write(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// How [`CacheDir::get_or_build`] got its entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Found valid on disk (possibly just built by another trial this one waited for).
    Hit,
    /// Computed by this trial. `refused` says why an existing file was not trusted; `stored` is false when
    /// the entry alone is larger than the cap, so it lives in memory only.
    Built {
        /// Why an existing file was refused, if one was.
        refused: Option<String>,
        /// Whether the payload is the stored, mapped file; false when it lives in memory only (larger than
        /// the cap, or evicted or replaced before it was read back).
        stored: bool,
    },
}

/// A lock file held while this process builds an entry; removed when dropped.
struct BuildLock(PathBuf);

impl Drop for BuildLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

enum LockState {
    Acquired(BuildLock),
    Busy,
    Stale,
}

fn try_lock(lock: &Path) -> std::io::Result<LockState> {
    match OpenOptions::new().write(true).create_new(true).open(lock) {
        Ok(mut file) => {
            let guard = BuildLock(lock.to_path_buf());
            writeln!(file, "{} {}", std::process::id(), this_host().unwrap_or_default())?;
            Ok(LockState::Acquired(guard))
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            Ok(if lock_is_stale(lock) { LockState::Stale } else { LockState::Busy })
        }
        Err(e) => Err(e),
    }
}

/// A lock is stale when it is older than [`STALE_LOCK`] or, where `/proc` shows processes, it was taken on
/// this host and its pid is gone. A lock without a host name (written before locks carried one) counts as
/// this host's.
fn lock_is_stale(lock: &Path) -> bool {
    let age = std::fs::metadata(lock).and_then(|m| m.modified()).ok().and_then(|t| t.elapsed().ok());
    if age.is_some_and(|age| age > STALE_LOCK) {
        return true;
    }
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut fields = text.split_whitespace();
    // An empty lock is one being written right now; give it time.
    let Some(pid) = fields.next().and_then(|pid| pid.parse::<u32>().ok()) else { return false };
    let local = fields.next().is_none_or(|host| this_host().as_deref() == Some(host));
    local && Path::new("/proc/self").exists() && !Path::new("/proc").join(pid.to_string()).exists()
}

/// This machine's host name, where `/proc` tells it.
fn this_host() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty() && !n.contains(char::is_whitespace))
}

/// A cache directory with a size cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheDir {
    /// Holds the entries; created when the first one is looked up.
    pub dir: PathBuf,
    /// Cap on the entries' total size, in bytes.
    pub max_bytes: u64,
}

impl CacheDir {
    /// A cache in `dir` capped at `max_bytes`; nothing is touched on disk yet.
    pub fn new(dir: PathBuf, max_bytes: u64) -> Self {
        Self { dir, max_bytes }
    }

    /// Where the entry of `key` lives: a hash of the key, so any key makes a valid file name.
    pub fn path_of(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{:032x}.{EXTENSION}", xxh3_128(key.as_bytes())))
    }

    /// The entry of `key`: read from disk when a valid one is there, else computed by `build`, stored
    /// atomically and read back (mapped). When another trial is building it, waits for that one.
    pub fn get_or_build(&self, key: &str, build: impl FnOnce() -> Result<Blob>) -> Result<(Payload, Outcome)> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let path = self.path_of(key);
        let lock_path = path.with_extension("lock");
        let mut refused = None;
        let started = Instant::now();
        let guard = loop {
            match open(&path, key) {
                Opened::Valid(payload) => {
                    touch(&path);
                    return Ok((payload, Outcome::Hit));
                }
                Opened::Invalid(reason) => {
                    let _ = std::fs::remove_file(&path);
                    refused.get_or_insert(reason);
                }
                Opened::Missing => {}
            }
            match try_lock(&lock_path).map_err(|e| Error::io(&lock_path, e))? {
                LockState::Acquired(guard) => {
                    // Another trial may have finished between the look and the lock.
                    if let Opened::Valid(payload) = open(&path, key) {
                        touch(&path);
                        return Ok((payload, Outcome::Hit));
                    }
                    break Some(guard);
                }
                LockState::Busy if started.elapsed() < MAX_WAIT => std::thread::sleep(POLL),
                LockState::Busy => break None,
                LockState::Stale => {
                    let _ = std::fs::remove_file(&lock_path);
                }
            }
        };
        let blob = build()?;
        let (payload, stored) = self.store(&path, key, blob)?;
        drop(guard);
        Ok((payload, Outcome::Built { refused, stored }))
    }

    /// Writes `blob` as `key`'s entry at `path` unless it alone exceeds the cap, evicts, and returns the
    /// entry (mapped from its file when stored).
    fn store(&self, path: &Path, key: &str, blob: Blob) -> Result<(Payload, bool)> {
        if blob.bytes.len() as u64 + 4096 > self.max_bytes {
            return Ok((Payload::in_memory(key, blob), false));
        }
        write_atomic(path, key, &blob).map_err(|e| Error::io(path, e))?;
        self.evict(Some(path)).map_err(|e| Error::io(&self.dir, e))?;
        Ok(match open(path, key) {
            Opened::Valid(payload) => (payload, true),
            // Evicted or replaced by another trial in between: this process keeps its own copy.
            _ => (Payload::in_memory(key, blob), false),
        })
    }

    /// Removes the least recently used entries (never `keep`) until the directory is under the cap, and
    /// temporary files older than a day (left by killed writers). Returns the removed entries.
    pub fn evict(&self, keep: Option<&Path>) -> std::io::Result<Vec<PathBuf>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                if modified.elapsed().is_ok_and(|age| age > Duration::from_secs(24 * 3600)) {
                    let _ = std::fs::remove_file(&path);
                }
            } else if path.extension().is_some_and(|e| e == EXTENSION) {
                entries.push((modified, meta.len(), path));
            }
        }
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort();
        let mut removed = Vec::new();
        for (_, len, path) in entries {
            if total <= self.max_bytes {
                break;
            }
            if Some(path.as_path()) == keep {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
                removed.push(path);
            }
        }
        Ok(removed)
    }

    /// Total size of the entries in the directory.
    pub fn size(&self) -> u64 {
        let Ok(dir) = std::fs::read_dir(&self.dir) else { return 0 };
        dir.filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x == EXTENSION))
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(values: &[f32]) -> Blob {
        Blob::from_f32(vec![values.len() / 2, 2], values)
    }

    fn built(outcome: &Outcome) -> bool {
        matches!(outcome, Outcome::Built { .. })
    }

    #[test]
    fn an_entry_is_built_once_then_read_back_mapped() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::new(dir.path().join("cache"), 1 << 20);
        let (first, outcome) = cache.get_or_build("k", || Ok(blob(&[1.0, 2.0, 3.0, 4.0]))).unwrap();
        assert_eq!(outcome, Outcome::Built { refused: None, stored: true });
        assert!(first.is_mapped());
        let (again, outcome) = cache.get_or_build("k", || panic!("must not build again")).unwrap();
        assert_eq!(outcome, Outcome::Hit);
        let mut row = Vec::new();
        again.extend_f32_row(1, &mut row);
        assert_eq!(row, [3.0, 4.0]);
        assert_eq!(again.header().shape, [2, 2]);
    }

    /// Every way a file can be damaged is refused with a reason and rebuilt.
    #[test]
    fn damaged_or_mismatched_files_are_rebuilt_never_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::new(dir.path().to_path_buf(), 1 << 20);
        let values: Vec<f32> = (0..64).map(|i| i as f32).collect();
        let path = cache.path_of("k");
        type Damage = fn(&mut Vec<u8>);
        let damages: [(&str, Damage); 5] = [
            ("truncated", |b| b.truncate(b.len() - 10)),
            ("payload checksum", |b| *b.last_mut().unwrap() ^= 1),
            ("header checksum", |b| b[20] ^= 1),
            ("bad magic", |b| b[0] = b'X'),
            ("truncated", |b| b.truncate(5)),
        ];
        for (expected, damage) in damages {
            cache.get_or_build("k", || Ok(blob(&values))).unwrap();
            let mut bytes = std::fs::read(&path).unwrap();
            damage(&mut bytes);
            std::fs::write(&path, &bytes).unwrap();
            let Opened::Invalid(reason) = open(&path, "k") else { panic!("{expected}: accepted") };
            assert!(reason.contains(expected), "{expected}: {reason}");
            let (payload, outcome) = cache.get_or_build("k", || Ok(blob(&values))).unwrap();
            assert!(matches!(&outcome, Outcome::Built { refused: Some(r), stored: true } if r.contains(expected)), "{outcome:?}");
            assert_eq!(payload.bytes(), blob(&values).bytes.as_slice());
        }
        // Another key under the same name (a hash collision, or a file copied by hand).
        write_atomic(&path, "other", &blob(&values)).unwrap();
        let (_, outcome) = cache.get_or_build("k", || Ok(blob(&values))).unwrap();
        assert!(matches!(&outcome, Outcome::Built { refused: Some(r), .. } if r.contains("key mismatch")), "{outcome:?}");
        // A shape whose size overflows, under valid checksums (a header edited by hand).
        let huge = Blob { shape: vec![usize::MAX, 4], ..blob(&values) };
        write_atomic(&path, "k", &huge).unwrap();
        let Opened::Invalid(reason) = open(&path, "k") else { panic!("an overflowing shape was accepted") };
        assert!(reason.contains("does not match a payload"), "{reason}");
    }

    #[test]
    fn least_recently_used_entries_are_evicted_under_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let values = vec![0.5f32; 1024]; // 4 KiB payload, ~4.3 KiB a file
        let file_len = {
            let probe = CacheDir::new(dir.path().join("probe"), 1 << 20);
            probe.get_or_build("x", || Ok(blob(&values))).unwrap();
            probe.size()
        };
        let cache = CacheDir::new(dir.path().join("c"), 3 * file_len);
        let old = SystemTime::now() - Duration::from_secs(100);
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            cache.get_or_build(key, || Ok(blob(&values))).unwrap();
            // Distinct, ordered use times: a oldest.
            let file = OpenOptions::new().write(true).open(cache.path_of(key)).unwrap();
            file.set_modified(old + Duration::from_secs(10 * i as u64)).unwrap();
        }
        // Using `a` makes `b` the least recently used.
        assert_eq!(cache.get_or_build("a", || panic!("cached")).unwrap().1, Outcome::Hit);
        let (_, outcome) = cache.get_or_build("d", || Ok(blob(&values))).unwrap();
        assert!(built(&outcome));
        assert!(cache.size() <= cache.max_bytes, "{} > {}", cache.size(), cache.max_bytes);
        assert!(!cache.path_of("b").exists(), "b was the least recently used");
        for key in ["a", "c", "d"] {
            assert!(cache.path_of(key).exists(), "{key} evicted");
        }
        // An entry larger than the cap is served from memory and not stored.
        let big = vec![1.0f32; 4 * 1024];
        let (payload, outcome) = cache.get_or_build("big", || Ok(blob(&big))).unwrap();
        assert_eq!(outcome, Outcome::Built { refused: None, stored: false });
        assert!(!payload.is_mapped() && !cache.path_of("big").exists());
    }

    /// Threads racing for one missing entry: exactly one builds (the others wait on its lock), and every
    /// reader gets the complete payload.
    #[test]
    fn concurrent_fills_of_one_entry_build_once_and_never_read_a_partial_file() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::new(dir.path().to_path_buf(), 1 << 30);
        let values: Vec<f32> = (0..256 * 1024).map(|i| i as f32).collect();
        let builds = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    scope.spawn(|| {
                        let (payload, outcome) = cache
                            .get_or_build("shared", || {
                                builds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                std::thread::sleep(Duration::from_millis(300));
                                Ok(blob(&values))
                            })
                            .unwrap();
                        assert_eq!(payload.bytes(), blob(&values).bytes.as_slice());
                        outcome
                    })
                })
                .collect();
            let outcomes: Vec<Outcome> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(outcomes.iter().filter(|o| built(o)).count(), 1, "{outcomes:?}");
        });
        assert_eq!(builds.into_inner(), 1);
        assert!(!cache.path_of("shared").with_extension("lock").exists(), "the lock is released");
    }

    #[test]
    fn a_lock_left_by_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let cache = CacheDir::new(dir.path().to_path_buf(), 1 << 20);
        if !Path::new("/proc/self").exists() {
            return; // the pid check needs /proc; the age check covers other systems
        }
        // No process has pid u32::MAX - 1 (Linux caps pids at 2^22).
        std::fs::write(cache.path_of("k").with_extension("lock"), format!("{}\n", u32::MAX - 1)).unwrap();
        let started = Instant::now();
        let (_, outcome) = cache.get_or_build("k", || Ok(blob(&[1.0, 2.0]))).unwrap();
        assert!(built(&outcome) && started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn only_a_lock_of_this_host_is_judged_by_its_pid() {
        let Some(host) = this_host() else {
            return; // no /proc: only the age check applies, covered above
        };
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("k.lock");
        let dead = u32::MAX - 1;
        for (content, stale) in [
            (format!("{dead} {host}\n"), true),
            (format!("{dead}\n"), true), // written before locks named their host
            (format!("{dead} another-machine\n"), false),
            (format!("{} {host}\n", std::process::id()), false),
            (String::new(), false),
        ] {
            std::fs::write(&lock, &content).unwrap();
            assert_eq!(lock_is_stale(&lock), stale, "{content:?}");
        }
    }
}

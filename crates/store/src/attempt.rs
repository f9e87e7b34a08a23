//! What the SQLite and PostgreSQL backends share around one transaction attempt: why it failed,
//! and how long to wait before the next one.

use std::time::Duration;

use nightshift_search::Error as SearchError;

/// Why one transaction attempt failed: a domain error to pass through, a database error `E` (maybe
/// transient, retried by the backend), or stored data that does not parse.
pub(crate) enum Fail<E> {
    Search(SearchError),
    Db(E),
    Data(String),
}

impl<E> From<SearchError> for Fail<E> {
    fn from(e: SearchError) -> Self {
        Fail::Search(e)
    }
}

/// Sleeps 1, 2, 4 … up to 64 ms, plus jitter so that colliding processes spread out.
pub(crate) fn backoff(attempt: u32) {
    let base = 1u64 << attempt.min(6);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    let jitter = (u64::from(nanos) ^ u64::from(std::process::id()).wrapping_mul(0x9E37_79B9)) % (base * 1000 + 1);
    std::thread::sleep(Duration::from_micros(base * 1000 / 2 + jitter / 2));
}

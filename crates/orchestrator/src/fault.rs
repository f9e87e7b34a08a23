//! A testing hook for crash tests: `NIGHTSHIFT_FAULT_POINT=<name>:<n>` makes the process SIGKILL
//! itself the n-th time it reaches [`fault_point`]`(<name>)` (n defaults to 1).
//!
//! The variable is read once; unset (the normal case) a call costs one initialised `OnceLock`
//! read. `tests/fault_injection.rs` uses it to kill `nightshift run` at chosen points of a sweep
//! and checks that `nightshift resume` recovers. Not for production use. The points:
//!
//! | name | where |
//! |---|---|
//! | `study-created` | `run` start-up: the study exists (with its spec), nothing else happened |
//! | `during-ask` | a trial was just created or claimed (RUNNING, parameters sampled), before it is placed on a slot |
//! | `trial-spawned` | a trial's process was just started |
//! | `mid-trial` | a trial's report was recorded, before the pruner answers |
//! | `during-tell` | a trial ended: its end attributes are written, its final state is not |
//! | `writing-report` | the report refresh: charts written, the page not yet |

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms a fault point.
pub const FAULT_POINT_ENV: &str = "NIGHTSHIFT_FAULT_POINT";

struct Armed {
    name: String,
    at: u64,
    hits: AtomicU64,
}

static ARMED: OnceLock<Option<Armed>> = OnceLock::new();

/// Parses `name` or `name:n`.
fn parse(value: &str) -> Option<Armed> {
    let (name, at) = match value.rsplit_once(':') {
        Some((name, n)) => (name, n.trim().parse().ok()?),
        None => (value, 1),
    };
    let name = name.trim();
    (!name.is_empty() && at >= 1).then(|| Armed { name: name.to_string(), at, hits: AtomicU64::new(0) })
}

/// Kills this process with SIGKILL when `name` is the armed point and this is its n-th hit.
pub fn fault_point(name: &str) {
    let armed = ARMED.get_or_init(|| std::env::var(FAULT_POINT_ENV).ok().as_deref().and_then(parse));
    let Some(armed) = armed else { return };
    if armed.name == name && armed.hits.fetch_add(1, Ordering::SeqCst) + 1 == armed.at {
        // SAFETY: kill(2) on our own pid; no memory is involved. SIGKILL cannot be caught, so
        // nothing after this line runs: exactly what a crash (or the OOM killer) does.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_name_and_count() {
        let a = parse("during-tell:3").unwrap();
        assert_eq!((a.name.as_str(), a.at), ("during-tell", 3));
        assert_eq!(parse("mid-trial").unwrap().at, 1);
        assert!(parse("x:0").is_none() && parse(":2").is_none() && parse("x:two").is_none());
    }
}

//! A line-protocol driver for benchmarks: an in-memory [`Study`] that another program (the
//! Python benchmark against Optuna, `benches/vs_optuna/`) asks and tells through stdin/stdout,
//! so that every objective function is written once, in that program.
//!
//! One JSON object per line in, one per line out:
//! - `{"op": "new", "direction": "minimize", "seed": 3, "sampler": {"type": "tpe"}, "space": {…}}`
//!   starts a fresh study (the space in our format or Optuna's `--search-space` JSON) → `{"ok": true}`
//! - `{"op": "ask"}` → `{"number": 0, "params": {…}, "ask_us": 812.5}` (the trial stays RUNNING
//!   until told, so several asks in a row simulate parallel workers)
//! - `{"op": "tell", "number": 0, "value": 1.5}` → `{"ok": true}`
//!
//! Errors are answered `{"error": "…"}`; the driver goes on.
//!
//! `cargo run --release -p nightshift-search --example ask_tell_driver`

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Instant;

use nightshift_search::{Direction, InMemoryStorage, NewStudy, SamplerConfig, SearchSpace, Study, TellOutcome};
use serde_json::{Value, json};

struct Session {
    study: Study,
    space: SearchSpace,
}

fn handle(session: &mut Option<Session>, line: &str) -> Result<Value, String> {
    let request: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    match request["op"].as_str() {
        Some("new") => {
            let direction: Direction = request["direction"].as_str().unwrap_or("minimize").parse()?;
            let seed = request["seed"].as_u64().ok_or("'seed' must be a non-negative integer")?;
            let space = SearchSpace::parse(&request["space"].to_string(), "space").map_err(|e| e.to_string())?;
            let mut new = NewStudy::new("bench", direction, seed);
            if !request["sampler"].is_null() {
                new.sampler = serde_json::from_value::<SamplerConfig>(request["sampler"].clone()).map_err(|e| e.to_string())?;
            }
            new.search_space = Some(space.clone());
            let study = Study::create(Arc::new(InMemoryStorage::new()), &new).map_err(|e| e.to_string())?;
            *session = Some(Session { study, space });
            Ok(json!({"ok": true}))
        }
        Some("ask") => {
            let s = session.as_ref().ok_or("no study yet: send {\"op\": \"new\", …} first")?;
            let start = Instant::now();
            let trial = s.study.ask(&s.space).map_err(|e| e.to_string())?;
            let ask_us = start.elapsed().as_secs_f64() * 1e6;
            Ok(json!({"number": trial.number, "params": trial.params, "ask_us": ask_us}))
        }
        Some("tell") => {
            let s = session.as_ref().ok_or("no study yet")?;
            let number = request["number"].as_u64().ok_or("'number' must be a trial number")?;
            let value = request["value"].as_f64().ok_or("'value' must be a number")?;
            s.study.tell(number, TellOutcome::Value(value)).map_err(|e| e.to_string())?;
            Ok(json!({"ok": true}))
        }
        other => Err(format!("unknown op {other:?} (valid: new, ask, tell)")),
    }
}

fn main() {
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    let mut session = None;
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue;
        }
        let reply = handle(&mut session, &line).unwrap_or_else(|e| json!({"error": e}));
        if writeln!(stdout, "{reply}").and_then(|()| stdout.flush()).is_err() {
            break;
        }
    }
}

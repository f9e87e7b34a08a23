//! Device utilisation and orchestration overhead over a sweep of fake trials.
//!
//! `cargo bench -p nightshift-orchestrator --bench sweep_overhead`
//!
//! - utilisation: busy slot-time (spawn → exit of each trial) ÷ (wall time of the run × slots);
//! - overhead per trial: slot taken → first report received by the orchestrator, minus the same
//!   program's own start → first report when spawned directly (interpreter start-up, imports).
//!
//! Storage is in memory: this measures the orchestrator, not SQLite.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nightshift_orchestrator::{RunOptions, Shutdown, Spec, run};
use nightshift_search::InMemoryStorage;

const TRIALS: u64 = 40;
const STEPS: u32 = 4;
const SLEEP: f64 = 0.05;

fn main() {
    let fake = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/fake_trial.py");
    let args = ["--steps".to_string(), STEPS.to_string(), "--sleep".into(), SLEEP.to_string()];

    // The trial program's own start → first report, spawned directly.
    let mut own = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        let mut child =
            Command::new("python3").arg(fake).args(&args).stdin(Stdio::null()).stdout(Stdio::piped()).spawn().expect("python3");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        while let Some(Ok(line)) = lines.next() {
            if line.contains("\"report\"") {
                own.push(t0.elapsed());
                break;
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    let own = mean(&own);

    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "study: bench\nobjective: {{metric: score, direction: maximize}}\nsampler: {{type: random, seed: 1}}\n\
         budget: {{trials: {TRIALS}}}\ndevices: {{cpu: 2}}\n\
         command: [python3, \"{fake}\", --steps, \"{STEPS}\", --sleep, \"{SLEEP}\"]\n\
         params:\n  x: {{type: float, low: 0.0, high: 1.0}}\n"
    );
    let spec = Spec::parse(&text, "bench.yaml", dir.path()).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let summary = runtime
        .block_on(run(
            &spec,
            Arc::new(InMemoryStorage::new()),
            RunOptions::new(dir.path().join("reports/bench")),
            Shutdown::never(),
        ))
        .unwrap();
    assert_eq!(summary.complete, TRIALS);
    let to_first: Vec<Duration> = summary.timings.iter().filter_map(|t| Some(t.first_report? - t.launched)).collect();
    let launch_to_spawn: Vec<Duration> = summary.timings.iter().map(|t| t.spawned.saturating_sub(t.launched)).collect();
    let overhead = mean(&to_first).as_secs_f64() - own.as_secs_f64();
    println!(
        "sweep: {TRIALS} fake trials × {STEPS} reports × {SLEEP}s on {} CPU slots, wall {:.2}s",
        summary.slots,
        summary.wall.as_secs_f64()
    );
    println!("device utilisation: {:.1}%  (busy slot-time ÷ (wall × slots))", 100.0 * summary.utilisation());
    println!(
        "orchestration overhead per trial: {:.1} ms  (slot taken → first report {:.1} ms, minus the program's own start → first report {:.1} ms; of which slot → spawn {:.1} ms)",
        overhead * 1e3,
        mean(&to_first).as_secs_f64() * 1e3,
        own.as_secs_f64() * 1e3,
        mean(&launch_to_spawn).as_secs_f64() * 1e3
    );
}

fn mean(xs: &[Duration]) -> Duration {
    xs.iter().sum::<Duration>() / xs.len().max(1) as u32
}

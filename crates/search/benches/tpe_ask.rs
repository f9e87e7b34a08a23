//! TPE ask latency over an in-memory history of 100 / 500 / 1000 finished trials of the 5-D mixed
//! space from issue 2 (log float, categorical, stepped float, log float, int). Sampling only: the
//! `SamplingContext` is built directly, no storage is involved.
//!
//! Two groups: `tpe_ask` measures wall-clock time; `tpe_ask_cpu` measures the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID` on Linux), which stays meaningful on a busy machine.
//!
//! Run: `cargo bench -p nightshift-search --bench tpe_ask`
//!
//! With `TPE_ASK_COUNT=N` (and optionally `TPE_ASK_TRIALS=n`, default 1000) the binary instead
//! performs N asks over n trials and exits, for a deterministic instruction count:
//! `TPE_ASK_COUNT=100 valgrind --tool=callgrind <bench binary>` (build it with
//! `cargo bench -p nightshift-search --bench tpe_ask --no-run`). With `TPE_ASK_TRACE=n` it runs a
//! study of n trials with one long-lived sampler and prints every suggestion, so that two builds
//! can be checked to suggest bit for bit the same.

use std::collections::BTreeMap;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group};
use nightshift_search::{
    Direction, FrozenTrial, ParamValue, RandomSampler, Sampler, SamplingContext, SearchSpace, TpeConfig, TpeSampler, TrialState,
};

const SPACE: &str = "\
learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
batch_size: {type: categorical, choices: [16, 32, 64, 128]}
dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
freeze_depth: {type: int, low: 0, high: 4}
";

/// A smooth synthetic "validation loss" over the space.
fn objective(p: &BTreeMap<String, ParamValue>) -> f64 {
    let lr = p["learning_rate"].as_f64().unwrap().log10();
    let wd = p["weight_decay"].as_f64().unwrap().log10();
    let dropout = p["dropout"].as_f64().unwrap();
    let depth = p["freeze_depth"].as_f64().unwrap();
    let bs = p["batch_size"].as_f64().unwrap();
    (lr + 3.0).powi(2)
        + 0.1 * (wd + 4.0).powi(2)
        + 4.0 * (dropout - 0.2).powi(2)
        + 0.05 * (depth - 2.0).powi(2)
        + 0.1 * (bs / 32.0).log2().abs()
}

/// `n` COMPLETE trials with random parameters, then the RUNNING trial being sampled.
fn history(space: &SearchSpace, n: u64) -> Vec<FrozenTrial> {
    let mut trials = Vec::new();
    for number in 0..n {
        let ctx =
            SamplingContext { study_name: "bench", direction: Direction::Minimize, seed: 1, trials: &[], trial_number: number };
        let mut t = FrozenTrial::new(number as i64, number, TrialState::Complete);
        for (name, dist) in space.iter() {
            t.params.insert(name.to_string(), RandomSampler.sample_independent(&ctx, name, dist).unwrap());
            t.distributions.insert(name.to_string(), dist.clone());
        }
        t.value = Some(objective(&t.params));
        trials.push(t);
    }
    trials.push(FrozenTrial::new(n as i64, n, TrialState::Running));
    trials
}

/// One ask as `Study::ask` performs it.
fn ask(sampler: &TpeSampler, ctx: &SamplingContext<'_>, space: &SearchSpace) -> BTreeMap<String, ParamValue> {
    let relative = sampler.infer_relative_search_space(ctx, space);
    let mut params = sampler.sample_relative(ctx, &relative).unwrap();
    for (name, dist) in space.iter() {
        if !params.contains_key(name) {
            params.insert(name.to_string(), sampler.sample_independent(ctx, name, dist).unwrap());
        }
    }
    params
}

fn bench_ask<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let space = SearchSpace::parse(SPACE, "bench").unwrap();
    let sampler = TpeSampler::new(TpeConfig::default());
    let mut group = c.benchmark_group(group_name);
    for n in [100u64, 500, 1000] {
        let trials = history(&space, n);
        let ctx =
            SamplingContext { study_name: "bench", direction: Direction::Minimize, seed: 1, trials: &trials, trial_number: n };
        assert_eq!(ask(&sampler, &ctx, &space).len(), 5);
        group.bench_with_input(BenchmarkId::from_parameter(n), &ctx, |b, ctx| b.iter(|| ask(&sampler, black_box(ctx), &space)));
    }
    group.finish();
}

fn wall(c: &mut Criterion) {
    bench_ask(c, "tpe_ask");
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench_ask(c, "tpe_ask_cpu");
}

/// CPU time consumed by the calling thread, in nanoseconds.
#[cfg(target_os = "linux")]
fn thread_cpu_ns() -> u64 {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is Linux's thread CPU clock.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(not(target_os = "linux"))]
fn thread_cpu_ns() -> u64 {
    use std::sync::OnceLock;
    static START: OnceLock<std::time::Instant> = OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64
}

/// A criterion measurement of thread CPU time.
struct ThreadCpuTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;
    fn start(&self) -> u64 {
        thread_cpu_ns()
    }
    fn end(&self, start: u64) -> u64 {
        thread_cpu_ns().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &NanosFormatter
    }
}

struct NanosFormatter;

impl ValueFormatter for NanosFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = if typical < 1e3 {
            (1.0, "ns")
        } else if typical < 1e6 {
            (1e-3, "µs")
        } else if typical < 1e9 {
            (1e-6, "ms")
        } else {
            (1e-9, "s")
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }
    fn scale_throughputs(&self, _typical: f64, throughput: &Throughput, values: &mut [f64]) -> &'static str {
        let n = match *throughput {
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Elements(n) => n as f64,
        };
        values.iter_mut().for_each(|v| *v = n * 1e9 / *v);
        "elem/s (cpu)"
    }
    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu
}
/// `TPE_ASK_COUNT` asks over `TPE_ASK_TRIALS` trials, after one warm-up ask that fills the row
/// cache (as in the timed benchmark).
fn count_asks(count: usize) {
    let trials: u64 = std::env::var("TPE_ASK_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let space = SearchSpace::parse(SPACE, "bench").unwrap();
    let sampler = TpeSampler::new(TpeConfig::default());
    let history = history(&space, trials);
    let ctx =
        SamplingContext { study_name: "bench", direction: Direction::Minimize, seed: 1, trials: &history, trial_number: trials };
    for _ in 0..=count {
        black_box(ask(&sampler, black_box(&ctx), &space));
    }
}

/// A study of `n` trials (the objective above, one long-lived sampler); prints each suggestion.
fn trace(n: u64) {
    let space = SearchSpace::parse(SPACE, "bench").unwrap();
    let sampler = TpeSampler::new(TpeConfig::default());
    let mut trials: Vec<FrozenTrial> = Vec::new();
    for number in 0..n {
        trials.push(FrozenTrial::new(number as i64, number, TrialState::Running));
        let ctx = SamplingContext {
            study_name: "bench",
            direction: Direction::Minimize,
            seed: 1,
            trials: &trials,
            trial_number: number,
        };
        let params = ask(&sampler, &ctx, &space);
        println!("{number}: {params:?}");
        let t = trials.last_mut().unwrap();
        t.state = TrialState::Complete;
        t.value = Some(objective(&params));
        for (name, dist) in space.iter() {
            t.distributions.insert(name.to_string(), dist.clone());
        }
        t.params = params;
    }
}

fn main() {
    if let Some(n) = std::env::var("TPE_ASK_TRACE").ok().and_then(|v| v.parse().ok()) {
        return trace(n);
    }
    if let Some(count) = std::env::var("TPE_ASK_COUNT").ok().and_then(|v| v.parse().ok()) {
        return count_asks(count);
    }
    wall_time();
    cpu_time();
    Criterion::default().configure_from_args().final_summary();
}

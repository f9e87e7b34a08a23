//! GP ask latency over an in-memory history of 50 / 100 / 200 finished trials of the 5-D mixed
//! space of `tpe_ask.rs` (log float, categorical, stepped float, log float, int). Sampling only:
//! the `SamplingContext` is built directly, no storage is involved. The default configuration
//! (2048 preliminary Sobol points, as Optuna) and a lighter one (512) are measured.
//!
//! Two groups: `gp_ask` measures wall-clock time; `gp_ask_cpu` the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID` on Linux), which stays meaningful on a busy machine.
//!
//! Run: `cargo bench -p nightshift-search --bench gp_ask`

use std::collections::BTreeMap;

use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use nightshift_search::{
    Direction, FrozenTrial, GpConfig, GpSampler, ParamValue, RandomSampler, Sampler, SamplingContext, SearchSpace, TrialState,
};

const SPACE: &str = "\
learning_rate: {type: float, low: 1.0e-5, high: 1.0e-1, log: true}
batch_size: {type: categorical, choices: [16, 32, 64, 128]}
dropout: {type: float, low: 0.0, high: 0.5, step: 0.05}
weight_decay: {type: float, low: 1.0e-6, high: 1.0e-2, log: true}
freeze_depth: {type: int, low: 0, high: 4}
";

/// A smooth synthetic "validation loss" over the space (as `tpe_ask.rs`).
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
fn ask(sampler: &GpSampler, ctx: &SamplingContext<'_>, space: &SearchSpace) -> BTreeMap<String, ParamValue> {
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
    let mut group = c.benchmark_group(group_name);
    group.sample_size(20);
    for (label, preliminary) in [("default", 2048), ("prelim512", 512)] {
        let sampler = GpSampler::new(GpConfig { n_preliminary_samples: preliminary, ..GpConfig::default() });
        for n in [50u64, 100, 200] {
            let trials = history(&space, n);
            let ctx = SamplingContext {
                study_name: "bench",
                direction: Direction::Minimize,
                seed: 1,
                trials: &trials,
                trial_number: n,
            };
            assert_eq!(sampler.infer_relative_search_space(&ctx, &space).len(), 5);
            assert_eq!(ask(&sampler, &ctx, &space).len(), 5);
            group.bench_with_input(BenchmarkId::new(label, n), &ctx, |b, ctx| b.iter(|| ask(&sampler, black_box(ctx), &space)));
        }
    }
    group.finish();
}

fn wall(c: &mut Criterion) {
    bench_ask(c, "gp_ask");
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench_ask(c, "gp_ask_cpu");
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
criterion_main!(wall_time, cpu_time);

//! TPE ask latency over an in-memory history of 100 / 500 / 1000 finished trials of the 5-D mixed
//! space from issue 2 (log float, categorical, stepped float, log float, int). Sampling only: the
//! `SamplingContext` is built directly, no storage is involved.
//!
//! Two groups: `tpe_ask` measures wall-clock time; `tpe_ask_cpu` measures the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID` on Linux), which stays meaningful on a busy machine. Both ask a *warm*
//! sampler again and again (its row cache filled by the asks before, as in a long-lived `run`);
//! `tpe_ask_cold_cpu` asks a fresh sampler each time, as a CLI `ask` process does (the process
//! start and the storage read come on top: `benches/cli_loop.sh`).
//!
//! Run: `cargo bench -p nightshift-search --bench tpe_ask`
//!
//! With `TPE_ASK_COUNT=N` (and optionally `TPE_ASK_TRIALS=n`, default 1000) the binary instead
//! performs N asks over n trials and exits, for a deterministic instruction count:
//! `TPE_ASK_COUNT=100 valgrind --tool=callgrind <bench binary>` (build it with
//! `cargo bench -p nightshift-search --bench tpe_ask --no-run`). With `TPE_ASK_TRACE=n` it runs a
//! study of n trials with one long-lived sampler and prints every suggestion, so that two builds
//! can be checked to suggest bit for bit the same.

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "common/mixed_space.rs"]
mod mixed_space;

use cpu_time::ThreadCpuTime;
use criterion::measurement::Measurement;
use criterion::{BatchSize, BenchmarkId, Criterion, black_box, criterion_group};
use mixed_space::{SPACE, ask, env_number, history, objective, repeated_asks};
use nightshift_search::{Direction, FrozenTrial, SamplingContext, SearchSpace, TpeConfig, TpeSampler, TrialState};

fn bench_ask<M: Measurement>(c: &mut Criterion<M>, group_name: &str, cold: bool) {
    let space = SearchSpace::parse(SPACE, "bench").unwrap();
    let sampler = TpeSampler::new(TpeConfig::default());
    let mut group = c.benchmark_group(group_name);
    for n in [100u64, 500, 1000] {
        let trials = history(&space, n);
        let ctx =
            SamplingContext { study_name: "bench", direction: Direction::Minimize, seed: 1, trials: &trials, trial_number: n };
        assert_eq!(ask(&sampler, &ctx, &space).len(), 5);
        if cold {
            group.bench_with_input(BenchmarkId::from_parameter(n), &ctx, |b, ctx| {
                b.iter_batched(
                    || TpeSampler::new(TpeConfig::default()),
                    |fresh| ask(&fresh, black_box(ctx), &space),
                    BatchSize::SmallInput,
                )
            });
        } else {
            group.bench_with_input(BenchmarkId::from_parameter(n), &ctx, |b, ctx| {
                b.iter(|| ask(&sampler, black_box(ctx), &space))
            });
        }
    }
    group.finish();
}

fn wall(c: &mut Criterion) {
    bench_ask(c, "tpe_ask", false);
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench_ask(c, "tpe_ask_cpu", false);
    bench_ask(c, "tpe_ask_cold_cpu", true);
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
    let trials = env_number("TPE_ASK_TRIALS").unwrap_or(1000);
    let space = SearchSpace::parse(SPACE, "bench").unwrap();
    repeated_asks(&TpeSampler::new(TpeConfig::default()), &history(&space, trials), count + 1);
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
    if let Some(n) = env_number("TPE_ASK_TRACE") {
        return trace(n);
    }
    if let Some(count) = env_number("TPE_ASK_COUNT") {
        return count_asks(count);
    }
    wall_time();
    cpu_time();
    Criterion::default().configure_from_args().final_summary();
}

//! GP ask latency over an in-memory history of 50 / 100 / 200 finished trials of the 5-D mixed
//! space of `tpe_ask.rs` (log float, categorical, stepped float, log float, int). Sampling only:
//! the `SamplingContext` is built directly, no storage is involved. The default configuration
//! (2048 preliminary Sobol points, as Optuna) and a lighter one (512) are measured. As in a study,
//! the last finished trial carries the kernel its own ask fitted (`gp_kernel`), which the measured
//! ask's fit starts from; `no_previous_kernel` measures the default configuration without it.
//!
//! Two groups: `gp_ask` measures wall-clock time; `gp_ask_cpu` the thread's CPU time
//! (`CLOCK_THREAD_CPUTIME_ID` on Linux), which stays meaningful on a busy machine.
//!
//! Run: `cargo bench -p nightshift-search --bench gp_ask`
//!
//! With `GP_ASK_COUNT=N` (and optionally `GP_ASK_TRIALS=n`, default 200) the binary instead
//! performs N default-configuration asks over n trials, prints the last suggestion (to compare two
//! builds) and exits, for a profiler or an instruction count (`valgrind --tool=callgrind`).

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "common/mixed_space.rs"]
mod mixed_space;

use cpu_time::ThreadCpuTime;
use criterion::measurement::Measurement;
use criterion::{BenchmarkId, Criterion, black_box, criterion_group};
use mixed_space::{SPACE, ask, env_number, history, repeated_asks};
use nightshift_search::{Direction, FrozenTrial, GpConfig, GpSampler, Sampler, SamplingContext, SearchSpace, TrialState};

/// [`history`] of `n` finished trials whose last one carries the notes (the fitted kernel) of its
/// own ask over the trials before it, as every trial of a GP study does.
fn history_with_notes(space: &SearchSpace, n: u64) -> Vec<FrozenTrial> {
    let mut trials = history(space, n);
    let last = n as usize - 1;
    let mut before = trials[..last].to_vec();
    before.push(FrozenTrial::new(last as i64, last as u64, TrialState::Running));
    let ctx = SamplingContext {
        study_name: "bench",
        direction: Direction::Minimize,
        seed: 1,
        trials: &before,
        trial_number: last as u64,
    };
    let (_, notes) = GpSampler::new(GpConfig::default()).sample_all_noted(&ctx, space).unwrap();
    assert!(!notes.is_empty(), "the GP's ask over {last} trials left no kernel");
    trials[last].system_attrs.extend(notes);
    trials
}

fn bench_ask<M: Measurement>(c: &mut Criterion<M>, group_name: &str) {
    let space = SearchSpace::parse(SPACE, "bench").unwrap();
    let mut group = c.benchmark_group(group_name);
    group.sample_size(20);
    for (label, preliminary, notes) in [("default", 2048, true), ("prelim512", 512, true), ("no_previous_kernel", 2048, false)] {
        let sampler = GpSampler::new(GpConfig { n_preliminary_samples: preliminary, ..GpConfig::default() });
        for n in [50u64, 100, 200] {
            let trials = if notes { history_with_notes(&space, n) } else { history(&space, n) };
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

criterion_group!(wall_time, wall);
criterion_group! {
    name = cpu_time;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu
}

/// `GP_ASK_COUNT` asks over `GP_ASK_TRIALS` trials (the last with its kernel) with the default configuration.
fn count_asks(count: usize) {
    let space = SearchSpace::parse(SPACE, "bench").unwrap();
    let trials = history_with_notes(&space, env_number("GP_ASK_TRIALS").unwrap_or(200));
    println!("{:?}", repeated_asks(&GpSampler::new(GpConfig::default()), &trials, count));
}

fn main() {
    if let Some(count) = env_number("GP_ASK_COUNT") {
        return count_asks(count);
    }
    wall_time();
    cpu_time();
    Criterion::default().configure_from_args().final_summary();
}

//! How long a 1,000-trial report takes: `cargo bench -p nightshift-report --bench render`.
//! Target (issue 5): under 10 s for the whole report.

#[path = "../tests/common/mod.rs"]
mod common;

use criterion::{Criterion, criterion_group, criterion_main};
use nightshift_report::{ReportOptions, build_report_data, render_report, write_report};

fn bench(c: &mut Criterion) {
    let (study, trials) = common::synthetic_sweep(1000, 42);
    let options =
        ReportOptions { objective_metric: Some("validation accuracy".into()), max_steps: Some(10), ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("report_1000_trials");
    group.sample_size(10);
    group.bench_function("build_report_data", |b| b.iter(|| build_report_data(&study, &trials, &options)));
    group.bench_function("render_report_in_memory", |b| {
        b.iter(|| render_report(&build_report_data(&study, &trials, &options)).unwrap())
    });
    group.bench_function("write_report", |b| b.iter(|| write_report(&study, &trials, &options, dir.path()).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

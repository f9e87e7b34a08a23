//! Writes the report of a synthetic sweep, to look at the page without running one:
//! `cargo run -p nightshift-report --example demo_report -- reports/demo 200`

#[path = "../tests/common/mod.rs"]
mod common;

use nightshift_report::{ReportOptions, write_report};

fn main() {
    let mut args = std::env::args().skip(1);
    let out = args.next().unwrap_or_else(|| "reports/demo".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let (study, trials) = common::synthetic_sweep(n, 42);
    let options =
        ReportOptions { objective_metric: Some("validation accuracy".into()), max_steps: Some(10), ..Default::default() };
    let start = std::time::Instant::now();
    match write_report(&study, &trials, &options, std::path::Path::new(&out)) {
        Ok(files) => println!("wrote {} files to {} in {:.2?}", files.files.len(), files.dir.display(), start.elapsed()),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}

//! `nightshift`: the command-line entry point. Each subcommand is a thin layer that wires the
//! crates together; errors become one message on stderr and exit code 1 (2 for usage errors).

mod interop_cmds;
mod output;
mod progress;
mod run_cmds;
mod study_cmds;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nightshift",
    version,
    about = "Hyperparameter search for fine-tuning image classifiers — and for any training command",
    long_about = "Hyperparameter search for fine-tuning image classifiers — and for any training command.\n\n\
        The study verbs (create-study, ask, tell, report-value, trials, best-trial, studies) mirror Optuna's CLI,\n\
        so shell loops written for `optuna ask`/`optuna tell` port by renaming the command."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[command(flatten)]
    Study(study_cmds::StudyCommand),
    #[command(flatten)]
    Run(run_cmds::RunCommand),
    #[command(flatten)]
    Train(train::TrainCommand),
    #[command(flatten)]
    Interop(interop_cmds::InteropCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Study(cmd) => {
            // Warnings of the samplers (e.g. a Gaussian-process fit that fell back) reach the
            // terminal; stdout stays the verbs' JSON. NIGHTSHIFT_LOG=info shows more.
            let filter = tracing_subscriber::EnvFilter::try_from_env("NIGHTSHIFT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
            let _ = tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).try_init();
            study_cmds::run(cmd)
        }
        Command::Run(cmd) => run_cmds::run(cmd),
        Command::Train(cmd) => train::run(cmd),
        Command::Interop(cmd) => interop_cmds::run(cmd),
    };
    if let Err(e) = result {
        eprintln!("error: {}", error_message(&e));
        std::process::exit(1);
    }
}

/// The error and its causes on one line. Our error types quote their cause in their own message
/// (so they read well alone, e.g. in logs); a cause already quoted above is not repeated.
fn error_message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let e = anyhow::Error::new(io).context("cannot read spec s.yaml: No such file or directory (os error 2)");
        assert_eq!(error_message(&e), "cannot read spec s.yaml: No such file or directory (os error 2)");
        let e = anyhow::anyhow!("disk full").context("cannot write the report");
        assert_eq!(error_message(&e), "cannot write the report: disk full");
    }
}

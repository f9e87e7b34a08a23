//! `nightshift`: the command-line entry point. Each subcommand is a thin layer that wires the
//! crates together; errors become one message on stderr and exit code 1 (2 for usage errors; `trial`
//! exits with 75 when the device ran out of memory).

mod interop_cmds;
mod output;
mod progress;
mod run_cmds;
mod storage;
mod study_cmds;
mod train;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "nightshift",
    version,
    about = "Hyperparameter search for fine-tuning image classifiers — and for any training command",
    long_about = "Hyperparameter search for fine-tuning image classifiers — and for any training command.\n\n\
        The study verbs (create-study, ask, tell, report-value, trials, best-trial, studies) mirror Optuna's CLI,\n\
        so shell loops written for `optuna ask`/`optuna tell` port by renaming the command.\n\n\
        Results (JSON, tables, summaries) go to stdout; logs, warnings and progress to stderr."
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// Flags every verb takes, before or after its name.
#[derive(Args)]
struct GlobalArgs {
    /// More messages on stderr (-v: debug, -vv: trace). NIGHTSHIFT_LOG=<filter> overrides.
    #[arg(long, short, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only warnings and errors on stderr (for `run`: no progress either).
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Colours on stderr: auto (a terminal, and NO_COLOR unset), always or never.
    #[arg(long, global = true, value_enum, default_value_t, value_name = "WHEN")]
    color: output::ColorChoice,
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
    /// Print a shell completion script: `nightshift completions bash > ~/.local/share/bash-completion/completions/nightshift`.
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

fn main() {
    let cli = parse();
    if cli.command.writes_only_to_stdout() {
        die_quietly_on_closed_stdout();
    }
    let color = cli.global.color.apply();
    let result = match cli.command {
        Command::Study(cmd) => {
            // Warnings of the samplers (e.g. a Gaussian-process fit that fell back) and what the
            // verb did reach the terminal; stdout stays the verbs' results.
            init_console_log(&cli.global, color);
            study_cmds::run(cmd)
        }
        Command::Run(cmd) => run_cmds::run(cmd, cli.global.quiet),
        Command::Train(cmd) => train::run(cmd),
        Command::Interop(cmd) => interop_cmds::run(cmd),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "nightshift", &mut std::io::stdout());
            Ok(())
        }
    };
    if let Err(e) = result {
        eprintln!("{}: {}", output::paint("error", "31"), error_message(&e));
        std::process::exit(e.downcast_ref::<train::ExitWith>().map_or(1, |exit| exit.code));
    }
}

impl Command {
    /// The verbs whose only pipe is their stdout: no trial processes to talk to (`run`, `resume`,
    /// `worker`) and no protocol parent (`trial`, `pretrain`).
    fn writes_only_to_stdout(&self) -> bool {
        match self {
            Command::Study(_) | Command::Interop(_) | Command::Completions { .. } => true,
            Command::Run(cmd) => matches!(cmd, run_cmds::RunCommand::Check { .. } | run_cmds::RunCommand::Report { .. }),
            Command::Train(cmd) => matches!(cmd, train::TrainCommand::Predict(_)),
        }
    }
}

/// `nightshift trials | head` ends quietly, as Unix filters do, instead of panicking in
/// `println!` once `head` has closed the pipe: the default SIGPIPE action (Rust ignores it).
/// Only for verbs that write to no pipe but stdout: a sweep must survive a trial that closed its stdin.
fn die_quietly_on_closed_stdout() {
    // SAFETY: signal(2) with SIG_DFL installs no handler; called before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Parses the command line, with clap's own help and errors coloured as `--color` and NO_COLOR say.
fn parse() -> Cli {
    // `args_os`: `args` panics on an argument that is not UTF-8 (a file name, say); clap says what is wrong with it.
    let choice = match color_flag(std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned())).as_deref() {
        Some("always") => clap::ColorChoice::Always,
        Some("never") => clap::ColorChoice::Never,
        _ if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) => clap::ColorChoice::Never,
        _ => clap::ColorChoice::Auto,
    };
    let command = negative_numbers_are_values(Cli::command().color(choice));
    let matches = command.clone().try_get_matches().unwrap_or_else(|e| explain_integer_error(e, &command).exit());
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// clap passes on Rust's "invalid digit found in string" for `--epochs -3` or `--epochs 1.5`;
/// this says what the option wants instead.
fn explain_integer_error(error: clap::Error, command: &clap::Command) -> clap::Error {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let context = |kind| match error.get(kind) {
        Some(ContextValue::String(text)) => Some(text.clone()),
        _ => None,
    };
    let (Some(value), Some(arg)) = (context(ContextKind::InvalidValue), context(ContextKind::InvalidArg)) else {
        return error;
    };
    let not_digits = std::error::Error::source(&error).is_some_and(|s| s.to_string() == "invalid digit found in string");
    if error.kind() != ErrorKind::ValueValidation || !not_digits {
        return error;
    }
    // A negative whole number that failed to parse was given to an option that takes none.
    let wanted = if value.parse::<i64>().is_ok() { "a whole number, 0 or more" } else { "a whole number" };
    let message = format!("invalid value '{value}' for '{arg}': expected {wanted}\n\nFor more information, try '--help'.\n");
    clap::Error::raw(ErrorKind::ValueValidation, message).with_cmd(command)
}

/// Options that take a value accept a negative number as one, so that `--top -1` is refused by
/// the option's own check ("-1 is not in 1..4294967295") rather than read as an unknown flag.
fn negative_numbers_are_values(command: clap::Command) -> clap::Command {
    command
        .mut_args(
            |arg| if arg.get_action().takes_values() && !arg.is_positional() { arg.allow_negative_numbers(true) } else { arg },
        )
        .mut_subcommands(negative_numbers_are_values)
}

/// The value of `--color` before clap has parsed anything (it colours clap's own messages).
fn color_flag(args: impl Iterator<Item = String>) -> Option<String> {
    let mut args = args.take_while(|a| a != "--");
    let mut last = None;
    while let Some(arg) = args.next() {
        if let Some(value) = arg.strip_prefix("--color=") {
            last = Some(value.to_string());
        } else if arg == "--color" {
            last = args.next();
        }
    }
    last
}

/// Logs on stderr: info and up by default, warnings only with -q, more with -v.
fn init_console_log(global: &GlobalArgs, color: bool) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIGHTSHIFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_ansi(color)
        .without_time()
        .with_target(false)
        .try_init();
}

/// The error and its causes on one line. Our error types quote their cause in their own message
/// (so they read well alone, e.g. in logs); a cause already quoted above is not repeated.
pub(crate) fn error_message(e: &anyhow::Error) -> String {
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
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every argument of every verb says what it is for in `--help`.
    #[test]
    fn every_argument_has_a_help_line() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in command.get_arguments() {
                let builtin = matches!(arg.get_id().as_str(), "help" | "version");
                if !builtin && arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "nightshift", &mut missing);
        assert!(missing.is_empty(), "arguments without a help line: {missing:?}");
    }

    #[test]
    fn the_color_flag_is_found_before_parsing() {
        let args = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>().into_iter();
        assert_eq!(color_flag(args(&["trials", "--color", "never"])).as_deref(), Some("never"));
        assert_eq!(color_flag(args(&["--color=always", "studies"])).as_deref(), Some("always"));
        assert_eq!(color_flag(args(&["ask", "--", "--color=always"])), None);
    }

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory (os error 2)");
        let e = anyhow::Error::new(io).context("cannot read spec s.yaml: No such file or directory (os error 2)");
        assert_eq!(error_message(&e), "cannot read spec s.yaml: No such file or directory (os error 2)");
        let e = anyhow::anyhow!("disk full").context("cannot write the report");
        assert_eq!(error_message(&e), "cannot write the report: disk full");
    }
}

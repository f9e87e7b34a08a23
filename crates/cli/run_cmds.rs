//! `nightshift run`, `nightshift resume` and `nightshift check`: the overnight sweep.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use anyhow::{Context, Result, bail};
use nightshift_orchestrator::{
    Device, DeviceSpec, Host, Program, RunOptions, RunSummary, Shutdown, ShutdownLevel, Slot, SlotPlan, Spec, StopReason,
    budget_used, plan_slots,
};
use nightshift_report::ReportOptions;
use nightshift_search::{FrozenTrial, Role, TrialState, best_of, now_unix};

use crate::progress::{ConsoleProgress, fmt_value, short_params};
use crate::train::{BuiltinTrial, builtin_configs, pretrain_args, section_flags};

/// How a sweep ended, for shells, Slurm and Kubernetes (`--help` of run, resume and worker; the README).
pub const EXIT_CODES_HELP: &str = "Exit codes: 0 finished (budget or target reached, or the search space exhausted), \
    1 error (also: too many consecutive failed trials, or no trial completed), 2 usage error, 3 stopped by budget.timeout or budget.stop_at \
    with budget left, 130 stopped by Ctrl-C/SIGINT, 143 stopped by SIGTERM.";

/// The exit code of a sweep stopped by `timeout` or `stop_at` before its budget was used.
pub const EXIT_STOPPED_BY_CLOCK: i32 = 3;

const SIGINT: i32 = 2;
const SIGTERM: i32 = 15;
use crate::storage::{StorageArgs, open};

#[derive(Debug, clap::Subcommand)]
pub enum RunCommand {
    /// Run (or continue) the sweep a spec file describes: trials on every device slot, pruned early,
    /// resumable. Ctrl-C once: no new trials; twice: stop the running ones (they are re-run on resume).
    #[command(after_help = EXIT_CODES_HELP)]
    Run {
        /// The sweep spec (YAML), e.g. search-spaces/demo.yaml.
        spec: PathBuf,
        /// Overrides the spec's storage URL.
        #[arg(long)]
        storage: Option<String>,
        #[command(flatten)]
        devices: DeviceArgs,
    },
    /// Continue a study started with `nightshift run`, using the spec stored with it.
    #[command(after_help = EXIT_CODES_HELP)]
    Resume {
        /// The study name.
        study: String,
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        devices: DeviceArgs,
    },
    /// Join a study from any machine and run its trials on this machine's devices until the
    /// study's budget is used up across all workers. Needs only the storage and the study name:
    /// the spec stored with the study by `nightshift run` says the rest (dataset paths resolve here).
    #[command(after_help = EXIT_CODES_HELP)]
    Worker {
        /// Where the study lives, shared by every worker: postgres://user[:password]@host/db.
        #[arg(long)]
        storage: String,
        /// The study name.
        #[arg(long)]
        study: String,
        #[command(flatten)]
        devices: DeviceArgs,
    },
    /// Validate a spec (fields, the command and its script, the built-in trainer's dataset and
    /// checkpoint, loaded as a trial would) and print what a run would do, without running a trial.
    Check {
        /// The sweep spec (YAML) to check.
        spec: PathBuf,
    },
    /// Write the HTML/PNG report of a study (also done during and at the end of `run`).
    Report {
        /// The study name.
        study: String,
        #[command(flatten)]
        storage: StorageArgs,
        /// Output directory; default: reports/<study>/.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// Where this machine runs trials, overriding the spec's `devices:` (each worker names its own).
#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    /// auto (the CUDA devices of CUDA_VISIBLE_DEVICES or nvidia-smi when the trial program can use them,
    /// else one slot per core), cpu[:N], gpu:0,1 (CUDA; positions in an inherited CUDA_VISIBLE_DEVICES) or wgpu:0.
    #[arg(long)]
    devices: Option<String>,
    /// Concurrent trials on each listed GPU (or per CPU slot); needs --devices.
    #[arg(long, requires = "devices")]
    trials_per_device: Option<usize>,
}

impl DeviceArgs {
    fn apply(self, mut spec: Spec) -> Result<(Spec, DevicesFrom)> {
        let Some(devices) = self.devices else { return Ok((spec, DevicesFrom::Spec)) };
        spec.devices = DeviceSpec::from_flag(&devices, self.trials_per_device).map_err(|e| anyhow::anyhow!("--devices: {e}"))?;
        Ok((spec, DevicesFrom::Flag))
    }
}

/// Where the devices of a sweep were named, for messages.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DevicesFrom {
    Spec,
    Flag,
}

/// The slots `spec` gives on this machine (asks nvidia-smi at most once); a refusal names the spec's
/// `devices` field or the flag.
fn plan(spec: &Spec, from: DevicesFrom) -> Result<SlotPlan> {
    let host = Host::probe(spec.devices.lists_gpus());
    plan_slots(&spec.devices, &spec.program.runs(), &host).map_err(|e| match from {
        DevicesFrom::Spec => anyhow::anyhow!("{}: field `devices`: {e}", spec.locate("devices")),
        DevicesFrom::Flag => anyhow::anyhow!("--devices: {e}"),
    })
}

/// `quiet` is the global `-q`: no progress output (the log file and the final summary remain).
pub fn run(cmd: RunCommand, quiet: bool) -> Result<()> {
    match cmd {
        RunCommand::Run { spec, storage, devices } => {
            let mut spec = Spec::from_file(&spec, &BuiltinTrial::this_binary())?;
            if let Some(url) = storage {
                spec.storage = url;
            }
            let (spec, from) = devices.apply(spec)?;
            sweep(spec, from, quiet)
        }
        RunCommand::Resume { study, storage, devices } => {
            // Resume and report write under reports/<study>: refuse a name that is not one directory.
            let url = storage.find_study(path_safe(&study)?)?.url;
            let (spec, from) = devices.apply(stored_spec(&url, &study)?)?;
            sweep(spec, from, quiet)
        }
        // A worker is a resume that many machines run at once: the storage keeps the budget global.
        RunCommand::Worker { storage, study, devices } => {
            let (spec, from) = devices.apply(stored_spec(&storage, &study)?)?;
            sweep(spec, from, quiet)
        }
        RunCommand::Check { spec } => check(&spec),
        RunCommand::Report { study, storage, out } => {
            if out.is_none() {
                // The report goes to reports/<study>/: the name must be one directory.
                path_safe(&study)?;
            }
            let found = storage.find_study(&study)?;
            let trials = found.storage.trials(found.record.id, None)?;
            let record = found.record;
            let spec = record
                .user_attrs
                .get(nightshift_search::attrs::STUDY_SPEC)
                .and_then(|s| Spec::from_stored(s, &BuiltinTrial::this_binary()).ok());
            let out = match out {
                Some(out) => out,
                None => PathBuf::from("reports").join(path_safe(&study)?),
            };
            let files = nightshift_report::write_report(&record, &trials, &report_options(spec.as_ref(), None), &out)?;
            println!("{}", files.index.display());
            Ok(())
        }
    }
}

/// A study name about to become a path (`reports/<study>/`), checked: no `..`, no `/`.
fn path_safe(study: &str) -> Result<&str> {
    nightshift_orchestrator::spec::check_study_name(study).map_err(anyhow::Error::msg)?;
    Ok(study)
}

/// The spec stored with `study` by `nightshift run`, pointed at `url`.
fn stored_spec(url: &str, study: &str) -> Result<Spec> {
    let record = match open(url)?.load_study(study) {
        Ok(record) => record,
        // `create-study` makes a study without a spec, which a worker cannot run: start it with `run`.
        Err(nightshift_search::Error::StudyNotFound(_)) => bail!(
            "study '{study}' not found in {}: start it on one machine with `nightshift run spec.yaml --storage URL`, \
             then the other machines join with `nightshift worker`",
            nightshift_store::redact_url(url)
        ),
        Err(e) => return Err(e.into()),
    };
    let stored = record
        .user_attrs
        .get(nightshift_search::attrs::STUDY_SPEC)
        .ok_or_else(|| nightshift_orchestrator::Error::NoStoredSpec(study.to_string()))?;
    let mut spec =
        Spec::from_stored(stored, &BuiltinTrial::this_binary()).context("the spec stored with the study no longer validates")?;
    spec.storage = url.to_string();
    Ok(spec)
}

/// What the report needs to know that the trials don't say, from the spec when there is one.
fn report_options(spec: Option<&Spec>, slots: Option<usize>) -> ReportOptions {
    let Some(spec) = spec else { return ReportOptions { slots, ..ReportOptions::default() } };
    let (max_steps, retrain_command) = match builtin_configs(spec) {
        Ok((Some(trial), _)) => {
            let flags = section_flags(&trial.to_section()).join(" ");
            (Some(trial.epochs as u64), Some(format!("nightshift trial --params-file {{params_file}} {flags}")))
        }
        _ => {
            let argv: Vec<String> = spec.program.argv().iter().map(|a| a.to_string()).collect();
            (None, Some(argv.join(" ")))
        }
    };
    ReportOptions {
        compare: spec.compare.as_ref().map(|c| c.param.clone()),
        objective_metric: Some(spec.objective.metric.clone()),
        retrain_command,
        max_steps,
        slots,
        ..ReportOptions::default()
    }
}

/// Runs the spec's `pretrain:` step unless its checkpoint exists (the demo's MNIST backbone), on the first
/// slot's device when that is a GPU (with the environment a trial there gets), else on the CPU.
fn ensure_pretrained(spec: &Spec, first_slot: Option<&Slot>) -> Result<()> {
    let (_, Some(config)) = builtin_configs(spec)? else { return Ok(()) };
    let out = config.out.display();
    if config.out.join(nightshift_trainer::checkpoint::WEIGHTS_FILE).exists() {
        eprintln!("reusing the pretrained backbone in {out}");
        return Ok(());
    }
    let gpu = first_slot.map(|slot| &slot.device).filter(|device| **device != Device::Cpu);
    let on = gpu.map_or_else(|| "cpu".to_string(), |device| device.to_string());
    eprintln!("pretraining a backbone into {out} on {on} (once; later runs reuse it)");
    let exe = std::env::current_exe().context("cannot find the nightshift executable")?;
    let mut command = std::process::Command::new(exe);
    command.args(pretrain_args(&config));
    if let Some(device) = gpu {
        command.envs(device.env(0));
    }
    let status = command.status().context("cannot start `nightshift pretrain`")?;
    if !status.success() {
        bail!("pretraining failed ({status}); see the messages above");
    }
    Ok(())
}

/// What would stop a run at once on this machine: a missing program, dataset or checkpoint.
fn preflight(spec: &Spec) -> Result<Vec<String>> {
    let mut problems = spec.preflight();
    problems.extend(storage_problem(spec));
    problems.extend(crate::train::preflight(spec)?);
    Ok(problems)
}

/// A storage the sweep could not open, found without opening it (`check` creates no file): a URL
/// of another scheme, a directory or a file that is not SQLite's where the SQLite file should be,
/// a PostgreSQL server that refuses the connection (connected to, and left unchanged).
fn storage_problem(spec: &Spec) -> Option<String> {
    let problem = |message: String| Some(format!("{}: field `storage`: {message}", spec.locate("storage")));
    let path = match nightshift_store::StorageUrl::parse(&spec.storage) {
        Err(e) => return problem(e.to_string()),
        Ok(nightshift_store::StorageUrl::Sqlite(path)) => path,
        Ok(nightshift_store::StorageUrl::Postgres(url)) => {
            let opened = nightshift_store::PostgresStorage::open_if_current(&url);
            return opened.err().and_then(|e| problem(crate::error_message(&e.into())));
        }
        Ok(nightshift_store::StorageUrl::SqliteMemory) => return None,
    };
    if path.is_dir() {
        return problem(format!(
            "{} is a directory; name the SQLite file, e.g. sqlite:///{}/study.db",
            path.display(),
            path.display()
        ));
    }
    let mut head = [0u8; 16];
    let read = std::fs::File::open(&path).and_then(|mut f| std::io::Read::read(&mut f, &mut head));
    match read {
        Ok(n) if n > 0 && head[..n] != b"SQLite format 3\0"[..n] => {
            problem(format!("{} is not a SQLite database (it does not start with \"SQLite format 3\")", path.display()))
        }
        _ => None,
    }
}

/// The spec's study as stored, when its storage already holds it (read; nothing created or migrated):
/// `check` compares its search space and direction with the spec's.
fn existing_study(spec: &Spec) -> Option<nightshift_search::StudyRecord> {
    use nightshift_store::{PostgresStorage, StorageUrl};
    let storage: Arc<dyn nightshift_search::Storage> = match StorageUrl::parse(&spec.storage).ok()? {
        StorageUrl::Sqlite(_) => crate::storage::open_existing(&spec.storage, false).ok()??,
        StorageUrl::Postgres(url) => Arc::new(PostgresStorage::open_if_current(&url).ok()??),
        StorageUrl::SqliteMemory => return None,
    };
    storage.load_study(&spec.study).ok()
}

fn sweep(spec: Spec, from: DevicesFrom, quiet: bool) -> Result<()> {
    let problems = preflight(&spec)?;
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    let plan = plan(&spec, from)?;
    ensure_pretrained(&spec, plan.slots.first())?;
    let reports_dir = PathBuf::from("reports").join(&spec.study);
    std::fs::create_dir_all(&reports_dir).with_context(|| format!("cannot create {}", reports_dir.display()))?;
    init_log(&reports_dir.join("nightshift.log"))?;
    // Said once, even with -q: how `auto` chose (a CPU fallback is worth a warning).
    for note in &plan.notes {
        eprintln!("{note}");
        tracing::info!("{note}");
    }
    let slot_count = plan.slots.len();
    let storage = open(&spec.storage)?;

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    // The signal that stopped the sweep, for the exit code (0: none).
    let first_signal = Arc::new(AtomicI32::new(0));
    let summary = runtime.block_on(async {
        let (trigger, shutdown) = Shutdown::channel();
        let first_signal = first_signal.clone();
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            loop {
                let signal = tokio::select! {
                    r = tokio::signal::ctrl_c() => if r.is_err() { return } else { SIGINT },
                    Some(()) = async { match term.as_mut() { Some(t) => t.recv().await, None => std::future::pending().await } } => SIGTERM,
                };
                let _ = first_signal.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
                if trigger.escalate() == ShutdownLevel::Kill {
                    return;
                }
            }
        });
        let mut options = RunOptions::new(&reports_dir);
        options.observer = Arc::new(ConsoleProgress::new(quiet));
        options.slots = Some(plan.slots);
        let (report_dir, slots) = (reports_dir.clone(), Some(slot_count));
        let report = ReportOptions { now: Some(now_unix()), refresh_seconds: Some(60), ..report_options(Some(&spec), slots) };
        options.report_hook = Some(Arc::new(move |record, trials| {
            // A report that cannot be written must not stop the sweep; the log says why.
            let options = ReportOptions { now: Some(now_unix()), ..report.clone() };
            if let Err(e) = refresh_report(record, trials, &options, &report_dir) {
                tracing::warn!("cannot write the report: {e}");
            }
        }));
        nightshift_orchestrator::run(&spec, storage.clone(), options, shutdown).await
    })?;
    // Children are gone; don't wait for the signal task.
    runtime.shutdown_background();

    let trials = storage.trials(storage.load_study(&spec.study)?.id, None)?;
    print_summary(&spec, &summary, &trials);
    // The final report: without the auto-refresh of the in-progress one.
    let record = storage.load_study(&spec.study)?;
    let options = report_options(Some(&spec), Some(slot_count));
    match nightshift_report::write_report(&record, &trials, &options, &reports_dir) {
        Ok(files) => println!("report: {}", files.index.display()),
        Err(e) => eprintln!("warning: cannot write the report: {e}"),
    }
    if let StopReason::ConsecutiveFailures { .. } = summary.stop {
        bail!("{}", summary.stop);
    }
    // A night without a single result is a failure, whatever stopped it (out-of-memory trials do
    // not count as consecutive failures, so such a sweep can use its whole budget).
    let interrupted = matches!(summary.stop, StopReason::Shutdown | StopReason::Interrupted);
    if let Some(message) = no_trial_completed(&trials, summary.launched).filter(|_| !interrupted) {
        bail!("{message}");
    }
    let budget_left = budget_used(&trials) < spec.budget.trials;
    let code = exit_code(&summary.stop, first_signal.load(Ordering::SeqCst), budget_left);
    if code != 0 {
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(code);
    }
    Ok(())
}

/// Why the study has no result, when this run launched trials and none of the study's trials
/// completed (nor is one still running elsewhere, on another worker).
fn no_trial_completed(trials: &[FrozenTrial], launched: u64) -> Option<String> {
    let any = |state: TrialState| trials.iter().any(|t| t.state == state);
    if launched == 0 || any(TrialState::Complete) || any(TrialState::Running) {
        return None;
    }
    let count = |keep: &dyn Fn(&FrozenTrial) -> bool| trials.iter().filter(|t| keep(t)).count();
    let failed = count(&|t| t.state == TrialState::Fail);
    let oom = count(&|t| t.state == TrialState::Fail && t.is_oom());
    let pruned = count(&|t| t.state == TrialState::Pruned);
    let on_cpu = |t: &FrozenTrial| {
        t.system_attrs.get(nightshift_search::attrs::DEVICE).and_then(|d| d.as_str()).is_some_and(|d| d.starts_with("cpu"))
    };
    let advice = if oom > 0 && oom == failed && pruned == 0 {
        let fewer = if trials.iter().filter(|t| t.is_oom()).all(on_cpu) {
            "trials at once (fewer CPU slots: `devices: {cpu: N}`)"
        } else {
            "trials per device (`trials_per_device`)"
        };
        format!(
            "every trial ran out of memory, so even the smallest settings tried do not fit: narrow the space toward \
             smaller batch sizes or images, or run fewer {fewer}"
        )
    } else if failed == 0 {
        "every trial was pruned: check the pruner's settings (a `threshold` no trial passes, a `patience` shorter \
         than a trial's noisy start), or sweep with `pruner: {type: none}`; `nightshift trials` lists each trial's reports"
            .to_string()
    } else {
        "`nightshift trials` lists why each one failed; each trial's stderr.log is under the study's reports directory"
            .to_string()
    };
    let oom = if oom > 0 { format!(" ({oom} out of memory)") } else { String::new() };
    Some(format!("no trial completed, so the study has no result: {failed} failed{oom}, {pruned} pruned; {advice}"))
}

/// The exit code of a sweep that ended without an error ([`EXIT_CODES_HELP`]); `signal` is the first
/// signal received (0: none).
fn exit_code(stop: &StopReason, signal: i32, budget_left: bool) -> i32 {
    match stop {
        StopReason::Shutdown | StopReason::Interrupted => 128 + if signal == 0 { SIGINT } else { signal },
        StopReason::Timeout(_) | StopReason::StopAt(..) if budget_left => EXIT_STOPPED_BY_CLOCK,
        _ => 0,
    }
}

/// The in-progress report, as `write_report` writes it (charts before the page), with the
/// `writing-report` crash-test point between the two (see `nightshift_orchestrator::fault_point`).
fn refresh_report(
    record: &nightshift_search::StudyRecord,
    trials: &[FrozenTrial],
    options: &ReportOptions,
    dir: &Path,
) -> nightshift_report::Result<()> {
    let files = nightshift_report::render_report(&nightshift_report::build_report_data(record, trials, options))?;
    let charts = files.iter().take_while(|f| f.name.ends_with(".png") || f.name.ends_with(".svg")).count();
    nightshift_report::write_files(dir, &files[..charts])?;
    nightshift_orchestrator::fault_point("writing-report");
    nightshift_report::write_files(dir, &files[charts..])?;
    Ok(())
}

fn print_summary(spec: &Spec, summary: &RunSummary, trials: &[FrozenTrial]) {
    // Too many failures end the run with that error (and "stopping:" said it as it happened): not a third time.
    if !matches!(summary.stop, StopReason::ConsecutiveFailures { .. }) {
        println!("{}", summary.stop);
    }
    let oom = if summary.out_of_memory > 0 { format!(" ({} out of memory)", summary.out_of_memory) } else { String::new() };
    println!(
        "this run: {} launched, {} complete, {} pruned, {} failed{oom} in {:.0}s; the study has {} trials",
        summary.launched,
        summary.complete,
        summary.pruned,
        summary.failed,
        summary.wall.as_secs_f64(),
        trials.iter().filter(|t| t.state != TrialState::Waiting).count()
    );
    // A tournament's replicates are scored on the test split: the verdict's, not the ranking's.
    let mut complete: Vec<&FrozenTrial> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && t.value.is_some() && Role::of(t) != Some(Role::Replicate))
        .collect();
    complete.sort_by(|a, b| {
        let (a, b) = (a.value.unwrap_or(f64::NAN), b.value.unwrap_or(f64::NAN));
        spec.objective.direction.to_loss(a).total_cmp(&spec.objective.direction.to_loss(b))
    });
    if !complete.is_empty() {
        println!("top {} by {} ({}):", complete.len().min(5), spec.objective.metric, spec.objective.direction);
        for t in complete.iter().take(5) {
            let secs = t.duration().map(|d| format!("{d:.0}s")).unwrap_or_default();
            println!(
                "  #{:<4} {:>10}  {:>6}  {}",
                t.number,
                fmt_value(t.value.unwrap_or(f64::NAN)),
                secs,
                short_params(&t.params)
            );
        }
    }
    if let Some(best) = best_of(trials, spec.objective.direction) {
        println!("best: trial {} = {}", best.number, fmt_value(best.value.unwrap_or(f64::NAN)));
    }
    println!("logs and trial outputs: reports/{}/", spec.study);
}

/// Logs of a sweep: everything from info up (or as `NIGHTSHIFT_LOG` says) to the study's log
/// file, and warnings and errors to stderr as well, so that they reach the console.
fn init_log(path: &Path) -> Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIGHTSHIFT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let to_file = tracing_subscriber::fmt::layer().with_writer(std::sync::Mutex::new(file)).with_ansi(false).with_filter(filter);
    let to_console = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(crate::output::color())
        .without_time()
        .with_target(false)
        .with_filter(tracing_subscriber::filter::LevelFilter::WARN);
    let _ = tracing_subscriber::registry().with(to_file).with(to_console).try_init();
    Ok(())
}

fn check(path: &Path) -> Result<()> {
    let spec = Spec::from_file(path, &BuiltinTrial::this_binary())?;
    let mut problems = preflight(&spec)?;
    let argv: Vec<String> = spec.program.argv().iter().map(|a| a.to_string()).collect();
    let kind = if matches!(spec.program, Program::Builtin { .. }) { "built-in trainer: " } else { "" };
    println!("program:  {kind}{}  (run in {})", argv.join(" "), spec.base_dir.display());
    let plan = plan(&spec, DevicesFrom::Spec);
    if let (_, Some(pretrain)) = builtin_configs(&spec)? {
        println!("pretrain: `nightshift {}` unless its checkpoint exists", pretrain_args(&pretrain).join(" "));
    }
    println!("study:    {} in {}", spec.study, nightshift_store::redact_url(&spec.storage));
    if let Some(study) = existing_study(&spec) {
        if let Some(note) = study.search_space.as_ref().and_then(|created| spec.space_changes_since(created)) {
            println!("          {note}");
        }
        if let Err(e) = spec.check_direction(&study) {
            problems.push(e.to_string());
        }
    }
    println!("objective: {} ({})", spec.objective.metric, spec.objective.direction);
    // A dataset that does not load is among the problems already; here only what a good one holds.
    if let (Some(trial), _) = builtin_configs(&spec)?
        && let Ok(contents) = trial.data.describe()
    {
        println!("dataset:  {}: {contents}", trial.data.dataset.display());
    }
    match &plan {
        Ok(plan) => {
            let devices: Vec<String> = plan.slots.iter().map(|s| s.device.to_string()).collect();
            println!("devices:  {} slot(s): {}", plan.slots.len(), devices.join(", "));
            for note in &plan.notes {
                println!("          {note}");
            }
        }
        Err(e) => {
            println!("devices:  refused (below)");
            problems.push(e.to_string());
        }
    }
    let b = &spec.budget;
    let mut budget = format!("{} trials", b.trials);
    if let Some(t) = b.timeout {
        budget.push_str(&format!(", timeout {}s", t.as_secs()));
    }
    if let Some((h, m)) = b.stop_at {
        budget.push_str(&format!(", stop at {h:02}:{m:02}"));
    }
    if let Some(t) = b.target {
        budget.push_str(&format!(", target {t}"));
    }
    if let Some(t) = b.trial_timeout {
        budget.push_str(&format!(", {}s per trial", t.as_secs()));
    }
    budget.push_str(&format!(", stop after {} consecutive failures", b.max_consecutive_failures));
    println!("budget:   {budget}");
    println!(
        "sampler:  {} (seed {})",
        spec.sampler.describe(),
        spec.seed.map(|s| s.to_string()).unwrap_or_else(|| "random".into())
    );
    println!("pruner:   {}", spec.pruner.describe());
    println!("space:");
    for (name, dist) in spec.space.iter() {
        println!("  {name}: {dist}");
    }
    match spec.compare.as_ref().map(|c| (c, c.tournament.as_ref())) {
        Some((_, Some(t))) => {
            println!(
                "compare:  tournament over {} ({} arms × {} search trials = {}; then the best {} per arm re-run with {} fresh seeds: up to {} replicates, counted apart)",
                t.param,
                t.arms.len(),
                t.budget_per_arm,
                t.search_budget(),
                t.replicate_top,
                t.seeds,
                t.max_replicates()
            );
            // Replicates are meant to be scored on data that did not choose the configurations.
            if matches!(spec.program, Program::Builtin { replicate: None, .. }) {
                println!(
                    "          note: the data has no test split (an image folder, or IDX files without t10k), so the replicates are scored on the \
                     validation images that also chose each arm's configuration: the verdict leans optimistic; \
                     an IDX dataset with t10k files gives one"
                );
            }
        }
        Some((c, None)) => {
            println!(
                "compare:  {} ({} strata, {} trials each)",
                c.param,
                c.values.len(),
                spec.budget.trials / c.values.len() as u64
            )
        }
        None => {}
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    println!("{}: OK", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_study_without_a_completed_trial_is_an_error_that_says_why() {
        use nightshift_search::attrs;
        let trial = |number: u64, state: TrialState, oom: bool| {
            let mut t = FrozenTrial::new(number as i64, number, state);
            if oom {
                t.system_attrs.insert(attrs::FAIL_KIND.into(), serde_json::json!(attrs::FAIL_KIND_OOM));
            }
            t
        };
        let on = |mut t: FrozenTrial, device: &str| {
            t.system_attrs.insert(attrs::DEVICE.into(), serde_json::json!(device));
            t
        };
        let all_oom = [on(trial(0, TrialState::Fail, true), "cuda:0"), on(trial(1, TrialState::Fail, true), "cuda:0")];
        let message = no_trial_completed(&all_oom, 2).expect("no result");
        assert!(message.contains("2 failed (2 out of memory), 0 pruned"), "{message}");
        assert!(message.contains("every trial ran out of memory") && message.contains("trials_per_device"), "{message}");
        // On CPU slots the way to give each trial more memory is fewer slots.
        let on_cpu = [on(trial(0, TrialState::Fail, true), "cpu:0"), on(trial(1, TrialState::Fail, true), "cpu:1")];
        let message = no_trial_completed(&on_cpu, 2).expect("no result");
        assert!(message.contains("`devices: {cpu: N}`") && !message.contains("trials_per_device"), "{message}");
        // Nothing failed: the pruner stopped every trial, and the message does not speak of failures.
        let all_pruned = [trial(0, TrialState::Pruned, false), trial(1, TrialState::Pruned, false)];
        let message = no_trial_completed(&all_pruned, 2).expect("no result");
        assert!(message.contains("0 failed, 2 pruned; every trial was pruned: check the pruner"), "{message}");
        assert!(!message.contains("why each one failed"), "{message}");
        let mixed = [trial(0, TrialState::Fail, true), trial(1, TrialState::Fail, false), trial(2, TrialState::Pruned, false)];
        let message = no_trial_completed(&mixed, 3).expect("no result");
        assert!(message.contains("2 failed (1 out of memory), 1 pruned; `nightshift trials`"), "{message}");
        // A completed trial, a trial still running on another worker, or a run that launched nothing: no error.
        assert_eq!(no_trial_completed(&[trial(0, TrialState::Fail, true), trial(1, TrialState::Complete, false)], 2), None);
        assert_eq!(no_trial_completed(&[trial(0, TrialState::Fail, true), trial(1, TrialState::Running, false)], 1), None);
        assert_eq!(no_trial_completed(&all_oom, 0), None);
    }

    #[test]
    fn exit_codes_tell_how_the_sweep_ended() {
        let timeout = StopReason::Timeout(std::time::Duration::from_secs(60));
        assert_eq!(exit_code(&StopReason::Budget { trials: 4 }, 0, false), 0);
        assert_eq!(exit_code(&StopReason::Target { value: 0.9, trial: 2 }, 0, true), 0);
        assert_eq!(exit_code(&timeout, 0, true), EXIT_STOPPED_BY_CLOCK);
        assert_eq!(exit_code(&StopReason::StopAt(7, 0), 0, true), EXIT_STOPPED_BY_CLOCK);
        assert_eq!(exit_code(&timeout, 0, false), 0, "the last trials filled the budget as the clock ran out");
        assert_eq!(exit_code(&StopReason::Shutdown, SIGINT, true), 130);
        assert_eq!(exit_code(&StopReason::Interrupted, SIGTERM, true), 143);
    }
}

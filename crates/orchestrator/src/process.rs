//! One trial as a child process: spawn it, speak the protocol with it, stop it, and say how it ended.
//!
//! The child runs in its own process group so that everything it starts (data-loader workers, a
//! shell's children) is signalled with it. Stopping escalates: a pruned child or one that already
//! sent its result gets `kill_grace` to exit by itself, then SIGTERM, then after another
//! `kill_grace` SIGKILL. How the trial ended is decided by the pure [`decide`] from the facts
//! the driver collected.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

use crate::protocol::{self, Answer, Line, LineSplitter, Message, Report, TrialError};

/// The output of `future` if it is ready without waiting.
fn ready_now<F: std::future::Future>(future: F) -> Option<F::Output> {
    let mut future = std::pin::pin!(future);
    match future.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
        std::task::Poll::Ready(output) => Some(output),
        std::task::Poll::Pending => None,
    }
}

/// Once a trial has exited, how long its pipes may stay quiet before the rest is given up.
const DRAIN_QUIET: Duration = Duration::from_secs(2);
/// Once a trial has exited, how long its pipes are read at the most (a process that left its
/// group may hold them open and keep writing).
const DRAIN_AT_MOST: Duration = Duration::from_secs(30);

/// Everything needed to start one trial.
#[derive(Clone, Debug)]
pub struct TrialLaunch {
    /// The trial's number in its study.
    pub number: u64,
    /// The program and its arguments, placeholders filled in.
    pub argv: Vec<String>,
    /// Added to the environment the orchestrator inherited (`NIGHTSHIFT_PARAMS`, `CUDA_VISIBLE_DEVICES`, …).
    pub env: Vec<(String, String)>,
    /// The working directory (the spec file's directory).
    pub cwd: PathBuf,
    /// Holds stdout.log and stderr.log (and whatever the trial writes there).
    pub trial_dir: PathBuf,
}

/// Bounds on one trial.
#[derive(Clone, Debug)]
pub struct TrialLimits {
    /// The longest the trial may run (`budget.trial_timeout`); then it is stopped and fails.
    pub timeout: Option<Duration>,
    /// How long a stopped child may take to exit before SIGTERM, and SIGTERM before SIGKILL.
    pub kill_grace: Duration,
    /// Each of stdout.log and stderr.log stops growing at this size.
    pub log_cap_bytes: u64,
    /// Taken from a report's `metrics` when it has no `value`.
    pub objective_metric: String,
}

/// Records a report and decides whether the trial goes on. Called on a blocking thread, so it
/// may talk to storage; an error stops the trial and fails it with that reason.
pub trait Judge: Send + Sync + 'static {
    /// Records `report` (whose objective value is `value`) and answers whether the trial goes on.
    fn judge(&self, report: &Report, value: f64) -> Result<Answer, String>;
    /// Records `report` without judging it: its value is NaN or infinite, which ends the trial.
    fn record(&self, report: &Report, value: f64) -> Result<(), String>;
}

/// How a trial ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It sent a result.
    Complete {
        /// The objective value (from `value`, or the objective metric).
        value: f64,
        /// Every metric of the result.
        metrics: BTreeMap<String, Value>,
    },
    /// It was pruned, and exited or was stopped.
    Pruned {
        /// The step whose report the pruner stopped it at.
        step: u64,
    },
    /// `infrastructure`: killed by a signal nobody here sent (OOM killer, …); worth a retry.
    Fail {
        /// Why, in words, with the end of its stderr.
        reason: String,
        /// Killed by a signal nobody here sent.
        infrastructure: bool,
    },
    /// The trial said it ran out of (device) memory (`{"error": {"kind": "oom", …}}`), with its message.
    OutOfMemory {
        /// What the trial said.
        message: String,
    },
    /// Stopped by a second Ctrl-C; resumable.
    Interrupted,
}

/// A finished trial process, with the timings the benchmarks and progress display use.
#[derive(Clone, Debug)]
pub struct TrialRun {
    /// How it ended.
    pub outcome: Outcome,
    /// When the process was started.
    pub spawned: Instant,
    /// When its first report arrived, if one did.
    pub first_report: Option<Instant>,
    /// When it had exited and its output was read.
    pub ended: Instant,
    /// The last step it reported.
    pub last_step: Option<u64>,
    /// `exit code 0`, `signal 9 (SIGKILL)`, …
    pub exit: Option<String>,
}

/// Why the orchestrator stopped a trial before it exited by itself.
#[derive(Clone, Debug, PartialEq)]
pub enum StopCause {
    /// A line that looked like the protocol but broke it.
    Protocol(String),
    /// A report with a NaN or infinite value.
    Diverged(String),
    /// It ran past `budget.trial_timeout`.
    Timeout(Duration),
    /// A second Ctrl-C (or a kill-level shutdown).
    Interrupted,
    /// The [`Judge`] could not record a report (a storage error).
    Judge(String),
}

/// What the driver observed; [`decide`] turns it into an [`Outcome`].
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The `result` line's value and metrics, if it sent one.
    pub result: Option<(Option<f64>, BTreeMap<String, Value>)>,
    /// The trial's own `error` line.
    pub error: Option<TrialError>,
    /// The step at which it was told to prune.
    pub pruned_at: Option<u64>,
    /// Why the orchestrator stopped it, if it did.
    pub stop: Option<StopCause>,
    /// How the process exited, once it has.
    pub exit: Option<ExitStatus>,
    /// Whether the orchestrator sent it a signal (so a death by signal is not infrastructure's).
    pub signalled: bool,
    /// The last lines of its stderr, for the failure reason.
    pub stderr_tail: Vec<String>,
    /// Keys of its `report`/`result` lines that nightshift does not read (each once), for a warning.
    pub ignored_keys: Vec<String>,
}

/// How a trial ended, from what was observed. Pure.
pub fn decide(facts: &Facts) -> Outcome {
    let fail = |reason: String| Outcome::Fail { reason, infrastructure: false };
    if facts.stop == Some(StopCause::Interrupted) {
        return Outcome::Interrupted;
    }
    // What the trial said went wrong outranks how it then exited (or was stopped for hanging).
    if let Some(error) = &facts.error {
        if error.is_oom() {
            return Outcome::OutOfMemory { message: error.message.clone() };
        }
        let message = if error.message.is_empty() { String::new() } else { format!(": {}", error.message) };
        return fail(format!("{}{message}", error.kind));
    }
    match &facts.stop {
        Some(StopCause::Interrupted) => return Outcome::Interrupted,
        Some(StopCause::Protocol(m)) => return fail(format!("protocol error: {m}")),
        Some(StopCause::Diverged(m)) => return fail(m.clone()),
        Some(StopCause::Timeout(d)) => return fail(format!("timed out after {}", fmt_duration(*d))),
        Some(StopCause::Judge(m)) => return fail(m.clone()),
        None => {}
    }
    if let Some(step) = facts.pruned_at {
        return Outcome::Pruned { step };
    }
    if let Some((value, metrics)) = &facts.result {
        return match value {
            Some(v) if v.is_finite() => Outcome::Complete { value: *v, metrics: metrics.clone() },
            Some(v) => fail(format!("diverged: {} result", fmt_non_finite(*v))),
            None => fail("protocol error: the result has no `value` (nor the objective metric in `metrics`)".into()),
        };
    }
    let tail =
        if facts.stderr_tail.is_empty() { String::new() } else { format!("; last stderr: {}", facts.stderr_tail.join(" | ")) };
    match facts.exit {
        Some(status) => match (status.code(), status.signal()) {
            (Some(0), _) => fail(format!("exited with code 0 without reporting a result{tail}")),
            (Some(code), _) => fail(format!("exited with code {code}{tail}")),
            (None, Some(sig)) => Outcome::Fail {
                reason: format!("killed by signal {sig} ({}){tail}", signal_name(sig, facts.signalled)),
                infrastructure: !facts.signalled,
            },
            (None, None) => fail(format!("ended abnormally{tail}")),
        },
        None => fail(format!("lost track of the process{tail}")),
    }
}

fn fmt_non_finite(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "+inf"
    } else {
        "-inf"
    }
}

pub(crate) fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 1.0 {
        format!("{}ms", d.as_millis())
    } else if s < 120.0 {
        format!("{s:.0}s").replace(".0s", "s")
    } else if s < 7200.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

/// The signal's name; `by_us`: nightshift sent the signals the child got (so a SIGKILL is ours,
/// not the kernel's out-of-memory killer's).
fn signal_name(sig: i32, by_us: bool) -> &'static str {
    match sig {
        libc::SIGKILL if by_us => "SIGKILL, sent by nightshift",
        libc::SIGKILL => "SIGKILL; out of memory?",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGPIPE => "SIGPIPE",
        _ => "signal",
    }
}

fn describe_exit(status: ExitStatus, signalled: bool) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(sig)) => format!("signal {sig} ({})", signal_name(sig, signalled)),
        _ => "unknown".into(),
    }
}

/// Makes the child die with SIGKILL when the orchestrator dies (even by SIGKILL, when nothing of
/// ours runs to stop it): a killed sweep leaves no trial training on. Linux only; what the child
/// started itself is found by [`kill_leftovers`] when the trial is recovered as stale.
/// Caution: the kernel sends the signal when the *thread* that forked exits, so trials must be spawned
/// from async tasks (runtime worker threads live as long as the runtime), never from `spawn_blocking`,
/// whose idle threads are reaped after a few seconds.
fn die_with_parent(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: between fork and exec only async-signal-safe calls are made (prctl, getppid, _exit).
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent died before prctl took effect: nobody is left to read our output.
                if libc::getppid() as u32 != parent {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = command;
}

/// SIGKILLs every process of this machine whose environment says it belongs to the trial in
/// `trial_dir` (`NIGHTSHIFT_TRIAL_DIR`, inherited by whatever the trial started): the leftovers
/// of a trial whose orchestrator died. Returns how many were signalled. Linux only (reads /proc).
pub fn kill_leftovers(trial_dir: &std::path::Path) -> usize {
    let needle = format!("NIGHTSHIFT_TRIAL_DIR={}", trial_dir.display()).into_bytes();
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return 0 };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        if environ.split(|b| *b == 0).any(|var| var == needle.as_slice()) {
            // SAFETY: kill(2) on a pid; no memory is involved.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            killed += 1;
        }
    }
    killed
}

/// Signals a whole process group (the child is its leader, so the group id is its pid).
fn signal_group(pgid: u32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is involved.
        unsafe {
            libc::kill(-(pgid as i32), signal);
        }
    }
}

/// Runs one trial to its end. Never fails: every problem becomes a FAIL outcome with its reason.
pub async fn run_trial(
    launch: TrialLaunch,
    limits: TrialLimits,
    judge: Arc<dyn Judge>,
    mut interrupt: watch::Receiver<bool>,
) -> TrialRun {
    let spawned = Instant::now();
    let failed = |reason: String| TrialRun {
        outcome: Outcome::Fail { reason, infrastructure: false },
        spawned,
        first_report: None,
        ended: Instant::now(),
        last_step: None,
        exit: None,
    };
    if let Err(e) = std::fs::create_dir_all(&launch.trial_dir) {
        return failed(format!("cannot create trial directory {}: {e}", launch.trial_dir.display()));
    }
    let mut out_log = CappedLog::create(launch.trial_dir.join("stdout.log"), limits.log_cap_bytes);
    let mut err_log = CappedLog::create(launch.trial_dir.join("stderr.log"), limits.log_cap_bytes);

    let Some(program) = launch.argv.first() else { return failed("empty command".into()) };
    let mut command = tokio::process::Command::new(program);
    command
        .args(&launch.argv[1..])
        .current_dir(&launch.cwd)
        .envs(launch.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    die_with_parent(&mut command);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("cannot start `{program}` (in {}): {e}", launch.cwd.display())),
    };
    crate::fault_point("trial-spawned");
    let pgid = child.id().unwrap_or(0);
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");

    let mut facts = Facts::default();
    let mut splitter = LineSplitter::default();
    let mut tail = StderrTail::default();
    let mut first_report = None;
    let mut last_step = None;
    let timeout_at = limits.timeout.map(|t| spawned + t);
    let mut stage = Stage::Running;
    let (mut out_done, mut err_done) = (false, false);
    // After the child exits: read what it left in the pipes until they stay quiet for DRAIN_QUIET
    // (a busy machine may take a while over the last chunks), and no longer than DRAIN_AT_MOST.
    let mut drain_until: Option<Instant> = None;
    let mut exited_at: Option<Instant> = None;
    let mut out_buf = vec![0u8; 64 * 1024];
    let mut err_buf = vec![0u8; 16 * 1024];

    loop {
        if facts.exit.is_some() && out_done && err_done {
            break;
        }
        let deadline = [timeout_at.filter(|_| stage == Stage::Running && facts.stop.is_none()), stage.deadline(), drain_until]
            .into_iter()
            .flatten()
            .min();
        enum Event {
            Out(usize),
            Err(usize),
            Exited(Option<ExitStatus>),
            Deadline,
            Interrupt,
        }
        let event = tokio::select! {
            r = stdout.read(&mut out_buf), if !out_done => Event::Out(r.unwrap_or(0)),
            r = stderr.read(&mut err_buf), if !err_done => Event::Err(r.unwrap_or(0)),
            s = child.wait(), if facts.exit.is_none() => Event::Exited(s.ok()),
            _ = sleep_until(deadline), if deadline.is_some() => Event::Deadline,
            r = interrupt.changed(), if facts.stop != Some(StopCause::Interrupted) => match r {
                Ok(()) if *interrupt.borrow() => Event::Interrupt,
                Ok(()) => continue,
                // The run loop is gone: nobody will record this trial, so stop it.
                Err(_) => Event::Interrupt,
            },
        };
        // The drain's deadline and a last chunk can be ready together, and `select!` picks either
        // (on a busy machine both are, after the task waited its turn): read on while data is there.
        let now = Instant::now();
        let draining = exited_at.is_some_and(|t| now < t + DRAIN_AT_MOST) && drain_until.is_some_and(|d| now >= d);
        let event = match event {
            Event::Deadline if draining && !out_done => match ready_now(stdout.read(&mut out_buf)) {
                Some(read) => Event::Out(read.unwrap_or(0)),
                None => Event::Deadline,
            },
            event => event,
        };
        let mut stop: Option<StopCause> = None;
        match event {
            Event::Out(0) => {
                out_done = true;
                if let Some(line) = splitter.finish() {
                    stop = handle_line(line, &mut facts, &limits, &judge, &mut stdin, &mut first_report, &mut last_step).await;
                }
            }
            Event::Out(n) => {
                if let (Some(until), Some(exited)) = (drain_until.as_mut(), exited_at) {
                    *until = (Instant::now() + DRAIN_QUIET).min(exited + DRAIN_AT_MOST);
                }
                out_log.write(&out_buf[..n]);
                for line in splitter.push(&out_buf[..n]) {
                    if let Some(s) =
                        handle_line(line, &mut facts, &limits, &judge, &mut stdin, &mut first_report, &mut last_step).await
                    {
                        stop = Some(s);
                        break;
                    }
                    // A flood of reports (each judged against storage) must not hold off the time
                    // limit until the whole chunk is read: it is checked between lines too.
                    if stage == Stage::Running && facts.stop.is_none() && timeout_at.is_some_and(|t| Instant::now() >= t) {
                        stop = Some(StopCause::Timeout(limits.timeout.unwrap_or_default()));
                        break;
                    }
                }
            }
            Event::Err(0) => err_done = true,
            Event::Err(n) => {
                err_log.write(&err_buf[..n]);
                tail.push(&err_buf[..n]);
            }
            Event::Exited(status) => {
                facts.exit = status;
                // Take down anything the child left behind in its group, so the pipes close.
                signal_group(pgid, libc::SIGKILL);
                exited_at = Some(Instant::now());
                drain_until = Some(Instant::now() + DRAIN_QUIET);
            }
            Event::Deadline => {
                let now = Instant::now();
                if drain_until.is_some_and(|d| now >= d) {
                    break;
                }
                if let Some(d) = stage.deadline()
                    && now >= d
                {
                    stage = stage.escalate(pgid, limits.kill_grace, &mut facts);
                } else if timeout_at.is_some_and(|t| now >= t) && facts.stop.is_none() && facts.exit.is_none() {
                    stop = Some(StopCause::Timeout(limits.timeout.unwrap_or_default()));
                }
            }
            Event::Interrupt => stop = Some(StopCause::Interrupted),
        }
        if let Some(cause) = stop
            && facts.exit.is_none()
        {
            // A second cause (e.g. an interrupt while a protocol error is being handled) keeps the first.
            if facts.stop.is_none() || cause == StopCause::Interrupted {
                facts.stop = Some(cause);
            }
            if !matches!(stage, Stage::Terminated(_) | Stage::Killed) {
                stage = Stage::AwaitExit(Instant::now()).escalate(pgid, limits.kill_grace, &mut facts);
            }
        }
        // A pruned trial, or one that sent its result or error, gets `kill_grace` to exit by itself.
        let ended = facts.result.is_some() || facts.error.is_some();
        if stage == Stage::Running && facts.exit.is_none() && (facts.pruned_at.is_some() || ended) {
            stage = Stage::AwaitExit(Instant::now() + limits.kill_grace);
            if ended {
                stdin = None;
            }
        }
    }
    if facts.exit.is_none() {
        signal_group(pgid, libc::SIGKILL);
        facts.exit = child.wait().await.ok();
    }
    facts.stderr_tail = tail.last_lines(5);
    if !facts.ignored_keys.is_empty() {
        // A typo (`metric` for `metrics`) would otherwise lose what the trial meant to report.
        tracing::warn!(
            "trial {}: its protocol lines had keys nightshift does not read: {} (a report reads `step`, `value` and \
             `metrics`; a result `value`, `metrics` and `pruned`)",
            launch.number,
            facts.ignored_keys.join(", ")
        );
    }
    out_log.flush();
    err_log.flush();
    TrialRun {
        outcome: decide(&facts),
        spawned,
        first_report,
        ended: Instant::now(),
        last_step,
        exit: facts.exit.map(|status| describe_exit(status, facts.signalled)),
    }
}

/// Where the stop escalation stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Running,
    /// Waiting for the child to exit by itself until then.
    AwaitExit(Instant),
    /// SIGTERM sent; SIGKILL at this time.
    Terminated(Instant),
    Killed,
}

impl Stage {
    fn deadline(self) -> Option<Instant> {
        match self {
            Self::AwaitExit(t) | Self::Terminated(t) => Some(t),
            Self::Running | Self::Killed => None,
        }
    }

    fn escalate(self, pgid: u32, grace: Duration, facts: &mut Facts) -> Self {
        facts.signalled = true;
        match self {
            Self::Running | Self::AwaitExit(_) => {
                signal_group(pgid, libc::SIGTERM);
                Self::Terminated(Instant::now() + grace)
            }
            Self::Terminated(_) | Self::Killed => {
                signal_group(pgid, libc::SIGKILL);
                Self::Killed
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

fn note_ignored_keys(facts: &mut Facts, keys: &[String]) {
    for key in keys {
        if !facts.ignored_keys.contains(key) {
            facts.ignored_keys.push(key.clone());
        }
    }
}

/// Handles one stdout line; returns a reason to stop the trial, if any.
async fn handle_line(
    line: Line,
    facts: &mut Facts,
    limits: &TrialLimits,
    judge: &Arc<dyn Judge>,
    stdin: &mut Option<tokio::process::ChildStdin>,
    first_report: &mut Option<Instant>,
    last_step: &mut Option<u64>,
) -> Option<StopCause> {
    // After a decision (pruned, result, error, stop) further output is only logged.
    if facts.stop.is_some() || facts.result.is_some() || facts.error.is_some() {
        return None;
    }
    if facts.pruned_at.is_some() {
        // A report after the answer `prune` gets it again (unrecorded), so that a trial that reads
        // its answers is not left waiting for one until it is stopped.
        if !line.truncated && matches!(protocol::parse_line(&line.text), Ok(Message::Report(_))) {
            answer(stdin, Answer::Prune).await;
        }
        return None;
    }
    if line.truncated {
        // A result that long would otherwise be dropped as a log line without a word.
        if protocol::starts_like_message(&line.text) {
            return Some(StopCause::Protocol(format!(
                "a message line longer than the limit of {} bytes: {}…",
                protocol::MAX_LINE_BYTES,
                protocol::head(&line.text, 200)
            )));
        }
        return None;
    }
    let message = match protocol::parse_line(&line.text) {
        Ok(m) => m,
        Err(e) => return Some(StopCause::Protocol(e)),
    };
    match message {
        Message::Log => None,
        Message::Error(error) => {
            facts.error = Some(error);
            None
        }
        Message::Result(result) => {
            note_ignored_keys(facts, &result.ignored_keys);
            let value = result.value.or_else(|| result.metrics.get(&limits.objective_metric).and_then(protocol::number));
            facts.result = Some((value, result.metrics));
            None
        }
        Message::Report(report) => {
            note_ignored_keys(facts, &report.ignored_keys);
            first_report.get_or_insert_with(Instant::now);
            *last_step = Some(last_step.map_or(report.step, |s| s.max(report.step)));
            let Some(value) = report.value.or_else(|| report.metrics.get(&limits.objective_metric).and_then(protocol::number))
            else {
                return Some(StopCause::Protocol(format!(
                    "report at step {} has no `value` and no metric '{}'",
                    report.step, limits.objective_metric
                )));
            };
            if !value.is_finite() {
                // Kept as Optuna keeps such a report: `trials` shows where the trial diverged.
                let cause = StopCause::Diverged(format!("diverged: {} at step {}", fmt_non_finite(value), report.step));
                let judge = judge.clone();
                return Some(off_thread(move || judge.record(&report, value)).await.err().unwrap_or(cause));
            }
            let judge = judge.clone();
            let step = report.step;
            let answer = match off_thread(move || judge.judge(&report, value)).await {
                Ok(answer) => answer,
                Err(cause) => return Some(cause),
            };
            if answer == Answer::Prune {
                facts.pruned_at = Some(step);
            }
            self::answer(stdin, answer).await;
            None
        }
    }
}

/// Runs a [`Judge`] call (storage I/O) on the blocking pool; its failure stops the trial.
async fn off_thread<T: Send + 'static>(call: impl FnOnce() -> Result<T, String> + Send + 'static) -> Result<T, StopCause> {
    match tokio::task::spawn_blocking(call).await {
        Ok(result) => result.map_err(StopCause::Judge),
        Err(e) => Err(StopCause::Judge(format!("internal error while judging: {e}"))),
    }
}

/// Writes `answer` to the trial's stdin; a trial that does not read it loses its stdin.
async fn answer(stdin: &mut Option<tokio::process::ChildStdin>, answer: Answer) {
    if let Some(pipe) = stdin.as_mut() {
        // A child that never reads its stdin must not stall us once the pipe buffer fills.
        let write = tokio::time::timeout(Duration::from_secs(2), async {
            pipe.write_all(answer.line().as_bytes()).await?;
            pipe.flush().await
        });
        if !matches!(write.await, Ok(Ok(()))) {
            *stdin = None;
        }
    }
}

/// A log file that stops growing at `cap` bytes (with a note saying so).
struct CappedLog {
    file: Option<std::fs::File>,
    written: u64,
    cap: u64,
}

impl CappedLog {
    fn create(path: PathBuf, cap: u64) -> Self {
        let file = std::fs::File::create(&path).map_err(|e| tracing::warn!("cannot create {}: {e}", path.display())).ok();
        Self { file, written: 0, cap }
    }

    fn write(&mut self, bytes: &[u8]) {
        let Some(file) = self.file.as_mut() else { return };
        let room = self.cap.saturating_sub(self.written) as usize;
        let take = bytes.len().min(room);
        let _ = file.write_all(&bytes[..take]);
        self.written += take as u64;
        if take < bytes.len() {
            let _ = writeln!(file, "\n[nightshift: log truncated at {} bytes]", self.cap);
            self.file = None;
        }
    }

    fn flush(&mut self) {
        if let Some(f) = self.file.as_mut() {
            let _ = f.flush();
        }
    }
}

/// The last few KiB of stderr, for failure reasons.
#[derive(Default)]
struct StderrTail {
    bytes: Vec<u8>,
}

impl StderrTail {
    const KEEP: usize = 4096;

    fn push(&mut self, chunk: &[u8]) {
        self.bytes.extend_from_slice(chunk);
        if self.bytes.len() > 2 * Self::KEEP {
            self.bytes.drain(..self.bytes.len() - Self::KEEP);
        }
    }

    /// The last `n` non-empty lines; from a Rust panic, its message instead (a backtrace after it
    /// would fill the lines with frames).
    fn last_lines(&self, n: usize) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.bytes);
        let lines: Vec<String> =
            text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| l.chars().take(300).collect()).collect();
        if let Some(at) = lines.iter().rposition(|l| l.starts_with("thread '") && l.contains(" panicked at ")) {
            return lines[at..(at + 2).min(lines.len())].to_vec();
        }
        lines[lines.len().saturating_sub(n)..].to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct PruneAt(u64, Mutex<Vec<(u64, f64)>>);

    impl Judge for PruneAt {
        fn judge(&self, report: &Report, value: f64) -> Result<Answer, String> {
            self.1.lock().unwrap().push((report.step, value));
            Ok(if report.step >= self.0 { Answer::Prune } else { Answer::Continue })
        }

        fn record(&self, report: &Report, value: f64) -> Result<(), String> {
            self.1.lock().unwrap().push((report.step, value));
            Ok(())
        }
    }

    fn exit_code(code: i32) -> ExitStatus {
        ExitStatus::from_raw(code << 8)
    }

    #[test]
    fn decide_covers_every_ending() {
        let mut f = Facts { exit: Some(exit_code(0)), ..Facts::default() };
        assert!(matches!(decide(&f), Outcome::Fail { reason, .. } if reason.contains("code 0 without reporting a result")));
        f.exit = Some(exit_code(3));
        f.stderr_tail = vec!["Traceback".into(), "ZeroDivisionError".into()];
        assert!(
            matches!(decide(&f), Outcome::Fail { reason, .. } if reason == "exited with code 3; last stderr: Traceback | ZeroDivisionError")
        );
        f.exit = Some(ExitStatus::from_raw(libc::SIGKILL));
        assert!(matches!(decide(&f), Outcome::Fail { infrastructure: true, .. }), "an unexplained SIGKILL is worth a retry");
        assert!(matches!(decide(&f), Outcome::Fail { reason, .. } if reason.contains("SIGKILL; out of memory?")));
        assert_eq!(describe_exit(ExitStatus::from_raw(libc::SIGKILL), false), "signal 9 (SIGKILL; out of memory?)");
        f.signalled = true;
        assert!(
            matches!(decide(&f), Outcome::Fail { infrastructure: false, reason } if reason.contains("SIGKILL, sent by nightshift"))
        );
        assert_eq!(describe_exit(ExitStatus::from_raw(libc::SIGKILL), true), "signal 9 (SIGKILL, sent by nightshift)");
        f.result = Some((Some(f64::NAN), BTreeMap::new()));
        assert!(matches!(decide(&f), Outcome::Fail { reason, .. } if reason == "diverged: NaN result"));
        f.result = Some((Some(0.9), BTreeMap::new()));
        assert!(matches!(decide(&f), Outcome::Complete { value, .. } if value == 0.9));
        f.pruned_at = Some(2);
        assert_eq!(decide(&f), Outcome::Pruned { step: 2 });
        f.stop = Some(StopCause::Timeout(Duration::from_secs(90)));
        assert!(matches!(decide(&f), Outcome::Fail { reason, .. } if reason == "timed out after 90s"));
        f.stop = Some(StopCause::Interrupted);
        assert_eq!(decide(&f), Outcome::Interrupted);
    }

    #[test]
    fn a_reported_error_outranks_the_exit() {
        let oom = TrialError { kind: "oom".into(), message: "CUDA out of memory".into() };
        let mut f = Facts { exit: Some(exit_code(3)), error: Some(oom), ..Facts::default() };
        assert_eq!(decide(&f), Outcome::OutOfMemory { message: "CUDA out of memory".into() });
        // Hung after saying so, and stopped: still out of memory.
        f.stop = Some(StopCause::Timeout(Duration::from_secs(5)));
        f.exit = Some(ExitStatus::from_raw(libc::SIGKILL));
        assert!(matches!(decide(&f), Outcome::OutOfMemory { .. }));
        f.error = Some(TrialError { kind: "dataset".into(), message: "no images".into() });
        assert!(matches!(decide(&f), Outcome::Fail { reason, infrastructure: false } if reason == "dataset: no images"));
        f.stop = Some(StopCause::Interrupted);
        assert_eq!(decide(&f), Outcome::Interrupted);
    }

    fn launch(script: &str, dir: &std::path::Path) -> TrialLaunch {
        TrialLaunch {
            number: 0,
            argv: vec!["sh".into(), "-c".into(), script.into()],
            env: vec![],
            cwd: dir.to_path_buf(),
            trial_dir: dir.join("t"),
        }
    }

    fn limits(timeout: Option<Duration>) -> TrialLimits {
        TrialLimits { timeout, kill_grace: Duration::from_millis(300), log_cap_bytes: 1000, objective_metric: "acc".into() }
    }

    #[tokio::test]
    async fn reports_are_judged_and_answers_reach_the_child() {
        let dir = tempfile::tempdir().unwrap();
        // The child echoes the answer it read into its stderr, then reports the result.
        let script = r#"echo '{"report": {"step": 1, "metrics": {"acc": 0.5}}}'; read a; echo "got $a" >&2
echo '{"result": {"value": 0.7}}'"#;
        let judge = Arc::new(PruneAt(99, Mutex::new(vec![])));
        let (_tx, rx) = watch::channel(false);
        let run = run_trial(launch(script, dir.path()), limits(None), judge.clone(), rx).await;
        assert_eq!(run.outcome, Outcome::Complete { value: 0.7, metrics: BTreeMap::new() });
        assert_eq!(*judge.1.lock().unwrap(), vec![(1, 0.5)]);
        let stderr = std::fs::read_to_string(dir.path().join("t/stderr.log")).unwrap();
        assert_eq!(stderr.trim(), "got {\"continue\": true}");
        assert!(run.first_report.is_some());
    }

    #[tokio::test]
    async fn a_child_ignoring_prune_and_sigterm_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let script = r#"trap '' TERM; echo '{"report": {"step": 1, "value": 0.5}}'; while true; do sleep 0.05; done"#;
        let (_tx, rx) = watch::channel(false);
        let t0 = Instant::now();
        let run = run_trial(launch(script, dir.path()), limits(None), Arc::new(PruneAt(1, Mutex::new(vec![]))), rx).await;
        assert_eq!(run.outcome, Outcome::Pruned { step: 1 });
        assert!(run.exit.as_deref().unwrap().contains("SIGKILL"), "{:?}", run.exit);
        let took = t0.elapsed();
        // The graces were waited out (a lower bound holds under any load; the SIGKILL above proves the escalation).
        assert!(took >= Duration::from_millis(600), "grace, SIGTERM, grace, SIGKILL: {took:?}");
    }

    #[tokio::test]
    async fn timeouts_and_garbage_fail_with_reasons() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let judge = || -> Arc<dyn Judge> { Arc::new(PruneAt(99, Mutex::new(vec![]))) };
        let run = run_trial(launch("sleep 30", dir.path()), limits(Some(Duration::from_millis(200))), judge(), rx.clone()).await;
        assert!(matches!(&run.outcome, Outcome::Fail { reason, .. } if reason == "timed out after 200ms"), "{:?}", run.outcome);
        let run = run_trial(
            launch(r#"echo '{"report": {"step": "x", "value": 1}}'; sleep 30"#, dir.path()),
            limits(None),
            judge(),
            rx.clone(),
        )
        .await;
        assert!(
            matches!(&run.outcome, Outcome::Fail { reason, .. } if reason.starts_with("protocol error: `report.step`")),
            "{:?}",
            run.outcome
        );
        let run = run_trial(launch("echo boom >&2; exit 4", dir.path()), limits(None), judge(), rx.clone()).await;
        assert!(
            matches!(&run.outcome, Outcome::Fail { reason, .. } if reason == "exited with code 4; last stderr: boom"),
            "{:?}",
            run.outcome
        );
        let recorder = Arc::new(PruneAt(99, Mutex::new(vec![])));
        let run = run_trial(
            launch(r#"echo '{"report": {"step": 2, "value": NaN}}'; sleep 30"#, dir.path()),
            limits(None),
            recorder.clone(),
            rx,
        )
        .await;
        assert!(matches!(&run.outcome, Outcome::Fail { reason, .. } if reason == "diverged: NaN at step 2"), "{:?}", run.outcome);
        let recorded = recorder.1.lock().unwrap().clone();
        assert!(matches!(recorded[..], [(2, v)] if v.is_nan()), "the NaN report is recorded: {recorded:?}");
    }

    #[tokio::test]
    async fn a_report_after_the_answer_prune_is_answered_prune_again() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let script = r#"echo '{"report": {"step": 1, "value": 0.5}}'; read a
echo '{"report": {"step": 2, "value": 0.6}}'; read b; echo "got $a $b" >&2"#;
        let judge = Arc::new(PruneAt(1, Mutex::new(vec![])));
        let run = run_trial(launch(script, dir.path()), limits(None), judge.clone(), rx).await;
        assert_eq!(run.outcome, Outcome::Pruned { step: 1 });
        assert_eq!(run.exit.as_deref(), Some("exit code 0"), "it read both answers and exited by itself");
        assert_eq!(*judge.1.lock().unwrap(), vec![(1, 0.5)], "the report after the prune is not recorded");
        let stderr = std::fs::read_to_string(dir.path().join("t/stderr.log")).unwrap();
        assert_eq!(stderr.trim(), r#"got {"prune": true} {"prune": true}"#);
    }

    #[tokio::test]
    async fn a_message_line_over_the_cap_fails_the_trial_instead_of_vanishing() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let script = r#"awk 'BEGIN { printf "{\"result\": {\"value\": 0.5, \"metrics\": {\"blob\": \""; for (i = 0; i < 1100000; i++) printf "x"; print "\"}}}" }'"#;
        let run = run_trial(launch(script, dir.path()), limits(None), Arc::new(PruneAt(9, Mutex::new(vec![]))), rx).await;
        assert!(
            matches!(&run.outcome, Outcome::Fail { reason, .. } if reason.starts_with("protocol error: a message line longer than the limit of 1048576 bytes: {\"result\"")),
            "{:?}",
            run.outcome
        );
    }

    #[test]
    fn a_panic_is_reported_by_its_message_not_its_backtrace() {
        let mut tail = StderrTail::default();
        tail.push(b"loading\nthread 'main' (7) panicked at src/train.rs:3:5:\nindex 5 out of bounds\nstack backtrace:\n   0: f\n   1: g\n   2: h\n");
        assert_eq!(tail.last_lines(5), ["thread 'main' (7) panicked at src/train.rs:3:5:", "index 5 out of bounds"]);
        let mut tail = StderrTail::default();
        tail.push(b"a\nb\nc\n");
        assert_eq!(tail.last_lines(2), ["b", "c"]);
    }

    /// Takes its time over each report, as a storage under load does.
    struct SlowJudge;

    impl Judge for SlowJudge {
        fn judge(&self, _: &Report, _: f64) -> Result<Answer, String> {
            std::thread::sleep(Duration::from_millis(5));
            Ok(Answer::Continue)
        }

        fn record(&self, _: &Report, _: f64) -> Result<(), String> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_flood_of_reports_does_not_hold_off_the_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        // 20,000 reports at once: one 64 KiB read holds ~1,700 of them, 8 s of judging.
        let script = r#"awk 'BEGIN { for (i = 1; i <= 20000; i++) printf "{\"report\": {\"step\": %d, \"value\": 0.5}}\n", i }'; sleep 30"#;
        let t0 = Instant::now();
        let run = run_trial(launch(script, dir.path()), limits(Some(Duration::from_millis(300))), Arc::new(SlowJudge), rx).await;
        assert!(matches!(&run.outcome, Outcome::Fail { reason, .. } if reason == "timed out after 300ms"), "{:?}", run.outcome);
        let took = t0.elapsed();
        assert!(took < Duration::from_secs(5), "the limit was checked only between reads: {took:?}");
    }

    #[tokio::test]
    async fn an_oom_line_ends_the_trial_as_out_of_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (_tx, rx) = watch::channel(false);
        let judge: Arc<dyn Judge> = Arc::new(PruneAt(99, Mutex::new(vec![])));
        let script = r#"echo '{"report": {"step": 1, "value": 0.5}}'; read a
echo '{"error": {"kind": "oom", "message": "Tried to allocate 2.00 GiB"}}'; echo 'Traceback …' >&2; exit 75"#;
        let run = run_trial(launch(script, dir.path()), limits(None), judge.clone(), rx.clone()).await;
        assert_eq!(run.outcome, Outcome::OutOfMemory { message: "Tried to allocate 2.00 GiB".into() });
        assert_eq!(run.exit.as_deref(), Some("exit code 75"));
        // A malformed error line is a protocol error, not a lost trial.
        let run = run_trial(launch(r#"echo '{"error": {"kind": 5}}'; sleep 30"#, dir.path()), limits(None), judge, rx).await;
        assert!(
            matches!(&run.outcome, Outcome::Fail { reason, .. } if reason.starts_with("protocol error: `error.kind`")),
            "{:?}",
            run.outcome
        );
    }

    #[tokio::test]
    async fn interrupt_stops_the_child() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = watch::channel(false);
        let task =
            tokio::spawn(run_trial(launch("sleep 30", dir.path()), limits(None), Arc::new(PruneAt(9, Mutex::new(vec![]))), rx));
        tokio::time::sleep(Duration::from_millis(100)).await;
        tx.send(true).unwrap();
        assert_eq!(task.await.unwrap().outcome, Outcome::Interrupted);
    }
}

//! Helpers for integration tests that drive the real `nightshift` binary in a temp dir.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The fake trial program (tests/fixtures/fake_trial.py).
pub const FAKE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake_trial.py");

/// How long any one `nightshift` command may take before the test calls it hung.
pub const HUNG_AFTER: Duration = Duration::from_secs(300);

pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).expect("write fixture");
        path
    }

    /// A `nightshift` command running in the sandbox, with a storage inside it. An inherited
    /// `CUDA_VISIBLE_DEVICES` is removed, so that GPU slots do not depend on the machine running the tests.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_nightshift"));
        cmd.current_dir(self.path())
            .args(args)
            .env_remove("NIGHTSHIFT_STORAGE")
            .env_remove("NIGHTSHIFT_FAULT_POINT")
            .env_remove("CUDA_VISIBLE_DEVICES");
        if let Some(bin) = self.fake_bin() {
            cmd.env("PATH", prepend_path(&bin));
        }
        cmd
    }

    /// Puts an `nvidia-smi` first on the PATH of this sandbox's commands: a shell script whose body is
    /// `script` (e.g. `cat <<'EOF'` … a listing, or a hang).
    pub fn fake_nvidia_smi(&self, script: &str) {
        use std::os::unix::fs::PermissionsExt;
        let bin = self.path().join("fake-bin");
        std::fs::create_dir_all(&bin).expect("fake-bin");
        let path = bin.join("nvidia-smi");
        std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).expect("write fake nvidia-smi");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod fake nvidia-smi");
    }

    fn fake_bin(&self) -> Option<PathBuf> {
        let bin = self.path().join("fake-bin");
        bin.is_dir().then_some(bin)
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = output_within(&mut self.cmd(args), HUNG_AFTER);
        assert!(out.status.success(), "nightshift {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }

    /// Runs a sweep that ends without a single completed trial: asserts exit code 1 with the
    /// "no trial completed" error (and no panic); returns stdout and stderr.
    pub fn no_result(&self, args: &[&str]) -> (String, String) {
        let out = output_within(&mut self.cmd(args), HUNG_AFTER);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(
            out.status.code() == Some(1) && stderr.contains("no trial completed") && !stderr.contains("panicked"),
            "nightshift {args:?} should have ended without a result ({}): {stderr}",
            out.status
        );
        (String::from_utf8(out.stdout).expect("utf-8 stdout"), stderr)
    }

    /// Runs and asserts failure without a panic; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = output_within(&mut self.cmd(args), HUNG_AFTER);
        assert!(
            !out.status.success(),
            "nightshift {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(!stderr.contains("panicked"), "nightshift {args:?} panicked: {stderr}");
        stderr
    }
}

/// `dir` followed by this process's PATH.
pub fn prepend_path(dir: &Path) -> std::ffi::OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(dir.to_path_buf()).chain(std::env::split_paths(&rest))).expect("PATH")
}

/// A fake `nvidia-smi -L` listing `n` GPUs, GPU i with UUID `GPU-000i…`.
pub fn smi_listing(n: u32) -> String {
    let lines: Vec<String> =
        (0..n).map(|i| format!("GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-000{i}aaaa-0000-0000-0000-000000000000)")).collect();
    format!("cat <<'EOF'\n{}\nEOF", lines.join("\n"))
}

/// Runs `cmd` with stdout and stderr captured; a command still running after `limit` is killed
/// and fails the test (a hung sweep must fail, not hang the suite).
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn nightshift");
    // Drain both pipes while waiting, so a chatty child never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for nightshift") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} was still running after {limit:?}: hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: stdout.join().expect("stdout reader"), stderr: stderr.join().expect("stderr reader") }
}

/// A spec running the fake trial with `args`; `extra` adds/overrides top-level fields.
pub fn spec(study: &str, budget: &str, devices: &str, args: &str, extra: &str) -> String {
    let args = if args.is_empty() { String::new() } else { format!(", {args}") };
    command_spec(study, budget, devices, &format!("[python3, \"{FAKE}\", \"--log\", \"events.jsonl\"{args}]"), extra)
}

/// A spec running `command` (a YAML flow list) on parameter `x` in [0, 1], with short heartbeats
/// and grace periods so that crash recovery is quick.
pub fn command_spec(study: &str, budget: &str, devices: &str, command: &str, extra: &str) -> String {
    format!(
        "study: {study}\n\
         objective: {{metric: score, direction: maximize}}\n\
         sampler: {{type: random, seed: 1}}\n\
         budget: {budget}\n\
         devices: {devices}\n\
         command: {command}\n\
         params:\n  x: {{type: float, low: 0.0, high: 1.0}}\n\
         heartbeat: {{interval: 200ms, stale_after: 1s}}\n\
         kill_grace: 300ms\n{extra}"
    )
}

/// The default SQLite file of a study run in `sb`.
pub fn study_db(sb: &Sandbox, study: &str) -> PathBuf {
    sb.path().join(format!("reports/{study}/study.db"))
}

/// Every trial of a study run in `sb` (default storage), as `nightshift trials -f json` prints them.
pub fn study_trials(sb: &Sandbox, study: &str) -> Vec<Value> {
    let storage = format!("sqlite:///reports/{study}/study.db");
    let out = sb.ok(&["trials", "--storage", &storage, "--study-name", study, "-f", "json"]);
    let v: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    v.as_array().unwrap().clone()
}

/// The fake trial's event log (`--log events.jsonl`).
pub fn events(sb: &Sandbox) -> Vec<Value> {
    let text = std::fs::read_to_string(sb.path().join("events.jsonl")).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A trial's recorded FAIL reason ("" when it has none).
pub fn reason(t: &Value) -> String {
    t["system_attrs"]["fail_reason"].as_str().unwrap_or_default().to_string()
}

/// Asserts that SQLite's `PRAGMA integrity_check` passes on `db`.
pub fn assert_integrity(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap_or_else(|e| panic!("{} does not open: {e}", db.display()));
    let result: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).expect("integrity_check runs");
    assert_eq!(result, "ok", "integrity_check of {}", db.display());
}

/// How many of the fake trials' events are `event`.
pub fn count(events: &[Value], event: &str) -> usize {
    events.iter().filter(|e| e["event"] == event).count()
}

/// Waits until the fake trials' event log satisfies `ready` (`what` names it for the failure message).
/// Synchronises on events, not on time: the limit only turns a hang into a failure.
pub fn wait_for_events(sb: &Sandbox, what: &str, ready: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + HUNG_AFTER;
    loop {
        let ev = events(sb);
        if ready(&ev) {
            return;
        }
        assert!(Instant::now() < deadline, "waited {HUNG_AFTER:?} for: {what}; events: {ev:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process as `/proc/<pid>/stat` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// Exited and reaped (or never existed).
    Gone,
    /// Exited, but not yet reaped by `parent` (a zombie, state `Z`/`X`).
    Defunct {
        parent: u64,
    },
    Running,
}

pub fn process_state(pid: u64) -> ProcessState {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return ProcessState::Gone };
    // `pid (comm) state ppid …`: the state and the parent follow the parenthesised command name.
    let mut fields = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace()).into_iter().flatten();
    let state = fields.next().unwrap_or_default();
    let parent = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    if state.starts_with(['Z', 'X']) { ProcessState::Defunct { parent } } else { ProcessState::Running }
}

/// Whether process `pid` is still running.
pub fn alive(pid: u64) -> bool {
    process_state(pid) == ProcessState::Running
}

/// Whether `pid` still holds on: running, or defunct while a parent that should reap it lives on (a
/// nightshift process that forgot to wait for its child). A defunct process whose parent is PID 1 was
/// orphaned when its parent died, then died itself; reaping it is init's job, and this machine's PID 1
/// never reaps, so such zombies stay until reboot.
pub fn lingers(pid: u64) -> bool {
    match process_state(pid) {
        ProcessState::Gone => false,
        ProcessState::Defunct { parent } => parent != 1,
        ProcessState::Running => true,
    }
}

/// Waits for every process in `pids` to be gone (see [`lingers`]); returns those that never went, with
/// their state. Killed processes go at their own pace on a loaded machine: the wait ends on their exit,
/// and [`HUNG_AFTER`] only turns a process that never exits into a failure.
pub fn survivors(pids: &[u64]) -> Vec<(u64, ProcessState)> {
    let deadline = Instant::now() + HUNG_AFTER;
    loop {
        let left: Vec<u64> = pids.iter().copied().filter(|p| lingers(*p)).collect();
        if left.is_empty() || Instant::now() > deadline {
            return left.into_iter().map(|p| (p, process_state(p))).collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `nightshift run spec_file` on `storage`, joined by three `nightshift worker`s (`--devices cpu:2` each) once
/// its first trial started (workers need the spec `run` stores with the study); all four must finish the
/// budget and exit 0.
pub fn run_with_workers(sb: &Sandbox, spec_file: &str, storage: &str, study: &str) {
    let mut first = sb.cmd(&["run", spec_file, "--quiet", "--storage", storage]).stdout(Stdio::null()).spawn().unwrap();
    wait_for_events(sb, "the first trial started", |ev| count(ev, "start") >= 1);
    let workers: Vec<_> = (0..3)
        .map(|_| {
            sb.cmd(&["worker", "--storage", storage, "--study", study, "--devices", "cpu:2", "--quiet"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && stdout.contains("budget reached"), "worker: {stdout}\n{stderr}");
    }
    assert!(first.wait().unwrap().success());
}

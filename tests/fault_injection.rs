//! Crash and fault tests. `nightshift run` is SIGKILLed at chosen points of a sweep through the
//! `NIGHTSHIFT_FAULT_POINT=<point>:<n>` testing hook (crates/orchestrator/src/fault.rs), then
//! `nightshift resume` must finish the budget with completed trials intact, no trial left RUNNING,
//! no leftover trial process, no duplicate trial number, and a study file that passes
//! `PRAGMA integrity_check`. Then misbehaving trials (forking, flooding) and a full disk.

mod common;

use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use common::{
    HUNG_AFTER, Sandbox, assert_integrity, command_spec, events, output_within, reason, spec, study_db, study_trials, survivors,
};
use serde_json::Value;

const BUDGET: u64 = 8;
const STUDY: &str = "crash";
const SIGKILL: i32 = 9;

/// Every pid the fake trials logged: the trial processes and the children they spawned.
fn trial_pids(sb: &Sandbox) -> Vec<u64> {
    events(sb)
        .iter()
        .flat_map(|e| [e["pid"].as_u64(), e["child"].as_u64()])
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Runs the sweep with `point:n` armed and checks that it died there (SIGKILL); returns the
/// study's trials at that moment.
fn crash_at(sb: &Sandbox, point: &str, n: u32) -> Vec<Value> {
    sb.file("s.yaml", &spec(STUDY, &format!("{{trials: {BUDGET}}}"), "{cpu: 2}", "--steps, 3, --sleep, 0.1, --spawn-child", ""));
    let mut cmd = sb.cmd(&["run", "s.yaml", "--quiet"]);
    cmd.env("NIGHTSHIFT_FAULT_POINT", format!("{point}:{n}"));
    let out = output_within(&mut cmd, HUNG_AFTER);
    assert_eq!(
        out.status.signal(),
        Some(SIGKILL),
        "{point}:{n} should have killed the run ({}); stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert_integrity(&study_db(sb, STUDY));
    study_trials(sb, STUDY)
}

/// Resumes after a crash and checks everything the crash must not have broken.
fn resume_and_check(sb: &Sandbox, before: &[Value]) -> Vec<Value> {
    let run = sb.cmd(&["resume", STUDY, "--quiet"]).output().unwrap();
    let (out, err) = (String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success() && out.contains("budget reached"), "{out}{err}");
    // The recovery's warning reaches the console (stderr), not only the log file, even with --quiet.
    if before.iter().any(|t| t["state"] == "RUNNING") {
        assert!(err.contains("WARN") && err.contains("stale heartbeat"), "stderr: {err}");
    }
    let after = study_trials(sb, STUDY);
    let numbers: Vec<u64> = after.iter().map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..BUDGET).collect::<Vec<_>>(), "trial numbers 0..{BUDGET}, none twice, none missing");
    for t in &after {
        assert!(["COMPLETE", "PRUNED", "FAIL"].contains(&t["state"].as_str().unwrap()), "unfinished trial: {t}");
    }
    for t in before.iter().filter(|t| t["state"] == "COMPLETE") {
        let n = t["number"].as_u64().unwrap() as usize;
        assert_eq!(after[n]["state"], "COMPLETE");
        assert_eq!((&after[n]["value"], &after[n]["params"]), (&t["value"], &t["params"]), "completed trial {n} intact");
    }
    for t in before.iter().filter(|t| t["state"] == "RUNNING") {
        let n = t["number"].as_u64().unwrap() as usize;
        assert_eq!(after[n]["state"], "FAIL", "the crashed run's trial {n}: {}", after[n]);
        assert!(reason(&after[n]).contains("stale: no heartbeat"), "{}", reason(&after[n]));
    }
    assert_integrity(&study_db(sb, STUDY));
    let left = survivors(&trial_pids(sb));
    assert!(left.is_empty(), "trial processes (or their children) outlived the sweep: {left:?}");
    let page = std::fs::read_to_string(sb.path().join(format!("reports/{STUDY}/index.html"))).expect("the report exists");
    assert!(page.trim_end().ends_with("</html>") && page.contains(&format!("{BUDGET} trials")), "a whole, current report");
    after
}

#[test]
fn crash_at_startup_after_the_study_is_created() {
    let sb = Sandbox::new();
    let before = crash_at(&sb, "study-created", 1);
    assert!(before.is_empty(), "{before:?}");
    // The spec was stored with the study in the same step: `resume` needs nothing else.
    resume_and_check(&sb, &before);
}

#[test]
fn crash_during_ask() {
    let sb = Sandbox::new();
    let before = crash_at(&sb, "during-ask", 3);
    // Asked and claimed but never placed on a slot: it must still go stale (it beats from creation).
    let last = before.last().expect("trials were asked");
    assert_eq!((last["number"].as_u64(), last["state"].as_str()), (Some(2), Some("RUNNING")), "{before:?}");
    assert!(last["system_attrs"]["device"].is_null(), "killed before the trial was placed: {last}");
    resume_and_check(&sb, &before);
}

#[test]
fn crash_mid_trial_kills_the_trial_processes() {
    let sb = Sandbox::new();
    let before = crash_at(&sb, "mid-trial", 5);
    assert!(before.iter().any(|t| t["state"] == "RUNNING"), "{before:?}");
    // The trials die with their orchestrator (PR_SET_PDEATHSIG), before anyone resumes; their
    // `sleep` children are found and killed by the resume's stale-trial recovery.
    let leaders: Vec<u64> = events(&sb).iter().filter(|e| e["event"] == "start").filter_map(|e| e["pid"].as_u64()).collect();
    let left = survivors(&leaders);
    assert!(left.is_empty(), "trial processes outlived their orchestrator: {left:?}");
    resume_and_check(&sb, &before);
}

#[test]
fn crash_right_after_a_trial_process_is_spawned() {
    let sb = Sandbox::new();
    let before = crash_at(&sb, "trial-spawned", 4);
    resume_and_check(&sb, &before);
}

#[test]
fn crash_during_tell() {
    let sb = Sandbox::new();
    let before = crash_at(&sb, "during-tell", 2);
    // The ending trial had its end attributes written but not its state.
    assert!(before.iter().any(|t| t["state"] == "RUNNING" && !t["system_attrs"]["end"].is_null()), "{before:?}");
    resume_and_check(&sb, &before);
}

#[test]
fn crash_while_writing_the_report() {
    let sb = Sandbox::new();
    let before = crash_at(&sb, "writing-report", 1);
    assert!(before.iter().filter(|t| t["state"] == "COMPLETE").count() >= 4, "the first refresh follows 4 trials: {before:?}");
    resume_and_check(&sb, &before);
}

#[test]
fn kill_9_takes_the_trials_down_and_resume_kills_what_they_left() {
    let sb = Sandbox::new();
    // Two long trials (30 s before their first report), each with a `sleep 300` child.
    sb.file("s.yaml", &spec("long", "{trials: 2}", "{cpu: 2}", "--steps, 1, --sleep, 30, --spawn-child", ""));
    let mut run = sb.cmd(&["run", "s.yaml", "--quiet"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    common::wait_for_events(&sb, "both trials spawned their child", |ev| common::count(ev, "child") >= 2);
    run.kill().unwrap(); // SIGKILL
    run.wait().unwrap();
    let ev = events(&sb);
    let leaders: Vec<u64> = ev.iter().filter(|e| e["event"] == "start").filter_map(|e| e["pid"].as_u64()).collect();
    let children: Vec<u64> = ev.iter().filter_map(|e| e["child"].as_u64()).collect();
    // The trials would sleep 30 s more: they die with their orchestrator (PR_SET_PDEATHSIG).
    let left = survivors(&leaders);
    assert!(left.is_empty(), "trials outlived their orchestrator: {left:?}");
    // What they started lives on, orphaned (here `sleep 300`); the resume finds and kills it.
    assert!(children.iter().all(|c| common::alive(*c)), "children are left behind until the resume");
    let out = sb.ok(&["resume", "long", "--quiet"]);
    assert!(out.contains("budget reached"), "{out}");
    let left = survivors(&children);
    assert!(left.is_empty(), "the trials' children outlived the resume: {left:?}");
    for t in study_trials(&sb, "long") {
        assert_eq!(t["state"], "FAIL", "{t}");
        assert!(reason(&t).contains("stale: no heartbeat"), "{t}");
    }
    assert_integrity(&study_db(&sb, "long"));
}

#[test]
fn a_trial_that_forks_and_dies_leaves_no_children() {
    let sb = Sandbox::new();
    let budget = "{trials: 2, max_consecutive_failures: 5}";
    sb.file("s.yaml", &spec("forks", budget, "{cpu: 2}", "--mode, crash, --spawn-child, --sleep, 0.05", ""));
    sb.no_result(&["run", "s.yaml", "--quiet"]);
    let children: Vec<u64> = events(&sb).iter().filter_map(|e| e["child"].as_u64()).collect();
    assert_eq!(children.len(), 2, "each trial spawned a child");
    let left = survivors(&children);
    assert!(left.is_empty(), "children outlived their trial: {left:?}");
    for t in study_trials(&sb, "forks") {
        assert_eq!(t["state"], "FAIL");
        assert!(reason(&t).starts_with("exited with code 3"), "{}", reason(&t));
    }
}

#[test]
fn a_trial_flooding_its_logs_is_capped_and_the_sweep_goes_on() {
    let sb = Sandbox::new();
    // 20 MB on each of stdout and stderr, above the 16 MiB cap (docs/protocol.md).
    sb.file("s.yaml", &spec("flood", "{trials: 2}", "{cpu: 1}", "--flood, 20000000, --steps, 2, --sleep, 0.01", ""));
    sb.ok(&["run", "s.yaml", "--quiet"]);
    let trials = study_trials(&sb, "flood");
    assert!(trials.iter().all(|t| t["state"] == "COMPLETE"), "the protocol lines after the flood still count: {trials:?}");
    for n in 0..2 {
        for log in ["stdout.log", "stderr.log"] {
            let path = sb.path().join(format!("reports/flood/trials/{n}/{log}"));
            let size = std::fs::metadata(&path).unwrap().len();
            assert!(size <= (16 << 20) + 200, "{} is {size} bytes", path.display());
            assert!(size >= 16 << 20, "{} holds the first 16 MiB: {size}", path.display());
            let tail = std::fs::read(&path).unwrap();
            let tail = String::from_utf8_lossy(&tail[tail.len() - 100..]);
            assert!(tail.contains("[nightshift: log truncated at 16777216 bytes]"), "{tail}");
        }
    }
}

/// Runs `command` (a shell command line, e.g. `mount …`), quietly; whether it succeeded.
fn sh(command: &str) -> bool {
    let status = std::process::Command::new("sh")
        .args(["-c", command])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    matches!(status, Ok(s) if s.success())
}

/// A small filesystem mounted at `mnt` for the study file, unmounted (and its loop device freed)
/// on drop; `None` when mounting is not permitted here (it needs root / CAP_SYS_ADMIN).
struct Disk {
    mnt: PathBuf,
    loop_dev: Option<String>,
}

impl Disk {
    /// A tmpfs of `size`.
    fn tmpfs(mnt: &Path, size: &str) -> Option<Disk> {
        std::fs::create_dir_all(mnt).unwrap();
        sh(&format!("mount -t tmpfs -o size={size} tmpfs '{}'", mnt.display()))
            .then(|| Disk { mnt: mnt.to_path_buf(), loop_dev: None })
    }

    /// A 16 MiB ext4 filesystem in a file, on a loop device.
    fn ext4(mnt: &Path) -> Option<Disk> {
        std::fs::create_dir_all(mnt).unwrap();
        let image = mnt.with_extension("img");
        std::fs::File::create(&image).unwrap().set_len(16 << 20).unwrap();
        if !sh(&format!("mkfs.ext4 -q -F '{}'", image.display())) {
            return None;
        }
        let out = std::process::Command::new("losetup").args(["--find", "--show"]).arg(&image).output().ok()?;
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !out.status.success() || dev.is_empty() {
            return None;
        }
        let disk = Disk { mnt: mnt.to_path_buf(), loop_dev: Some(dev) };
        disk.remount().then_some(disk)
    }

    /// Mounts the loop device again (after a shutdown, the filesystem must be unmounted first).
    fn remount(&self) -> bool {
        let dev = self.loop_dev.as_deref().expect("a loop device");
        let _ = sh(&format!("umount '{}'", self.mnt.display()));
        sh(&format!("mount '{dev}' '{}'", self.mnt.display()))
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        let _ = sh(&format!("umount -l '{}'", self.mnt.display()));
        if let Some(dev) = &self.loop_dev {
            let _ = sh(&format!("losetup -d '{dev}'"));
        }
    }
}

/// A 4-trial sweep whose study file lives on `disk`; trial 1 runs `sabotage` (Python) before it
/// reports. The sweep must stop with an error naming the study file and one of `causes`, no
/// panic; after `repair`, the file must pass integrity_check and `resume` must finish the budget.
fn disk_fault(sb: &Sandbox, disk: &Disk, sabotage: &str, causes: &[&str], repair: impl FnOnce()) {
    let db = disk.mnt.join("study.db");
    let mut program = String::from("import os, sys\nif int(os.environ['NIGHTSHIFT_TRIAL_NUMBER']) == 1:\n");
    for line in sabotage.lines() {
        program.push_str(&format!("    {line}\n"));
    }
    program.push_str("print('{\"result\": {\"value\": 0.5}}', flush=True)\n");
    let script = sb.file("sabotage.py", &program);
    let extra = format!("storage: sqlite:///{}\n", db.display());
    sb.file("s.yaml", &command_spec("disk", "{trials: 4}", "{cpu: 1}", &format!("[python3, \"{}\"]", script.display()), &extra));
    let out = output_within(&mut sb.cmd(&["run", "s.yaml", "--quiet"]), HUNG_AFTER);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !stderr.contains("panicked"), "the sweep stops with an error: {stderr}");
    assert!(
        stderr.contains("study.db") && causes.iter().any(|c| stderr.contains(c)),
        "the error names the database and one of {causes:?}: {stderr}"
    );
    assert!(stderr.contains("then `nightshift resume`"), "the error says what to do: {stderr}");
    repair();
    assert_integrity(&db);
    let storage = format!("sqlite:///{}", db.display());
    let out = sb.ok(&["resume", "disk", "--storage", &storage, "--quiet"]);
    assert!(out.contains("budget reached"), "{out}");
    let trials: Value =
        serde_json::from_str(&sb.ok(&["trials", "--storage", &storage, "--study-name", "disk", "-f", "json"])).unwrap();
    let numbers: Vec<u64> = trials.as_array().unwrap().iter().map(|t| t["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [0, 1, 2, 3]);
    assert!(trials.as_array().unwrap().iter().all(|t| t["state"] != "RUNNING"), "{trials}");
    assert_integrity(&db);
}

#[test]
fn a_full_disk_stops_the_sweep_cleanly_and_the_study_survives() {
    let sb = Sandbox::new();
    let Some(disk) = Disk::tmpfs(&sb.path().join("small-disk"), "2m") else {
        nightshift_testkit::skip(
            "a_full_disk_stops_the_sweep_cleanly_and_the_study_survives",
            "permission to mount a tmpfs",
            "run as root or with CAP_SYS_ADMIN",
        );
        return;
    };
    let filler = disk.mnt.join("filler");
    let fill = format!(
        "try:\n    with open({:?}, 'wb') as f:\n        while True: f.write(b'x' * 65536); f.flush()\nexcept OSError: pass",
        filler.display().to_string()
    );
    disk_fault(&sb, &disk, &fill, &["database or disk is full"], || std::fs::remove_file(&filler).unwrap());
}

#[test]
fn a_failing_disk_stops_the_sweep_cleanly_and_the_study_survives() {
    let sb = Sandbox::new();
    let Some(disk) = Disk::ext4(&sb.path().join("ext4-disk")) else {
        nightshift_testkit::skip(
            "a_failing_disk_stops_the_sweep_cleanly_and_the_study_survives",
            "an ext4 loop device (mkfs.ext4, losetup, mount)",
            "run as root with e2fsprogs and util-linux installed",
        );
        return;
    };
    // EXT4_IOC_SHUTDOWN (flag 0: sync everything written so far, then shut down): from now on every
    // write fails with EIO, as when the disk goes read-only or away under the sweep. (With a flag
    // that skips the sync it is a power cut, and commits not yet synced are lost: in WAL mode with
    // synchronous=NORMAL, SQLite is durable across process crashes, not power loss.)
    let shutdown = format!(
        "import fcntl, struct\nfd = os.open({:?}, os.O_RDONLY)\nfcntl.ioctl(fd, 0x8004587D, struct.pack('I', 0))",
        disk.mnt.display().to_string()
    );
    // SQLite reports the failed reads and writes as an I/O error or, when a read comes back short,
    // as a malformed image; either way the file is fine once the disk is back.
    let causes = ["disk I/O error", "database disk image is malformed"];
    disk_fault(&sb, &disk, &shutdown, &causes, || assert!(disk.remount(), "the filesystem mounts again"));
}

/// The survivor check itself: a defunct child whose parent lives on without reaping it is not gone.
#[test]
fn a_defunct_child_of_a_live_parent_counts_as_a_survivor() {
    use std::io::BufRead;
    // The shell becomes `sleep 300` (same pid) before its child `sleep 1` exits, and never reaps it.
    let mut parent = std::process::Command::new("sh")
        .args(["-c", "sleep 1 & echo $!; exec sleep 300"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(parent.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let child: u64 = line.trim().parse().unwrap();
    let defunct = common::ProcessState::Defunct { parent: parent.id() as u64 };
    while common::process_state(child) != defunct {
        assert_eq!(common::process_state(child), common::ProcessState::Running, "child {child}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(common::lingers(child), "a zombie whose parent is alive is not gone");
    assert!(!common::alive(child));
    parent.kill().unwrap();
    parent.wait().unwrap();
    // Orphaned, the zombie belongs to PID 1 now: gone as far as nightshift is concerned.
    assert!(survivors(&[child]).is_empty());
}

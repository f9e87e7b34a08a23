//! The exit codes of `nightshift run`, as a shell, Slurm or Kubernetes sees them: 0 finished, 3 stopped by
//! the clock with budget left, 130 SIGINT, 143 SIGTERM (1 and 2, errors and usage, are covered elsewhere).

mod common;

use std::time::{Duration, Instant};

use common::{Sandbox, spec};

const LIMIT: Duration = Duration::from_secs(120);

#[test]
fn a_finished_sweep_exits_0_and_one_stopped_by_its_timeout_exits_3() {
    let sb = Sandbox::new();
    sb.file("done.yaml", &spec("done", "{trials: 2}", "{cpu: 1}", "--steps, 1, --sleep, 0.01", ""));
    assert_eq!(sb.cmd(&["run", "done.yaml", "--quiet"]).output().unwrap().status.code(), Some(0));

    // One slot, trials of a second each, a one-second timeout: the budget of 50 cannot be used.
    sb.file("clock.yaml", &spec("clock", "{trials: 50, timeout: 1s}", "{cpu: 1}", "--steps, 1, --sleep, 1.0", ""));
    let out = sb.cmd(&["run", "clock.yaml", "--quiet"]).output().unwrap();
    assert_eq!(out.status.code(), Some(3), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("timeout reached"));
}

/// Starts a long sweep, waits for its first trial, sends `signal` (with `kill`), and returns the exit code
/// and what the sweep printed (stdout, then stderr).
fn exit_code_after(signal: &str) -> (Option<i32>, String) {
    let sb = Sandbox::new();
    sb.file("s.yaml", &spec("sig", "{trials: 50}", "{cpu: 1}", "--steps, 2, --sleep, 0.5", ""));
    let (out, err) = (sb.path().join("out.txt"), sb.path().join("err.txt"));
    let mut child = sb
        .cmd(&["run", "s.yaml", "--color", "never"])
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let started = Instant::now();
    // The first trial's directory exists once the sweep (and its signal handler) runs.
    while !sb.path().join("reports/sig/trials/0").exists() {
        assert!(started.elapsed() < LIMIT, "the sweep did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let sent = std::process::Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let printed = std::fs::read_to_string(&out).unwrap() + &std::fs::read_to_string(&err).unwrap();
            return (status.code(), printed);
        }
        if started.elapsed() > LIMIT {
            child.kill().unwrap();
            panic!("the sweep did not stop after {signal}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_sweep_stopped_by_sigint_exits_130() {
    let (code, printed) = exit_code_after("-INT");
    assert_eq!(code, Some(130), "{printed}");
    // One line says that it stops, and how to stop the running trial too.
    assert_eq!(printed.matches("stopping:").count(), 1, "{printed}");
    assert!(printed.contains("a second Ctrl-C or SIGTERM stops them"), "{printed}");
}

#[test]
fn a_sweep_stopped_by_sigterm_exits_143() {
    assert_eq!(exit_code_after("-TERM").0, Some(143));
}

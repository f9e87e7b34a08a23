//! Output discipline of `nightshift run`: progress on stderr, results on stdout, and progress lines
//! (not bars, not silence) where no bars can be drawn — a pipe here, as in a log file or under
//! `TERM=dumb`.

mod common;

use common::{Sandbox, spec};

#[test]
fn progress_goes_to_stderr_and_the_summary_to_stdout() {
    let sb = Sandbox::new();
    for (n, term) in ["dumb", "xterm-256color"].into_iter().enumerate() {
        sb.file("s.yaml", &spec(&format!("streams{n}"), "{trials: 2}", "{cpu: 1}", "--steps, 1, --sleep, 0.01", ""));
        let out = sb.cmd(&["run", "s.yaml"]).env("TERM", term).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // Progress: a line when each trial starts and when it finishes, on stderr only.
        assert!(stderr.contains("trial 0 started on"), "TERM={term}, stderr: {stderr}");
        assert!(stderr.lines().any(|l| l.starts_with("trial 1 COMPLETE")), "TERM={term}, stderr: {stderr}");
        assert!(!stdout.contains("started on") && !stdout.contains(" COMPLETE value"), "TERM={term}, stdout: {stdout}");
        // Results: the summary, on stdout.
        assert!(stdout.contains("best: trial"), "TERM={term}, stdout: {stdout}");
    }
    // --quiet silences the progress but keeps the results.
    sb.file("s.yaml", &spec("quiet", "{trials: 2}", "{cpu: 1}", "--steps, 1, --sleep, 0.01", ""));
    let out = sb.cmd(&["run", "s.yaml", "--quiet"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("started on"));
    assert!(String::from_utf8_lossy(&out.stdout).contains("best: trial"));
}

#[test]
fn a_verb_that_prints_ends_quietly_when_its_reader_has_gone() {
    use std::os::unix::process::ExitStatusExt;
    let sb = Sandbox::new();
    sb.file("s.yaml", &spec("closed_pipe", "{trials: 2}", "{cpu: 1}", "--steps, 1", ""));
    // `nightshift check s.yaml | head -0`: the reader is gone before anything is written.
    for args in [&["check", "s.yaml"][..], &["completions", "bash"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = sb.cmd(args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{args:?}: {:?}, stderr: {stderr}", out.status);
    }
}

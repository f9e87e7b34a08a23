//! Loads the written report in headless Chromium, from disk, offline: the page must render with no
//! console message (script errors, CSP violations, failed loads) and every chart image loaded.
//!
//! Skipped, saying so, where no Chromium is installed (`apt-get install chromium`). Set
//! `NIGHTSHIFT_REPORT_SCREENSHOT=/path/shot.png` to keep the screenshot.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nightshift_report::{ReportOptions, write_report};

const CANDIDATES: [&str; 3] = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"];

struct Run {
    stdout: String,
    stderr: String,
}

fn chromium(binary: &Path, profile: &Path, extra: &[String], page: &Path) -> Run {
    let mut child = Command::new(binary)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-quic",
            "--no-first-run",
        ])
        .args(["--disable-component-update", "--disable-sync", "--enable-logging=stderr", "--v=0", "--hide-scrollbars"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(format!("file://{}", page.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let reader_out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut out, &mut s).ok();
        s
    });
    let reader_err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut err, &mut s).ok();
        s
    });
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if start.elapsed() > Duration::from_secs(90) {
            child.kill().ok();
            child.wait().ok();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Run { stdout: reader_out.join().unwrap(), stderr: reader_err.join().unwrap() }
}

/// Console messages from the page: Chromium logs them as `…:CONSOLE(line)] "message", source: …`.
fn console_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

#[test]
fn headless_chromium_renders_the_page_with_no_console_error_or_missing_image() {
    let Some(binary) = CANDIDATES.iter().map(PathBuf::from).find(|p| p.is_file()) else {
        nightshift_testkit::skip(
            "headless_chromium_renders_the_page_with_no_console_error_or_missing_image",
            &format!("Chromium (looked at {CANDIDATES:?})"),
            "apt-get install chromium",
        );
        return;
    };
    let (study, trials) = common::synthetic_sweep(120, 17);
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report");
    let options =
        ReportOptions { objective_metric: Some("validation accuracy".into()), max_steps: Some(10), ..Default::default() };
    let files = write_report(&study, &trials, &options, &report).unwrap();

    // 1. The DOM after load: the page's own check marks whether every image decoded.
    let run = chromium(&binary, &dir.path().join("profile-1"), &["--dump-dom".into()], &files.index);
    assert!(run.stdout.contains("Sweep report: fashion-finetune"), "no DOM dumped; stderr:\n{}", run.stderr);
    assert!(run.stdout.contains("data-images=\"ok\""), "images did not all load; stderr:\n{}", run.stderr);
    assert_eq!(console_lines(&run.stderr), Vec::<&str>::new(), "console output while loading the page");

    // 2. A full-page screenshot decodes and is the requested size.
    let shot = dir.path().join("shot.png");
    let run = chromium(
        &binary,
        &dir.path().join("profile-2"),
        &[format!("--screenshot={}", shot.display()), "--window-size=1280,3800".into()],
        &files.index,
    );
    assert_eq!(console_lines(&run.stderr), Vec::<&str>::new(), "console output while taking the screenshot");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).expect("no screenshot written")));
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!((info.width, info.height), (1280, 3800));
    if let Some(keep) = std::env::var_os("NIGHTSHIFT_REPORT_SCREENSHOT") {
        std::fs::copy(&shot, keep).unwrap();
    }

    // 3. The check can fail: with a chart deleted, the page reports it and logs an error.
    std::fs::remove_file(report.join("history.png")).unwrap();
    let run = chromium(&binary, &dir.path().join("profile-3"), &["--dump-dom".into()], &files.index);
    assert!(run.stdout.contains("data-images=\"missing\""), "a missing image went unnoticed");
    assert!(run.stdout.contains("Chart not available: history.png"));
    assert!(console_lines(&run.stderr).iter().any(|l| l.contains("missing images: history.png")), "stderr:\n{}", run.stderr);
}

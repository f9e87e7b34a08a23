//! # nightshift-testkit
//!
//! Test support shared by every crate of the workspace (a dev-dependency only).
//!
//! Some tests need something outside the repository: a PostgreSQL server, Chromium, the
//! `../shared` fixtures, permission to mount a filesystem. Where it is missing such a test calls
//! [`skip`] and returns. A skip must never look like a pass, so [`skip`]:
//! - writes a `SKIPPED` line straight to the process's stderr (libtest captures `eprintln!` of
//!   passing tests, not direct writes), so it shows in `cargo test` output;
//! - appends the same line to the skip log ([`skip_log_path`]), which `.ci/run` and `just test`
//!   print at the end of the run;
//! - under `NIGHTSHIFT_TEST_STRICT=1` (what CI sets) panics instead, naming the resource, so a
//!   green CI run means every test really ran.
//!
//! ## Example
//! ```no_run
//! fn server_url() -> Option<String> {
//!     match std::env::var("NIGHTSHIFT_TEST_POSTGRES") {
//!         Ok(url) => Some(url),
//!         Err(_) => {
//!             nightshift_testkit::skip("my_test", "a PostgreSQL server", "set NIGHTSHIFT_TEST_POSTGRES (see .ci/run)");
//!             None
//!         }
//!     }
//! }
//! ```

#![warn(missing_docs)]

use std::io::Write;
use std::path::PathBuf;

/// The variable that turns skips into failures.
pub const STRICT_VAR: &str = "NIGHTSHIFT_TEST_STRICT";

/// The variable that moves the skip log (default: [`std::env::temp_dir`]`/nightshift-test-skips.log`).
pub const SKIP_LOG_VAR: &str = "NIGHTSHIFT_SKIP_LOG";

/// Whether skips fail (`NIGHTSHIFT_TEST_STRICT` set to anything but empty, `0` or `false`).
pub fn strict() -> bool {
    std::env::var(STRICT_VAR).is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// Where skipped tests are listed, one line each.
pub fn skip_log_path() -> PathBuf {
    std::env::var_os(SKIP_LOG_VAR).map(PathBuf::from).unwrap_or_else(|| std::env::temp_dir().join("nightshift-test-skips.log"))
}

/// The line [`skip`] prints for `test`.
pub fn skip_line(test: &str, resource: &str, how_to_get: &str) -> String {
    format!("SKIPPED {test}: {resource} is missing ({how_to_get})")
}

/// Reports that `test` cannot run because `resource` is missing; `how_to_get` tells the reader how
/// to provide it. Prints and logs the skip, or panics under [`STRICT_VAR`]. The caller returns
/// right after.
#[track_caller]
pub fn skip(test: &str, resource: &str, how_to_get: &str) {
    let line = skip_line(test, resource, how_to_get);
    if strict() {
        panic!("{line}; {STRICT_VAR} is set, so a missing resource fails the test");
    }
    announce(&line);
}

/// Prints a skip line straight to stderr and appends it to the skip log.
fn announce(line: &str) {
    let _ = std::io::stderr().lock().write_all(format!("{line}\n").as_bytes());
    if let Ok(mut log) = std::fs::OpenOptions::new().create(true).append(true).open(skip_log_path()) {
        let _ = writeln!(log, "{line}");
    }
}

/// Like [`skip`], but never fails, not even under [`STRICT_VAR`]: for a resource CI deliberately
/// does not provide (PyTorch, a 2 GB wheel), which strict mode therefore cannot demand. The test
/// itself offers a variable that makes the resource required (e.g. `NIGHTSHIFT_TEST_TORCH`), so a
/// machine meant to have it still fails loudly when it is missing.
pub fn skip_optional(test: &str, resource: &str, how_to_get: &str) {
    announce(&skip_line(test, resource, how_to_get));
}

/// The variable naming a Python interpreter with Optuna 5.0 installed (`.ci/run` makes a venv and sets it).
pub const PYTHON_VAR: &str = "NIGHTSHIFT_TEST_PYTHON";

/// A Python interpreter that can `import optuna` (5.0.x): [`PYTHON_VAR`] if set, else `python3` from
/// `PATH`. `None` (after [`skip`], so it panics under strict mode) when there is none; the interop
/// tests call this and return on `None`.
#[track_caller]
pub fn optuna_python(test: &str) -> Option<PathBuf> {
    let candidate = std::env::var_os(PYTHON_VAR).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("python3"));
    let probe = std::process::Command::new(&candidate)
        .args(["-c", "import optuna, sys; sys.exit(0 if optuna.__version__.startswith('5.0') else 3)"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
    match probe {
        Ok(status) if status.success() => Some(candidate),
        _ => {
            skip(
                test,
                &format!("a Python with optuna 5.0 (tried {})", candidate.display()),
                &format!(
                    "python3 -m venv V && V/bin/pip install optuna==5.0.0, then set {PYTHON_VAR}=V/bin/python (.ci/run does this)"
                ),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_names_test_resource_and_remedy() {
        let line = skip_line("t", "a PostgreSQL server", "set NIGHTSHIFT_TEST_POSTGRES");
        assert_eq!(line, "SKIPPED t: a PostgreSQL server is missing (set NIGHTSHIFT_TEST_POSTGRES)");
    }

    /// One test for both modes: the environment is process-wide, so the two must not run in parallel.
    #[test]
    fn skip_logs_without_strict_and_panics_with_it() {
        let log = std::env::temp_dir().join(format!("nightshift-testkit-{}.log", std::process::id()));
        // SAFETY: no other test of this crate reads or writes these variables.
        unsafe {
            std::env::set_var(SKIP_LOG_VAR, &log);
            std::env::remove_var(STRICT_VAR);
        }
        skip("testkit_self_test_not_a_real_skip", "a thing", "make one");
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains("SKIPPED testkit_self_test_not_a_real_skip: a thing is missing (make one)"), "{text}");

        unsafe { std::env::set_var(STRICT_VAR, "1") };
        let caught = std::panic::catch_unwind(|| skip("strict_test", "a thing", "make one"));
        let message = caught.expect_err("strict mode must fail the test");
        let message = message.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("strict_test") && message.contains("a thing") && message.contains(STRICT_VAR), "{message}");
        unsafe { std::env::set_var(STRICT_VAR, "0") };
        assert!(!strict());
        let _ = std::fs::remove_file(&log);
    }
}

//! The security pass (docs/hardening.md): parameters reach trial commands only as argv elements,
//! study names never escape reports/, the HTML report escapes every user string, SQL is built with
//! bound parameters only, and storage passwords are never printed.

mod common;

use common::{HUNG_AFTER, Sandbox, command_spec, output_within, study_trials};
use serde_json::Value;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Categorical values a shell would act on. Each must arrive as one inert argv element.
const HOSTILE: [&str; 5] = ["; rm -rf ~", "$(touch pwned)", "`touch pwned2`", "a b > pwned3 && echo", "'\"; touch pwned4 #"];

#[test]
fn parameter_values_are_inert_argv_elements() {
    let sb = Sandbox::new();
    // The trial echoes the argv it received (after the script name) as a metric.
    let script = sb.file(
        "echo_argv.py",
        "import json, sys\nprint(json.dumps({'result': {'value': 1.0, 'metrics': {'argv': sys.argv[1:]}}}), flush=True)\n",
    );
    let choices: Vec<String> = HOSTILE.iter().map(|c| serde_json::to_string(c).unwrap()).collect();
    let text = command_spec(
        "argv",
        "{trials: 5}",
        "{cpu: 1}",
        &format!("[python3, \"{}\", \"{{evil}}\", \"--x={{x}}\"]", script.display()),
        "compare: evil\n",
    )
    .replace("params:\n", &format!("params:\n  evil: {{type: categorical, choices: [{}]}}\n", choices.join(", ")));
    sb.file("s.yaml", &text);
    sb.ok(&["run", "s.yaml", "--quiet"]);
    let trials = study_trials(&sb, "argv");
    let mut seen: Vec<&str> = Vec::new();
    for t in &trials {
        assert_eq!(t["state"], "COMPLETE", "{t}");
        let evil = t["params"]["evil"].as_str().unwrap();
        let argv: Vec<&str> =
            t["system_attrs"]["metrics"]["argv"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
        assert_eq!(argv.len(), 2, "{argv:?}");
        assert_eq!(argv[0], evil, "passed verbatim as one argument");
        assert!(argv[1].starts_with("--x=0."), "{argv:?}");
        seen.push(evil);
    }
    seen.sort_unstable();
    let mut all = HOSTILE.to_vec();
    all.sort_unstable();
    assert_eq!(seen, all, "every hostile value was tried");
    for f in ["pwned", "pwned2", "pwned3", "pwned4"] {
        assert!(!sb.path().join(f).exists(), "a shell ran: {f} exists");
    }
}

#[test]
fn study_names_never_become_paths_outside_reports() {
    let sb = Sandbox::new();
    for name in ["../escape", "/tmp/nightshift-abs", "..", "a/../../b", ".hidden"] {
        let err = sb.fails(&["resume", name]);
        assert!(err.contains("is not a valid study name"), "{name}: {err}");
        let err = sb.fails(&["report", name]);
        assert!(err.contains("is not a valid study name"), "{name}: {err}");
    }
    assert!(!sb.path().join("escape").exists() && !sb.path().parent().unwrap().join("escape").exists());
    assert!(!std::path::Path::new("/tmp/nightshift-abs").exists());
    // With an explicit storage and output directory, any name is just a name.
    let storage = "sqlite:///names.db";
    sb.ok(&["create-study", "--storage", storage, "--study-name", "../escape"]);
    sb.ok(&["report", "../escape", "--storage", storage, "--out", "out"]);
    assert!(sb.path().join("out/index.html").exists());
}

const XSS: &str = "<script>alert(1)</script>";

/// Asserts that none of the hostile strings' tags appears unescaped in `text`.
fn assert_no_raw_markup(text: &str, what: &str) {
    for raw in ["<script>alert", "<img src=x", "<b>metric"] {
        assert!(!text.contains(raw), "{what} contains raw {raw:?}");
    }
}

#[test]
fn the_report_escapes_every_user_string() {
    let sb = Sandbox::new();
    // Hostile parameter names, choices, metric name and failure reasons through a real sweep.
    let script = sb.file(
        "trial.py",
        "import json, os, sys\n\
         p = json.loads(os.environ['NIGHTSHIFT_PARAMS'])\n\
         n = int(os.environ['NIGHTSHIFT_TRIAL_NUMBER'])\n\
         if n % 3 == 2:\n\
         \x20   print('<script>alert(\"reason\")</script><img src=x onerror=alert(2)>', file=sys.stderr)\n\
         \x20   sys.exit(1)\n\
         print(json.dumps({'report': {'step': 1, 'value': p['x']}}), flush=True)\n\
         sys.stdin.readline()\n\
         print(json.dumps({'result': {'value': p['x']}}), flush=True)\n",
    );
    let text = command_spec(
        "xss",
        "{trials: 12, max_consecutive_failures: 20}",
        "{cpu: 2}",
        &format!("[python3, \"{}\"]", script.display()),
        "",
    )
    .replace("metric: score", "metric: \"<b>metric</b>\"")
    .replace(
        "params:\n",
        "params:\n  \"<img src=x onerror=alert(1)>\": {type: categorical, choices: [\"<script>alert('c')</script>\", plain]}\n",
    );
    sb.file("s.yaml", &text);
    sb.ok(&["run", "s.yaml", "--quiet"]);
    let trials = study_trials(&sb, "xss");
    assert!(trials.iter().any(|t| t["state"] == "FAIL" && common::reason(t).contains("<script>alert(\"reason\")")));
    let dir = sb.path().join("reports/xss");
    check_report_dir(&dir);
    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"), "the parameter name is shown, escaped");
    assert!(page.contains("&lt;script&gt;alert(&quot;reason&quot;)"), "the failure reason is shown, escaped");

    // A study name only the study verbs allow (a sweep's name must be path-safe), in the title and heading.
    let storage = "sqlite:///names.db";
    sb.ok(&[
        "create-study",
        "--storage",
        storage,
        "--study-name",
        XSS,
        "--search-space",
        r#"{"x": {"type": "float", "low": 0, "high": 1}}"#,
    ]);
    for _ in 0..3 {
        let asked: Value = serde_json::from_str(&sb.ok(&["ask", "--storage", storage, "--study-name", XSS])).unwrap();
        let n = asked["number"].to_string();
        sb.ok(&["tell", "--storage", storage, "--study-name", XSS, "--trial-number", &n, "--values", "0.5"]);
    }
    sb.ok(&["report", XSS, "--storage", storage, "--out", "named"]);
    check_report_dir(&sb.path().join("named"));
    let page = std::fs::read_to_string(sb.path().join("named/index.html")).unwrap();
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "the name is shown, escaped");
}

/// index.html and every SVG: hostile strings only in escaped form; the page's one script is its own.
fn check_report_dir(dir: &std::path::Path) {
    let page = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert_no_raw_markup(&page, "index.html");
    assert_eq!(page.matches("<script").count(), 1, "only the page's own sorting script");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "svg") {
            let svg = std::fs::read_to_string(&path).unwrap();
            assert_no_raw_markup(&svg, &path.display().to_string());
            assert!(!svg.contains("<script"), "{}", path.display());
        }
    }
}

#[test]
fn sql_is_built_from_bound_parameters_only() {
    // Every statement in the store crate is a literal with placeholders (?1 / $1). The only SQL
    // assembled with format! splices a schema name that `check_schema_name` allows to be only
    // [a-z0-9_] (identifiers cannot be bound). A new format!-built statement fails this test.
    let allowed = [
        "SET search_path TO {schema}",
        "CREATE SCHEMA IF NOT EXISTS {schema}",
        // Optuna's RDB file, read only: `table` and `owner` are string literals at every call site.
        "SELECT key, value_json FROM {table} WHERE {owner} = ?1",
        // Not SQL: an error message that names Optuna's op codes.
        "unknown op_code {code} (valid: 0 to 10, Optuna 5.0's JournalOperation: 0 CREATE_STUDY … 9 SET_TRIAL_SYSTEM_ATTR)",
    ];
    let keywords = ["SELECT", "INSERT", "UPDATE", "DELETE", "CREATE", "DROP", "ALTER", "SET ", "PRAGMA", "WHERE", "VALUES"];
    let (mut found, mut splices) = (Vec::new(), 0);
    // Every .rs file under crates/store/src, modules in subdirectories (optuna/) included.
    let mut dirs = vec![std::path::PathBuf::from(format!("{ROOT}/crates/store/src"))];
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for (i, _) in text.match_indices("format!(") {
            let literal = format_literal(&text[i + "format!(".len()..]);
            if allowed.contains(&literal) {
                splices += 1;
            } else if keywords.iter().any(|k| literal.contains(k)) {
                found.push(format!("{}: format!({literal:?}", path.display()));
            }
        }
    }
    assert!(found.is_empty(), "SQL built with format!:\n{}", found.join("\n"));
    assert_eq!(splices, allowed.len(), "the scan sees every allowed splice (so it would see others)");
}

/// The format string of a `format!(` call whose arguments start `rest` (plain or raw string).
fn format_literal(rest: &str) -> &str {
    let rest = rest.trim_start();
    let (open, close) = if rest.starts_with("r#\"") {
        ("r#\"", "\"#")
    } else if rest.starts_with("r\"") {
        ("r\"", "\"")
    } else {
        ("\"", "\"")
    };
    let Some(body) = rest.strip_prefix(open) else { return "" };
    let mut end = 0;
    while let Some(pos) = body[end..].find(close) {
        let at = end + pos;
        // In a plain string, \" does not close it.
        if open == "\"" && body[..at].ends_with('\\') {
            end = at + 1;
            continue;
        }
        return &body[..at];
    }
    body
}

#[test]
fn storage_passwords_are_never_printed() {
    let sb = Sandbox::new();
    // Nothing listens on port 1; the URLs fail in every way they can.
    for url in ["postgres://u:hunter2@127.0.0.1:1/db", "postgresql://u@127.0.0.1:1/db?password=hunter2", "mysql://u:hunter2@h/db"]
    {
        let err = sb.fails(&["studies", "--storage", url]);
        assert!(!err.contains("hunter2") && err.contains("***"), "{url}: {err}");
        let err = sb.fails(&[
            "ask",
            "--storage",
            url,
            "--study-name",
            "s",
            "--search-space",
            r#"{"x": {"type": "float", "low": 0, "high": 1}}"#,
        ]);
        assert!(!err.contains("hunter2"), "{url}: {err}");
        let err = sb.fails(&["worker", "--storage", url, "--study", "s"]);
        assert!(!err.contains("hunter2"), "{url}: {err}");
    }
    let spec =
        command_spec("pw", "{trials: 1}", "{cpu: 1}", "[python3, -c, pass]", "storage: postgres://u:hunter2@127.0.0.1:1/db\n");
    sb.file("s.yaml", &spec);
    // `check` connects, and says that it cannot, without the password (on stdout's summary or in the error).
    let out = output_within(&mut sb.cmd(&["check", "s.yaml"]), HUNG_AFTER);
    let both = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success() && both.contains("cannot connect to PostgreSQL postgres://u:***@127.0.0.1:1/db"), "{both}");
    assert!(!both.contains("hunter2"), "{both}");
    let err = sb.fails(&["run", "s.yaml"]);
    assert!(!err.contains("hunter2"), "{err}");
    let log = std::fs::read_to_string(sb.path().join("reports/pw/nightshift.log")).unwrap_or_default();
    assert!(!log.contains("hunter2"), "{log}");
}

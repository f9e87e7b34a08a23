use std::collections::BTreeMap;

use nightshift_search::Params;

use super::*;

const GOOD: &str = "\
study: demo
objective: {metric: val_accuracy, direction: maximize}
sampler: {type: random, seed: 7}
budget: {trials: 12, timeout: 1h30m, stop_at: \"07:00\", trial_timeout: 90s}
devices: {cpu: 2}
command: [python3, train.py, --lr, \"{lr}\", \"--k={k}\", {opt}, \"{{literal}}\"]
params:
  lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  k: {type: int, low: 0, high: 3}
  opt: {type: categorical, choices: [adam, sgd]}
compare: k
";

fn parse(text: &str) -> Result<Spec> {
    Spec::parse(text, "spec.yaml", Path::new("/base"))
}

fn err(text: &str) -> String {
    parse(text).expect_err("spec should be rejected").to_string()
}

#[test]
fn a_full_spec_validates() {
    let spec = parse(GOOD).unwrap();
    assert_eq!(spec.study, "demo");
    assert_eq!(spec.storage, "sqlite:///reports/demo/study.db");
    assert_eq!(spec.seed, Some(7));
    assert_eq!(spec.sampler, SamplerConfig::Random);
    assert_eq!(spec.budget.timeout, Some(Duration::from_secs(5400)));
    assert_eq!(spec.budget.stop_at, Some((7, 0)));
    assert_eq!(spec.budget.trial_timeout, Some(Duration::from_secs(90)));
    assert_eq!(spec.budget.max_consecutive_failures, 5);
    assert_eq!(spec.devices, DeviceSpec::Cpu { slots: 2 });
    assert_eq!(spec.compare.as_ref().unwrap().values.len(), 4);
    let Program::Command { argv } = &spec.program else { panic!("command expected") };
    let params: Params = [
        ("lr".to_string(), ParamValue::Float(0.01)),
        ("k".to_string(), ParamValue::Int(2)),
        ("opt".to_string(), ParamValue::Str("sgd".into())),
    ]
    .into();
    let rendered: Vec<String> = argv.iter().map(|a| a.render(&params, &BTreeMap::new())).collect();
    assert_eq!(rendered, ["python3", "train.py", "--lr", "0.01", "--k=2", "sgd", "{literal}"]);
    let again = Spec::from_stored(&spec.to_stored(), &NoBuiltinTrainer).unwrap();
    assert_eq!(again.space, spec.space);
}

#[test]
fn durations_beyond_100_years_are_errors_not_panics() {
    // Inputs found with the `spec` fuzz target's harness; each panicked before (`Duration::from_secs_f64`
    // out of range, or `interval * 2` overflowing).
    for (text, line) in [
        (GOOD.replace("timeout: 1h30m", "timeout: 1e300"), 4),
        (GOOD.replace("timeout: 1h30m", "timeout: 99999999999999999999d"), 4),
        (format!("{GOOD}heartbeat: {{interval: 1.0e19}}\n"), 12),
    ] {
        let e = err(&text);
        assert!(e.contains(&format!("spec.yaml:{line}:")) && e.contains("at most 100 years"), "{e}");
    }
    let spec = parse(&GOOD.replace("timeout: 1h30m", "timeout: 36500d")).unwrap();
    assert_eq!(spec.budget.timeout, Some(MAX_DURATION));
}

#[test]
fn errors_name_the_line_and_field() {
    let e = err(&GOOD.replace("timeout: 1h30m", "timeout: 8 hours"));
    assert!(e.starts_with("spec.yaml:4:"), "{e}");
    assert!(e.contains("invalid duration") && e.contains("8h"), "{e}");

    let e = err(&GOOD.replace("devices: {cpu: 2}", "devices: {cpu: 2}\nbudjet: 3"));
    assert!(e.starts_with("spec.yaml:6:") && e.contains("unknown field `budjet`"), "{e}");

    let e = err(&GOOD.replace("\"{lr}\"", "\"{learning_rate}\""));
    assert!(e.starts_with("spec.yaml:6:1: field `command`"), "{e}");
    assert!(e.contains("unknown placeholder {learning_rate}") && e.contains("valid: lr, k, opt"), "{e}");

    let e = err(&GOOD.replace("high: 3}", "high: -3}"));
    assert!(e.starts_with("spec.yaml:9:3: field `params.k`"), "{e}");

    let e = err(&GOOD.replace("trials: 12", "trials: 0"));
    assert!(e.starts_with("spec.yaml:4:") && e.contains("`budget.trials`: must be at least 1"), "{e}");

    let e = err(&GOOD.replace("stop_at: \"07:00\"", "stop_at: \"7 am\""));
    assert!(e.contains("`budget.stop_at`") && e.contains("HH:MM"), "{e}");

    let e = err(&GOOD.replace("compare: k", "compare: lr"));
    assert!(e.starts_with("spec.yaml:11:1: field `compare`") && e.contains("categorical"), "{e}");

    let e = err(&GOOD.replace("direction: maximize", "direction: up"));
    assert!(e.starts_with("spec.yaml:2:") && e.contains("maximize"), "{e}");

    let e = err(&GOOD.replace("devices: {cpu: 2}", "devices: {tpu: 2}"));
    assert!(e.contains("`devices`") && e.contains("valid: auto"), "{e}");

    let e = err(&GOOD.replace("type: random", "type: annealing"));
    assert!(e.contains("`sampler`") && e.contains("tpe"), "{e}");

    let e = err(&format!("{GOOD}trial: {{epochs: 3}}\n"));
    assert!(e.contains("not both"), "{e}");

    let e = err("study: x\nobjective: [1\n");
    assert!(e.starts_with("spec.yaml:3:1:"), "syntax errors carry their location: {e}");
}

/// Accepts `trial:` sections with `epochs`, refuses `arch: bad` and a parameter named `bad`.
struct FakeTrainer;

impl BuiltinTrainer for FakeTrainer {
    fn trial_program(&self, sections: &BuiltinSections<'_>) -> std::result::Result<Vec<ArgTemplate>, FieldError> {
        let refuse = |field: &str| Err(FieldError { field: field.into(), message: "refused".into() });
        if sections.trial.get("arch").and_then(|a| a.as_str()) == Some("bad") {
            return refuse("trial.arch");
        }
        if sections.space.get("bad").is_some() {
            return refuse("params.bad");
        }
        let dataset = sections.base_dir.join(sections.trial["dataset"].as_str().unwrap_or_default());
        Ok(vec![
            ArgTemplate::literal("trainer"),
            ArgTemplate::literal(dataset.display().to_string()),
            ArgTemplate::placeholder("trial_dir"),
        ])
    }

    fn check_pretrain(&self, pretrain: &serde_json::Value, _: &Path) -> std::result::Result<(), FieldError> {
        match pretrain.get("out") {
            Some(_) => Ok(()),
            None => Err(FieldError { field: "pretrain".into(), message: "missing out".into() }),
        }
    }

    fn gpu_backends(&self) -> Vec<GpuBackend> {
        vec![GpuBackend::Wgpu]
    }
}

#[test]
fn the_trial_section_is_the_trainers_to_check() {
    let text = GOOD.replace(
        "command: [python3, train.py, --lr, \"{lr}\", \"--k={k}\", {opt}, \"{{literal}}\"]",
        "trial: {dataset: data/fmnist, epochs: 3, arch: small-cnn}",
    );
    let with = |text: &str| Spec::parse_with(text, "spec.yaml", Path::new("/base"), &FakeTrainer);
    let spec = with(&text).unwrap();
    let Program::Builtin { trial, argv, gpu_backends, .. } = &spec.program else { panic!("builtin expected") };
    assert_eq!(trial["dataset"], "data/fmnist", "the section is kept as written");
    assert_eq!(gpu_backends, &[GpuBackend::Wgpu], "the trainer says what it can run on");
    let rendered: Vec<String> =
        argv.iter().map(|a| a.render(&Params::new(), &[("trial_dir", "/t/4".to_string())].into())).collect();
    assert_eq!(rendered, ["trainer", "/base/data/fmnist", "/t/4"]);

    let e = with(&text.replace("arch: small-cnn", "arch: bad")).unwrap_err().to_string();
    assert!(e.starts_with("spec.yaml:6:") && e.contains("field `trial.arch`: refused"), "{e}");
    let e = with(&text.replace("  k: {", "  bad: {")).unwrap_err().to_string();
    assert!(e.starts_with("spec.yaml:9:3: field `params.bad`: refused"), "{e}");
    let e = with(&format!("{text}pretrain: {{dataset: d}}\n")).unwrap_err().to_string();
    assert!(e.starts_with("spec.yaml:12:1: field `pretrain`: missing out"), "{e}");
    assert!(with(&format!("{text}pretrain: {{out: b}}\n")).is_ok());

    let e = err(&text);
    assert!(e.contains("field `trial`") && e.contains("not available"), "without a trainer: {e}");
}

#[test]
fn devices_variants() {
    let with = |d: &str| parse(&GOOD.replace("devices: {cpu: 2}", d)).map(|s| s.devices);
    assert_eq!(with("devices: auto").unwrap(), DeviceSpec::Auto);
    assert_eq!(
        with("devices: {gpu: [0, 1], trials_per_device: 2}").unwrap(),
        DeviceSpec::Gpu { indices: vec![0, 1], trials_per_device: 2, backend: GpuBackend::Cuda }
    );
    assert!(with("devices: {gpu: [0, 0]}").is_err());
    assert!(with("devices: {cpu: 0}").is_err());
    // Found with the `spec` fuzz target's harness: `cpu × trials_per_device` overflowed (a panic, or in
    // release builds a wrapped slot count) and a huge count would have allocated a pool that size.
    let e = with("devices: {cpu: 9223372036854775807, trials_per_device: 4}").unwrap_err().to_string();
    assert!(e.contains("devices.cpu") && e.contains("up to 1024"), "{e}");
    let e = with("devices: {cpu: 64, trials_per_device: 64}").unwrap_err().to_string();
    assert!(e.contains("4096 slots, at most 1024"), "{e}");
    assert_eq!(with("devices: {cpu: 32, trials_per_device: 32}").unwrap(), DeviceSpec::Cpu { slots: 1024 });
    // A GPU index beyond u32 was truncated onto GPU 0.
    assert!(with("devices: {gpu: 4294967296}").unwrap_err().to_string().contains("devices.gpu"));
}

#[test]
fn compare_as_a_tournament() {
    let spec = parse(&GOOD.replace("compare: k", "compare: {param: k, budget_per_arm: 2, seeds: 4}")).unwrap();
    let t = spec.compare.as_ref().and_then(|c| c.tournament.clone()).expect("a tournament");
    assert_eq!((t.param.as_str(), t.arms.len(), t.budget_per_arm, t.replicate_top, t.seeds), ("k", 4, 2, 1, 4));
    assert!(parse(GOOD).unwrap().compare.unwrap().tournament.is_none(), "a bare name keeps the strata");
    // budget_per_arm defaults to an equal share of budget.trials (12 over 2 choices).
    let t = parse(&GOOD.replace("compare: k", "compare: {param: opt}")).unwrap().compare.unwrap().tournament.unwrap();
    assert_eq!((t.budget_per_arm, t.replicate_top, t.seeds), (6, 1, 3));

    let e = err(&GOOD.replace("compare: k", "compare: {param: lr}"));
    assert!(e.starts_with("spec.yaml:11:11:") && e.contains("compare.param") && e.contains("valid here: k, opt"), "{e}");
    let e = err(&GOOD.replace("compare: k", "compare:\n  param: k\n  budget_per_arm: 4"));
    assert!(e.starts_with("spec.yaml:13:3:") && e.contains("(16) is more than budget.trials (12)"), "{e}");
    let e = err(&GOOD.replace("compare: k", "compare:\n  param: k\n  seeds: 1"));
    assert!(e.starts_with("spec.yaml:13:3:") && e.contains("must be at least 2"), "{e}");
    let e = err(&GOOD.replace("compare: k", "compare: {param: k, replicate_top: 9}"));
    assert!(e.contains("compare.replicate_top") && e.contains("between 1 and budget_per_arm (3)"), "{e}");
    let e =
        err(&GOOD.replace("compare: k", "compare: {param: k}").replace("trial_timeout: 90s", "trial_timeout: 90s, target: 0.9"));
    assert!(e.starts_with("spec.yaml:4:") && e.contains("budget.target") && e.contains("leave out"), "{e}");
    let e = err(&GOOD.replace("compare: k", "compare: {param: k, seed: 3}"));
    assert!(e.contains("unknown field `seed`") && e.contains("budget_per_arm: 6"), "{e}");
}

#[test]
fn a_misspelt_sampler_or_pruner_key_is_named_where_it_stands() {
    let spec = GOOD.replace("compare: k\n", "compare: k\npruner:\n  type: median\n  n_warmup_step: 1\n");
    let e = err(&spec);
    assert!(e.starts_with("spec.yaml:14:3: field `pruner.n_warmup_step`: unknown field `n_warmup_step`"), "{e}");
    assert!(e.contains("valid types: none, median"), "{e}");
    let e = err(&GOOD.replace("{type: random, seed: 7}", "{type: tpe, n_startup: 3}"));
    assert!(e.starts_with("spec.yaml:3:22: field `sampler.n_startup`: unknown field `n_startup`"), "{e}");
    let e = err(&spec.replace("n_warmup_step: 1", "n_warmup_steps: 1").replace("type: median", "type: medain"));
    assert!(e.starts_with("spec.yaml:12:1: field `pruner`: unknown variant `medain`"), "{e}");
    assert!(err(&GOOD.replace("compare: k\n", "compare: k\npruner: median\n")).contains("`pruner`: expected a mapping"));
    let spec = parse(&GOOD.replace("compare: k\n", "compare: k\npruner: {type: median, n_warmup_steps: 2}\n")).unwrap();
    assert!(matches!(spec.pruner, PrunerConfig::Median(_)));
}

#[test]
fn check_names_a_missing_script_before_any_trial_fails_on_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("train.py"), "").unwrap();
    let problems = |command: &str| -> Vec<String> {
        let text = GOOD.replace("[python3, train.py, --lr, \"{lr}\", \"--k={k}\", {opt}, \"{{literal}}\"]", command);
        Spec::parse(&text, "spec.yaml", dir.path()).unwrap().preflight().into_iter().filter(|p| p.contains("script")).collect()
    };
    assert_eq!(problems("[python3, train.py, --lr, \"{lr}\"]"), Vec::<String>::new());
    let missing = problems("[python3, -u, trian.py, --lr, \"{lr}\"]");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert!(missing[0].starts_with("spec.yaml:6:1: field `command`: script 'trian.py' not found"), "{missing:?}");
    // No file named: a module, inline code, a placeholder, a subcommand.
    for command in ["[python3, -m, pkg.train]", "[python3, -c, \"print(1)\"]", "[python3, \"{opt}.py\"]", "[uv, run, x.py]"] {
        assert_eq!(problems(command), Vec::<String>::new(), "{command}");
    }
    // A program without its execute bit would fail every trial with "Permission denied".
    let text = GOOD.replace("[python3, train.py, --lr, \"{lr}\", \"--k={k}\", {opt}, \"{{literal}}\"]", "[./train.py]");
    let problems = Spec::parse(&text, "spec.yaml", dir.path()).unwrap().preflight();
    assert!(problems.iter().any(|p| p.contains("program './train.py' is not executable: `chmod +x ./train.py`")), "{problems:?}");
}

#[test]
fn a_grid_that_cannot_be_walked_is_refused_before_any_trial() {
    let grid = GOOD.replace("{type: random, seed: 7}", "{type: grid}");
    let e = err(&grid);
    assert!(e.starts_with("spec.yaml:3:1: field `sampler`:"), "{e}");
    assert!(e.contains("parameter 'lr' is a float without a step"), "{e}");
    let tiny = grid.replace(
        "lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}",
        "lr: {type: float, low: 0.0, high: 1.0, step: 1.0e-300}",
    );
    let e = err(&tiny);
    assert!(e.contains("more than 2^62 points"), "{e}");
    let fine = grid
        .replace("lr: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}", "lr: {type: float, low: 0.0, high: 1.0, step: 0.25}");
    assert_eq!(parse(&fine).unwrap().sampler, SamplerConfig::Grid);
}

#[test]
fn a_study_name_too_long_for_a_directory_is_refused() {
    let e = err(&GOOD.replace("study: demo", &format!("study: {}", "s".repeat(300))));
    assert!(e.contains("the study name has 300 characters, at most 200"), "{e}");
    assert!(parse(&GOOD.replace("study: demo", &format!("study: {}", "s".repeat(200)))).is_ok());
}

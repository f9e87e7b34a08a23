//! Golden tests: nightshift's TPE against Optuna 5.0 itself.
//!
//! Every fixture under `tests/fixtures/tpe/` holds a fixed trial history and what Optuna's
//! `TPESampler._sample` derives from it (written by `benches/optuna_reference.py`, which also says
//! how to regenerate them). For each we check, to 1e-9 relative (1e-12 absolute near zero): the
//! below/above split, both Parzen estimators (mixture weights, kernel centres and bandwidths,
//! bounds, categorical weight rows), log l(x) and log g(x) at the fixture's points, the
//! acquisition values at Optuna's candidates and the candidate picked.
//!
//! Deliberate difference: the candidates themselves. Optuna draws them with numpy's
//! `RandomState`, we with our own seeded stream (every suggestion is a function of study seed,
//! trial number and history), so the fixtures supply Optuna's candidate list and we check that
//! we pick the same one from it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use nightshift_search::sampler::tpe::{DimReport, TpeFitReport};
use nightshift_search::{Direction, Distribution, FrozenTrial, ParamValue, SamplingContext, TpeConfig, TpeSampler, TrialState};
use serde_json::Value;

/// Floats are stored as Python `repr` strings (exact round trip, also inf and nan).
fn num(v: &Value) -> f64 {
    let s = v.as_str().unwrap_or_else(|| panic!("float as a string, got {v}"));
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn param_value(v: &Value) -> ParamValue {
    let (tag, inner) = v.as_object().and_then(|o| o.iter().next()).unwrap_or_else(|| panic!("tagged value, got {v}"));
    match tag.as_str() {
        "int" => ParamValue::Int(inner.as_i64().expect("int")),
        "float" => ParamValue::Float(num(inner)),
        "str" => ParamValue::Str(inner.as_str().expect("str").to_string()),
        "bool" => ParamValue::Bool(inner.as_bool().expect("bool")),
        other => panic!("unknown tag {other}"),
    }
}

fn distribution(v: &Value) -> Distribution {
    match v["type"].as_str() {
        Some("float") => Distribution::Float {
            low: num(&v["low"]),
            high: num(&v["high"]),
            log: v["log"].as_bool().expect("log"),
            step: (!v["step"].is_null()).then(|| num(&v["step"])),
        },
        Some("int") => Distribution::Int {
            low: v["low"].as_i64().expect("low"),
            high: v["high"].as_i64().expect("high"),
            log: v["log"].as_bool().expect("log"),
            step: v["step"].as_i64().expect("step"),
        },
        Some("categorical") => {
            Distribution::Categorical { choices: v["choices"].as_array().expect("choices").iter().map(param_value).collect() }
        }
        other => panic!("unknown distribution {other:?}"),
    }
}

fn state(s: &str) -> TrialState {
    match s {
        "COMPLETE" => TrialState::Complete,
        "PRUNED" => TrialState::Pruned,
        "RUNNING" => TrialState::Running,
        "FAIL" => TrialState::Fail,
        "WAITING" => TrialState::Waiting,
        other => panic!("unknown state {other}"),
    }
}

fn trials(fixture: &Value, dists: &BTreeMap<String, Distribution>) -> Vec<FrozenTrial> {
    fixture["trials"]
        .as_array()
        .expect("trials")
        .iter()
        .map(|t| {
            let number = t["number"].as_u64().expect("number");
            let mut trial = FrozenTrial::new(number as i64, number, state(t["state"].as_str().expect("state")));
            trial.value = (!t["value"].is_null()).then(|| num(&t["value"]));
            for (name, v) in t["params"].as_object().expect("params") {
                trial.params.insert(name.clone(), param_value(v));
                trial.distributions.insert(name.clone(), dists[name].clone());
            }
            for sv in t["intermediate_values"].as_array().expect("intermediate_values") {
                trial.intermediate_values.insert(sv[0].as_u64().expect("step"), num(&sv[1]));
            }
            trial
        })
        .collect()
}

fn points(v: &Value) -> Vec<BTreeMap<String, ParamValue>> {
    v.as_array()
        .expect("points")
        .iter()
        .map(|p| p.as_object().expect("point").iter().map(|(k, v)| (k.clone(), param_value(v))).collect())
        .collect()
}

fn nums(v: &Value) -> Vec<f64> {
    v.as_array().expect("array").iter().map(num).collect()
}

/// Collects mismatches instead of stopping at the first, so that one run shows them all.
struct Checker {
    failures: Vec<String>,
    checked: usize,
}

impl Checker {
    fn close(&mut self, what: &str, ours: f64, optuna: f64) {
        self.checked += 1;
        let ok = ours == optuna || (ours.is_nan() && optuna.is_nan()) || (ours - optuna).abs() <= 1e-9 * optuna.abs() + 1e-12;
        if !ok {
            self.failures.push(format!("{what}: ours {ours:e}, Optuna {optuna:e}"));
        }
    }

    /// Like [`Checker::close`], but relative to `scale` rather than to the value itself.
    fn close_scaled(&mut self, what: &str, ours: f64, optuna: f64, scale: f64) {
        self.checked += 1;
        if !(ours == optuna || (ours - optuna).abs() <= 1e-9 * scale + 1e-12) {
            self.failures.push(format!("{what}: ours {ours:e}, Optuna {optuna:e} (scale {scale:e})"));
        }
    }

    fn all_close(&mut self, what: &str, ours: &[f64], optuna: &[f64]) {
        if ours.len() != optuna.len() {
            self.failures.push(format!("{what}: {} values, Optuna {}", ours.len(), optuna.len()));
            return;
        }
        for (i, (&a, &b)) in ours.iter().zip(optuna).enumerate() {
            self.close(&format!("{what}[{i}]"), a, b);
        }
    }

    fn equal<T: PartialEq + std::fmt::Debug>(&mut self, what: &str, ours: T, optuna: T) {
        self.checked += 1;
        if ours != optuna {
            self.failures.push(format!("{what}: ours {ours:?}, Optuna {optuna:?}"));
        }
    }

    fn estimator(&mut self, what: &str, ours: &(Vec<f64>, Vec<(String, DimReport)>), optuna: &Value) {
        self.all_close(&format!("{what}.weights"), &ours.0, &nums(&optuna["weights"]));
        let dims = optuna["dims"].as_object().expect("dims");
        self.equal(&format!("{what}: parameters"), ours.1.len(), dims.len());
        for (name, dim) in &ours.1 {
            let expected = &dims[name];
            let at = format!("{what}.{name}");
            match dim {
                DimReport::Numerical { mus, sigmas, low, high } => {
                    self.all_close(&format!("{at}.mus"), mus, &nums(&expected["mus"]));
                    self.all_close(&format!("{at}.sigmas"), sigmas, &nums(&expected["sigmas"]));
                    self.close(&format!("{at}.low"), *low, num(&expected["low"]));
                    self.close(&format!("{at}.high"), *high, num(&expected["high"]));
                }
                DimReport::Categorical { weights } => {
                    let rows = expected["categorical_weights"].as_array().unwrap_or_else(|| panic!("{at}: categorical"));
                    self.equal(&format!("{at}: rows"), weights.len(), rows.len());
                    for (k, (row, expected)) in weights.iter().zip(rows).enumerate() {
                        self.all_close(&format!("{at}.weights[{k}]"), row, &nums(expected));
                    }
                }
            }
        }
    }
}

fn fixtures() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tpe");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("fixture");
            (p.file_stem().expect("name").to_string_lossy().into_owned(), serde_json::from_str(&text).expect("json"))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn check_fixture(name: &str, fx: &Value, c: &mut Checker) {
    assert_eq!(fx["optuna_version"], "5.0.0", "{name}");
    let dists: BTreeMap<String, Distribution> =
        fx["distributions"].as_object().expect("distributions").iter().map(|(k, v)| (k.clone(), distribution(v))).collect();
    let trials = trials(fx, &dists);
    let cfg = &fx["config"];
    let config = TpeConfig {
        n_startup_trials: cfg["n_startup_trials"].as_u64().expect("n_startup_trials") as usize,
        prior_weight: num(&cfg["prior_weight"]),
        consider_magic_clip: cfg["consider_magic_clip"].as_bool().expect("magic clip"),
        consider_endpoints: cfg["consider_endpoints"].as_bool().expect("endpoints"),
        constant_liar: cfg["constant_liar"].as_bool().expect("constant_liar"),
        ..TpeConfig::default()
    };
    let sampler = TpeSampler::new(config);
    let direction = match fx["direction"].as_str() {
        Some("minimize") => Direction::Minimize,
        Some("maximize") => Direction::Maximize,
        other => panic!("{other:?}"),
    };
    let ctx = SamplingContext {
        study_name: name,
        direction,
        seed: 0,
        trials: &trials,
        trial_number: fx["current_trial"].as_u64().expect("current_trial"),
    };
    let numbers =
        |v: &Value| -> Vec<u64> { v.as_array().expect("numbers").iter().map(|n| n.as_u64().expect("number")).collect() };
    for (i, fit) in fx["fits"].as_array().expect("fits").iter().enumerate() {
        let names: Vec<&str> = fit["params"].as_array().expect("params").iter().map(|p| p.as_str().expect("name")).collect();
        let params: Vec<(&str, &Distribution)> = names.iter().map(|&n| (n, &dists[n])).collect();
        let what = format!("{name}/fit {i} ({} {names:?})", fit["kind"].as_str().unwrap_or("?"));
        let report: TpeFitReport = sampler
            .fit_report(&ctx, &params, &points(&fit["points"]), &points(&fit["candidates"]))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        c.equal(&format!("{what}: start-up"), report.in_startup, fx["startup"].as_bool().expect("startup"));
        c.equal(&format!("{what}: below"), &report.below_trials, &numbers(&fx["below"]));
        c.equal(&format!("{what}: above"), &report.above_trials, &numbers(&fx["above"]));
        c.estimator(&format!("{what}: l"), &report.below, &fit["below"]);
        c.estimator(&format!("{what}: g"), &report.above, &fit["above"]);
        c.all_close(&format!("{what}: log l"), &report.log_l, &nums(&fit["log_l"]));
        c.all_close(&format!("{what}: log g"), &report.log_g, &nums(&fit["log_g"]));
        // log l − log g inherits the absolute errors of both terms, so its tolerance is 1e-9 of
        // |log l| + |log g| (the points start with the candidates). Both sides lose digits in
        // the bin masses of very fine grids (a bin of 1e-7 σ: Φ(b) − Φ(a) cancels), and the two
        // implementations' erf differ in the last bit.
        let (l, g) = (nums(&fit["log_l"]), nums(&fit["log_g"]));
        let acquisition = nums(&fit["acquisition"]);
        c.equal(&format!("{what}: candidates"), report.acquisition.len(), acquisition.len());
        for (i, (&ours, &optuna)) in report.acquisition.iter().zip(&acquisition).enumerate() {
            c.close_scaled(&format!("{what}: acquisition[{i}]"), ours, optuna, l[i].abs() + g[i].abs());
        }
        c.equal(&format!("{what}: chosen candidate"), report.chosen, fit["chosen"].as_u64().expect("chosen") as usize);
    }
}

#[test]
fn tpe_matches_optuna_on_every_fixture() {
    let fixtures = fixtures();
    assert!(fixtures.len() >= 12, "only {} fixtures", fixtures.len());
    let mut c = Checker { failures: Vec::new(), checked: 0 };
    for (name, fx) in &fixtures {
        check_fixture(name, fx, &mut c);
    }
    let shown: Vec<&String> = c.failures.iter().take(40).collect();
    assert!(c.failures.is_empty(), "{} of {} checks differ from Optuna:\n{shown:#?}", c.failures.len(), c.checked);
    // The fixtures are not trivially small.
    assert!(c.checked > 10_000, "{} checks", c.checked);
}

/// The fixtures cover what the brief asks of them: both directions, every trial state, pruned
/// trials with and without intermediate values (one NaN), start-up and γ-capped histories, and
/// more than 25 observations on one side (the weight ramp).
#[test]
fn fixtures_cover_the_interesting_cases() {
    let fixtures = fixtures();
    let all = |f: &dyn Fn(&Value) -> bool| fixtures.iter().filter(|(_, fx)| f(fx)).count();
    let trials = |fx: &Value| fx["trials"].as_array().cloned().unwrap_or_default();
    assert!(all(&|fx| fx["direction"] == "maximize") >= 2);
    assert!(all(&|fx| fx["direction"] == "minimize") >= 2);
    assert!(all(&|fx| fx["startup"] == true) >= 1);
    assert!(all(&|fx| fx["n_below"] == 25) >= 2);
    for s in ["COMPLETE", "PRUNED", "RUNNING", "FAIL"] {
        assert!(all(&|fx| trials(fx).iter().any(|t| t["state"] == s)) >= 1, "{s}");
    }
    assert!(all(&|fx| trials(fx).iter().any(|t| t["intermediate_values"].to_string().contains("nan"))) >= 1);
    assert!(all(&|fx| fx["above"].as_array().map_or(0, Vec::len) > 25) >= 3);
    assert!(all(&|fx| fx["config"]["constant_liar"] == false) >= 1);
}

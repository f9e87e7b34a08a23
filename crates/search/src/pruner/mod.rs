//! Pruners: decide from a trial's intermediate values whether to stop it early.
//!
//! Every pruner reads snapshots ([`PruneContext`]) and returns a decision; none writes to the
//! study. The decisions follow Optuna's pruners (`optuna/pruners/*.py`); where Optuna keeps state
//! (Successive Halving's rung records, "auto" resources fixed on first use) we derive the same
//! thing from the history instead, so that any process reaches the same decision. Each module
//! says where that makes a difference.
//!
//! | config `type`        | pruner                       |
//! |----------------------|------------------------------|
//! | `none` (default)     | [`NopPruner`]                |
//! | `median`             | [`MedianPruner`]             |
//! | `percentile`         | [`PercentilePruner`]         |
//! | `successive_halving` | [`SuccessiveHalvingPruner`]  |
//! | `hyperband`          | [`HyperbandPruner`]          |
//! | `patient`            | [`PatientPruner`] (wraps another) |
//! | `threshold`          | [`ThresholdPruner`]          |

mod hyperband;
mod patient;
mod percentile;
mod successive_halving;
mod threshold;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::trial::{Direction, FrozenTrial, TrialState};

pub use hyperband::{HyperbandConfig, HyperbandPruner};
pub use patient::{PatientConfig, PatientPruner};
pub use percentile::{MedianConfig, MedianPruner, PercentileConfig, PercentilePruner};
pub use successive_halving::{Resource, SuccessiveHalvingConfig, SuccessiveHalvingPruner};
pub use threshold::{ThresholdConfig, ThresholdPruner};

/// What a pruner may look at.
#[derive(Clone, Copy, Debug)]
pub struct PruneContext<'a> {
    /// The study's name.
    pub study_name: &'a str,
    /// Whether the objective is minimised or maximised.
    pub direction: Direction,
    /// The trials of the study the pruner reads ([`Pruner::reads`]: those in the states it names, or
    /// every trial), ordered by number; the trial being judged may or may not be among them.
    pub trials: &'a [FrozenTrial],
}

/// Which trials besides the judged one a pruner reads, ordered from least to most, so that a
/// report fetches no more of the study than that.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reads {
    /// Nothing: the pruner stops no trial ([`NopPruner`]).
    Nothing,
    /// Only the judged trial's own reports (threshold; patient without a wrapped pruner).
    OwnReports,
    /// The COMPLETE trials (median, percentile): finished trials never change, so they can be
    /// fetched once and kept.
    CompleteTrials,
    /// Every trial, running ones included (successive halving, hyperband).
    AllTrials,
}

/// The pruner seam (Optuna's `BasePruner`).
pub trait Pruner: Send + Sync {
    /// Whether `trial` (RUNNING, with its latest intermediate value recorded) should stop now.
    fn prune(&self, ctx: &PruneContext<'_>, trial: &FrozenTrial) -> bool;

    /// The bracket a trial belongs to, for pruners (Hyperband) whose brackets must not share
    /// sampler history. `None`: all trials are one group. `trials` is the study's history, for
    /// pruners whose brackets depend on it (Hyperband's `max_resource: auto`).
    fn bracket(&self, _study_name: &str, _trial_number: u64, _trials: &[FrozenTrial]) -> Option<usize> {
        None
    }

    /// Which trials [`Pruner::prune`] reads from [`PruneContext::trials`].
    fn reads(&self) -> Reads;
}

/// Never prunes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NopPruner;

impl Pruner for NopPruner {
    fn prune(&self, _ctx: &PruneContext<'_>, _trial: &FrozenTrial) -> bool {
        false
    }

    fn reads(&self) -> Reads {
        Reads::Nothing
    }
}

/// Which pruner a study uses, as written in specs and stored with the study, e.g.
/// `{type: median, n_warmup_steps: 2}` or
/// `{type: patient, patience: 3, wrapped: {type: percentile, percentile: 25.0}}`.
///
/// Deserialising validates (an out-of-range option is an error naming it), so a parsed or
/// stored configuration is always usable; a hand-built one can be checked with
/// [`PrunerConfig::validate`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields, try_from = "UncheckedPrunerConfig")]
pub enum PrunerConfig {
    /// Never prune.
    #[default]
    None,
    /// Prune below the median of other trials at the same step.
    Median(MedianConfig),
    /// Prune outside a percentile of other trials at the same step.
    Percentile(PercentileConfig),
    /// Asynchronous successive halving.
    SuccessiveHalving(SuccessiveHalvingConfig),
    /// Hyperband: successive halving in several brackets.
    Hyperband(HyperbandConfig),
    /// Wait for several reports without improvement, then ask another pruner.
    Patient(PatientConfig),
    /// Prune outside fixed bounds (and NaN).
    Threshold(ThresholdConfig),
}

/// The shape serde reads; [`PrunerConfig`] is what validation lets through.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum UncheckedPrunerConfig {
    #[serde(alias = "nop")]
    None,
    Median(MedianConfig),
    Percentile(PercentileConfig),
    SuccessiveHalving(SuccessiveHalvingConfig),
    Hyperband(HyperbandConfig),
    Patient(PatientConfig),
    Threshold(ThresholdConfig),
}

impl TryFrom<UncheckedPrunerConfig> for PrunerConfig {
    type Error = Error;

    fn try_from(raw: UncheckedPrunerConfig) -> Result<Self> {
        let config = match raw {
            UncheckedPrunerConfig::None => Self::None,
            UncheckedPrunerConfig::Median(c) => Self::Median(c),
            UncheckedPrunerConfig::Percentile(c) => Self::Percentile(c),
            UncheckedPrunerConfig::SuccessiveHalving(c) => Self::SuccessiveHalving(c),
            UncheckedPrunerConfig::Hyperband(c) => Self::Hyperband(c),
            UncheckedPrunerConfig::Patient(c) => Self::Patient(c),
            UncheckedPrunerConfig::Threshold(c) => Self::Threshold(c),
        };
        config.validate()?;
        Ok(config)
    }
}

impl PrunerConfig {
    /// The pruner and its options in words, for `nightshift check`:
    /// `median (n_startup_trials 5, n_warmup_steps 2, interval_steps 1)`.
    pub fn describe(&self) -> String {
        crate::describe_tagged(self)
    }

    /// Checks every option (and those of a wrapped pruner), with Optuna's rules.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::None => Ok(()),
            Self::Median(c) => c.validate(),
            Self::Percentile(c) => c.validate(),
            Self::SuccessiveHalving(c) => c.validate(),
            Self::Hyperband(c) => c.validate(),
            Self::Patient(c) => c.validate(),
            Self::Threshold(c) => c.validate(),
        }
    }

    /// Validates, then builds the pruner.
    pub fn try_build(&self) -> Result<Box<dyn Pruner>> {
        self.validate()?;
        Ok(self.build())
    }

    /// Builds the pruner. Parsed and stored configurations are valid; for a hand-built one that
    /// is not (see [`PrunerConfig::validate`]), out-of-range numbers are clamped into range
    /// rather than panicking.
    pub fn build(&self) -> Box<dyn Pruner> {
        match self {
            Self::None => Box::new(NopPruner),
            Self::Median(c) => Box::new(MedianPruner::from_config(c)),
            Self::Percentile(c) => Box::new(PercentilePruner::from_config(c)),
            Self::SuccessiveHalving(c) => Box::new(SuccessiveHalvingPruner::from_config(c)),
            Self::Hyperband(c) => Box::new(HyperbandPruner::from_config(c)),
            Self::Patient(c) => Box::new(PatientPruner::from_config(c)),
            Self::Threshold(c) => Box::new(ThresholdPruner::from_config(c)),
        }
    }

    /// Parses a pruner name as Optuna's CLI spells it (`MedianPruner`) or as ours (`median`),
    /// with optional keyword arguments as JSON (`{"n_startup_trials": 3}`). Optuna's
    /// `wrapped_pruner` keyword of `PatientPruner` is accepted as `wrapped`.
    pub fn from_name_and_kwargs(name: &str, kwargs: Option<&serde_json::Value>) -> Result<Self> {
        let lower = name.to_ascii_lowercase().replace(['-', '_'], "");
        let kind = match lower.trim_end_matches("pruner") {
            "none" | "nop" => "none",
            "median" => "median",
            "percentile" => "percentile",
            "successivehalving" | "sha" | "asha" => "successive_halving",
            "hyperband" => "hyperband",
            "patient" => "patient",
            "threshold" => "threshold",
            _ => {
                return Err(config_error(format!(
                    "unknown pruner '{name}' (valid: none, median, percentile, successive_halving, hyperband, patient, \
                     threshold; Optuna names such as MedianPruner work too)"
                )));
            }
        };
        let mut object = match kwargs {
            Some(serde_json::Value::Object(map)) => map.clone(),
            None | Some(serde_json::Value::Null) => serde_json::Map::new(),
            Some(other) => return Err(config_error(format!("pruner kwargs must be a JSON object, got {other}"))),
        };
        if let Some(wrapped) = object.remove("wrapped_pruner") {
            object.insert("wrapped".into(), wrapped);
        }
        object.insert("type".into(), kind.into());
        serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| {
            // A validation error comes back from serde as text; keep it readable.
            let message = e.to_string();
            let message = message.strip_prefix("invalid pruner configuration: ").unwrap_or(&message).to_string();
            config_error(message)
        })
    }
}

pub(crate) fn config_error(message: String) -> Error {
    Error::Config { what: "pruner", message }
}

/// Optuna's `_is_first_in_interval_step`: with `interval_steps` > 1 a trial is judged only at
/// its first report at or after each check point (`n_warmup_steps + k·interval_steps`); a check
/// point without a report is postponed to the next report.
pub(crate) fn is_first_in_interval_step(trial: &FrozenTrial, step: u64, n_warmup_steps: u64, interval_steps: u64) -> bool {
    let interval = interval_steps.max(1);
    let nearest_lower_check = step.saturating_sub(n_warmup_steps) / interval * interval + n_warmup_steps;
    let previous = trial.intermediate_values.keys().copied().filter(|&s| s != step).max();
    previous.is_none_or(|p| p < nearest_lower_check)
}

/// The best of a trial's intermediate values in `direction`, ignoring NaN (numpy's
/// `nanmin`/`nanmax`); NaN when every value is NaN or there are none.
pub(crate) fn best_intermediate(trial: &FrozenTrial, direction: Direction) -> f64 {
    nan_best(trial.intermediate_values.values().copied(), direction)
}

/// The best of `values` in `direction`, ignoring NaN; NaN when all are NaN.
pub(crate) fn nan_best(values: impl IntoIterator<Item = f64>, direction: Direction) -> f64 {
    values
        .into_iter()
        .filter(|v| !v.is_nan())
        .fold(f64::NAN, |best, v| if best.is_nan() || direction.is_better(v, best) { v } else { best })
}

/// The COMPLETE trial that finished first (by finish time, then number) and reported at least
/// one step: the trial Optuna's "auto" resources are estimated from. Taking the first one, not
/// the latest, keeps the estimate from drifting as more trials finish, as Optuna fixes it on
/// first use.
pub(crate) fn first_completed_with_steps(trials: &[FrozenTrial]) -> Option<&FrozenTrial> {
    trials.iter().filter(|t| t.state == TrialState::Complete && !t.intermediate_values.is_empty()).min_by(|a, b| {
        let fa = a.finished_at.unwrap_or(f64::INFINITY);
        let fb = b.finished_at.unwrap_or(f64::INFINITY);
        fa.total_cmp(&fb).then(a.number.cmp(&b.number))
    })
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// A trial in `state` with `values` reported at steps 0, 1, 2, …
    pub fn trial(number: u64, state: TrialState, values: &[f64]) -> FrozenTrial {
        trial_at(number, state, &values.iter().enumerate().map(|(s, &v)| (s as u64, v)).collect::<Vec<_>>())
    }

    /// A trial in `state` with the given (step, value) reports.
    pub fn trial_at(number: u64, state: TrialState, reports: &[(u64, f64)]) -> FrozenTrial {
        let mut t = FrozenTrial::new(number as i64 + 1, number, state);
        t.intermediate_values = reports.iter().copied().collect();
        if state.is_finished() {
            t.value = t.last_step().map(|(_, v)| v);
            t.finished_at = Some(1000.0 + number as f64);
        }
        t
    }

    /// Asks `pruner` about the last trial of `history` (which must be in it).
    pub fn decide(pruner: &dyn Pruner, direction: Direction, history: &[FrozenTrial]) -> bool {
        let ctx = PruneContext { study_name: "study", direction, trials: history };
        pruner.prune(&ctx, history.last().unwrap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<PrunerConfig, String> {
        serde_yaml::from_str::<PrunerConfig>(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn configs_parse_with_optuna_defaults() {
        assert_eq!(parse("type: none").unwrap(), PrunerConfig::None);
        assert_eq!(parse("type: nop").unwrap(), PrunerConfig::None);
        assert_eq!(parse("type: median").unwrap(), PrunerConfig::Median(MedianConfig::default()));
        let PrunerConfig::Median(m) = parse("{type: median, n_warmup_steps: 3, interval_steps: 2}").unwrap() else { panic!() };
        assert_eq!((m.n_startup_trials, m.n_warmup_steps, m.interval_steps, m.n_min_trials), (5, 3, 2, 1));
        let PrunerConfig::Percentile(p) = parse("{type: percentile, percentile: 25.0}").unwrap() else { panic!() };
        assert_eq!((p.percentile, p.n_startup_trials), (25.0, 5));
        let PrunerConfig::SuccessiveHalving(s) = parse("type: successive_halving").unwrap() else { panic!() };
        assert_eq!((s.min_resource, s.reduction_factor, s.min_early_stopping_rate, s.bootstrap_count), (Resource::Auto, 4, 0, 0));
        let PrunerConfig::SuccessiveHalving(s) = parse("{type: successive_halving, min_resource: 3}").unwrap() else { panic!() };
        assert_eq!(s.min_resource, Resource::Steps(3));
        let PrunerConfig::Hyperband(h) = parse("type: hyperband").unwrap() else { panic!() };
        assert_eq!((h.min_resource, h.max_resource, h.reduction_factor), (1, Resource::Auto, 3));
        let PrunerConfig::Hyperband(h) = parse("{type: hyperband, max_resource: 27}").unwrap() else { panic!() };
        assert_eq!(h.max_resource, Resource::Steps(27));
        let PrunerConfig::Patient(p) = parse("{type: patient, patience: 2, wrapped: {type: median}}").unwrap() else { panic!() };
        assert_eq!((p.patience, p.min_delta), (2, 0.0));
        assert_eq!(p.wrapped.as_deref(), Some(&PrunerConfig::Median(MedianConfig::default())));
        let PrunerConfig::Threshold(t) = parse("{type: threshold, upper: 1.0}").unwrap() else { panic!() };
        assert_eq!((t.lower, t.upper, t.n_warmup_steps, t.interval_steps), (None, Some(1.0), 0, 1));
    }

    #[test]
    fn configs_round_trip_through_json() {
        for yaml in [
            "type: none",
            "{type: median, n_startup_trials: 2}",
            "{type: percentile, percentile: 10.0, n_min_trials: 3}",
            "{type: successive_halving, min_resource: 2, bootstrap_count: 1}",
            "{type: successive_halving}",
            "{type: hyperband, max_resource: 81, reduction_factor: 3}",
            "{type: patient, patience: 1, min_delta: 0.5, wrapped: {type: threshold, lower: 0.0}}",
            "{type: patient, patience: 1}",
            "{type: threshold, lower: -1.0, upper: 2.0, interval_steps: 3}",
        ] {
            let config = parse(yaml).unwrap();
            let json = serde_json::to_string(&config).unwrap();
            assert_eq!(serde_json::from_str::<PrunerConfig>(&json).unwrap(), config, "{json}");
        }
        let json = serde_json::to_value(parse("{type: hyperband}").unwrap()).unwrap();
        assert_eq!(json["type"], "hyperband");
        assert_eq!(json["max_resource"], "auto");
    }

    #[test]
    fn invalid_configs_are_clear_errors() {
        let cases = [
            ("{type: percentile, percentile: 120.0}", "percentile must be between 0 and 100"),
            ("{type: percentile, percentile: -1.0}", "percentile must be between 0 and 100"),
            ("{type: percentile}", "missing field `percentile`"),
            ("{type: median, interval_steps: 0}", "interval_steps must be at least 1"),
            ("{type: median, n_min_trials: 0}", "n_min_trials must be at least 1"),
            ("{type: median, n_warmup_steps: -1}", "invalid value"),
            ("{type: median, n_startup: 3}", "unknown field `n_startup`"),
            ("{type: successive_halving, reduction_factor: 1}", "reduction_factor must be at least 2"),
            ("{type: successive_halving, min_resource: 0}", "min_resource must be at least 1"),
            ("{type: successive_halving, min_resource: fast}", "'auto' or a whole number"),
            ("{type: successive_halving, bootstrap_count: 2}", "bootstrap_count > 0 needs an explicit min_resource"),
            ("{type: hyperband, reduction_factor: 1}", "reduction_factor must be at least 2"),
            ("{type: hyperband, min_resource: 0}", "min_resource must be at least 1"),
            ("{type: hyperband, min_resource: 10, max_resource: 5}", "max_resource (5) must be at least min_resource (10)"),
            ("{type: hyperband, bootstrap_count: 1}", "bootstrap_count > 0 needs an explicit max_resource"),
            ("{type: patient, patience: 1, min_delta: -0.1}", "min_delta must be non-negative"),
            ("{type: patient}", "missing field `patience`"),
            (
                "{type: patient, patience: 1, wrapped: {type: percentile, percentile: 200.0}}",
                "percentile must be between 0 and 100",
            ),
            ("{type: threshold}", "needs lower, upper or both"),
            ("{type: threshold, lower: 2.0, upper: 1.0}", "lower (2) must not exceed upper (1)"),
            ("{type: threshold, lower: .nan}", "must be a number"),
            ("{type: threshold, upper: 1.0, interval_steps: 0}", "interval_steps must be at least 1"),
            ("{type: bogus}", "unknown variant `bogus`"),
        ];
        for (yaml, want) in cases {
            let message = parse(yaml).unwrap_err();
            assert!(message.contains(want), "for {yaml}: got {message:?}, wanted {want:?}");
        }
    }

    #[test]
    fn hand_built_configs_validate_and_still_build() {
        let bad = PrunerConfig::Percentile(PercentileConfig { percentile: 150.0, ..PercentileConfig::new(50.0) });
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("invalid pruner configuration") && err.contains("150"), "{err}");
        assert!(bad.try_build().is_err());
        // build() never panics; it clamps.
        let _ = bad.build();
        assert!(PrunerConfig::Median(MedianConfig::default()).try_build().is_ok());
    }

    #[test]
    fn optuna_names_and_kwargs() {
        let c = PrunerConfig::from_name_and_kwargs("MedianPruner", Some(&serde_json::json!({"n_startup_trials": 2}))).unwrap();
        assert_eq!(c, PrunerConfig::Median(MedianConfig { n_startup_trials: 2, ..MedianConfig::default() }));
        let c = PrunerConfig::from_name_and_kwargs("SuccessiveHalvingPruner", None).unwrap();
        assert!(matches!(c, PrunerConfig::SuccessiveHalving(_)));
        let c = PrunerConfig::from_name_and_kwargs(
            "PatientPruner",
            Some(&serde_json::json!({"patience": 2, "wrapped_pruner": {"type": "median"}})),
        )
        .unwrap();
        assert!(matches!(c, PrunerConfig::Patient(PatientConfig { patience: 2, wrapped: Some(_), .. })));
        assert!(PrunerConfig::from_name_and_kwargs("nope", None).unwrap_err().to_string().contains("unknown pruner 'nope'"));
        let err = PrunerConfig::from_name_and_kwargs("percentile", Some(&serde_json::json!({"percentile": 101}))).unwrap_err();
        assert_eq!(err.to_string(), "invalid pruner configuration: percentile must be between 0 and 100 inclusive, got 101");
    }

    #[test]
    fn a_study_asks_its_stored_pruner() {
        use std::sync::Arc;

        use crate::space::SearchSpace;
        use crate::storage::{InMemoryStorage, NewStudy};
        use crate::study::{Study, TellOutcome};

        let space = SearchSpace::parse("x: {type: float, low: 0.0, high: 1.0}", "t").unwrap();
        let mut new = NewStudy::new("pruned", Direction::Maximize, 1);
        new.pruner = parse("{type: median, n_startup_trials: 2}").unwrap();
        let study = Study::create(Arc::new(InMemoryStorage::new()), &new).unwrap();
        for accuracy in [0.8, 0.6] {
            let t = study.ask(&space).unwrap();
            study.report(t.number, 0, accuracy).unwrap();
            assert!(!study.should_prune(t.number).unwrap(), "start-up trials are never pruned");
            study.tell(t.number, TellOutcome::Value(accuracy)).unwrap();
        }
        // Median accuracy at step 0 is 0.7.
        let good = study.ask(&space).unwrap();
        study.report(good.number, 0, 0.75).unwrap();
        assert!(!study.should_prune(good.number).unwrap());
        let bad = study.ask(&space).unwrap();
        study.report(bad.number, 0, 0.65).unwrap();
        assert!(study.should_prune(bad.number).unwrap());
        // A study loaded elsewhere rebuilds the same pruner from the stored configuration.
        let again = Study::load(study.storage().clone(), "pruned").unwrap();
        assert_eq!(again.record().pruner, new.pruner);
        assert!(again.should_prune(bad.number).unwrap());
    }

    #[test]
    fn interval_check_points_follow_optuna() {
        use test_util::trial_at;
        // warm-up 2, interval 3: check points 2, 5, 8, …
        let at = |steps: &[u64]| {
            let t = trial_at(0, TrialState::Running, &steps.iter().map(|&s| (s, 0.0)).collect::<Vec<_>>());
            let step = *steps.last().unwrap();
            is_first_in_interval_step(&t, step, 2, 3)
        };
        assert!(at(&[2]));
        assert!(!at(&[2, 3]));
        assert!(!at(&[2, 3, 4]));
        assert!(at(&[2, 3, 4, 5]));
        // Check point 5 had no report: postponed to the next one, 6, but only once.
        assert!(at(&[2, 3, 4, 6]));
        assert!(!at(&[2, 3, 4, 6, 7]));
    }
}

//! The seam between a spec and the built-in trainer: the binary implements [`BuiltinTrainer`].

use std::path::Path;

use nightshift_search::{Direction, SearchSpace};

use super::{ArgTemplate, GpuBackend};

/// The built-in trainer as a spec sees it. The binary implements it (it knows the trainer); the orchestrator
/// only runs the program it returns, so it knows neither the trainer's flags nor its hyperparameters.
pub trait BuiltinTrainer {
    /// Validates the `trial:` section (with `pretrain:`, when given) and the search space's parameters
    /// against what the trainer accepts; returns the argv of one trial, which may use the placeholders
    /// [`super::BUILTIN_PLACEHOLDERS`].
    fn trial_program(&self, sections: &BuiltinSections<'_>) -> std::result::Result<Vec<ArgTemplate>, FieldError>;

    /// Refuses an objective the trainer does not report: its reports and result carry one metric as their
    /// value, and a spec naming another would optimise that one under the other's name. Default: any.
    fn check_objective(&self, _metric: &str, _direction: Direction) -> std::result::Result<(), FieldError> {
        Ok(())
    }

    /// How a tournament's replicates are evaluated on the test split, when the `trial:` section's data has
    /// one: the arguments added to a replicate's argv and the metric recorded as its value. `None` (the
    /// default): replicates are scored like search trials.
    fn replicate_eval(&self, _sections: &BuiltinSections<'_>) -> Option<ReplicateEval> {
        None
    }

    /// Validates a `pretrain:` section.
    fn check_pretrain(&self, pretrain: &serde_json::Value, base_dir: &Path) -> std::result::Result<(), FieldError>;

    /// The GPU backends the trainer was built with (none, the default: CPU only), so that `devices:` gives
    /// it only slots it can use.
    fn gpu_backends(&self) -> Vec<GpuBackend> {
        Vec::new()
    }
}

/// What a [`BuiltinTrainer`] checks: the sections as written, the search space, and the spec's directory
/// (relative paths start there).
pub struct BuiltinSections<'a> {
    /// The `trial:` section.
    pub trial: &'a serde_json::Value,
    /// The `pretrain:` section, when there is one.
    pub pretrain: Option<&'a serde_json::Value>,
    /// The search space, whose names and ranges the trainer must accept.
    pub space: &'a SearchSpace,
    /// The spec file's directory.
    pub base_dir: &'a Path,
}

/// How the built-in trainer evaluates a tournament replicate on the test split.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplicateEval {
    /// Added to the replicate's argv (e.g. `--test`).
    pub args: Vec<ArgTemplate>,
    /// The result metric recorded as the replicate's value (e.g. `test_accuracy`), when the trial reports it.
    pub metric: String,
}

/// A refused field: its dotted path in the spec (`trial.arch`, `params.freeze_depth`), which locates it in
/// the file, and what is wrong.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    /// The field's dotted path.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// For programs without the built-in trainer: `trial:` and `pretrain:` are refused.
pub struct NoBuiltinTrainer;

impl NoBuiltinTrainer {
    fn refuse(field: &str) -> FieldError {
        FieldError { field: field.into(), message: "the built-in trainer is not available here; give `command:`".into() }
    }
}

impl BuiltinTrainer for NoBuiltinTrainer {
    fn trial_program(&self, _: &BuiltinSections<'_>) -> std::result::Result<Vec<ArgTemplate>, FieldError> {
        Err(Self::refuse("trial"))
    }

    fn check_pretrain(&self, _: &serde_json::Value, _: &Path) -> std::result::Result<(), FieldError> {
        Err(Self::refuse("pretrain"))
    }
}

//! Parse, then validate: [`Spec::parse_with`] turns the raw YAML into a validated [`Spec`], section by section.

use std::path::{Path, PathBuf};
use std::time::Duration;

use nightshift_search::space::{strip_yaml_location, yaml_location};
use nightshift_search::{Distribution, GridSampler, ParamValue, PrunerConfig, SamplerConfig, SearchSpace, Tournament};

use super::devices::parse_devices;
use super::locate::{Locator, yaml_short};
use super::raw::{RawBudget, RawSpec, RawTournament};
use super::template::parse_command;
use super::{
    Budget, BuiltinSections, BuiltinTrainer, Compare, Heartbeat, NoBuiltinTrainer, Objective, Program, Spec, parse_clock,
};
use crate::error::{Error, Result};

impl Spec {
    /// Reads and validates a spec file; `trainer` checks a `trial:` section.
    pub fn from_file(path: &Path, trainer: &dyn BuiltinTrainer) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io("read spec", path, e))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base_dir = if base_dir.as_os_str().is_empty() { PathBuf::from(".") } else { base_dir };
        let base_dir = std::path::absolute(&base_dir).unwrap_or(base_dir);
        Self::parse_with(&text, &path.display().to_string(), &base_dir, trainer)
    }

    /// Validates the text of a spec with `command:`; `origin` names it in errors and `base_dir` anchors
    /// relative paths.
    pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<Self> {
        Self::parse_with(text, origin, base_dir, &NoBuiltinTrainer)
    }

    /// Validates spec text; `trainer` checks a `trial:` section.
    pub fn parse_with(text: &str, origin: &str, base_dir: &Path, trainer: &dyn BuiltinTrainer) -> Result<Self> {
        Self::parse_text(text, origin, base_dir, trainer).map_err(|mut e| {
            // YAML 1.1's merge key reads as a field named `<<` here (serde_yaml does not merge).
            if let Error::Spec { message, .. } = &mut e
                && message.contains("unknown field `<<`")
            {
                message.push_str(
                    "; YAML merge keys (`<<: *name`) are not supported: write the fields out, or use a plain alias (`*name`) for a whole value",
                );
            }
            e
        })
    }

    fn parse_text(text: &str, origin: &str, base_dir: &Path, trainer: &dyn BuiltinTrainer) -> Result<Self> {
        // Editors on Windows may start a UTF-8 file with a byte-order mark, which YAML reads as content.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let loc = Locator { origin, text };
        let syntax = |e: serde_yaml::Error| {
            // A tab where indentation goes: the parser's own words do not say so.
            let tab = e
                .location()
                .and_then(|l| text.lines().nth(l.line().saturating_sub(1)))
                .is_some_and(|line| line.trim_start_matches(' ').starts_with('\t'));
            let hint = if tab { " (a tab in the indentation: YAML indents with spaces only)" } else { "" };
            Error::Spec {
                location: yaml_location(origin, text, &e),
                field: String::new(),
                message: strip_yaml_location(&e) + hint,
            }
        };
        let document: serde_yaml::Value = serde_yaml::from_str(text).map_err(syntax)?;
        if !document.is_mapping() {
            return Err(loc.err(
                "",
                format!(
                    "a spec is a mapping with study, objective, budget, params and trial or command; found {}",
                    yaml_short(&document)
                ),
            ));
        }
        let raw: RawSpec = serde_yaml::from_str(text).map_err(|e| {
            let mut err = syntax(e);
            if let Error::Spec { message, .. } = &mut err
                && message.contains("unknown field")
            {
                message.push_str(" (see docs/protocol.md for the spec format)");
            }
            err
        })?;

        let study = raw.study.trim().to_string();
        check_study_name(&study).map_err(|message| loc.err("study", message))?;
        let storage = raw.storage.clone().unwrap_or_else(|| default_storage(&study));
        if storage.trim().is_empty() {
            return Err(loc.err("storage", "empty storage URL (e.g. sqlite:///reports/<study>/study.db, or leave it out)"));
        }
        if raw.objective.metric.trim().is_empty() {
            return Err(loc.err("objective.metric", "empty metric name (e.g. val_accuracy)"));
        }
        let objective = Objective { metric: raw.objective.metric.trim().to_string(), direction: raw.objective.direction };

        let (sampler, seed) = parse_sampler(raw.sampler.as_ref(), &loc)?;
        let pruner = parse_pruner(raw.pruner.as_ref(), &loc)?;
        let budget = parse_budget(&raw.budget, &loc)?;
        let devices = parse_devices(raw.devices.as_ref(), &loc)?;

        let locate_param = |name: &str| if name.is_empty() { loc.at("params") } else { loc.at(&format!("params.{name}")) };
        let space = SearchSpace::from_yaml_value(&raw.params, &locate_param).map_err(|e| match e {
            nightshift_search::Error::Space { location, param, message } => Error::Spec {
                location: if location.is_empty() { loc.at("params") } else { location },
                field: param.map(|p| format!("params.{p}")).unwrap_or_else(|| "params".into()),
                message,
            },
            other => loc.err("params", other.to_string()),
        })?;

        if sampler == SamplerConfig::Grid {
            // Else the first trial finds out, fails, and the study keeps the grid sampler.
            GridSampler::grid_size(&space).map_err(|e| loc.err("sampler", e.to_string()))?;
        }

        let pretrain = match &raw.pretrain {
            None => None,
            Some(value) => {
                let json = section_json(value, "pretrain", &loc)?;
                trainer.check_pretrain(&json, base_dir).map_err(|e| loc.field_err(e))?;
                Some(json)
            }
        };

        let program = match (&raw.trial, &raw.command) {
            (Some(_), Some(_)) => return Err(loc.err("command", "give either `trial:` (the built-in trainer) or `command:` (any program), not both")),
            (None, None) => return Err(loc.err("", "missing `trial:` (the built-in fine-tuning trainer) or `command:` (an argv list, e.g. [python, train.py, --lr, \"{learning_rate}\"])")),
            (Some(trial), None) => {
                let trial = section_json(trial, "trial", &loc)?;
                let sections = BuiltinSections { trial: &trial, pretrain: pretrain.as_ref(), space: &space, base_dir };
                let argv = trainer.trial_program(&sections).map_err(|e| loc.field_err(e))?;
                trainer.check_objective(&objective.metric, objective.direction).map_err(|e| loc.field_err(e))?;
                let replicate = trainer.replicate_eval(&sections);
                Program::Builtin { trial, argv, replicate, gpu_backends: trainer.gpu_backends() }
            }
            (None, Some(command)) => parse_command(command, &space, &loc)?,
        };

        let compare = match &raw.compare {
            None => None,
            Some(value) => Some(parse_compare(value, &space, &budget, &loc)?),
        };

        let heartbeat = {
            let interval = raw.heartbeat.as_ref().and_then(|h| h.interval).map(|d| d.0).unwrap_or(Duration::from_secs(5));
            let stale_after = raw.heartbeat.as_ref().and_then(|h| h.stale_after).map(|d| d.0).unwrap_or(Duration::from_secs(30));
            if interval < Duration::from_millis(50) {
                return Err(loc.err("heartbeat.interval", "must be at least 50ms"));
            }
            if stale_after < interval * 2 {
                return Err(loc.err(
                    "heartbeat.stale_after",
                    format!("must be at least twice heartbeat.interval ({:?}), or live trials would be declared dead", interval),
                ));
            }
            Heartbeat { interval, stale_after }
        };
        let kill_grace = raw.kill_grace.map(|d| d.0).unwrap_or(Duration::from_secs(10));

        Ok(Spec {
            study,
            storage,
            objective,
            sampler,
            seed,
            pruner,
            budget,
            devices,
            program,
            pretrain,
            space,
            compare,
            heartbeat,
            reenqueue_stale: raw.reenqueue_stale.unwrap_or(false),
            kill_grace,
            base_dir: base_dir.to_path_buf(),
            origin: origin.to_string(),
            text: text.to_string(),
        })
    }
}

/// Checks a study name that names a directory (`reports/<study>/`): ASCII letters, digits, `-`,
/// `_` and `.`, not starting with `.`; so never `..`, a `/` or an absolute path.
pub fn check_study_name(name: &str) -> std::result::Result<(), String> {
    // A directory name has at most 255 bytes on common file systems.
    if name.len() > 200 {
        return Err(format!("the study name has {} characters, at most 200 (it names reports/<study>/)", name.len()));
    }
    let valid = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "'{name}' is not a valid study name: use ASCII letters, digits, '-', '_' and '.' (it names reports/<study>/)"
        ))
    }
}

/// `sqlite:///reports/<study>/study.db`, relative to the working directory.
pub fn default_storage(study: &str) -> String {
    format!("sqlite:///reports/{study}/study.db")
}

fn parse_sampler(value: Option<&serde_yaml::Value>, loc: &Locator<'_>) -> Result<(SamplerConfig, Option<u64>)> {
    let Some(value) = value else { return Ok((SamplerConfig::default(), None)) };
    let serde_yaml::Value::Mapping(map) = value else {
        return Err(
            loc.err("sampler", format!("expected a mapping such as {{type: tpe, seed: 42}}, found {}", yaml_short(value)))
        );
    };
    let mut map = map.clone();
    // The seed belongs to the study, so every process (and every resume) agrees on it.
    let seed = match map.remove("seed") {
        None | Some(serde_yaml::Value::Null) => None,
        Some(serde_yaml::Value::Number(n)) if n.as_u64().is_some() => n.as_u64(),
        Some(other) => {
            return Err(loc.err("sampler.seed", format!("expected a non-negative integer, found {}", yaml_short(&other))));
        }
    };
    if !map.contains_key("type") {
        return Err(loc.err("sampler", "missing `type` (valid: auto, tpe, gp, random, grid, qmc)"));
    }
    let config = section_from_value("sampler", map, loc, "valid types: auto, tpe, gp, random, grid, qmc, with their options")?;
    Ok((config, seed))
}

fn parse_pruner(value: Option<&serde_yaml::Value>, loc: &Locator<'_>) -> Result<PrunerConfig> {
    let Some(value) = value else { return Ok(PrunerConfig::default()) };
    let serde_yaml::Value::Mapping(map) = value else {
        return Err(loc.err("pruner", format!("expected a mapping such as {{type: median}}, found {}", yaml_short(value))));
    };
    let valid = "valid types: none, median, percentile, successive_halving, hyperband, patient, threshold, with their options";
    section_from_value("pruner", map.clone(), loc, valid)
}

/// A tagged section (`sampler:`, `pruner:`) read from its mapping. Serde reads such a section
/// through a buffer that forgets positions, so the error is placed here: at the misspelt key when
/// serde names one, else at the section.
fn section_from_value<T: serde::de::DeserializeOwned>(
    section: &str,
    map: serde_yaml::Mapping,
    loc: &Locator<'_>,
    valid: &str,
) -> Result<T> {
    serde_yaml::from_value(serde_yaml::Value::Mapping(map)).map_err(|e| {
        let message = strip_yaml_location(&e);
        let field = match message.strip_prefix("unknown field `").and_then(|rest| rest.split_once('`')) {
            Some((key, _)) => format!("{section}.{key}"),
            None => section.to_string(),
        };
        loc.err(&field, format!("{message} ({valid})"))
    })
}

fn parse_budget(raw: &RawBudget, loc: &Locator<'_>) -> Result<Budget> {
    if raw.trials == 0 {
        return Err(loc.err("budget.trials", "must be at least 1"));
    }
    if let Some(t) = raw.timeout
        && t.0.is_zero()
    {
        return Err(loc.err("budget.timeout", "must be positive (e.g. 8h)"));
    }
    if let Some(t) = raw.trial_timeout
        && t.0.is_zero()
    {
        return Err(loc.err("budget.trial_timeout", "must be positive (e.g. 30m)"));
    }
    let stop_at = match &raw.stop_at {
        None => None,
        Some(s) => Some(
            parse_clock(s)
                .ok_or_else(|| loc.err("budget.stop_at", format!("'{s}' is not a local time: use HH:MM, e.g. \"07:00\"")))?,
        ),
    };
    if let Some(t) = raw.target
        && !t.is_finite()
    {
        return Err(loc.err("budget.target", "must be a finite number"));
    }
    let max_consecutive_failures = raw.max_consecutive_failures.unwrap_or(5);
    if max_consecutive_failures == 0 {
        return Err(loc.err("budget.max_consecutive_failures", "must be at least 1"));
    }
    Ok(Budget {
        trials: raw.trials,
        timeout: raw.timeout.map(|d| d.0),
        stop_at,
        target: raw.target,
        max_consecutive_failures,
        trial_timeout: raw.trial_timeout.map(|d| d.0),
        retries: raw.retries.unwrap_or(0),
    })
}

/// A `trial:` or `pretrain:` section as JSON, the form the [`BuiltinTrainer`] reads.
fn section_json(value: &serde_yaml::Value, field: &str, loc: &Locator<'_>) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| loc.err(field, format!("cannot be represented as JSON: {e}")))
}

fn parse_compare(value: &serde_yaml::Value, space: &SearchSpace, budget: &Budget, loc: &Locator<'_>) -> Result<Compare> {
    let raw = match value {
        serde_yaml::Value::String(name) => {
            return compare_values("compare", name, space, loc).map(|(param, values)| Compare {
                param,
                values,
                tournament: None,
            });
        }
        serde_yaml::Value::Mapping(_) => serde_yaml::from_value::<RawTournament>(value.clone()).map_err(|e| {
            loc.err(
                "compare",
                format!(
                    "{} (a tournament is {{param: freeze_depth, budget_per_arm: 6, replicate_top: 1, seeds: 3}})",
                    strip_yaml_location(&e)
                ),
            )
        })?,
        other => {
            return Err(loc.err(
                "compare",
                format!(
                    "expected a parameter name or {{param: …, budget_per_arm: …, replicate_top: …, seeds: …}}, found {}",
                    yaml_short(other)
                ),
            ));
        }
    };
    let (param, values) = compare_values("compare.param", raw.param.trim(), space, loc)?;
    if budget.target.is_some() {
        // Reaching the target would end the sweep before the replicates, and with them the verdict.
        return Err(loc.err("budget.target", "a tournament runs every arm's budget and its replicates: leave out budget.target"));
    }
    let arms = values.len() as u64;
    // `budget.trials` bounds the search phase; each arm's share defaults to an equal part of it.
    let budget_per_arm = raw.budget_per_arm.unwrap_or(budget.trials / arms);
    if budget_per_arm == 0 {
        return Err(loc.err(
            "compare.budget_per_arm",
            format!("must be at least 1 (budget.trials {} over {arms} arms leaves none: raise budget.trials)", budget.trials),
        ));
    }
    if budget_per_arm.saturating_mul(arms) > budget.trials {
        return Err(loc.err(
            "compare.budget_per_arm",
            format!(
                "{budget_per_arm} trials per arm × {arms} arms ({}) is more than budget.trials ({}); valid: at most {} per arm, or raise budget.trials",
                budget_per_arm.saturating_mul(arms),
                budget.trials,
                budget.trials / arms
            ),
        ));
    }
    let replicate_top = raw.replicate_top.unwrap_or(1);
    if replicate_top == 0 || replicate_top > budget_per_arm {
        return Err(loc.err(
            "compare.replicate_top",
            format!("must be between 1 and budget_per_arm ({budget_per_arm}): the configurations re-run per arm"),
        ));
    }
    let seeds = raw.seeds.unwrap_or(3);
    if seeds < 2 {
        return Err(loc.err(
            "compare.seeds",
            format!("must be at least 2 (found {seeds}): one run per configuration says nothing about noise"),
        ));
    }
    if seeds > 100 {
        return Err(loc.err("compare.seeds", format!("must be at most 100 (found {seeds})")));
    }
    let tournament = Tournament { param: param.clone(), arms: values.clone(), budget_per_arm, replicate_top, seeds };
    Ok(Compare { param, values, tournament: Some(tournament) })
}

/// The compared parameter's values: a categorical's choices, or an int range's values (at most 64).
fn compare_values(field: &str, name: &str, space: &SearchSpace, loc: &Locator<'_>) -> Result<(String, Vec<ParamValue>)> {
    let Some(dist) = space.get(name) else {
        return Err(
            loc.err(field, format!("'{name}' is not a parameter (valid: {})", space.names().collect::<Vec<_>>().join(", ")))
        );
    };
    let values = match dist {
        Distribution::Categorical { choices } => choices.clone(),
        Distribution::Int { low, high, step, .. } if (high - low) / step < 64 => {
            (0..=(high - low) / step).map(|k| ParamValue::Int(low + k * step)).collect()
        }
        _ => {
            let valid: Vec<&str> = space
                .iter()
                .filter(|(_, d)| {
                    matches!(d, Distribution::Categorical { .. })
                        || matches!(d, Distribution::Int { low, high, step, .. } if (high - low) / step < 64)
                })
                .map(|(n, _)| n)
                .collect();
            return Err(loc.err(
                field,
                format!(
                    "'{name}' must be categorical or an int with at most 64 values to compare its values (valid here: {})",
                    if valid.is_empty() { "none".to_string() } else { valid.join(", ") }
                ),
            ));
        }
    };
    Ok((name.to_string(), values))
}

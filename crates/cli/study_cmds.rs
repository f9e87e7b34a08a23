//! The Optuna-style study verbs: create-study, delete-study, study set-user-attr, ask, tell,
//! report-value, trials, best-trial, best-trials, studies, study-names.

use anyhow::{Context, Result, anyhow, bail};
use clap::{Args, Subcommand};
use nightshift_search::{Direction, NewStudy, PrunerConfig, SamplerConfig, SearchSpace, Study, TellOutcome, TrialState};
use serde_json::{Value, json};

use crate::output::{self, Format};
use crate::storage::StorageArgs;

/// How to create a study when the verb has to (create-study; ask on a new study, as Optuna does).
#[derive(Args, Clone, Debug)]
pub struct StudyOptions {
    /// Optimisation direction: minimize or maximize.
    #[arg(long, default_value = "minimize", value_parser = parse_direction)]
    direction: Direction,
    /// Sampler: auto (the default: a Gaussian process while it pays off, then TPE), tpe, gp,
    /// random, grid or qmc (Optuna's names, e.g. TPESampler or GPSampler, work too).
    #[arg(long)]
    sampler: Option<String>,
    /// Sampler options as a JSON object, e.g. '{"n_startup_trials": 5, "seed": 3}'.
    #[arg(long)]
    sampler_kwargs: Option<String>,
    /// Pruner: median, percentile, successive_halving, hyperband, patient, threshold or none
    /// (Optuna's names, e.g. MedianPruner, work too).
    #[arg(long)]
    pruner: Option<String>,
    /// Pruner options as a JSON object, e.g. '{"n_warmup_steps": 2}'.
    #[arg(long)]
    pruner_kwargs: Option<String>,
    /// Seed of the study (default: random, chosen once and stored, so every process agrees).
    #[arg(long)]
    seed: Option<u64>,
    /// Search space: JSON or YAML text, or @file (ours or Optuna's `--search-space` format).
    #[arg(long)]
    search_space: Option<String>,
}

/// The study a verb works on: its name, and where it lives.
#[derive(Args, Clone, Debug)]
pub struct StudyArgs {
    #[command(flatten)]
    storage: StorageArgs,
    /// Name of the study.
    #[arg(long, value_parser = study_name)]
    study_name: String,
}

/// Any text Optuna takes, but not an empty one or one with control characters (a newline would
/// break every table and line-oriented listing).
fn study_name(text: &str) -> std::result::Result<String, String> {
    if text.trim().is_empty() {
        return Err("a study name cannot be empty".into());
    }
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        return Err(format!("a study name cannot contain control characters (found {c:?})"));
    }
    Ok(text.to_string())
}

impl StudyArgs {
    /// The study, from wherever it lives; never creates a storage.
    fn load(&self) -> Result<Study> {
        Ok(Study::load(self.storage.find_study(&self.study_name)?.storage, &self.study_name)?)
    }
}

/// How a listing verb prints: `-f/--format` and `--flatten`, as in Optuna's CLI.
#[derive(Args, Clone, Copy, Debug)]
pub struct PrintArgs {
    /// Output format: table, json, yaml or value (Optuna's formats).
    #[arg(long, short = 'f', value_enum, default_value_t)]
    format: Format,
    /// Flatten nested fields (params, user_attrs, direction) into columns such as params_x.
    #[arg(long)]
    flatten: bool,
}

/// `ask`'s print options: JSON by default, as Optuna's `ask`.
#[derive(Args, Clone, Copy, Debug)]
pub struct AskPrintArgs {
    /// Output format: json, yaml, value or table (Optuna's formats).
    #[arg(long, short = 'f', value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Flatten the params into columns such as params_x.
    #[arg(long)]
    flatten: bool,
}

#[derive(Subcommand)]
pub enum StudyCommand {
    /// Create a new study (prints its name).
    CreateStudy {
        #[command(flatten)]
        study: StudyArgs,
        #[command(flatten)]
        options: StudyOptions,
        /// Reuse the study if it already exists instead of failing.
        #[arg(long)]
        skip_if_exists: bool,
    },
    /// Delete a study and all its trials.
    DeleteStudy {
        #[command(flatten)]
        study: StudyArgs,
    },
    /// Study-level commands: `study set-user-attr`.
    #[command(subcommand)]
    Study(StudySubcommand),
    /// Start a trial; prints {"number": N, "params": {…}} as one JSON line.
    Ask {
        #[command(flatten)]
        study: StudyArgs,
        #[command(flatten)]
        options: StudyOptions,
        #[command(flatten)]
        print: AskPrintArgs,
    },
    /// Finish a trial with its objective value, or as pruned/failed.
    Tell {
        #[command(flatten)]
        study: StudyArgs,
        /// Number of the trial, as `ask` printed it.
        #[arg(long)]
        trial_number: u64,
        /// The objective value (one objective).
        #[arg(long, allow_hyphen_values = true, value_parser = parse_float, required_unless_present = "state")]
        values: Option<f64>,
        /// complete (needs --values), pruned or fail.
        #[arg(long, value_parser = ["complete", "pruned", "fail"], ignore_case = true)]
        state: Option<String>,
        /// Do nothing (exit 0) if the trial is already finished.
        #[arg(long)]
        skip_if_finished: bool,
    },
    /// Record an intermediate value; prints {"prune": true|false} from the study's pruner.
    ReportValue {
        #[command(flatten)]
        study: StudyArgs,
        /// Number of the trial, as `ask` printed it.
        #[arg(long)]
        trial_number: u64,
        /// Step of the value, e.g. the epoch.
        #[arg(long)]
        step: u64,
        /// The intermediate objective value.
        #[arg(long, allow_hyphen_values = true, value_parser = parse_float)]
        value: f64,
    },
    /// List the trials of a study.
    Trials {
        #[command(flatten)]
        study: StudyArgs,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Show the best trial of a study.
    BestTrial {
        #[command(flatten)]
        study: StudyArgs,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Show the best trials (one objective: every complete trial with the best value).
    BestTrials {
        #[command(flatten)]
        study: StudyArgs,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// List the studies (default: in ./nightshift.db and every reports/<study>/study.db).
    Studies {
        #[command(flatten)]
        storage: StorageArgs,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Print the names of the studies, one a line.
    StudyNames {
        #[command(flatten)]
        storage: StorageArgs,
        /// Output format: value (the default), json, yaml or table.
        #[arg(long, short = 'f', value_enum, default_value_t = Format::Value)]
        format: Format,
    },
}

/// `nightshift study …`, spelled as Optuna's `optuna study set-user-attr`.
#[derive(Subcommand)]
pub enum StudySubcommand {
    /// Set a user attribute of a study (a string, as Optuna stores it).
    SetUserAttr {
        #[command(flatten)]
        study: StudyArgs,
        /// Key of the attribute.
        #[arg(long, short = 'k')]
        key: String,
        /// Value to set.
        #[arg(long, allow_hyphen_values = true)]
        value: String,
    },
}

pub fn run(cmd: StudyCommand) -> Result<()> {
    match cmd {
        StudyCommand::CreateStudy { study, options, skip_if_exists } => {
            let storage = study.storage.for_new_study(&study.study_name)?;
            let new = options.new_study(&study.study_name)?;
            let study = if skip_if_exists { Study::create_or_load(storage, &new)? } else { Study::create(storage, &new)? };
            println!("{}", study.name());
        }
        StudyCommand::DeleteStudy { study } => {
            let found = study.storage.find_study(&study.study_name)?;
            // A sweep still beating on the study would stop with a bare storage error.
            const LIVE: f64 = 60.0;
            let now = nightshift_search::now_unix();
            let live: Vec<u64> = found
                .storage
                .trials(found.record.id, Some(&[TrialState::Running]))?
                .iter()
                .filter(|t| t.heartbeat_at.is_some_and(|beat| now - beat < LIVE))
                .map(|t| t.number)
                .collect();
            if !live.is_empty() {
                bail!(
                    "study '{}' has trials running now ({live:?}, a heartbeat in the last {LIVE} s): a sweep is using it; \
                     stop it first (Ctrl-C), then delete",
                    study.study_name
                );
            }
            found.storage.delete_study(found.record.id)?;
            tracing::info!("deleted study '{}' from {}", study.study_name, nightshift_store::redact_url(&found.url));
        }
        StudyCommand::Study(StudySubcommand::SetUserAttr { study, key, value }) => {
            let found = study.storage.find_study(&study.study_name)?;
            found.storage.set_study_user_attr(found.record.id, &key, &Value::String(value))?;
            tracing::info!("set user attribute '{key}' of study '{}'", study.study_name);
        }
        StudyCommand::Ask { study: StudyArgs { storage, study_name }, options, print } => {
            let storage = storage.for_new_study(&study_name)?;
            let study = match storage.load_study(&study_name) {
                Ok(_) => Study::load(storage, &study_name)?,
                Err(nightshift_search::Error::StudyNotFound(_)) => {
                    // Optuna's `ask` refuses since 4.0; creating it is kept for old scripts, but a typo
                    // in the name must not go unnoticed.
                    let study = Study::create_or_load(storage, &options.new_study(&study_name)?)?;
                    tracing::warn!(
                        "created study '{study_name}': it did not exist (a typo? `nightshift studies` lists them; \
                         Optuna's ask refuses, `create-study` first is the portable way)"
                    );
                    study
                }
                Err(e) => return Err(e.into()),
            };
            let study = options.apply_overrides(study)?;
            // Without a space anywhere, Optuna's `ask` returns a trial with empty params; so do we.
            let space = match &options.search_space {
                Some(text) => read_space(text)?,
                None => study.search_space().cloned().unwrap_or_default(),
            };
            let trial = study.ask(&space)?;
            tracing::info!("asked trial {} with parameters {}", trial.number, json!(trial.params));
            let mut record = json!({"number": trial.number, "params": trial.params});
            if print.flatten {
                record = output::flatten(record);
            }
            let records = [record];
            output::print_records(print.format, &records, true, || output::records_table(&records))?;
        }
        StudyCommand::Tell { study, trial_number, values, state, skip_if_finished } => {
            let study = study.load()?;
            let state = state.map(|s| s.to_ascii_lowercase());
            let outcome = match (state.as_deref().unwrap_or("complete"), values) {
                ("complete", Some(v)) => TellOutcome::Value(v),
                ("complete", None) => bail!("--state complete needs --values"),
                (state, Some(_)) => {
                    let word = if state == "fail" { "failed" } else { state };
                    bail!("--values cannot be given with --state {state}: a {word} trial keeps no objective value (as in Optuna)")
                }
                ("pruned", None) => TellOutcome::Pruned,
                _ => TellOutcome::Fail("told as failed".into()),
            };
            match study.tell(trial_number, outcome) {
                Ok(trial) => tracing::info!(
                    "trial {} finished: {}{}",
                    trial.number,
                    trial.state,
                    trial.value.map(|v| format!(" value={}", output::python_float(v))).unwrap_or_default()
                ),
                Err(nightshift_search::Error::TrialFinished { .. }) if skip_if_finished => {
                    tracing::info!("trial {trial_number} was already finished; skipped");
                }
                Err(e) => return Err(e.into()),
            }
        }
        StudyCommand::ReportValue { study, trial_number, step, value } => {
            let study = study.load()?;
            study.report(trial_number, step, value)?;
            // A step reported before keeps its first value (as in Optuna): say which one counts.
            let kept = study.storage().trial(study.record().id, trial_number)?.intermediate_values.get(&step).copied();
            let kept = match kept {
                Some(first) if first.to_bits() != value.to_bits() => {
                    let (first_text, value_text) = (output::python_float(first), output::python_float(value));
                    tracing::warn!(
                        "step {step} was reported before with {first_text}: that value is kept, {value_text} is ignored"
                    );
                    first
                }
                _ => value,
            };
            let prune = study.should_prune(trial_number)?;
            println!("{}", json!({"number": trial_number, "step": step, "value": kept, "prune": prune}));
        }
        StudyCommand::Trials { study, print } => {
            let trials = study.load()?.trials()?;
            print_trials(print, &trials, false)?;
        }
        StudyCommand::BestTrial { study, print } => {
            let best = study.load()?.best_trial()?;
            print_trials(print, std::slice::from_ref(&best), true)?;
        }
        StudyCommand::BestTrials { study, print } => {
            let study = study.load()?;
            // No completed trial yet: an empty list, as Optuna's `best-trials` prints.
            let best_value = match study.best_trial() {
                Ok(best) => best.value,
                Err(nightshift_search::Error::NoCompletedTrials) => None,
                Err(e) => return Err(e.into()),
            };
            let best: Vec<_> = study
                .trials()?
                .into_iter()
                .filter(|t| best_value.is_some() && t.state == TrialState::Complete && t.value == best_value)
                .collect();
            print_trials(print, &best, false)?;
        }
        StudyCommand::Studies { storage, print } => {
            let mut studies = Vec::new();
            for (url, storage) in storage.all()? {
                for record in storage.list_studies()? {
                    let trials = storage.trials(record.id, None)?;
                    studies.push((url.clone(), record, trials));
                }
            }
            let records: Vec<Value> = studies
                .iter()
                .map(|(url, s, t)| output::study_record(s, t, url))
                .map(|r| if print.flatten { output::flatten(r) } else { r })
                .collect();
            output::print_records(print.format, &records, false, || output::studies_table(&studies))?;
        }
        StudyCommand::StudyNames { storage, format } => {
            let mut names = Vec::new();
            for (_, storage) in storage.all()? {
                names.extend(storage.list_studies()?.into_iter().map(|s| s.name));
            }
            let records: Vec<Value> = names.iter().map(|n| json!({"name": n})).collect();
            output::print_records(format, &records, false, || output::records_table(&records))?;
        }
    }
    Ok(())
}

fn print_trials(print: PrintArgs, trials: &[nightshift_search::FrozenTrial], one: bool) -> Result<()> {
    let records: Vec<Value> =
        trials.iter().map(output::trial_record).map(|r| if print.flatten { output::flatten(r) } else { r }).collect();
    output::print_records(print.format, &records, one, || output::trials_table(trials))
}

impl StudyOptions {
    fn sampler_kwargs(&self) -> Result<Option<serde_json::Value>> {
        self.sampler_kwargs
            .as_deref()
            .map(|text| serde_json::from_str(text).with_context(|| format!("--sampler-kwargs is not valid JSON: {text}")))
            .transpose()
    }

    /// The seed given as --seed or inside --sampler-kwargs (Optuna users put it there).
    fn explicit_seed(&self) -> Result<Option<u64>> {
        if let Some(seed) = self.seed {
            return Ok(Some(seed));
        }
        match self.sampler_kwargs()?.as_ref().and_then(|k| k.get("seed")) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => {
                v.as_u64().map(Some).ok_or_else(|| anyhow!("--sampler-kwargs: seed must be a non-negative integer, got {v}"))
            }
        }
    }

    fn sampler_config(&self) -> Result<Option<SamplerConfig>> {
        let kwargs = self.sampler_kwargs()?;
        let only_seed = kwargs.as_ref().is_some_and(|k| k.as_object().is_some_and(|m| m.keys().all(|key| key == "seed")));
        match (&self.sampler, &kwargs) {
            (None, None) => Ok(None),
            // `{"seed": 3}` alone picks the seed, not a sampler (the study's own, `auto` by default).
            (None, Some(_)) if only_seed => Ok(None),
            // Other kwargs without a name are TPE's, as with Optuna's CLI, whose default sampler is TPE.
            (name, _) => Ok(Some(SamplerConfig::from_name_and_kwargs(name.as_deref().unwrap_or("tpe"), kwargs.as_ref())?)),
        }
    }

    fn pruner_config(&self) -> Result<PrunerConfig> {
        let Some(name) = &self.pruner else { return Ok(PrunerConfig::default()) };
        let mut object = match &self.pruner_kwargs {
            Some(text) => {
                match serde_json::from_str(text).with_context(|| format!("--pruner-kwargs is not valid JSON: {text}"))? {
                    serde_json::Value::Object(map) => map,
                    other => bail!("--pruner-kwargs must be a JSON object, got {other}"),
                }
            }
            None => serde_json::Map::new(),
        };
        object.insert("type".into(), pruner_type_name(name).into());
        serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| anyhow!("invalid pruner '{name}': {e}"))
    }

    fn new_study(&self, name: &str) -> Result<NewStudy> {
        let seed = self.explicit_seed()?.unwrap_or_else(rand_seed);
        let mut new = NewStudy::new(name, self.direction, seed);
        if let Some(sampler) = self.sampler_config()? {
            new.sampler = sampler;
        }
        new.pruner = self.pruner_config()?;
        new.search_space = self.search_space.as_deref().map(read_space).transpose()?;
        Ok(new)
    }

    /// Per-process overrides for an existing study, as Optuna's `ask --sampler … --sampler-kwargs …`.
    fn apply_overrides(&self, mut study: Study) -> Result<Study> {
        if let Some(config) = self.sampler_config()? {
            study = study.with_sampler(config.build());
        }
        if let Some(seed) = self.explicit_seed()? {
            study = study.with_seed(seed);
        }
        Ok(study)
    }
}

/// `MedianPruner` → `median`, `SuccessiveHalvingPruner` → `successive_halving`, `median` → `median`.
fn pruner_type_name(name: &str) -> String {
    let base = name.strip_suffix("Pruner").unwrap_or(name);
    let mut out = String::new();
    for c in base.chars() {
        if c.is_ascii_uppercase() && !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    if out == "nop" { "none".into() } else { out }
}

fn parse_direction(s: &str) -> Result<Direction, String> {
    s.parse()
}

/// A float as Python's `float()` (and so argparse, and Optuna's CLI) reads it: any sign and
/// exponent syntax (`-6.7e-06`, `-1e+300`), `inf`/`-inf`/`infinity`, `nan`, surrounding blanks and
/// digit-group underscores (`1_000.5`).
fn parse_float(s: &str) -> Result<f64, String> {
    let text = s.trim();
    let plain = if text.contains('_') { text.replace('_', "") } else { text.to_string() };
    let ok_underscores = !text.contains('_')
        || text
            .split(|c: char| !c.is_ascii_digit() && c != '_')
            .all(|run| run.is_empty() || (!run.starts_with('_') && !run.ends_with('_') && !run.contains("__")));
    match plain.parse::<f64>() {
        Ok(v) if ok_underscores => Ok(v),
        _ => Err(format!("'{s}' is not a number (e.g. 0.93, -6.7e-06, inf, -inf, nan)")),
    }
}

/// A search space given inline (JSON/YAML) or as @file.
pub fn read_space(arg: &str) -> Result<SearchSpace> {
    match arg.strip_prefix('@') {
        Some(path) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("cannot read search space file '{path}'"))?;
            Ok(SearchSpace::parse(&text, path)?)
        }
        None => Ok(SearchSpace::parse(arg, "--search-space")?),
    }
}

/// A fresh seed for a new study (stored with it, so every later process agrees).
fn rand_seed() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    nightshift_search::sampler::mix_seed(nanos as u64, std::process::id() as u64, "study-seed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn optuna_pruner_names_map_to_ours() {
        assert_eq!(pruner_type_name("MedianPruner"), "median");
        assert_eq!(pruner_type_name("SuccessiveHalvingPruner"), "successive_halving");
        assert_eq!(pruner_type_name("successive_halving"), "successive_halving");
        assert_eq!(pruner_type_name("NopPruner"), "none");
    }

    #[test]
    fn floats_parse_as_python_float_does() {
        assert_eq!(parse_float("-6.762234605393754e-06"), Ok(-6.762234605393754e-06));
        assert_eq!(parse_float("-1e+300"), Ok(-1e300));
        assert_eq!(parse_float("-3.3e-05"), Ok(-3.3e-05));
        assert_eq!(parse_float(" 2.5 "), Ok(2.5));
        assert_eq!(parse_float("1_000.5"), Ok(1000.5));
        assert_eq!(parse_float("-inf"), Ok(f64::NEG_INFINITY));
        assert_eq!(parse_float("Infinity"), Ok(f64::INFINITY));
        assert!(parse_float("nan").unwrap().is_nan());
        for bad in ["", "abc", "1__0", "_1", "1_", "--1", "0x10"] {
            assert!(parse_float(bad).is_err(), "{bad:?} should be refused");
        }
    }
}

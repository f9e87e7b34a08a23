//! `export` and `import`: studies exchanged with Python Optuna 5.0 (its JournalStorage file, and
//! its RDB SQLite file for import). The format logic is `nightshift_store::optuna`; this file
//! opens files and storages and writes through the `Storage` trait.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Subcommand, ValueEnum};
use nightshift_search::{Error as SearchError, NewStudy, StudyRecord};
use nightshift_store::optuna::{ImportedStudy, OptunaStudy, journal, rdb};
use serde_json::json;

use crate::storage::StorageArgs;

/// What `export --format` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Optuna's JournalStorage file: `optuna.storages.JournalStorage(JournalFileBackend(FILE))`.
    OptunaJournal,
}

/// What `import --from` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    /// Optuna's JournalStorage file (`JournalFileBackend`).
    OptunaJournal,
    /// Optuna's RDB storage in a SQLite file (the FILE of `sqlite:///FILE`).
    OptunaSqlite,
}

#[derive(Subcommand)]
pub enum InteropCommand {
    /// Write a study as an Optuna 5.0 JournalStorage file, for Python Optuna and optuna-dashboard.
    Export {
        #[command(flatten)]
        storage: StorageArgs,
        /// The study to export.
        #[arg(long)]
        study_name: String,
        /// The file format (optuna-journal: Optuna's JournalFileBackend file).
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// The file to write; it must not exist yet.
        #[arg(long)]
        out: PathBuf,
    },
    /// Bring the finished trials of an Optuna study into a nightshift study (created if needed),
    /// so that its sampler starts from that history.
    Import {
        #[command(flatten)]
        storage: StorageArgs,
        /// The format and the file: `--from optuna-journal FILE` or `--from optuna-sqlite FILE`.
        #[arg(long, num_args = 2, value_names = ["FORMAT", "FILE"], required = true)]
        from: Vec<String>,
        /// The nightshift study to create or add to.
        #[arg(long)]
        study_name: String,
        /// The study's name inside the Optuna file (default: --study-name).
        #[arg(long)]
        optuna_study_name: Option<String>,
        /// Seed of a study created by the import (default: the exported one, else derived from the file).
        #[arg(long)]
        seed: Option<u64>,
    },
}

pub fn run(cmd: InteropCommand) -> Result<()> {
    match cmd {
        InteropCommand::Export { storage, study_name, format: ExportFormat::OptunaJournal, out } => {
            export_journal(&storage, &study_name, &out)
        }
        InteropCommand::Import { storage, from, study_name, optuna_study_name, seed } => {
            let [format, file] = from.as_slice() else {
                bail!("--from takes a format and a file, e.g. --from optuna-journal study.log")
            };
            let format = ImportFormat::from_str(format, true).map_err(|_| {
                anyhow::anyhow!("--from: unknown format '{format}' (valid: optuna-journal FILE, optuna-sqlite FILE)")
            })?;
            let source = optuna_study_name.unwrap_or_else(|| study_name.clone());
            import(&storage, format, Path::new(file), &source, &study_name, seed)
        }
    }
}

fn export_journal(storage: &StorageArgs, study_name: &str, out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} already exists: export writes a new journal file (remove it or choose another --out)", out.display());
    }
    let found = storage.find_study(study_name)?;
    let (storage, study) = (found.storage, found.record);
    let trials = storage.trials(study.id, None)?;
    let optuna = OptunaStudy::from_nightshift(&study, &trials)?;
    let text = journal::write_journal(&optuna);
    // Written beside the target, then renamed: a reader never sees half a journal.
    let dir = out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let partial =
        dir.join(format!(".{}.partial-{}", out.file_name().map(|n| n.to_string_lossy()).unwrap_or_default(), std::process::id()));
    std::fs::write(&partial, text).with_context(|| format!("cannot write {}", out.display()))?;
    if let Err(e) = std::fs::rename(&partial, out) {
        let _ = std::fs::remove_file(&partial);
        return Err(e).with_context(|| format!("cannot write {}", out.display()));
    }
    println!("{}", json!({"study": study.name, "trials": trials.len(), "out": out.display().to_string()}));
    Ok(())
}

fn read_studies(format: ImportFormat, file: &Path) -> Result<Vec<OptunaStudy>> {
    let location = file.display().to_string();
    Ok(match format {
        ImportFormat::OptunaJournal => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read Optuna journal {location}"))?;
            journal::read_journal(&text, &location)?
        }
        ImportFormat::OptunaSqlite => rdb::read_rdb(file)?,
    })
}

fn import(storage: &StorageArgs, format: ImportFormat, file: &Path, source: &str, target: &str, seed: Option<u64>) -> Result<()> {
    // Everything that can be wrong with the input is found before the first write.
    let studies = read_studies(format, file)?;
    let Some(optuna) = studies.iter().find(|s| s.name == source) else {
        let names: Vec<&str> = studies.iter().map(|s| s.name.as_str()).collect();
        bail!(
            "{}: no study named '{source}' (it has: {}; pick one with --optuna-study-name)",
            file.display(),
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        );
    };
    let imported = optuna.to_nightshift()?;
    let storage = storage.for_new_study(target)?;
    let existing = match storage.load_study(target) {
        Ok(study) => Some(study),
        Err(SearchError::StudyNotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    if let Some(study) = &existing {
        check_compatible(study, &imported, file)?;
    }
    let (study, created) = match existing {
        Some(study) => (study, false),
        None => (storage.create_study(&new_study(target, &imported, seed))?, true),
    };
    // All trials or none: one transaction.
    if let Err(e) = storage.add_finished_trials(study.id, &imported.trials) {
        if created {
            let _ = storage.delete_study(study.id);
        }
        return Err(anyhow::Error::from(e).context(format!("nothing imported into study '{}'", study.name)));
    }
    println!(
        "{}",
        json!({
            "study": study.name,
            "created": created,
            "imported": imported.trials.len(),
            "skipped_unfinished": imported.unfinished,
        })
    );
    Ok(())
}

fn new_study(name: &str, imported: &ImportedStudy, seed: Option<u64>) -> NewStudy {
    let seed = seed.or(imported.seed).unwrap_or_else(|| {
        nightshift_search::sampler::mix_seed(imported.trials.len() as u64, 0, &format!("optuna-import:{name}"))
    });
    let mut new = NewStudy::new(name, imported.direction, seed);
    if let Some(sampler) = &imported.sampler {
        new.sampler = sampler.clone();
    }
    if let Some(pruner) = &imported.pruner {
        new.pruner = pruner.clone();
    }
    new.search_space = imported.search_space.clone();
    new.user_attrs = imported.user_attrs.clone();
    new
}

/// An existing study takes the trials only when they mean the same thing there: same direction,
/// and every parameter in its search space with the same distribution.
fn check_compatible(study: &StudyRecord, imported: &ImportedStudy, file: &Path) -> Result<()> {
    if study.direction != imported.direction {
        bail!(
            "{}: the Optuna study is to {} but study '{}' is to {}; nothing imported (import into a new --study-name)",
            file.display(),
            imported.direction,
            study.name,
            study.direction
        );
    }
    let Some(space) = &study.search_space else { return Ok(()) };
    for (trial, (location, number)) in imported.trials.iter().zip(&imported.origins) {
        for (name, dist) in &trial.distributions {
            match space.get(name) {
                Some(known) if known == dist => {}
                Some(known) => bail!(
                    "{location}: trial {number} parameter '{name}' is {dist} but study '{}' has {known}; nothing imported \
                     (the search spaces must match; import into a new --study-name)",
                    study.name
                ),
                None => bail!(
                    "{location}: trial {number} parameter '{name}' is not in the search space of study '{}' ({}); \
                     nothing imported (the search spaces must match; import into a new --study-name)",
                    study.name,
                    space.names().collect::<Vec<_>>().join(", ")
                ),
            }
        }
    }
    Ok(())
}

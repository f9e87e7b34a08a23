//! Where studies live, decided in one place for every verb.
//!
//! `nightshift run` keeps a study in `reports/<study>/study.db` (the spec's `storage:` overrides
//! it); the Optuna-style verbs create theirs in `./nightshift.db`. Given only a study name, every
//! verb looks in both, in that order, so `nightshift trials --study-name demo` finds the study
//! that `nightshift run` just made. `--storage` (or `NIGHTSHIFT_STORAGE`) names the storage
//! instead. Only verbs that create studies (`create-study`, `ask`) ever create a database file.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use nightshift_search::{Storage, StudyRecord};
use nightshift_store::{StorageUrl, redact_url};

/// The storage of studies made by the study verbs when no storage is given.
pub const DEFAULT_STORAGE: &str = "sqlite:///nightshift.db";

/// `--storage`, shared by every verb that reads or writes a study.
#[derive(Args, Clone, Debug, Default)]
pub struct StorageArgs {
    /// Storage URL: sqlite:///relative.db, sqlite:////absolute.db, a plain file path or
    /// postgres://user@host/db. Default: the study's reports/<study>/study.db if it exists, else
    /// ./nightshift.db.
    #[arg(long, env = "NIGHTSHIFT_STORAGE")]
    pub storage: Option<String>,
}

/// A study found in a storage.
pub struct FoundStudy {
    pub url: String,
    pub storage: Arc<dyn Storage>,
    pub record: StudyRecord,
}

impl StorageArgs {
    /// The storage that holds `study`; never creates a file. The error names the places looked
    /// in and the studies found there.
    pub fn find_study(&self, study: &str) -> Result<FoundStudy> {
        let candidates = self.candidates(Some(study));
        let mut seen = Vec::new();
        for url in &candidates {
            let Some(storage) = open_existing(url, self.storage.is_some())? else { continue };
            match storage.load_study(study) {
                Ok(record) => return Ok(FoundStudy { url: url.clone(), storage, record }),
                Err(nightshift_search::Error::StudyNotFound(_)) => {
                    seen.extend(storage.list_studies()?.into_iter().map(|s| s.name));
                }
                Err(e) => return Err(e.into()),
            }
        }
        let places: Vec<String> = candidates.iter().map(|u| redact_url(u)).collect();
        let valid = if seen.is_empty() { "no studies there".to_string() } else { format!("studies there: {}", seen.join(", ")) };
        let elsewhere = if self.storage.is_none() { self.studies_elsewhere(&candidates) } else { String::new() };
        // A sweep whose spec names its own `storage:` leaves its report directory without the study file.
        let reports = std::path::Path::new("reports").join(study);
        let own_storage = if self.storage.is_none() && reports.is_dir() && !reports.join("study.db").exists() {
            format!(
                "; {} exists without a study.db: if its spec names a `storage:`, pass that URL with --storage",
                reports.display()
            )
        } else {
            String::new()
        };
        bail!("study '{study}' not found in {} ({valid}){elsewhere}{own_storage}", places.join(" or "))
    }

    /// "; other studies: a (its storage), …" for the studies of every other run's file, so that a
    /// mistyped name shows the right ones; empty when there are none. Files that fail to open are
    /// passed over: they are not what the user asked about.
    fn studies_elsewhere(&self, searched: &[String]) -> String {
        const SHOWN: usize = 10;
        let others: Vec<String> = self
            .all()
            .unwrap_or_default()
            .into_iter()
            .filter(|(url, _)| !searched.contains(url))
            .flat_map(|(url, storage)| {
                let names = storage.list_studies().unwrap_or_default().into_iter().map(|s| s.name);
                names.map(move |name| format!("{name} ({})", redact_url(&url))).collect::<Vec<_>>()
            })
            .collect();
        if others.is_empty() {
            return String::new();
        }
        let more = others.len().saturating_sub(SHOWN);
        let more = if more > 0 { format!(" and {more} more (`nightshift studies`)") } else { String::new() };
        format!("; other studies: {}{more}", others[..others.len().min(SHOWN)].join(", "))
    }

    /// The storage that holds `study`, or where a new study of that name goes (created if needed).
    pub fn for_new_study(&self, study: &str) -> Result<Arc<dyn Storage>> {
        if self.storage.is_none()
            && let Ok(found) = self.find_study(study)
        {
            return Ok(found.storage);
        }
        open(self.storage.as_deref().unwrap_or(DEFAULT_STORAGE))
    }

    /// Every storage to list studies from: the one given, else ./nightshift.db and each
    /// reports/<study>/study.db that exists. Never creates a file.
    pub fn all(&self) -> Result<Vec<(String, Arc<dyn Storage>)>> {
        let mut out = Vec::new();
        for url in self.candidates(None) {
            if let Some(storage) = open_existing(&url, self.storage.is_some())? {
                out.push((url, storage));
            }
        }
        Ok(out)
    }

    /// Where to look, in order: the given storage alone; else, for one study, its run's file and
    /// then the default; for all studies, the default and then every run's file.
    fn candidates(&self, study: Option<&str>) -> Vec<String> {
        if let Some(url) = &self.storage {
            return vec![url.clone()];
        }
        let default = DEFAULT_STORAGE.to_string();
        match study {
            // A name that cannot be a directory (`a/b`, `..`) has no run file.
            Some(study) => match nightshift_orchestrator::spec::check_study_name(study) {
                Ok(()) => vec![nightshift_orchestrator::spec::default_storage(study), default],
                Err(_) => vec![default],
            },
            None => {
                let mut runs: Vec<PathBuf> = std::fs::read_dir("reports")
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|entry| entry.path().join("study.db"))
                    .filter(|path| path.is_file())
                    .collect();
                runs.sort();
                std::iter::once(default).chain(runs.iter().map(|p| format!("sqlite:///{}", p.display()))).collect()
            }
        }
    }
}

/// Opens the storage at `url`, creating an SQLite file (and its tables) if there is none.
pub fn open(url: &str) -> Result<Arc<dyn Storage>> {
    nightshift_store::open_storage(url).with_context(|| format!("cannot open storage '{}'", redact_url(url)))
}

/// Opens the storage at `url` if it exists. A missing SQLite file is `None` when we were only
/// looking (`given` false), and an error naming the file when the user gave the URL.
pub(crate) fn open_existing(url: &str, given: bool) -> Result<Option<Arc<dyn Storage>>> {
    if let Ok(StorageUrl::Sqlite(path)) = StorageUrl::parse(url)
        && !path.exists()
    {
        if given {
            bail!(
                "no database at '{}' (this verb reads an existing storage and creates none; \
                 create a study there with `nightshift create-study --storage {}`)",
                path.display(),
                redact_url(url)
            );
        }
        return Ok(None);
    }
    open(url).map(Some)
}

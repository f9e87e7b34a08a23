//! A storage in process memory: tests, and one-off studies that need no file.

use std::sync::Mutex;

use super::{NewStudy, NewTrial, Storage, StudyRecord, TrialParam, attrs, finished_trial_params};
use crate::error::{Error, Result};
use crate::trial::{FrozenTrial, TrialState, now_unix};

#[derive(Default)]
struct Inner {
    studies: Vec<StudyRecord>,
    /// Ids are never reused: the trials of a deleted study stay behind under its old id.
    studies_created: i64,
    /// Indexed by trial id - 1.
    trials: Vec<(i64, FrozenTrial)>,
}

/// [`Storage`] behind a mutex; nothing outlives the process.
#[derive(Default)]
pub struct InMemoryStorage {
    inner: Mutex<Inner>,
}

impl InMemoryStorage {
    /// An empty storage.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written trial: every update is one assignment.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Inner {
    fn trial_mut(&mut self, trial_id: i64) -> Result<&mut FrozenTrial> {
        usize::try_from(trial_id - 1)
            .ok()
            .and_then(|i| self.trials.get_mut(i))
            .map(|(_, t)| t)
            .ok_or_else(|| Error::storage(format!("no trial with id {trial_id}")))
    }

    fn running_trial_mut(&mut self, trial_id: i64) -> Result<&mut FrozenTrial> {
        let trial = self.trial_mut(trial_id)?;
        if trial.state.is_finished() {
            return Err(Error::TrialFinished { number: trial.number, state: trial.state });
        }
        Ok(trial)
    }

    fn study_name(&self, study_id: i64) -> Result<&str> {
        self.studies
            .iter()
            .find(|s| s.id == study_id)
            .map(|s| s.name.as_str())
            .ok_or_else(|| Error::storage(format!("no study with id {study_id}")))
    }
}

fn insert_params(trial: &mut FrozenTrial, params: &[TrialParam]) {
    for (name, dist, value) in params {
        if !trial.params.contains_key(name) {
            trial.params.insert(name.clone(), value.clone());
            trial.distributions.insert(name.clone(), dist.clone());
        }
    }
}

impl Storage for InMemoryStorage {
    fn create_study(&self, study: &NewStudy) -> Result<StudyRecord> {
        let mut inner = self.lock();
        if inner.studies.iter().any(|s| s.name == study.name) {
            return Err(Error::StudyExists(study.name.clone()));
        }
        inner.studies_created += 1;
        let record = study.to_record(inner.studies_created);
        inner.studies.push(record.clone());
        Ok(record)
    }

    fn load_study(&self, name: &str) -> Result<StudyRecord> {
        self.lock().studies.iter().find(|s| s.name == name).cloned().ok_or_else(|| Error::StudyNotFound(name.to_string()))
    }

    fn list_studies(&self) -> Result<Vec<StudyRecord>> {
        let mut studies = self.lock().studies.clone();
        studies.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(studies)
    }

    fn set_study_user_attr(&self, study_id: i64, key: &str, value: &serde_json::Value) -> Result<()> {
        let mut inner = self.lock();
        let study = inner
            .studies
            .iter_mut()
            .find(|s| s.id == study_id)
            .ok_or_else(|| Error::storage(format!("no study with id {study_id}")))?;
        study.user_attrs.insert(key.to_string(), value.clone());
        Ok(())
    }

    fn delete_study(&self, study_id: i64) -> Result<()> {
        let mut inner = self.lock();
        inner.study_name(study_id)?;
        inner.studies.retain(|s| s.id != study_id);
        Ok(())
    }

    fn create_trial(&self, study_id: i64, new: &NewTrial) -> Result<FrozenTrial> {
        let mut inner = self.lock();
        let name = inner.study_name(study_id)?.to_string();
        let number = inner.trials.iter().filter(|(s, _)| *s == study_id).count() as u64;
        let used = inner.trials.iter().filter(|(s, t)| *s == study_id && t.state != TrialState::Waiting).count() as u64;
        if new.over_budget(used) {
            return Err(crate::Error::BudgetReached { study: name, max_trials: new.max_trials.unwrap_or(0) });
        }
        let mut trial = new.snapshot(number);
        trial.id = inner.trials.len() as i64 + 1;
        inner.trials.push((study_id, trial.clone()));
        Ok(trial)
    }

    fn claim_waiting_trial(&self, study_id: i64, heartbeat: bool) -> Result<Option<FrozenTrial>> {
        let mut inner = self.lock();
        let waiting = inner.trials.iter_mut().find(|(s, t)| *s == study_id && t.state == TrialState::Waiting);
        Ok(waiting.map(|(_, trial)| {
            trial.state = TrialState::Running;
            trial.started_at = Some(now_unix());
            trial.heartbeat_at = heartbeat.then(now_unix);
            trial.clone()
        }))
    }

    fn set_trial_params(&self, trial_id: i64, params: &[TrialParam]) -> Result<()> {
        let mut inner = self.lock();
        insert_params(inner.running_trial_mut(trial_id)?, params);
        Ok(())
    }

    fn report_intermediate(&self, trial_id: i64, step: u64, value: f64) -> Result<()> {
        let mut inner = self.lock();
        inner.running_trial_mut(trial_id)?.intermediate_values.entry(step).or_insert(value);
        Ok(())
    }

    fn set_trial_attr(&self, trial_id: i64, key: &str, value: &serde_json::Value, system: bool) -> Result<()> {
        let mut inner = self.lock();
        let trial = inner.running_trial_mut(trial_id)?;
        let attrs = if system { &mut trial.system_attrs } else { &mut trial.user_attrs };
        attrs.insert(key.to_string(), value.clone());
        Ok(())
    }

    fn finish_trial(&self, trial_id: i64, state: TrialState, value: Option<f64>) -> Result<FrozenTrial> {
        if !state.is_finished() {
            return Err(Error::storage(format!("finish_trial needs a final state, got {state}")));
        }
        let mut inner = self.lock();
        let trial = inner.running_trial_mut(trial_id)?;
        trial.state = state;
        trial.value = value;
        trial.finished_at = Some(now_unix());
        Ok(trial.clone())
    }

    fn heartbeat(&self, trial_id: i64) -> Result<()> {
        let mut inner = self.lock();
        inner.running_trial_mut(trial_id)?.heartbeat_at = Some(now_unix());
        Ok(())
    }

    fn fail_stale_trials(&self, study_id: i64, grace_seconds: f64) -> Result<Vec<FrozenTrial>> {
        let mut inner = self.lock();
        let now = now_unix();
        let mut failed = Vec::new();
        for (s, trial) in inner.trials.iter_mut() {
            let stale = trial.heartbeat_at.is_some_and(|h| now - h > grace_seconds);
            if *s == study_id && trial.state == TrialState::Running && stale {
                trial.state = TrialState::Fail;
                trial.finished_at = Some(now);
                trial
                    .system_attrs
                    .insert(attrs::FAIL_REASON.into(), format!("stale: no heartbeat for more than {grace_seconds} s").into());
                failed.push(trial.clone());
            }
        }
        Ok(failed)
    }

    fn add_finished_trials(&self, study_id: i64, trials: &[FrozenTrial]) -> Result<()> {
        for trial in trials {
            finished_trial_params(trial)?;
        }
        let mut inner = self.lock();
        inner.study_name(study_id)?;
        let first = inner.trials.iter().filter(|(s, _)| *s == study_id).count() as u64;
        for (number, trial) in (first..).zip(trials) {
            let mut added = trial.clone();
            added.id = inner.trials.len() as i64 + 1;
            added.number = number;
            added.heartbeat_at = None;
            inner.trials.push((study_id, added));
        }
        Ok(())
    }

    fn trial(&self, study_id: i64, number: u64) -> Result<FrozenTrial> {
        let inner = self.lock();
        let study = inner.study_name(study_id)?.to_string();
        inner
            .trials
            .iter()
            .find(|(s, t)| *s == study_id && t.number == number)
            .map(|(_, t)| t.clone())
            .ok_or(Error::TrialNotFound { study, number })
    }

    fn trials(&self, study_id: i64, states: Option<&[TrialState]>) -> Result<Vec<FrozenTrial>> {
        let inner = self.lock();
        inner.study_name(study_id)?;
        Ok(inner
            .trials
            .iter()
            .filter(|(s, t)| *s == study_id && states.is_none_or(|st| st.contains(&t.state)))
            .map(|(_, t)| t.clone())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passes_the_storage_conformance_suite() {
        crate::testing::run_conformance_suite(&|| Box::new(InMemoryStorage::new()));
    }
}

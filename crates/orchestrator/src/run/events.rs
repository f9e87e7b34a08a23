//! What a run tells a display: [`Event`]s, sent to an [`Observer`] (the binary draws them).

use nightshift_search::{FrozenTrial, StudyRecord};

use super::StopReason;
use crate::pool::Slot;

/// Called with the study and all its trials every few finished trials and at the end (the CLI
/// renders the report with it; the orchestrator does not know the report crate).
pub type ReportHook = std::sync::Arc<dyn Fn(&StudyRecord, &[FrozenTrial]) + Send + Sync>;

/// What happens during a run, for progress displays.
#[derive(Debug)]
pub enum Event<'a> {
    /// The sweep is about to launch its first trial.
    Started {
        /// The study it runs.
        study: &'a StudyRecord,
        /// Where its trials run.
        slots: &'a [Slot],
        /// The trials it plans in all (a tournament's search trials and replicates).
        budget: u64,
        /// Trials that already count toward `budget.trials` (from earlier runs or other workers).
        used: u64,
        /// The numbers of the trials found stale and failed at start-up.
        stale: &'a [u64],
        /// The study's best (trial number, value) before this run ([`nightshift_search::best_of`]).
        best: Option<(u64, f64)>,
    },
    /// A trial is being launched on a slot.
    TrialStarted {
        /// Its slot.
        slot: &'a Slot,
        /// The trial, with its parameters.
        trial: &'a FrozenTrial,
    },
    /// A trial reported an intermediate value.
    TrialReport {
        /// Its slot.
        slot: &'a Slot,
        /// Its number.
        number: u64,
        /// The step reported.
        step: u64,
        /// The objective value at that step.
        value: f64,
    },
    /// A trial ended, and its final state is stored.
    TrialFinished {
        /// The slot it ran on.
        slot: &'a Slot,
        /// The trial as stored.
        trial: &'a FrozenTrial,
        /// It failed and was re-enqueued: its re-run takes its place in the budget.
        rerun: bool,
    },
    /// No more trials will be launched.
    Stopping {
        /// Why.
        reason: &'a StopReason,
    },
    /// Something the user should know, in words.
    Notice(&'a str),
}

/// Receives [`Event`]s (from several threads).
pub trait Observer: Send + Sync {
    /// Called for each event as it happens.
    fn event(&self, event: &Event<'_>);
}

/// Ignores everything.
pub struct NoObserver;

impl Observer for NoObserver {
    fn event(&self, _event: &Event<'_>) {}
}
